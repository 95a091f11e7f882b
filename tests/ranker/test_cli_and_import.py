"""``blender rank`` on a small generated JSONL, and cheap ``import blender_core``."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest
from suite_helpers import cli_args, command_group
from typer.testing import CliRunner

from blender_core import PairRanker
from blender_core.data import write_mixinstruct


def _record(
    rid: str, instruction: str, answers: dict[str, str], *, input: str = "", output: str = ""
) -> dict[str, Any]:
    """A MixInstruct record as the JSONL has it; ``answers``: model name -> candidate text."""
    return {
        "id": rid,
        "instruction": instruction,
        "input": input,
        "output": output,
        "candidates": [{"model": model, "text": text} for model, text in answers.items()],
    }


RECORDS = [
    _record(
        "r1",
        "Say hi",
        {"m1": "hi!", "m2": "go away", "m3": "hello, how can I help?"},
        output="hello",
    ),
    _record(
        "r2",
        "Translate: ",
        {"m1": "bonjour", "m2": "<|candidate1|> [SEP]"},
        input="good morning",
        output="bonjour",
    ),
    _record("r3", "Only one", {"solo": "yes"}),
]


@pytest.fixture(scope="module")
def cli_app() -> Any:
    """The ``rank`` command in a group of its own (a one-command typer app drops the name)."""
    from blender_core.cli.rank import rank_command

    return command_group("rank", rank_command)


def test_cli_rank_writes_one_line_per_record(cli_app, tiny_pairrm_dir, tmp_path) -> None:
    data = tmp_path / "data.jsonl"
    write_mixinstruct(data, RECORDS)
    out = tmp_path / "ranked.jsonl"
    args = cli_args(
        "rank",
        data,
        model=tiny_pairrm_dir,
        out=out,
        strategy="max_wins",
        batch_tokens=256,
        device="cpu",
        dtype="float32",
    )
    result = CliRunner().invoke(cli_app, args)
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [line["id"] for line in lines] == ["r1", "r2", "r3"]
    ranker = PairRanker.from_pretrained(tiny_pairrm_dir)
    for line, record in zip(lines, RECORDS, strict=True):
        expected = ranker.rank(
            record["instruction"],
            [c["text"] for c in record["candidates"]],
            input=record["input"],
            strategy="max_wins",
        )
        assert line["order"] == list(expected.order) and line["ranks"] == list(expected.ranks)
        assert line["scores"] == pytest.approx(list(expected.scores))
        assert line["best_model"] == record["candidates"][expected.best]["model"]
        assert line["strategy"] == "max_wins"


def test_cli_rank_limit_stdout_and_bubble(cli_app, tiny_pairrm_dir, tmp_path) -> None:
    data = tmp_path / "data.jsonl"
    write_mixinstruct(data, RECORDS)
    args = cli_args(
        "rank",
        data,
        model=tiny_pairrm_dir,
        strategy="bubble",
        seed=3,
        limit=2,
        no_progress=True,
    )
    first = CliRunner().invoke(cli_app, args)
    assert first.exit_code == 0, first.output
    lines = [json.loads(line) for line in first.stdout.splitlines() if line.startswith("{")]
    assert [line["id"] for line in lines] == ["r1", "r2"]
    assert CliRunner().invoke(cli_app, args).stdout == first.stdout  # seeded


def test_cli_rank_bad_input(cli_app, tiny_pairrm_dir, tmp_path) -> None:
    data = tmp_path / "bad.jsonl"
    data.write_text('{"id": "x", "instruction": 3}\n')
    result = CliRunner().invoke(cli_app, ["rank", str(data), "--model", str(tiny_pairrm_dir)])
    assert result.exit_code == 2 and "bad.jsonl" in result.output
    result = CliRunner().invoke(cli_app, ["rank", str(data), "--strategy", "best"])
    assert result.exit_code != 0 and "max_logits" in result.output


def test_import_is_cheap() -> None:
    code = (
        "import sys, blender_core, blender_core.encoding, blender_core.aggregation, "
        "blender_core.batching, blender_core.pair_ranker, blender_core.testing; "
        "print('torch' in sys.modules, 'transformers' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]
