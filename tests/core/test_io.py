"""Atomic outputs, strict JSON and early output checks (blender_core.io)."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pytest

from blender_core.io import (
    OutputPathError,
    atomic_open,
    atomic_path,
    atomic_write_bytes,
    atomic_write_text,
    check_output_dir,
    check_output_file,
    dumps_json,
)


def test_dumps_json_turns_non_finite_into_null() -> None:
    text = dumps_json({"a": math.nan, "b": [1.0, math.inf, -math.inf], "c": (2, "x"), 3: "k"})
    assert json.loads(text) == {"a": None, "b": [1.0, None, None], "c": [2, "x"], "3": "k"}
    assert "NaN" not in text and "Infinity" not in text


def test_dumps_json_keeps_unicode_and_options() -> None:
    assert dumps_json({"b": "é", "a": 1}, sort_keys=True) == '{"a": 1, "b": "é"}'


def test_atomic_write_replaces_whole_file(tmp_path: Path) -> None:
    target = tmp_path / "out.txt"
    target.write_text("old", encoding="utf-8")
    atomic_write_text(target, "new")
    assert target.read_text(encoding="utf-8") == "new"
    atomic_write_bytes(target, b"\x00\x01")
    assert target.read_bytes() == b"\x00\x01"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.txt"]


def test_atomic_open_leaves_old_file_on_error(tmp_path: Path) -> None:
    target = tmp_path / "out.jsonl"
    target.write_text("kept\n", encoding="utf-8")
    with pytest.raises(RuntimeError), atomic_open(target) as handle:
        handle.write("half")
        raise RuntimeError("killed")
    assert target.read_text(encoding="utf-8") == "kept\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.jsonl"]


def test_atomic_open_no_file_when_first_write_fails(tmp_path: Path) -> None:
    target = tmp_path / "new.jsonl"
    with pytest.raises(ValueError), atomic_open(target) as handle:
        handle.write("x")
        raise ValueError("bad record")
    assert list(tmp_path.iterdir()) == []


def test_atomic_open_gives_umask_permissions(tmp_path: Path) -> None:
    target = tmp_path / "perm.txt"
    atomic_write_text(target, "x")
    umask = os.umask(0)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask


def test_atomic_open_rejects_append(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="mode"), atomic_open(tmp_path / "x", "a"):
        pass


def test_check_output_dir(tmp_path: Path) -> None:
    made = check_output_dir(tmp_path / "a" / "b")
    assert made.is_dir()
    (tmp_path / "file").write_text("x", encoding="utf-8")
    with pytest.raises(OutputPathError, match="not a folder"):
        check_output_dir(tmp_path / "file")
    with pytest.raises(OutputPathError, match="no such folder"):
        check_output_dir(tmp_path / "missing", create=False)


def test_check_output_file(tmp_path: Path) -> None:
    assert check_output_file(tmp_path / "ok.jsonl") == tmp_path / "ok.jsonl"
    with pytest.raises(OutputPathError, match="does not exist"):
        check_output_file(tmp_path / "missing" / "x.jsonl")
    with pytest.raises(OutputPathError, match="is a folder"):
        check_output_file(tmp_path)


def test_atomic_path_renames_on_success_and_cleans_up_on_error(tmp_path: Path) -> None:
    target = tmp_path / "weights.bin"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("killed mid-write")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["weights.bin"]
    with atomic_path(target) as tmp:
        assert tmp.parent == tmp_path and tmp != target
        tmp.write_bytes(b"new")
    assert target.read_bytes() == b"new"
    assert [p.name for p in tmp_path.iterdir()] == ["weights.bin"]
