"""Builders of tiny random checkpoints in the exact published layouts, for offline tests (and
the rankers the examples offer, :func:`demo_ranker`).

Example:
    .. code-block:: python

        from blender_core import PairRanker
        from blender_core.testing import make_tiny_pairranker

        path = make_tiny_pairranker(tmp_path / "pairrm", layout="pairrm")
        ranker = PairRanker.from_pretrained(path)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from blender_core.lazy import lazy_exports

_EXPORTS = {
    "make_tiny_pairranker": "blender_core.testing.pairranker",
    "make_tiny_genfuser": "blender_core.testing.genfuser",
    "demo_ranker": "blender_core.testing.demo",
    "add_ranker_option": "blender_core.testing.demo",
}

__all__ = ["add_ranker_option", "demo_ranker", "make_tiny_genfuser", "make_tiny_pairranker"]


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)


if TYPE_CHECKING:
    from blender_core.testing.demo import add_ranker_option, demo_ranker
    from blender_core.testing.genfuser import make_tiny_genfuser
    from blender_core.testing.pairranker import make_tiny_pairranker
