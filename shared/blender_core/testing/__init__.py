"""Builders of tiny random checkpoints in the exact published layouts, for offline tests.

Example:
    .. code-block:: python

        from blender_core import PairRanker
        from blender_core.testing import make_tiny_pairranker

        path = make_tiny_pairranker(tmp_path / "pairrm", layout="pairrm")
        ranker = PairRanker.from_pretrained(path)
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "make_tiny_pairranker": "blender_core.testing.pairranker",
    "make_tiny_genfuser": "blender_core.testing.genfuser",
}

__all__ = ["make_tiny_genfuser", "make_tiny_pairranker"]


def __getattr__(name: str) -> Any:
    module_name = _EXPORTS.get(name)
    if module_name is None:
        raise AttributeError(f"module 'blender_core.testing' has no attribute {name!r}")
    return getattr(importlib.import_module(module_name), name)


if TYPE_CHECKING:
    from blender_core.testing.genfuser import make_tiny_genfuser
    from blender_core.testing.pairranker import make_tiny_pairranker
