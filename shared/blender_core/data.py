"""MixInstruct-format data: one JSON record per line with an instruction and candidates.

The format is the one of the LLM-Blender paper's MixInstruct set::

    {"id": "...", "instruction": "...", "input": "", "output": "reference answer",
     "candidates": [{"model": "...", "decoding_method": "...", "text": "...",
                     "scores": {"metric": 0.7}}, ...]}

Reading validates every record and names the file, line and field of the first problem: invalid
or non-UTF-8 text, JSON nested too deeply, integers too long to convert and wrong field types all
raise :class:`MixInstructError` with ``file:line:``. Writing is atomic and strict JSON.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from blender_core.io import atomic_open, dumps_json

__all__ = [
    "MixCandidate",
    "MixInstructError",
    "MixRecord",
    "detect_judge_metric",
    "iter_mixinstruct",
    "judge_metric",
    "read_mixinstruct",
    "write_mixinstruct",
]


class MixInstructError(ValueError):
    """A MixInstruct file has a malformed record."""


@dataclass(frozen=True)
class MixCandidate:
    """One model's answer with its metric scores (higher is better)."""

    model: str
    text: str
    decoding_method: str = ""
    scores: Mapping[str, float] = field(default_factory=dict)
    extra: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "decoding_method": self.decoding_method,
            "text": self.text,
            "scores": dict(self.scores),
            **dict(self.extra),
        }


@dataclass(frozen=True)
class MixRecord:
    """An instruction, its optional input and reference output, and the candidates."""

    id: str
    instruction: str
    candidates: tuple[MixCandidate, ...]
    input: str = ""
    output: str = ""
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def source(self) -> str:
        """The ranker's source text: instruction and input joined with no separator."""
        return self.instruction + self.input

    @property
    def texts(self) -> list[str]:
        return [c.text for c in self.candidates]

    @property
    def models(self) -> list[str]:
        return [c.model for c in self.candidates]

    def scores(self, metric: str) -> list[float]:
        """Each candidate's score for ``metric``; raises ``KeyError`` naming a missing one."""
        out = []
        for c in self.candidates:
            if metric not in c.scores:
                raise KeyError(
                    f"record {self.id!r}: candidate {c.model!r} has no score {metric!r} "
                    f"(has {sorted(c.scores)})"
                )
            out.append(float(c.scores[metric]))
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "instruction": self.instruction,
            "input": self.input,
            "output": self.output,
            "candidates": [c.to_dict() for c in self.candidates],
            **dict(self.extra),
        }


_RECORD_KEYS = {"id", "instruction", "input", "output", "candidates"}
_CANDIDATE_KEYS = {"model", "decoding_method", "text", "scores"}


def _expect_str(value: Any, where: str, *, optional: bool = False) -> str:
    if value is None and optional:
        return ""
    if not isinstance(value, str):
        raise MixInstructError(f"{where} must be a string, got {type(value).__name__}")
    return value


