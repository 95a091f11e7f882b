"""``blender eval --out``: checked before the input is read, created only once it is good."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from blender_core.cli import _register_commands, app
from blender_core.io import OutputPathError, check_output_dir_creatable


def _eval(data: Path, out: Path) -> tuple[int, str]:
    _register_commands()
    result = CliRunner().invoke(
        app, ["eval", str(data), "-r", "longest", "-m", "judge", "-o", str(out)]
    )
    return result.exit_code, result.output


def test_bad_out_fails_before_the_input_is_read(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    bad_input = tmp_path / "bad.jsonl"  # reading it would fail too: --out comes first
    bad_input.write_text("{not json\n")
    code, output = _eval(bad_input, blocker / "sub" / "out")
    assert code == 2 and "exists and is not a folder" in output and "a-file is a file" in output
    assert "bad.jsonl" not in output and "Traceback" not in output


def test_out_is_not_created_for_bad_input(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text("{not json\n")
    out = tmp_path / "new" / "results"
    code, output = _eval(bad, out)
    assert code == 2 and "bad.jsonl:1" in output
    assert not (tmp_path / "new").exists()  # nothing was created for a run that did not start


def test_out_is_created_once_the_input_is_good(tmp_path: Path, judged_jsonl: Path) -> None:
    out = tmp_path / "new" / "results"
    code, output = _eval(judged_jsonl, out)
    assert code == 0, output
    assert (out / "results.json").is_file()


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere")
def test_unwritable_parent(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        with pytest.raises(OutputPathError, match="cannot create it in"):
            check_output_dir_creatable(locked / "a" / "b")
    finally:
        locked.chmod(0o700)
    assert check_output_dir_creatable(tmp_path / "x" / "y") == tmp_path / "x" / "y"
    assert not (tmp_path / "x").exists()
