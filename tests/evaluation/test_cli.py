"""``blender eval`` on a small JSONL: table, CSV, JSON, scored data and plots."""

from __future__ import annotations

import json
from pathlib import Path
from typing import cast

import pytest
import typer
from suite_helpers import cli_args, command_group
from typer.testing import CliRunner

from blender_core.cli.evaluate import evaluate_command
from blender_core.data import read_mixinstruct


@pytest.fixture
def cli() -> typer.Typer:
    """A group with just ``eval`` (the real app registers it too: checked here)."""
    return cast(typer.Typer, command_group("eval", evaluate_command))


def test_eval_writes_table_and_plots(cli: typer.Typer, records_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    args = cli_args(
        "eval",
        records_file,
        rankers="oracle,random,longest,single",
        metrics="judge",
        out=out,
        train=records_file,
        beats="c",
        limit=2,
    )
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    markdown = (out / "table.md").read_text()
    assert "| longest | 100.0 | 75.0 | 100.0 | 100.0 |" in markdown.replace("**", "")
    assert "best single: b (on train)" in markdown or "best single: a (on train)" in markdown
    assert (out / "table.csv").read_text().startswith("method,pref (%),Beats c (%)")
    payload = json.loads((out / "results.json").read_text())
    assert payload["records"] == 2 and payload["beats_models"] == ["c"]
    assert payload["table"]["baseline"].startswith("best single")
    assert payload["table"]["comparisons"]["longest"]["n"] == 2
    assert "beats it?" in markdown and "(baseline)" in markdown
    assert len(read_mixinstruct(out / "scored.jsonl")) == 2
    for name in ("rank_distribution.png", "model_share.png", "metrics.png"):
        assert (out / name).read_bytes()[:4] == b"\x89PNG"


def test_eval_rejects_bad_specs(cli: typer.Typer, records_file: Path, tmp_path: Path) -> None:
    bad_ranker = cli_args("eval", records_file, rankers="oracle,bogus", out=tmp_path)
    result = CliRunner().invoke(cli, bad_ranker)
    assert result.exit_code != 0
    assert "unknown method spec 'bogus'" in result.output
    bad_metric = cli_args("eval", records_file, rankers="longest", metrics="rouge", out=tmp_path)
    result = CliRunner().invoke(cli, bad_metric)
    assert result.exit_code != 0
    assert "unknown metric spec 'rouge'" in result.output