def parse_record(obj: Any, where: str = "record") -> MixRecord:
    """Validate one decoded JSON object and build a :class:`MixRecord`."""
    if not isinstance(obj, dict):
        raise MixInstructError(f"{where}: a record must be a JSON object, got {type(obj).__name__}")
    for key in ("instruction", "candidates"):
        if key not in obj:
            raise MixInstructError(f"{where}: missing field {key!r}")
    record_id = obj.get("id", where)
    if isinstance(record_id, bool) or not isinstance(record_id, (str, int)):
        raise MixInstructError(f"{where}: field 'id' must be a string")
    instruction = _expect_str(obj["instruction"], f"{where}: field 'instruction'")
    input_text = _expect_str(obj.get("input", ""), f"{where}: field 'input'", optional=True)
    output = _expect_str(obj.get("output", ""), f"{where}: field 'output'", optional=True)
    raw_candidates = obj["candidates"]
    if not isinstance(raw_candidates, list):
        raise MixInstructError(f"{where}: field 'candidates' must be a list")
    candidates = []
    for k, cand in enumerate(raw_candidates):
        cwhere = f"{where}: candidates[{k}]"
        if not isinstance(cand, dict):
            raise MixInstructError(f"{cwhere} must be an object")
        if "text" not in cand:
            raise MixInstructError(f"{cwhere}: missing field 'text'")
        text = _expect_str(cand["text"], f"{cwhere}.text")
        model = _expect_str(cand.get("model", f"candidate_{k}"), f"{cwhere}.model")
        method = _expect_str(
            cand.get("decoding_method", ""), f"{cwhere}.decoding_method", optional=True
        )
        raw_scores = cand.get("scores", {}) or {}
        if not isinstance(raw_scores, dict):
            raise MixInstructError(f"{cwhere}.scores must be an object")
        scores: dict[str, float] = {}
        for name, value in raw_scores.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise MixInstructError(f"{cwhere}.scores.{name} must be a number, got {value!r}")
            scores[name] = float(value)
        extra = {k2: v for k2, v in cand.items() if k2 not in _CANDIDATE_KEYS}
        candidates.append(MixCandidate(model, text, method, scores, extra))
    extra = {k: v for k, v in obj.items() if k not in _RECORD_KEYS}
    return MixRecord(
        id=str(record_id),
        instruction=instruction,
        candidates=tuple(candidates),
        input=input_text,
        output=output,
        extra=extra,
    )


def iter_mixinstruct(path: str | Path) -> Iterator[MixRecord]:
    """Yield the records of a MixInstruct JSONL file (blank lines are skipped)."""
    path = Path(path)
    with path.open("rb") as handle:
        for line_number, raw in enumerate(handle, start=1):
            where = f"{path.name}:{line_number}"
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise MixInstructError(
                    f"{where}: not UTF-8 text ({exc.reason} at byte {exc.start})"
                ) from None
            if line_number == 1:
                line = line.removeprefix("\ufeff")
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise MixInstructError(f"{where}: invalid JSON ({exc.msg})") from None
            except RecursionError:
                raise MixInstructError(f"{where}: JSON nested too deeply") from None
            except ValueError as exc:  # e.g. an integer over the int-to-str digit limit
                raise MixInstructError(f"{where}: invalid JSON ({exc})") from None
            try:
                yield parse_record(obj, where)
            except RecursionError:
                raise MixInstructError(f"{where}: JSON nested too deeply") from None


def read_mixinstruct(path: str | Path, *, limit: int | None = None) -> list[MixRecord]:
    """Read a MixInstruct JSONL file, optionally only its first ``limit`` records."""
    records: list[MixRecord] = []
    for record in iter_mixinstruct(path):
        if limit is not None and len(records) >= limit:
            break
        records.append(record)
    return records


def write_mixinstruct(path: str | Path, records: Iterable[MixRecord | Mapping[str, Any]]) -> None:
    """Write records (``MixRecord`` or plain dicts, validated) as JSONL."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_open(path) as handle:  # complete or absent, never half-written
        for k, record in enumerate(records):
            if not isinstance(record, MixRecord):
                record = parse_record(dict(record), f"record {k}")
            handle.write(dumps_json(record.to_dict()) + "\n")


def detect_judge_metric(records: Sequence[MixRecord]) -> str | None:
    """The stored score every candidate of every record has (the first, if several), or None."""
    common: list[str] | None = None
    for record in records:
        for candidate in record.candidates:
            keys = list(candidate.scores)
            common = keys if common is None else [k for k in common if k in candidate.scores]
    return common[0] if common else None


def judge_metric(records: Sequence[MixRecord]) -> str:
    """:func:`detect_judge_metric`, refusing records without a common score.

    Raises:
        ValueError: No score is stored for every candidate.
    """
    metric = detect_judge_metric(records)
    if metric is None:
        raise ValueError("the records have no score that every candidate has: pass metric=")
    return metric
