"""BLEURT through the ``bleurt-pytorch`` port, where it can be imported.

The only PyPI implementation that loads a local PyTorch checkpoint is ``bleurt-pytorch`` 0.0.1
(July 2024, a port by Luca Di Liello). It imports helpers that transformers 5 removed
(``find_pruneable_heads_and_indices``), so with this project's transformers it cannot be
imported; Google's reference ``bleurt`` package needs TensorFlow and is not on PyPI. This metric
therefore works only in an environment with ``bleurt-pytorch`` and transformers 4.x, and raises
a clear :class:`BLEURTUnavailableError` otherwise.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from blender_core.evaluation.cache import ScoreCache, model_key
from blender_core.evaluation.metrics import ReferenceMetric
from blender_core.hf_models import LazyModel, PretrainedModel

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


class BLEURTMetric(LazyModel[PretrainedModel], ReferenceMetric):
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
            metric.score_batch(
                ["a bird chirps by the window", "the window is a bird"],
                ["a bird chirps by the window", "a bird chirps by the window"],
            )  # the same text scores higher than a scrambled one
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
        self.checkpoint = str(checkpoint)
        super().__init__(device=device, batch_size=batch_size, cache=cache)
        self.max_length = max_length

    def config(self) -> Mapping[str, Any]:
        model = model_key(self.checkpoint)
        return {"metric": self.name, "model": model, "max_length": self.max_length}

    def _load_model(self) -> PretrainedModel:
        bleurt = _import_bleurt()
        from blender_core.devices import resolve_device

        # bleurt-pytorch's own classes, in float32 (as the port scores): not load_pretrained.
        device = resolve_device(self.device)
        tokenizer = bleurt.BleurtTokenizer.from_pretrained(self.checkpoint)
        model = bleurt.BleurtForSequenceClassification.from_pretrained(self.checkpoint)
        return PretrainedModel(model.to(device).eval(), tokenizer, device)

    def _compute(
        self, candidates: Sequence[str], references: Sequence[str], *, show_progress: bool
    ) -> list[float]:
        import torch
        from tqdm.auto import tqdm

        loaded = self._loaded.get()
        scores: list[float] = []
        starts = range(0, len(candidates), self.batch_size)
        for start in tqdm(starts, desc="BLEURT", disable=not show_progress):
            inputs = loaded.tokenizer(
                list(references[start : start + self.batch_size]),
                list(candidates[start : start + self.batch_size]),
                padding="longest",
                truncation=True,
                max_length=self.max_length,
                return_tensors="pt",
            ).to(loaded.device)
            with torch.inference_mode():
                scores.extend(float(x) for x in loaded.model(**inputs).logits.flatten().tolist())
        return scores
