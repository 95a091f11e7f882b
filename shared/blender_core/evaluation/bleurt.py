"""BLEURT through the ``bleurt-pytorch`` port, where it can be imported.

The only PyPI implementation that loads a local PyTorch checkpoint is ``bleurt-pytorch`` 0.0.1
(July 2024, a port by Luca Di Liello). It imports helpers that transformers 5 removed
(``find_pruneable_heads_and_indices``), so with this project's transformers it cannot be
imported; Google's reference ``bleurt`` package needs TensorFlow and is not on PyPI. This metric
therefore works only in an environment with ``bleurt-pytorch`` and transformers 4.x, and raises
a clear :class:`BLEURTUnavailableError` otherwise.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from blender_core.evaluation.cache import ScoreCache, model_key
from blender_core.evaluation.metrics import ReferenceMetric

__all__ = ["BLEURTMetric", "BLEURTUnavailableError"]


class BLEURTUnavailableError(ImportError):
    """BLEURT cannot run in this environment (the message says why and what would fix it)."""


def _import_bleurt() -> Any:
    try:
        import bleurt_pytorch
    except ImportError as exc:
        raise BLEURTUnavailableError(
            "BLEURT needs the 'bleurt-pytorch' package, and bleurt-pytorch 0.0.1 (the only "
            "PyPI port that loads a local checkpoint) does not import with transformers>=5 "
            f"({type(exc).__name__}: {exc}). Use it in an environment with transformers<5 "
            "(pip install bleurt-pytorch 'transformers<5'), or leave BLEURT out of --metrics."
        ) from exc
    return bleurt_pytorch


class BLEURTMetric(ReferenceMetric):
    """BLEURT score of a candidate against the reference (``bleurt-pytorch`` checkpoints).

    Args:
        checkpoint: A local directory (or hub id) of a ``bleurt-pytorch`` checkpoint, for example
            a download of ``lucadiliello/BLEURT-20-D12``.
        device: ``None`` picks CUDA, then MPS, then CPU.
        batch_size: Pairs per forward pass.
        max_length: Tokens kept per (reference, candidate) pair.
        cache: See :class:`~blender_core.evaluation.metrics.ReferenceMetric`.

    Raises:
        BLEURTUnavailableError: on first use, when ``bleurt-pytorch`` cannot be imported.

    Example:
        .. code-block:: python

            metric = BLEURTMetric("path/to/BLEURT-20-D12")
            metric.score("a bird chirps by the window", "a bird chirps by the window")
    """

    name = "bleurt"

    def __init__(
        self,
        checkpoint: str | Path,
        *,
        device: Any = None,
        batch_size: int = 16,
        max_length: int = 512,
        cache: ScoreCache | str | Path | None = None,
    ) -> None:
        super().__init__(cache=cache)
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.checkpoint = str(checkpoint)
        self.device = device
        self.batch_size = batch_size
        self.max_length = max_length
        self._lock = threading.Lock()
        self._model: Any = None
        self._tokenizer: Any = None
        self._torch_device: Any = None

    def config(self) -> Mapping[str, Any]:
        model = model_key(self.checkpoint)
        return {"metric": self.name, "model": model, "max_length": self.max_length}

    def load(self) -> BLEURTMetric:
        """Load the checkpoint now (otherwise on first use); returns ``self``."""
        with self._lock:
            if self._model is None:
                bleurt = _import_bleurt()
                from blender_core.devices import resolve_device

                device = resolve_device(self.device)
                self._tokenizer = bleurt.BleurtTokenizer.from_pretrained(self.checkpoint)
                model = bleurt.BleurtForSequenceClassification.from_pretrained(self.checkpoint)
                self._model = model.to(device).eval()
                self._torch_device = device
        return self

    def _compute(
        self, candidates: Sequence[str], references: Sequence[str], *, show_progress: bool
    ) -> list[float]:
        import torch
        from tqdm.auto import tqdm

        self.load()
        scores: list[float] = []
        starts = range(0, len(candidates), self.batch_size)
        for start in tqdm(starts, desc="BLEURT", disable=not show_progress):
            inputs = self._tokenizer(
                list(references[start : start + self.batch_size]),
                list(candidates[start : start + self.batch_size]),
                padding="longest",
                truncation=True,
                max_length=self.max_length,
                return_tensors="pt",
            ).to(self._torch_device)
            with torch.inference_mode():
                scores.extend(float(x) for x in self._model(**inputs).logits.flatten().tolist())
        return scores
