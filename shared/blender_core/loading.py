"""Turn a spec (a name, a hub id, a path or an object) into a ranker or a fuser.

Used by :class:`~blender_core.blend.Blender`, the CLI and the framework packages so that every
entry point accepts the same specs.
"""

from __future__ import annotations

from typing import Any, cast

from blender_core.fusion.base import Fuser
from blender_core.generators.base import Generator
from blender_core.ranking import Ranker

__all__ = ["DEFAULT_RANKER", "load_fuser", "load_ranker"]

DEFAULT_RANKER = "llm-blender/PairRM"
"""The ranker the framework adapters use when none is named (the published PairRM)."""


def _is_fuser(obj: Any) -> bool:
    return callable(getattr(obj, "fuse", None)) and callable(getattr(obj, "afuse", None))


def _is_generator(obj: Any) -> bool:
    return (
        isinstance(getattr(obj, "name", None), str)
        and callable(getattr(obj, "generate", None))
        and callable(getattr(obj, "agenerate", None))
    )


def load_ranker(spec: str | Ranker | None, *, device: Any = None, dtype: Any = None) -> Ranker:
    """A ranker from a spec.

    Args:
        spec: A :class:`~blender_core.ranking.Ranker` (returned as is); ``None`` or
            ``"consensus"`` for :class:`~blender_core.rankers.consensus.ConsensusRanker` (MiniLM);
            ``"random"`` for :class:`~blender_core.rankers.random.RandomRanker`; any other string
            is a PairRanker checkpoint (hub id such as ``"llm-blender/PairRM"`` or a local path)
            for :meth:`PairRanker.from_pretrained`.
        device: Device of a model loaded here (ignored for objects and the random ranker).
        dtype: Dtype of a model loaded here.

    Example:
        .. code-block:: python

            from blender_core import load_ranker

            ranker = load_ranker("llm-blender/PairRM", device="cuda")
    """
    if spec is None or (isinstance(spec, str) and spec.strip().lower() == "consensus"):
        from blender_core.rankers.consensus import ConsensusRanker

        return ConsensusRanker(device=device, dtype=dtype)
    if isinstance(spec, str):
        if not spec.strip():
            raise ValueError("ranker spec is an empty string")
        if spec.strip().lower() == "random":
            from blender_core.rankers.random import RandomRanker

            return RandomRanker()
        from blender_core.pair_ranker import PairRanker

        return PairRanker.from_pretrained(spec, device=device, dtype=dtype)
    if isinstance(spec, Ranker):
        return spec
    raise TypeError(
        f"ranker must be None, 'consensus', 'random', a PairRanker checkpoint (hub id or path) "
        f"or an object with rank/rank_batch/arank, got {type(spec).__name__}"
    )


def load_fuser(
    spec: str | Fuser | Generator | None, *, device: Any = None, dtype: Any = None
) -> Fuser:
    """A fuser from a spec.

    Args:
        spec: ``None`` or ``"select"`` for :class:`~blender_core.fusion.select.SelectFuser` (no
            fusion: the top-ranked answer); a :class:`~blender_core.fusion.base.Fuser` (returned
            as is); a :class:`~blender_core.generators.base.Generator` for an
            :class:`~blender_core.fusion.llm_fuser.LLMFuser` over it; any other string is a
            GenFuser checkpoint (hub id such as ``"llm-blender/gen_fuser_3b"`` or a local path).
        device: Device of a model loaded here.
        dtype: Dtype of a model loaded here.

    Example:
        .. code-block:: python

            from blender_core import load_fuser

            fuser = load_fuser("llm-blender/gen_fuser_3b", dtype="bfloat16")
    """
    if spec is None or (isinstance(spec, str) and spec.strip().lower() == "select"):
        from blender_core.fusion.select import SelectFuser

        return SelectFuser()
    if isinstance(spec, str):
        if not spec.strip():
            raise ValueError("fuser spec is an empty string")
        from blender_core.fusion.gen_fuser import GenFuser

        return GenFuser.from_pretrained(spec, device=device, dtype=dtype)
    if _is_fuser(spec):
        return cast(Fuser, spec)
    if _is_generator(spec):
        from blender_core.fusion.llm_fuser import LLMFuser

        return LLMFuser(cast(Generator, spec))
    raise TypeError(
        f"fuser must be None, 'select', a GenFuser checkpoint (hub id or path), a Fuser "
        f"(with fuse/afuse) or a Generator (for an LLM fuser), got {type(spec).__name__}"
    )
