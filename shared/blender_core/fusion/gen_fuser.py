"""GenFuser: a seq2seq model that writes one answer from the top-ranked candidates (LLM-Blender)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from blender_core.encoding import chars_per_token_bound, precut
from blender_core.fusion.base import BaseFuser, validate_fuse_inputs

if TYPE_CHECKING:
    import torch

__all__ = ["DEFAULT_GENERATE_KWARGS", "TASK_LINE", "GenFuser", "format_genfuser_prompt"]

TASK_LINE = "Summarize candidates into a better one for the given instruction:"
"""The closing task sentence of the trained GenFuser prompt (never truncated)."""

_SEP = "</s>"

DEFAULT_GENERATE_KWARGS: dict[str, Any] = {
    "num_beams": 4,
    "max_new_tokens": 128,
    "num_return_sequences": 1,
}
"""Generation defaults of the published GenFuser (beam search, 4 beams, 128 new tokens)."""


def format_genfuser_prompt(instruction: str, candidates: Sequence[str], input: str = "") -> str:
    """The trained GenFuser prompt for already-cut candidates (pure string formatting).

    ``Instruction: {instruction}</s>Input: {input}</s>Candidate 0: <extra_id_0>:{c0}</s>...``
    ``</s>Summarize candidates into a better one for the given instruction:``
    """
    parts = [f"Instruction: {instruction}", f"Input: {input}"]
    parts.extend(f"Candidate {i}: <extra_id_{i}>:{c}" for i, c in enumerate(candidates))
    parts.append(TASK_LINE)
    return _SEP.join(parts)


class GenFuser(BaseFuser):
    """LLM-Blender's GenFuser: fuses the top-K candidates with a fine-tuned seq2seq model.

    The prompt, the per-candidate cut (``candidate_maxlength`` tokens, ``"..."`` appended when cut),
    the prompt cut (``max_length`` tokens, taken from the candidates so the task line survives) and
    the generation defaults (4 beams, 128 new tokens) follow ``llm-blender/gen_fuser_3b``.

    Args:
        model: A loaded seq2seq model (e.g. ``T5ForConditionalGeneration``), in eval mode.
        tokenizer: Its tokenizer.
        max_length: Maximum prompt length in tokens.
        candidate_maxlength: Maximum length of each candidate in tokens.

    Example:
        .. code-block:: python

            from blender_core import GenFuser

            fuser = GenFuser.from_pretrained("llm-blender/gen_fuser_3b")
            fuser.fuse("What is the capital of France?", ["Paris.", "It is Paris, in France."])
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        *,
        max_length: int = 1024,
        candidate_maxlength: int = 128,
    ) -> None:
        if max_length < 1 or candidate_maxlength < 1:
            raise ValueError("max_length and candidate_maxlength must be positive")
        self.model = model
        self.tokenizer = tokenizer
        self.max_length = int(max_length)
        self.candidate_maxlength = int(candidate_maxlength)
        special = {str(t) for t in getattr(tokenizer, "all_special_tokens", ()) or ()}
        special |= {_SEP, *(f"<extra_id_{i}>" for i in range(100))}
        self._special_pattern = re.compile(
            "|".join(re.escape(t) for t in sorted(special, key=len, reverse=True) if t)
        )
        self._chars_per_token = chars_per_token_bound(tokenizer)
        self._task_ids: list[int] = self._encode(_SEP + TASK_LINE)
        if len(self._task_ids) >= self.max_length:
            raise ValueError(
                f"max_length={self.max_length} leaves no room beside the task line "
                f"({len(self._task_ids)} tokens)"
            )

    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str | Path,
        *,
        device: Any = None,
        dtype: Any = None,
        max_length: int = 1024,
        candidate_maxlength: int = 128,
    ) -> GenFuser:
        """Load a GenFuser (``llm-blender/gen_fuser_3b`` or any seq2seq checkpoint and tokenizer).

        Args:
            name_or_path: A hub id or a local directory with the model and its tokenizer.
            device: ``None`` picks CUDA, then MPS, then CPU.
            dtype: ``None`` means bf16 on an accelerator and fp32 on CPU.
            max_length: Maximum prompt length in tokens.
            candidate_maxlength: Maximum length of each candidate in tokens.
        """
        from transformers import AutoModelForSeq2SeqLM

        from blender_core.hf_models import load_pretrained
        from blender_core.hub import local_snapshot

        source = str(name_or_path)
        cached = local_snapshot(source, what="GenFuser checkpoint")  # offline: cache or error
        if cached is not None:
            source = str(cached)
        loaded = load_pretrained(  # quiet: transformers' load bar and report
            AutoModelForSeq2SeqLM,
            source,
            device=device,
            dtype=dtype,
            gpu_default="bfloat16",
            quiet=True,
        )
        return cls(
            loaded.model,
            loaded.tokenizer,
            max_length=max_length,
            candidate_maxlength=candidate_maxlength,
        )

    def save_pretrained(self, path: str | Path) -> Path:
        """Save the model and tokenizer to ``path`` (loadable with :meth:`from_pretrained`)."""
        out = Path(path)
        out.mkdir(parents=True, exist_ok=True)
        self.model.save_pretrained(out)
        self.tokenizer.save_pretrained(out)
        return out

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    # -- prompt ---------------------------------------------------------------------------------

    def _encode(self, text: str) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def sanitize(self, text: str) -> str:
        """``text`` with special-token strings (``</s>``, ``<extra_id_N>``, ``<pad>``...) defused.

        Each gets a space after its first character, so it reads as plain text, never as a control
        token (as :meth:`blender_core.encoding.PairEncoder.sanitize` does); clean text is unchanged.
        """
        while True:  # splitting one occurrence creates none, but overlapping matches may hide one
            new = self._special_pattern.sub(lambda m: m.group(0)[0] + " " + m.group(0)[1:], text)
            if new == text:
                return text
            text = new

    def _cut_candidate(self, text: str) -> str:
        text = self.sanitize(precut(text, self.candidate_maxlength, self._chars_per_token))
        ids = self._encode(text)
        if len(ids) <= self.candidate_maxlength:
            return text
        return str(self.tokenizer.decode(ids[: self.candidate_maxlength])) + "..."

    def build_prompt(self, instruction: str, candidates: Sequence[str], input: str = "") -> str:
        """The prompt for ``candidates`` (best first), each cut to ``candidate_maxlength`` tokens.

        The prompt-level cut to ``max_length`` tokens happens on token ids in :meth:`encode_prompt`.
        """
        texts = validate_fuse_inputs(instruction, candidates, input, fuser="GenFuser")
        # The instruction and input are cut to the whole prompt's budget before tokenising (the
        # token-level cut happens in encode_prompt).
        head = [
            self.sanitize(precut(t, self.max_length, self._chars_per_token))
            for t in (instruction, input)
        ]
        return format_genfuser_prompt(head[0], [self._cut_candidate(c) for c in texts], head[1])

    def encode_prompt(
        self, instruction: str, candidates: Sequence[str], input: str = ""
    ) -> list[int]:
        """Token ids of the prompt, at most ``max_length``, always ending with the task line.

        When too long, tokens are dropped from the end of the instruction/input/candidates part,
        never from the closing ``</s>Summarize candidates ...`` line.
        """
        prompt = self.build_prompt(instruction, candidates, input)
        ids = self._encode(prompt)
        if len(ids) <= self.max_length:
            return ids
        head = prompt[: -len(_SEP + TASK_LINE)]
        # "</s>" is a special token, so the head and the task line tokenise independently.
        head_ids = self._encode(head)[: self.max_length - len(self._task_ids)]
        return head_ids + self._task_ids

    # -- generation -----------------------------------------------------------------------------

    def _generate_kwargs(self, overrides: dict[str, Any]) -> dict[str, Any]:
        kwargs = {**DEFAULT_GENERATE_KWARGS, **overrides}
        if kwargs.get("num_return_sequences", 1) != 1:
            raise ValueError(
                "GenFuser returns one answer per prompt: num_return_sequences must be 1"
            )
        return kwargs

    def _fuse_encoded(self, batch: list[list[int]], generate_kwargs: dict[str, Any]) -> list[str]:
        import torch

        pad_id = self.tokenizer.pad_token_id
        if pad_id is None:
            pad_id = self.tokenizer.eos_token_id if self.tokenizer.eos_token_id is not None else 0
        width = max(len(ids) for ids in batch)
        input_ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
        attention = torch.zeros((len(batch), width), dtype=torch.long)
        for row, ids in enumerate(batch):  # right padding, as for any encoder input
            input_ids[row, : len(ids)] = torch.tensor(ids, dtype=torch.long)
            attention[row, : len(ids)] = 1
        device = self.device
        with torch.inference_mode():
            output = self.model.generate(
                input_ids=input_ids.to(device),
                attention_mask=attention.to(device),
                **generate_kwargs,
            )
        texts = self.tokenizer.batch_decode(output, skip_special_tokens=True)
        return [str(t).strip() for t in texts]

    def fuse(
        self,
        instruction: str,
        candidates: Sequence[str],
        *,
        input: str = "",
        **generate_kwargs: Any,
    ) -> str:
        """Fuse ``candidates`` (best first) into one answer.

        Args:
            instruction: The user instruction.
            candidates: The top-ranked candidates, best first (not modified).
            input: Optional input/context of the instruction.
            **generate_kwargs: Overrides of the generation defaults (``num_beams=4``,
                ``max_new_tokens=128``), passed to ``model.generate``.
        """
        ids = self.encode_prompt(instruction, candidates, input)
        return self._fuse_encoded([ids], self._generate_kwargs(generate_kwargs))[0]

    def fuse_batch(
        self,
        instructions: Sequence[str],
        candidate_lists: Sequence[Sequence[str]],
        *,
        inputs: Sequence[str] | None = None,
        batch_size: int = 4,
        show_progress: bool = False,
        **generate_kwargs: Any,
    ) -> list[str]:
        """Fuse many examples, ``batch_size`` prompts per ``generate`` call.

        Args:
            instructions: One instruction per example.
            candidate_lists: One list of candidates (best first) per example.
            inputs: Optional inputs, one per example.
            batch_size: Prompts per forward pass.
            show_progress: Show a tqdm progress bar.
            **generate_kwargs: As in :meth:`fuse`.
        """
        if isinstance(instructions, str) or not isinstance(instructions, Sequence):
            raise TypeError("instructions must be a sequence of strings")
        if isinstance(candidate_lists, str) or not isinstance(candidate_lists, Sequence):
            raise TypeError("candidate_lists must be a sequence of candidate lists")
        if len(instructions) != len(candidate_lists):
            raise ValueError(
                f"got {len(instructions)} instructions but {len(candidate_lists)} candidate lists"
            )
        if inputs is None:
            inputs = [""] * len(instructions)
        elif isinstance(inputs, str) or len(inputs) != len(instructions):
            raise ValueError("inputs must be a sequence with one string per instruction")
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        kwargs = self._generate_kwargs(generate_kwargs)
        encoded = []
        for i, (inst, cands, inp) in enumerate(
            zip(instructions, candidate_lists, inputs, strict=True)
        ):
            try:
                encoded.append(self.encode_prompt(inst, cands, inp))
            except (TypeError, ValueError) as exc:
                raise type(exc)(f"example {i}: {exc}") from exc

        from tqdm.auto import tqdm

        results: list[str] = []
        starts = range(0, len(encoded), batch_size)
        for start in tqdm(starts, desc="Fusing", disable=not show_progress):
            results.extend(self._fuse_encoded(encoded[start : start + batch_size], kwargs))
        return results

    def __repr__(self) -> str:
        name = getattr(getattr(self.model, "config", None), "_name_or_path", "")
        return f"GenFuser(model={name!r}, max_length={self.max_length})"
