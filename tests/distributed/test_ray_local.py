"""``rank_dataset`` and ``blender rank --engine ray`` on a local Ray instance (2 CPUs, real Ray)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from ray_helpers import RAY_LOCAL, configure_ray_data, local_rankings, make_records, stop_ray
from suite_helpers import cli_args
from typer.testing import CliRunner

from blender_core.data import write_mixinstruct

ray = pytest.importorskip("ray")
pq = pytest.importorskip("pyarrow.parquet")


@pytest.fixture(scope="module", autouse=True)
def ray_local() -> Iterator[None]:
    ray.init(address="local", num_cpus=2, _node_ip_address="127.0.0.1", **RAY_LOCAL)
    configure_ray_data()
    yield
    stop_ray(ray.shutdown)


def _jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _rank(cli_app: Any, data: Path, **options: Any) -> Any:
    """``blender rank DATA --no-progress`` with ``options`` as :func:`cli_args` takes them."""
    return CliRunner().invoke(cli_app, cli_args("rank", data, **options, no_progress=True))


def test_rank_dataset_matches_the_local_ranker(tiny_pairrm_dir: Path, tmp_path: Path) -> None:
    from blender_core.distributed import preference_dataset, rank_dataset, read_records

    records = make_records(10)
    write_mixinstruct(tmp_path / "a.jsonl", records[:6])
    write_mixinstruct(tmp_path / "b.jsonl", records[6:])
    ranked = rank_dataset(
        read_records(str(tmp_path / "*.jsonl")),
        tiny_pairrm_dir,
        strategy="max_wins",
        dtype="float32",  # bf16 (the default on some CPUs) rounds by batch make-up
        batch_size=3,
        concurrency=2,
    ).materialize()
    rows = ranked.take_all()
    assert sorted(row["id"] for row in rows) == sorted(r["id"] for r in records)
    expected = local_rankings(tiny_pairrm_dir, records, "max_wins")
    for row in rows:
        ranking = expected[row["id"]]
        assert list(row["order"]) == list(ranking.order)
        assert list(row["ranks"]) == list(ranking.ranks)
        assert list(row["scores"]) == pytest.approx(list(ranking.scores), abs=1e-6)
        assert row["best_model"] == f"m{ranking.best}"
    pairs = preference_dataset(ranked, policy="best-worst").take_all()
    untied = [i for i, r in expected.items() if r.scores[r.order[0]] > r.scores[r.order[-1]]]
    assert sorted(p["id"] for p in pairs) == sorted(untied)  # one pair each, none for a tie
    assert {"prompt", "chosen", "rejected", "score_chosen", "score_rejected"} <= set(pairs[0])
    assert all(p["score_chosen"] > p["score_rejected"] for p in pairs)
    # The documented two-step use: write the ranked records, build the pairs from the files.
    ranked.write_parquet(str(tmp_path / "ranked"))
    again = preference_dataset(ray.data.read_parquet(str(tmp_path / "ranked"))).take_all()
    key = ("id", "chosen", "rejected", "score_chosen")
    assert sorted(tuple(p[k] for k in key) for p in again) == sorted(
        tuple(p[k] for k in key) for p in pairs
    )


def test_cli_ray_equals_local_jsonl_and_parquet(cli_app, tiny_pairrm_dir, tmp_path) -> None:
    records = make_records(7)
    data = tmp_path / "data.jsonl"
    write_mixinstruct(data, records)
    common = {"model": tiny_pairrm_dir, "pair_policy": "all", "dtype": "float32"}
    local = _rank(
        cli_app,
        data,
        **common,
        out=tmp_path / "local.jsonl",
        pairs_out=tmp_path / "local_pairs.jsonl",
    )
    assert local.exit_code == 0, local.output
    on_ray = _rank(
        cli_app,
        data,
        **common,
        engine="ray",
        concurrency=2,
        batch_size=2,
        out=tmp_path / "ray.parquet",
        pairs_out=tmp_path / "ray_pairs.parquet",
    )
    assert on_ray.exit_code == 0, on_ray.output
    local_rows = _jsonl(tmp_path / "local.jsonl")
    ray_rows = pq.read_table(tmp_path / "ray.parquet").to_pylist()
    assert [r["id"] for r in ray_rows] == [r["id"] for r in local_rows]  # input order kept
    for mine, theirs in zip(ray_rows, local_rows, strict=True):
        assert set(mine) == set(theirs)
        assert mine["order"] == theirs["order"] and mine["best_model"] == theirs["best_model"]
        assert mine["scores"] == pytest.approx(theirs["scores"], abs=1e-6)
    local_pairs = _jsonl(tmp_path / "local_pairs.jsonl")
    ray_pairs = pq.read_table(tmp_path / "ray_pairs.parquet").to_pylist()
    assert len(local_pairs) == 7 * 3  # "all": 3 pairs of 3 candidates each
    key = ("id", "chosen", "rejected")
    assert [tuple(p[k] for k in key) for p in ray_pairs] == [
        tuple(p[k] for k in key) for p in local_pairs
    ]

    # Parquet in, JSONL out, from a folder.
    folder = tmp_path / "shards"
    folder.mkdir()
    pq.write_table(pq.read_table(tmp_path / "ray.parquet").slice(0, 0), folder / ".hidden.parquet")
    import pyarrow as pa

    pq.write_table(pa.Table.from_pylist(records), folder / "part-0.parquet")
    # ... with each pair encoded once (--pairs one-way), against the local engine doing the same.
    one_way = {"model": tiny_pairrm_dir, "dtype": "float32", "pairs": "one-way", "seed": 3}
    local_one_way = _rank(cli_app, data, **one_way, out=tmp_path / "local_1w.jsonl")
    assert local_one_way.exit_code == 0, local_one_way.output
    from_parquet = _rank(
        cli_app, folder, **one_way, engine="ray", out=tmp_path / "from_parquet.jsonl"
    )
    assert from_parquet.exit_code == 0, from_parquet.output
    rows = _jsonl(tmp_path / "from_parquet.jsonl")
    expected = _jsonl(tmp_path / "local_1w.jsonl")
    assert [(r["id"], r["order"], r["strategy"]) for r in rows] == [
        (r["id"], r["order"], "max_logits/one-way") for r in expected
    ]
    for mine, theirs in zip(rows, expected, strict=True):
        assert mine["scores"] == pytest.approx(theirs["scores"], abs=1e-6)


def test_cli_ray_malformed_records_fail_cleanly(cli_app, tiny_pairrm_dir, tmp_path) -> None:
    records = make_records(10)
    good = json.dumps(records[0])
    shards = tmp_path / "shards"
    write_mixinstruct(shards / "a.jsonl", records[:7])
    bad = shards / "b.jsonl"
    lines = [json.dumps(r) for r in records[7:]]
    bad.write_text("\n".join([*lines[:2], '{"id": "x", "instruction": 3, "candidates": []}']))
    out, pairs = tmp_path / "out.jsonl", tmp_path / "pairs.jsonl"
    options = {
        "model": tiny_pairrm_dir,
        "engine": "ray",
        "batch_size": 2,
        "out": out,
        "pairs_out": pairs,
    }
    result = _rank(cli_app, shards, **options)
    assert result.exit_code == 2
    assert "b.jsonl:3: field 'instruction' must be a string" in result.output
    # Records of a.jsonl may have been ranked already: they wait in the checkpoint, not in --out.
    assert not out.exists() and not pairs.exists()
    bad.write_text("\n".join(lines) + "\n")
    fixed = _rank(cli_app, shards, **options)
    assert fixed.exit_code == 0, fixed.output
    assert sorted(r["id"] for r in _jsonl(out)) == sorted(r["id"] for r in records)  # once each
    assert not list(tmp_path.glob(".*partial*"))

    out = tmp_path / "out2.jsonl"
    broken = tmp_path / "broken.jsonl"
    broken.write_text(good + "\n{not json\n")
    result = _rank(cli_app, broken, model=tiny_pairrm_dir, engine="ray", out=out)
    assert result.exit_code == 2 and "broken.jsonl:2: invalid JSON" in result.output
    assert not out.exists()

    import pyarrow as pa

    rows = make_records(2)
    rows[1]["candidates"] = []
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "bad.parquet")
    result = _rank(cli_app, tmp_path / "bad.parquet", model=tiny_pairrm_dir, engine="ray", out=out)
    assert result.exit_code == 2 and "bad.parquet: row 2: no candidates" in result.output
    assert not out.exists()


def test_cli_ray_resume_skips_done_records(cli_app, tiny_pairrm_dir, tmp_path) -> None:
    records = make_records(6)
    data = tmp_path / "data.jsonl"
    write_mixinstruct(data, records[:4])
    out = tmp_path / "ranked.jsonl"
    options = {"model": tiny_pairrm_dir, "engine": "ray", "out": out}
    first = _rank(cli_app, data, **options)
    assert first.exit_code == 0, first.output
    before = _jsonl(out)
    # A killed run leaves its checkpoint: one finished record and a torn line.
    checkpoint = tmp_path / ".ranked.jsonl.partial.jsonl"
    write_mixinstruct(data, records)
    row = dict(before[0], id="r4")
    checkpoint.write_text(json.dumps({"row": row}) + "\n" + '{"row": {"id": "r5", "or')
    second = _rank(cli_app, data, **options)
    assert second.exit_code == 0, second.output
    assert "ranked 1 records, 5 already done (6 in all)" in second.output
    after = _jsonl(out)
    assert [r["id"] for r in after] == ["r0", "r1", "r2", "r3", "r4", "r5"]
    assert after[:4] == before and after[4] == row  # carried over, not recomputed
    assert not checkpoint.exists()


def test_rank_dataset_top_k_matches_the_local_selection(tiny_pairrm_dir: Path) -> None:
    from blender_core import PairRanker
    from blender_core.distributed import rank_dataset

    records = make_records(6, candidates=5)
    ranked = rank_dataset(
        ray.data.from_items(records), tiny_pairrm_dir, top_k=1, seed=7, dtype="float32"
    ).take_all()
    ranker = PairRanker.from_pretrained(tiny_pairrm_dir, dtype="float32")
    expected = ranker.select_top_k(
        [r["instruction"] for r in records],
        [[c["text"] for c in r["candidates"]] for r in records],
        1,
        inputs=[r["input"] for r in records],
        seed=7,
    )
    assert [list(row["order"]) for row in ranked] == [list(e.order) for e in expected]
    assert [row["best_model"] for row in ranked] == [f"m{e.best}" for e in expected]
    with pytest.raises(ValueError, match="max_logits"):
        rank_dataset(ray.data.from_items(records), tiny_pairrm_dir, top_k=1, strategy="max_wins")
    with pytest.raises(ValueError, match="pairs"):
        rank_dataset(ray.data.from_items(records), tiny_pairrm_dir, pairs="both")


def test_cli_ray_gpus_the_cluster_lacks_fail_at_once(cli_app, tiny_pairrm_dir, tmp_path) -> None:
    """``--num-gpus 1`` on a CPU-only cluster: one line, before any actor is asked for."""
    import time
    import warnings

    write_mixinstruct(tmp_path / "data.jsonl", make_records(3))
    out = tmp_path / "out.parquet"
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no RayDeprecationWarning from our own calls
        result = _rank(
            cli_app,
            tmp_path / "data.jsonl",
            model=tiny_pairrm_dir,
            engine="ray",
            out=out,
            concurrency=8,
            num_gpus=1,
        )
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert lines[0].startswith("warning: ") and "random weights" in lines[0]  # the tiny ranker
    assert lines[1:] == [
        "error: each of the 8 ranking actor(s) needs 1 GPU (--num-gpus 1) but no node of the Ray "
        "cluster has that many (1 node(s), 0 GPU in all): use --num-gpus 0 to rank on CPUs"
    ]
    assert time.perf_counter() - start < 30
    assert not out.exists()


def test_rank_dataset_core_ranker_and_no_deprecated_remote_args(tmp_path: Path) -> None:
    """``random`` through ``load_ranker`` in the actors; more actors than CPUs still finish."""
    import warnings

    from blender_core.distributed import rank_dataset, read_records

    write_mixinstruct(tmp_path / "data.jsonl", make_records(5))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ds = rank_dataset(read_records(str(tmp_path / "data.jsonl")), "random", concurrency=3)
    rows = ds.take_all()
    assert sorted(r["id"] for r in rows) == sorted(r["id"] for r in make_records(5))
    assert all(sorted(r["order"]) == list(range(len(r["candidates"]))) for r in rows)
    with pytest.raises(ValueError, match="PairRanker options"):
        rank_dataset(read_records(str(tmp_path / "data.jsonl")), "consensus", top_k=1)
