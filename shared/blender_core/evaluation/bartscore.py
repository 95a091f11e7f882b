"""BARTScore: mean log-likelihood of the reference's tokens given the candidate, under a LM."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from blender_core.encoding import precut, precut_tail
from blender_core.evaluation.cache import ScoreCache, model_key
from blender_core.evaluation.metrics import ReferenceMetric
from blender_core.hf_models import LazyModel, PretrainedModel, load_pretrained

__all__ = ["PAPER_BARTSCORE_MODEL", "BARTScoreMetric"]

#: The scorer the LLM-Blender paper used (a hub download; not available offline).
PAPER_BARTSCORE_MODEL = "facebook/bart-large-cnn"


class BARTScoreMetric(LazyModel[PretrainedModel], ReferenceMetric):
    """BARTScore (candidate -> reference): ``mean_t log p(ref_t | ref_<t, candidate)``.

    Works with any sequence-to-sequence model (the candidate is the encoder input, the reference
    the decoder target, as in BARTScore) or causal LM (the reference follows the candidate and a
    blank line; the candidate is cut from the left when the pair does not fit). Scores are
    negative log-likelihoods per token sign-flipped: higher is better, 0 is the maximum.

    Args:
        model_name_or_path: A hub id or local directory; the paper used
            ``facebook/bart-large-cnn`` (:data:`PAPER_BARTSCORE_MODEL`), which needs a download.
        device: ``None`` picks CUDA, then MPS, then CPU.
        dtype: ``None``: float32 on CPU, float16 on an accelerator.
        batch_size: Pairs per forward pass.
        max_length: Tokens kept of the candidate (seq2seq: also of the reference; causal: of the
            whole pair).
        cache: See :class:`~blender_core.evaluation.metrics.ReferenceMetric`.

    Example:
        .. code-block:: python

            from blender_core.evaluation import BARTScoreMetric

            metric = BARTScoreMetric("facebook/bart-large-cnn")
            metric.score("The cat sat on the mat.", "A cat was sitting on the mat.")
    """

    name = "bartscore"

    def __init__(
        self,
        model_name_or_path: str | Path = PAPER_BARTSCORE_MODEL,
        *,
        device: Any = None,
        dtype: Any = None,
        batch_size: int = 4,
        max_length: int = 1024,
        cache: ScoreCache | str | Path | None = None,
    ) -> None:
        super().__init__(device=device, batch_size=batch_size, cache=cache)
        self.model_name_or_path = str(model_name_or_path)
        self.dtype = dtype
        self.max_length = self._checked_max_length(max_length, 4)
        self.is_encoder_decoder: bool | None = None

    def config(self) -> Mapping[str, Any]:
        model = model_key(self.model_name_or_path)
        return {"metric": self.name, "model": model, "max_length": self.max_length}

    def _load_model(self) -> PretrainedModel:
        from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSeq2SeqLM

        config = AutoConfig.from_pretrained(self.model_name_or_path, trust_remote_code=False)
        self.is_encoder_decoder = bool(getattr(config, "is_encoder_decoder", False))
        auto = AutoModelForSeq2SeqLM if self.is_encoder_decoder else AutoModelForCausalLM
        return load_pretrained(auto, self.model_name_or_path, device=self.device, dtype=self.dtype)

    def _compute(
        self, candidates: Sequence[str], references: Sequence[str], *, show_progress: bool
    ) -> list[float]:
        from tqdm.auto import tqdm

        loaded = self._loaded.get()
        # Long pairs together: little padding per batch.
        order = sorted(
            range(len(candidates)), key=lambda i: -len(candidates[i]) - len(references[i])
        )
        scores = [0.0] * len(candidates)
        batches = range(0, len(order), self.batch_size)
        for start in tqdm(batches, desc="BARTScore", disable=not show_progress):
            idx = order[start : start + self.batch_size]
            # Cut by characters first (a bound from max_length), so a huge text is never
            # tokenised whole; the causal layout keeps the end of the candidate.
            per_token, keep = loaded.chars_per_token, self.max_length
            cut = precut if self.is_encoder_decoder else precut_tail
            cands = [cut(candidates[i], keep, per_token) for i in idx]
            refs = [precut(references[i], keep, per_token) for i in idx]
            if self.is_encoder_decoder:
                values = self._seq2seq(loaded, cands, refs)
            else:
                values = self._causal(loaded, cands, refs)
            for i, value in zip(idx, values, strict=True):
                scores[i] = value
        return scores

    def _token_means(self, logits: Any, labels: Any) -> list[float]:
        import torch

        mask = labels.ne(-100)
        safe = labels.masked_fill(~mask, 0)
        logprobs = torch.log_softmax(logits.float(), dim=-1).gather(-1, safe.unsqueeze(-1))
        logprobs = logprobs.squeeze(-1) * mask
        counts = mask.sum(dim=1).clamp(min=1)
        return [float(x) for x in (logprobs.sum(dim=1) / counts).tolist()]

    def _seq2seq(self, loaded: PretrainedModel, cands: list[str], refs: list[str]) -> list[float]:
        import torch

        tok = loaded.tokenizer
        enc = tok(
            cands, truncation=True, max_length=self.max_length, padding=True, return_tensors="pt"
        )
        tgt = tok(
            text_target=refs,
            truncation=True,
            max_length=self.max_length,
            padding=True,
            return_tensors="pt",
        )
        labels = tgt["input_ids"].masked_fill(tgt["attention_mask"].eq(0), -100)
        with torch.inference_mode():
            out = loaded.model(
                input_ids=enc["input_ids"].to(loaded.device),
                attention_mask=enc["attention_mask"].to(loaded.device),
                labels=labels.to(loaded.device),
            )
        return self._token_means(out.logits, labels.to(loaded.device))

    @staticmethod
    def _start_id(tok: Any) -> int:
        for token_id in (tok.eos_token_id, tok.cls_token_id, tok.pad_token_id, 0):
            if token_id is not None:
                return int(token_id)
        return 0  # pragma: no cover

    def _causal(self, loaded: PretrainedModel, cands: list[str], refs: list[str]) -> list[float]:
        import torch

        tok = loaded.tokenizer
        pad_id = tok.pad_token_id if tok.pad_token_id is not None else (tok.eos_token_id or 0)
        rows: list[list[int]] = []
        label_rows: list[list[int]] = []
        for cand, ref in zip(cands, refs, strict=True):
            ref_ids = tok(ref, add_special_tokens=False)["input_ids"]
            if tok.eos_token_id is not None:
                ref_ids = [*ref_ids, tok.eos_token_id]
            ref_ids = ref_ids[: max(1, self.max_length // 2)]
            cand_ids = tok(cand + "\n\n", add_special_tokens=False)["input_ids"]
            if tok.bos_token_id is not None:
                cand_ids = [tok.bos_token_id, *cand_ids]
            if not cand_ids:
                # Something must precede the reference's first token for it to be scored.
                cand_ids = [self._start_id(tok)]
            room = self.max_length - len(ref_ids)
            cand_ids = cand_ids[-room:] if len(cand_ids) > room else cand_ids
            rows.append(cand_ids + ref_ids)
            label_rows.append([-100] * len(cand_ids) + ref_ids)
        width = max(len(r) for r in rows)
        input_ids = torch.tensor([r + [pad_id] * (width - len(r)) for r in rows])
        attention = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows])
        labels = torch.tensor([r + [-100] * (width - len(r)) for r in label_rows])
        with torch.inference_mode():
            logits = loaded.model(
                input_ids=input_ids.to(loaded.device),
                attention_mask=attention.to(loaded.device),
            ).logits
        # Position t predicts token t + 1.
        return self._token_means(logits[:, :-1], labels[:, 1:].to(loaded.device))
