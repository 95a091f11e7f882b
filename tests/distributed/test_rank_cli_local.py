"""``blender rank`` in this process (no Ray): pair choice, top-K selection, malformed input."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ray_helpers import make_records
from typer.testing import CliRunner

from blender_core.data import write_mixinstruct


def _jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _rank(cli_app: Any, *args: str) -> Any:
    return CliRunner().invoke(cli_app, ["rank", *args, "--no-progress", "--dtype", "float32"])


def test_pairs_and_top_k_options(cli_app, tiny_pairrm_dir: Path, tmp_path: Path) -> None:
    from blender_core import PairRanker

    records = make_records(4, candidates=5)
    data = tmp_path / "data.jsonl"
    write_mixinstruct(data, records)
    ranker = PairRanker.from_pretrained(tiny_pairrm_dir, dtype="float32")
    instructions = [r["instruction"] for r in records]
    texts = [[c["text"] for c in r["candidates"]] for r in records]
    inputs = [r["input"] for r in records]
    model = ["--model", str(tiny_pairrm_dir)]

    out = tmp_path / "one_way.jsonl"
    result = _rank(
        cli_app, str(data), *model, "--pairs", "one-way", "--seed", "1", "--out", str(out)
    )
    assert result.exit_code == 0, result.output
    expected = ranker.rank_batch(instructions, texts, inputs=inputs, pairs="one-way", seed=1)
    rows = _jsonl(out)
    assert [r["order"] for r in rows] == [list(e.order) for e in expected]
    assert {r["strategy"] for r in rows} == {"max_logits/one-way"}

    # A resumed output must have been ranked the same way.
    again = _rank(cli_app, str(data), *model, "--out", str(out))
    assert again.exit_code == 2 and "max_logits/one-way" in again.output

    out = tmp_path / "top1.jsonl"
    result = _rank(cli_app, str(data), *model, "--top-k", "1", "--seed", "2", "--out", str(out))
    assert result.exit_code == 0, result.output
    expected = ranker.select_top_k(instructions, texts, 1, inputs=inputs, seed=2)
    rows = _jsonl(out)
    assert [r["best"] for r in rows] == [e.best for e in expected]
    assert [r["order"] for r in rows] == [list(e.order) for e in expected]
    assert {r["strategy"] for r in rows} == {"top_k"}

    for bad, hint in (
        (["--pairs", "both"], "--pairs"),
        (["--top-k", "0"], "--top-k"),
        (["--top-k", "2", "--strategy", "max_wins"], "--top-k"),
        (["--top-k", "2", "--pairs", "one-way"], "--top-k"),
    ):
        result = _rank(cli_app, str(data), *model, *bad)
        assert result.exit_code == 2 and hint in result.output, (bad, result.output)


def test_local_malformed_records_name_the_line_or_row(
    cli_app, tiny_pairrm_dir: Path, tmp_path: Path
) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    good = [json.dumps(r) for r in make_records(2)]
    data = tmp_path / "bad.jsonl"
    data.write_text("\n".join([*good, '{"id": "x", "instruction": "q", "candidates": 5}']) + "\n")
    out, pairs = tmp_path / "out.jsonl", tmp_path / "pairs.jsonl"
    args = ["--model", str(tiny_pairrm_dir), "--out", str(out), "--pairs-out", str(pairs)]
    result = _rank(cli_app, str(data), *args)
    assert result.exit_code == 2 and "bad.jsonl:3:" in result.output, result.output
    assert not out.exists() and not pairs.exists()

    rows = make_records(3)
    rows[2]["instruction"] = None
    del rows[2]["candidates"][0]["text"]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "bad.parquet")
    result = _rank(cli_app, str(tmp_path / "bad.parquet"), *args)
    assert result.exit_code == 2 and "bad.parquet: row 3" in result.output, result.output
    assert not out.exists() and not pairs.exists()
