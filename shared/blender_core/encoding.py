"""Token ids for PairRanker pairs: sanitising, per-example truncation, caching and collation.

One ordered pair ``(A, B)`` for a source becomes::

    [CLS] <|source|> source [SEP] [CLS] <|candidate1|> A [SEP] [CLS] <|candidate2|> B [SEP]

- The source part (``[CLS]`` and ``[SEP]`` included) is cut on the right to ``source_maxlength``
  tokens.
- Each candidate part is cut to ``candidate_maxlength + (source_maxlength - len(source part)) // 2``
  tokens, ``len(source part)`` being that example's own source (never a batch neighbour's), so that
  a pair's ids do not depend on what else is in the batch.
- Padding goes at the end (:meth:`PairEncoder.collate`).

Every distinct text is tokenised once (:meth:`PairEncoder.tokenize`); pairs are assembled from the
cached ids, so N candidates cost N tokenisations, not N(N-1).

Texts are sanitised first: a literal ``[SEP]`` becomes a space (as in the reference), and any other
special-token string (``[CLS]``, ``<|candidate1|>``, ...) gets a space after its first character so
that it is read as plain text and never as a control token.

Before tokenising, every text is cut to a character bound derived from the token budget
(:func:`precut`), so memory and time stay bounded whatever the text's length; the bound is loose
enough that the ids of every text are the same as without the cut.

Example:
    .. code-block:: python

        from blender_core.encoding import PairEncoder

        encoder = PairEncoder(tokenizer, source_maxlength=1224, candidate_maxlength=412)
        ids = encoder.encode_pair("Say hi", "hi!", "go away")
        batch = encoder.collate([ids])  # {"input_ids": LongTensor, "attention_mask": LongTensor}
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedTokenizerBase

_VISIBLE = re.compile(r"\S")


def chars_per_token_bound(tokenizer: Any) -> int:
    """An upper bound on the visible characters one token of ``tokenizer`` stands for.

    The longest vocabulary entry (at least 16), plus slack for normalisation; 128 when the
    vocabulary cannot be read.
    """
    try:
        vocab = tokenizer.get_vocab()
        longest = max((len(str(token)) for token in vocab), default=0)
    except Exception:  # a tokenizer without a readable vocabulary: a generous fixed bound
        return 128
    return max(16, longest) + 4


def precut(text: str, max_tokens: int, chars_per_token: int) -> str:
    """``text`` cut after ``(max_tokens + 1) * chars_per_token`` visible (non-space) characters.

    A tokeniser needs at least one token per ``chars_per_token`` visible characters, so the first
    ``max_tokens`` tokens of the cut text are those of the whole text; counting visible characters
    only keeps this true for tokenisers that collapse runs of whitespace. Texts under the bound
    are returned unchanged (the same object).
    """
    limit = (max_tokens + 1) * chars_per_token
    if len(text) <= limit:
        return text
    last = next(itertools.islice(_VISIBLE.finditer(text), limit - 1, None), None)
    return text if last is None else text[: last.end()]


def precut_tail(text: str, max_tokens: int, chars_per_token: int) -> str:
    """:func:`precut` from the end: the last ``(max_tokens + 1) * chars_per_token`` visible
    characters of ``text`` (for callers that keep the last ``max_tokens`` tokens)."""
    limit = (max_tokens + 1) * chars_per_token
    if len(text) <= limit:
        return text
    seen = 0
    for i in range(len(text) - 1, -1, -1):
        if not text[i].isspace():
            seen += 1
            if seen == limit:
                return text[i:]
    return text


def token_budget(tokenizer: Any, max_length: int | None, fallback: int = 8192) -> int:
    """The tokens a tokenizer keeps per text: ``max_length``, else its ``model_max_length``
    (``fallback`` when that is unset or the "no limit" sentinel)."""
    if max_length is not None:
        return max_length
    limit = getattr(tokenizer, "model_max_length", None)
    return limit if isinstance(limit, int) and 0 < limit <= 10**6 else fallback


__all__ = [
    "ADDED_TOKENS",
    "CAND1_PREFIX",
    "CAND2_PREFIX",
    "CAND_PREFIX",
    "CONVERSATION_INSTRUCTION",
    "SOURCE_PREFIX",
    "PairEncoder",
    "chars_per_token_bound",
    "conversation_texts",
    "precut",
    "precut_tail",
    "token_budget",
]

SOURCE_PREFIX = "<|source|>"
CAND1_PREFIX = "<|candidate1|>"
CAND2_PREFIX = "<|candidate2|>"
CAND_PREFIX = "<|candidate|>"
#: The four tokens every PairRanker vocabulary ends with, in this order (after ``[MASK]``).
ADDED_TOKENS = (SOURCE_PREFIX, CAND1_PREFIX, CAND2_PREFIX, CAND_PREFIX)

#: The instruction the reference uses for multi-turn chats (typo included: the checkpoint saw it).
CONVERSATION_INSTRUCTION = (
    "Finish the following coversation in each i-th turn by filling in <Response i> "
    "with your response."
)


class PairEncoder:
    """Builds PairRanker input ids from texts, for inference and for training.

    Args:
        tokenizer: The checkpoint's tokenizer (with the four prefix tokens).
        config: Optional :class:`~blender_core.modeling.PairRankerConfig` supplying the lengths.
        source_maxlength: Source budget in tokens (overrides ``config``).
        candidate_maxlength: Candidate budget in tokens (overrides ``config``).

    Example:
        .. code-block:: python

            encoder = PairEncoder(tokenizer, model.config)
            seqs = encoder.encode_pairs(["Say hi"] * 2, ["hi!", "go away"], ["go away", "hi!"])
            batch = encoder.collate(seqs)
            left, right = model(batch["input_ids"], batch["attention_mask"])
    """

    def __init__(
        self,
        tokenizer: PreTrainedTokenizerBase,
        config: Any = None,
        *,
        source_maxlength: int | None = None,
        candidate_maxlength: int | None = None,
    ) -> None:
        self.tokenizer = tokenizer
        src = (
            source_maxlength
            if source_maxlength is not None
            else getattr(config, "source_maxlength", None)
        )
        cand = (
            candidate_maxlength
            if candidate_maxlength is not None
            else getattr(config, "candidate_maxlength", None)
        )
        if src is None or cand is None:
            raise ValueError("source_maxlength and candidate_maxlength are required (or a config)")
        if int(src) < 3 or int(cand) < 3:
            raise ValueError(
                f"source_maxlength ({src}) and candidate_maxlength ({cand}) must be >= 3 "
                "([CLS], the prefix token and [SEP] take 3)"
            )
        self.source_maxlength = int(src)
        self.candidate_maxlength = int(cand)
        if tokenizer.cls_token_id is None or tokenizer.sep_token_id is None:
            raise ValueError("the tokenizer needs [CLS] and [SEP] tokens")
        self.cls_id = int(tokenizer.cls_token_id)
        self.sep_id = int(tokenizer.sep_token_id)
        self.pad_id = int(tokenizer.pad_token_id) if tokenizer.pad_token_id is not None else 0
        prefix_ids: list[int] = [tokenizer.convert_tokens_to_ids(t) for t in ADDED_TOKENS]  # type: ignore[misc]
        unk = tokenizer.unk_token_id
        for token, token_id in zip(ADDED_TOKENS, prefix_ids, strict=True):
            if token_id is None or token_id == unk:
                raise ValueError(f"the tokenizer has no {token!r} token")
        self.source_prefix_id, self.cand1_prefix_id, self.cand2_prefix_id, self.cand_prefix_id = (
            int(i) for i in prefix_ids
        )
        self.sep_token = str(tokenizer.sep_token)
        reserved = {str(t) for t in tokenizer.all_special_tokens} | set(ADDED_TOKENS)
        reserved.discard(self.sep_token)
        self._reserved_pattern = re.compile(
            "|".join(re.escape(t) for t in sorted(reserved, key=len, reverse=True) if t),
            flags=re.IGNORECASE,
        )
        self._reserved_ids = frozenset(
            int(i)
            for i in (
                *tokenizer.all_special_ids,
                self.source_prefix_id,
                self.cand1_prefix_id,
                self.cand2_prefix_id,
                self.cand_prefix_id,
            )
            if i is not None and i != unk
        )
        self._cache: dict[str, list[int]] = {}
        self._chars_per_token = chars_per_token_bound(tokenizer)

    # ---- texts -> ids ---------------------------------------------------------------------

    def sanitize(self, text: str) -> str:
        """Make ``text`` safe: ``[SEP]`` -> space; other special strings split by a space."""
        text = text.replace(self.sep_token, " ")
        # Loop: splitting one occurrence creates none, but overlapping matches may hide one.
        while True:
            new = self._reserved_pattern.sub(lambda m: m.group(0)[0] + " " + m.group(0)[1:], text)
            if new == text:
                return text
            text = new

    def tokenize(self, texts: Iterable[str]) -> list[list[int]]:
        """Ids of each text as it reads after a prefix token (no special tokens), cached."""
        texts = list(texts)
        todo = list(dict.fromkeys(t for t in texts if t not in self._cache))
        if todo:
            # Tokenise "<|source|>" + text: the added token splits the string exactly as the
            # reference's `prefix + text` does, and the text's ids are the same after any prefix.
            encoded = self.tokenizer(
                [
                    SOURCE_PREFIX
                    + self.sanitize(precut(t, self.max_text_ids, self._chars_per_token))
                    for t in todo
                ],
                add_special_tokens=False,
                return_attention_mask=False,
                return_token_type_ids=False,
                verbose=False,
            )["input_ids"]
            for text, ids in zip(todo, encoded, strict=True):
                if not ids or ids[0] != self.source_prefix_id:
                    raise RuntimeError(f"the tokenizer did not keep {SOURCE_PREFIX!r} as one token")
                # No part can use more than this many text ids: keep the cache small.
                body = ids[1 : 1 + self.max_text_ids]
                if any(i in self._reserved_ids for i in body):
                    # Sanitising should make this impossible; never let a control id through.
                    body = [i for i in body if i not in self._reserved_ids]
                self._cache[text] = body
        return [self._cache[t] for t in texts]

    def clear_cache(self) -> None:
        """Forget the cached token ids (the cache grows with every distinct text seen)."""
        self._cache.clear()

    # ---- parts and pairs ------------------------------------------------------------------

    @property
    def max_text_ids(self) -> int:
        """The most text ids any part can hold (longer texts are cut to this in the cache)."""
        return max(self.source_maxlength, self.candidate_limit(3)) - 3

    def source_part(self, text_ids: Sequence[int]) -> list[int]:
        """``[CLS] <|source|> text [SEP]`` cut to ``source_maxlength`` tokens."""
        return [
            self.cls_id,
            self.source_prefix_id,
            *text_ids[: self.source_maxlength - 3],
            self.sep_id,
        ]

    def candidate_limit(self, source_part_len: int) -> int:
        """Token budget of each candidate part given this example's source part length."""
        return self.candidate_maxlength + (self.source_maxlength - source_part_len) // 2

    def candidate_part(self, text_ids: Sequence[int], prefix_id: int, limit: int) -> list[int]:
        """``[CLS] prefix text [SEP]`` cut to ``limit`` tokens."""
        return [self.cls_id, prefix_id, *text_ids[: limit - 3], self.sep_id]

    def part_lengths(self, source_len: int, a_len: int, b_len: int) -> tuple[int, int, int]:
        """Lengths of the three parts for texts of ``source_len``/``a_len``/``b_len`` ids."""
        s = min(source_len, self.source_maxlength - 3) + 3
        limit = self.candidate_limit(s)
        return s, min(a_len, limit - 3) + 3, min(b_len, limit - 3) + 3

    def assemble(
        self, source_ids: Sequence[int], a_ids: Sequence[int], b_ids: Sequence[int]
    ) -> list[int]:
        """One pair's ids from the cached text ids of its source and candidates."""
        source = self.source_part(source_ids)
        limit = self.candidate_limit(len(source))
        return (
            source
            + self.candidate_part(a_ids, self.cand1_prefix_id, limit)
            + self.candidate_part(b_ids, self.cand2_prefix_id, limit)
        )

    def encode_pair(self, source: str, a: str, b: str) -> list[int]:
        """Ids of the ordered pair ``(a, b)`` for ``source`` (instruction + input, no separator)."""
        source_ids, a_ids, b_ids = self.tokenize([source, a, b])
        return self.assemble(source_ids, a_ids, b_ids)

    def encode_pairs(
        self, sources: Sequence[str], as_: Sequence[str], bs: Sequence[str]
    ) -> list[list[int]]:
        """Ids of many pairs; each distinct text is tokenised once."""
        if not len(sources) == len(as_) == len(bs):
            raise ValueError(
                f"sources ({len(sources)}), as_ ({len(as_)}) and bs ({len(bs)}) differ in length"
            )
        self.tokenize([*sources, *as_, *bs])
        return [
            self.assemble(self._cache[s], self._cache[a], self._cache[b])
            for s, a, b in zip(sources, as_, bs, strict=True)
        ]

    # ---- collation ------------------------------------------------------------------------

    def collate(
        self, sequences: Sequence[Sequence[int]], *, pad_to_multiple_of: int | None = None
    ) -> dict[str, torch.Tensor]:
        """Pad at the end to the longest sequence: ``{"input_ids", "attention_mask"}`` tensors."""
        import torch

        if not sequences:
            raise ValueError("nothing to collate")
        width = max(len(s) for s in sequences)
        if pad_to_multiple_of:
            width = -(-width // pad_to_multiple_of) * pad_to_multiple_of
        input_ids = torch.full((len(sequences), width), self.pad_id, dtype=torch.long)
        attention_mask = torch.zeros((len(sequences), width), dtype=torch.long)
        for row, seq in enumerate(sequences):
            input_ids[row, : len(seq)] = torch.as_tensor(seq, dtype=torch.long)
            attention_mask[row, : len(seq)] = 1
        return {"input_ids": input_ids, "attention_mask": attention_mask}


def conversation_texts(
    conversation_a: Sequence[Mapping[str, str]], conversation_b: Sequence[Mapping[str, str]]
) -> tuple[str, str, str]:
    """``(source, candidate_a, candidate_b)`` for two chats sharing their user turns.

    Each chat alternates ``user`` / ``assistant`` messages (roles case-insensitive), starting with
    ``user``; the user turns must be identical. The source is :data:`CONVERSATION_INSTRUCTION`
    followed (no separator) by ``"\\n".join("USER: {u_k}\\nAssistant: <Response {k}>")`` and each
    candidate is ``"\\n".join("<Response {k}>: {a_k}")``, k from 1.

    Raises:
        TypeError: a chat is not a list of mappings with string ``role`` and ``content``.
        ValueError: empty chats, different lengths, wrong roles, or different user turns.
    """
    turns: list[list[tuple[str, str]]] = []
    for name, conv in (("conversation_a", conversation_a), ("conversation_b", conversation_b)):
        if isinstance(conv, str | bytes) or not isinstance(conv, Sequence):
            raise TypeError(f"{name} must be a list of {{'role', 'content'}} messages")
        if not conv:
            raise ValueError(f"{name} is empty")
        parsed = []
        for k, message in enumerate(conv):
            if not isinstance(message, Mapping):
                raise TypeError(f"{name}[{k}] must be a mapping with 'role' and 'content'")
            role, content = message.get("role"), message.get("content")
            if not isinstance(role, str) or not isinstance(content, str):
                raise TypeError(f"{name}[{k}] needs string 'role' and 'content'")
            expected = "user" if k % 2 == 0 else "assistant"
            if role.lower() != expected:
                raise ValueError(
                    f"{name}[{k}] has role {role!r}; turns must alternate user/assistant, "
                    "starting with user"
                )
            parsed.append((role.lower(), content))
        turns.append(parsed)
    conv_a, conv_b = turns
    if len(conv_a) != len(conv_b):
        raise ValueError(
            f"the conversations have {len(conv_a)} and {len(conv_b)} messages: they must match"
        )
    for k, ((_, content_a), (_, content_b)) in enumerate(zip(conv_a, conv_b, strict=True)):
        if k % 2 == 0 and content_a != content_b:
            raise ValueError(f"user turn {k} differs between the two conversations")
    source_lines = [
        f"USER: {conv_a[k][1]}\nAssistant: <Response {k // 2 + 1}>"
        for k in range(0, len(conv_a), 2)
    ]

    def answers(conv: list[tuple[str, str]]) -> str:
        return "\n".join(f"<Response {k // 2 + 1}>: {conv[k][1]}" for k in range(1, len(conv), 2))

    return CONVERSATION_INSTRUCTION + "\n".join(source_lines), answers(conv_a), answers(conv_b)
