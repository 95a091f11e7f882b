"""The one factory: turn a spec (a name, a hub id, a path, a typed mapping or an object) into a
ranker or a fuser.

Used by :class:`~blender_core.blend.Blender`, :class:`~blender_core.engine.Engine` (so both
framework packages), the gateway's configuration (``serve/members.py``) and the CLI, so that every
entry point accepts the same specs. A typed spec names a ranker ``type`` from
:data:`blender_core.rankers.BUILTIN_RANKERS` (or one added with :func:`register_ranker`) and its
options: ``{"type": "pairrm", "checkpoint": "llm-blender/PairRM", "device": "cuda"}``.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, cast

from blender_core.fusion.base import Fuser
from blender_core.generators.base import Generator
from blender_core.ranking import Ranker

__all__ = ["DEFAULT_RANKER", "build_ranker", "load_fuser", "load_ranker", "register_ranker"]

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


_REGISTERED: dict[str, Callable[..., Ranker]] = {}


def _text_spec(spec: object, kind: str) -> str | None:
    """A string or :class:`~pathlib.Path` spec as text (a keyword or a checkpoint), ``None``
    for any other spec.

    Raises:
        ValueError: an empty or blank string.
    """
    if isinstance(spec, Path):
        return str(spec)
    if not isinstance(spec, str):
        return None
    if not spec.strip():
        raise ValueError(f"{kind} spec is an empty string")
    return spec


def register_ranker(type: str, factory: Callable[..., Ranker]) -> None:
    """Make ``type`` a ranker spec name: ``factory(**options)`` builds it (a plugin's ranker)."""
    if not isinstance(type, str) or not type.strip():
        raise ValueError("a ranker type must be a non-empty string")
    if not callable(factory):
        raise TypeError(f"the factory of ranker type {type!r} is not callable")
    _REGISTERED[type.strip().lower()] = factory


def _factory(type: str) -> Callable[..., Ranker]:
    from blender_core.rankers import BUILTIN_RANKERS

    key = type.strip().lower()
    if key in _REGISTERED:
        return _REGISTERED[key]
    if key not in BUILTIN_RANKERS:
        known = ", ".join(sorted({*BUILTIN_RANKERS, *_REGISTERED}))
        raise ValueError(f"unknown ranker type {type!r} (known: {known})")
    module, _, path = BUILTIN_RANKERS[key].partition(":")
    target: Any = importlib.import_module(module)
    for attr in path.split("."):
        target = getattr(target, attr)
    return cast(Callable[..., Ranker], target)


def _accepts(factory: Callable[..., Any], name: str) -> bool:
    try:
        parameters = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError):
        return True
    return any(p.name == name or p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters)


def build_ranker(type: str, /, **options: Any) -> Ranker:
    """The ranker of spec type ``type`` built from its options (``None`` options are left to the
    ranker's defaults, except a ``seed``, where ``None`` means unseeded).

    Example:
        .. code-block:: python

            from blender_core.loading import build_ranker

            build_ranker("pairrm", checkpoint="llm-blender/PairRM", device="cpu")
            build_ranker("llm_judge", judge=generator, seed=0, timeout=30)
    """
    factory = _factory(type)
    kwargs = {k: v for k, v in options.items() if v is not None or k == "seed"}
    for placement in ("device", "dtype"):  # where to load means nothing to a model-free ranker
        if placement in kwargs and not _accepts(factory, placement):
            kwargs.pop(placement)
    if type.strip().lower() == "pairrm":
        return factory(kwargs.pop("checkpoint", DEFAULT_RANKER), **kwargs)
    return factory(**kwargs)


def load_ranker(
    spec: str | Path | Mapping[str, Any] | Ranker | None,
    *,
    device: Any = None,
    dtype: Any = None,
) -> Ranker:
    """A ranker from a spec.

    Args:
        spec: A :class:`~blender_core.ranking.Ranker` (returned as is); ``None`` or
            ``"consensus"`` for :class:`~blender_core.rankers.consensus.ConsensusRanker` (MiniLM);
            ``"random"`` for :class:`~blender_core.rankers.random.RandomRanker`; any other string
            is a PairRanker checkpoint (hub id such as ``"llm-blender/PairRM"`` or a local path)
            for :meth:`PairRanker.from_pretrained` (a :class:`~pathlib.Path` too); a mapping with
            a ``"type"`` and options for :func:`build_ranker`.
        device: Device of a model loaded here (ignored for objects and the random ranker).
        dtype: Dtype of a model loaded here.

    Example:
        .. code-block:: python

            from blender_core import load_ranker

            ranker = load_ranker("llm-blender/PairRM", device="cuda")
    """
    if isinstance(spec, Mapping):
        options = dict(spec)
        kind = options.pop("type", None)
        if not isinstance(kind, str):
            raise ValueError(f"a ranker spec mapping needs a 'type' (a string), got {spec!r}")
        options.setdefault("device", device)
        options.setdefault("dtype", dtype)
        return build_ranker(kind, **options)
    text = _text_spec(spec, "ranker")
    if spec is None or (text is not None and text.strip().lower() == "consensus"):
        from blender_core.rankers.consensus import ConsensusRanker

        return ConsensusRanker(device=device, dtype=dtype)
    if text is not None:
        if text.strip().lower() == "random":
            from blender_core.rankers.random import RandomRanker

            return RandomRanker()
        from blender_core.pair_ranker import PairRanker

        return PairRanker.from_pretrained(text, device=device, dtype=dtype)
    if isinstance(spec, Ranker):
        return spec
    raise TypeError(
        f"ranker must be None, 'consensus', 'random', a PairRanker checkpoint (hub id or path) "
        f"or an object with rank/rank_batch/arank, got {type(spec).__name__}"
    )


def load_fuser(
    spec: str | Path | Fuser | Generator | None, *, device: Any = None, dtype: Any = None
) -> Fuser:
    """A fuser from a spec.

    Args:
        spec: ``None`` or ``"select"`` for :class:`~blender_core.fusion.select.SelectFuser` (no
            fusion: the top-ranked answer); a :class:`~blender_core.fusion.base.Fuser` (returned
            as is); a :class:`~blender_core.generators.base.Generator` for an
            :class:`~blender_core.fusion.llm_fuser.LLMFuser` over it; any other string is a
            GenFuser checkpoint (hub id such as ``"llm-blender/gen_fuser_3b"`` or a local path,
            a :class:`~pathlib.Path` too).
        device: Device of a model loaded here.
        dtype: Dtype of a model loaded here.

    Example:
        .. code-block:: python

            from blender_core import load_fuser

            fuser = load_fuser("llm-blender/gen_fuser_3b", dtype="bfloat16")
    """
    text = _text_spec(spec, "fuser")
    if spec is None or (text is not None and text.strip().lower() == "select"):
        from blender_core.fusion.select import SelectFuser

        return SelectFuser()
    if text is not None:
        from blender_core.fusion.gen_fuser import GenFuser

        return GenFuser.from_pretrained(text, device=device, dtype=dtype)
    if _is_fuser(spec):
        return cast(Fuser, spec)
    if _is_generator(spec):
        from blender_core.fusion.llm_fuser import LLMFuser

        return LLMFuser(cast(Generator, spec))
    raise TypeError(
        f"fuser must be None, 'select', a GenFuser checkpoint (hub id or path), a Fuser "
        f"(with fuse/afuse) or a Generator (for an LLM fuser), got {type(spec).__name__}"
    )
