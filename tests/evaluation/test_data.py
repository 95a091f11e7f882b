"""Validation of MixInstruct reading and writing (blender_core.data)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from blender_core.data import (
    MixInstructError,
    MixRecord,
    iter_mixinstruct,
    read_mixinstruct,
    write_mixinstruct,
)

GOOD = {
    "id": "x1",
    "instruction": "Say hi",
    "input": "",
    "output": "hi",
    "candidates": [
        {"model": "m1", "decoding_method": "greedy", "text": "hello", "scores": {"pref": 1}},
        {"model": "m2", "text": "go away", "scores": {"pref": 0.0}, "raw_preference": 1.0},
    ],
    "source_dataset": "toy",
}


def write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_reads_records_and_keeps_extra_fields(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "d.jsonl", [json.dumps(GOOD), "", json.dumps(GOOD)])
    records = read_mixinstruct(path)
    assert len(records) == 2
    record = records[0]
    assert record.models == ["m1", "m2"]
    assert record.texts == ["hello", "go away"]
    assert record.scores("pref") == [1.0, 0.0]
    assert record.extra == {"source_dataset": "toy"}
    assert record.candidates[1].extra == {"raw_preference": 1.0}
    assert read_mixinstruct(path, limit=1) == records[:1]


def test_roundtrip_write_read(tmp_path: Path) -> None:
    records = read_mixinstruct(write_lines(tmp_path / "d.jsonl", [json.dumps(GOOD)]))
    out = tmp_path / "sub" / "out.jsonl"
    write_mixinstruct(out, records)
    assert read_mixinstruct(out) == records
    write_mixinstruct(out, [GOOD])  # plain dicts are validated too
    assert read_mixinstruct(out) == records


def test_missing_score_names_record_and_candidate(tmp_path: Path) -> None:
    record = read_mixinstruct(write_lines(tmp_path / "d.jsonl", [json.dumps(GOOD)]))[0]
    with pytest.raises(KeyError, match=r"'x1'.*'m1'.*'bleu'"):
        record.scores("bleu")


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda r: r.pop("instruction"), r"d\.jsonl:2: missing field 'instruction'"),
        (lambda r: r.update(candidates="nope"), r"d\.jsonl:2: field 'candidates' must be a list"),
        (lambda r: r.update(instruction=3), r"d\.jsonl:2: field 'instruction' must be a string"),
        (lambda r: r["candidates"][1].pop("text"), r"d\.jsonl:2: candidates\[1\]: missing field"),
        (
            lambda r: r["candidates"][0]["scores"].update(pref="high"),
            r"d\.jsonl:2: candidates\[0\]\.scores\.pref must be a number",
        ),
        (
            lambda r: r["candidates"][0]["scores"].update(pref=True),
            r"candidates\[0\]\.scores\.pref must be a number",
        ),
        (lambda r: r["candidates"].append(7), r"d\.jsonl:2: candidates\[2\] must be an object"),
        (lambda r: r.update(output=["a"]), r"field 'output' must be a string"),
    ],
)
def test_bad_record_names_file_line_and_field(tmp_path: Path, mutate, message: str) -> None:  # type: ignore[no-untyped-def]
    bad = json.loads(json.dumps(GOOD))
    mutate(bad)
    path = write_lines(tmp_path / "d.jsonl", [json.dumps(GOOD), json.dumps(bad)])
    with pytest.raises(MixInstructError, match=message):
        read_mixinstruct(path)


def test_invalid_json_and_non_object(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "d.jsonl", [json.dumps(GOOD), "{not json"])
    with pytest.raises(MixInstructError, match=r"d\.jsonl:2: invalid JSON"):
        read_mixinstruct(path)
    path = write_lines(tmp_path / "e.jsonl", ["[1, 2]"])
    with pytest.raises(MixInstructError, match=r"e\.jsonl:1: a record must be a JSON object"):
        list(iter_mixinstruct(path))


def test_write_validates_dicts(tmp_path: Path) -> None:
    with pytest.raises(MixInstructError, match=r"record 1: missing field 'candidates'"):
        write_mixinstruct(tmp_path / "o.jsonl", [GOOD, {"instruction": "x"}])


def test_source_joins_instruction_and_input() -> None:
    record = MixRecord(id="a", instruction="Translate:", input=" hola", candidates=())
    assert record.source == "Translate: hola"
