"""Data-set ranking speed: the local engine vs Ray Data with 1 and 2 actors, in one run.

The records (MixInstruct JSONL, default ``../shared/data/alpaca-v1/dev.jsonl``, cut to
``--candidates`` answers each) are ranked from a JSONL file with the same checkpoint, batch size and
float32 by:

* ``local``: what ``blender rank --engine local`` does (read, ``rank_batch`` per batch) with 1
  torch thread (``--local-threads 1 2`` adds a 2-thread run);
* ``ray``: :func:`blender_core.distributed.read_records` + :func:`rank_dataset` on a local Ray
  instance (``num_cpus=2``), 1 actor, then 2 actors, 1 torch thread each.

Each runs twice, on the first half of the records and on all of them: the difference is the
*marginal* cost of a record (start-up excluded, and robust to Ray delivering batches in bursts);
what is left of the full run is the start-up (model load; for Ray, starting the actors). It prints
one table (wall, records/s end to end, marginal records/s and pairs/s, ratio to local with 1
thread, start-up) and the Ray overhead per record (marginal 1-actor time minus marginal local
1-thread time).

``--shape`` picks the random ranker, each with a sentencepiece tokenizer trained on the records (so
pairs have realistic token counts, ~550 on alpaca-v1): ``tiny`` (2 layers, hidden 32: ranking is
cheap, so the table shows the engines' own costs), ``mid`` (DeBERTa-v3 structure, 6 layers, hidden
384, a tokenizer trained on the data), or ``large`` (the DeBERTa-v3-large shape of PairRM: 24
layers, hidden 1024, 16 heads, FFN 4096; random weights). ``--flops`` also prints the model FLOPs
of the pairs ranked and the FLOP/s reached, the basis of the per-GPU estimate in
docs/distributed.md.

Usage::

    nice -n 10 python benchmarks/rank_dataset_speed.py                  # tiny, 64 records x 4
    nice -n 10 python benchmarks/rank_dataset_speed.py --shape mid --limit 16
    nice -n 10 python benchmarks/rank_dataset_speed.py --shape large --limit 2 --only local --flops
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA = REPO_ROOT.parent / "shared" / "data" / "alpaca-v1" / "dev.jsonl"

_POSITION_BUCKETS = 256  # deberta_v3_config


def load_records(path: Path, limit: int, candidates: int) -> list[dict[str, Any]]:
    """The first ``limit`` records of ``path`` with their first ``candidates`` answers."""
    records = []
    with path.open(encoding="utf-8") as f:
        for line in f:
            if len(records) >= limit:
                break
            obj = json.loads(line)
            records.append(
                {
                    "id": str(obj["id"]),
                    "instruction": obj["instruction"],
                    "input": obj.get("input") or "",
                    "candidates": [
                        {"model": c["model"], "text": c["text"]}
                        for c in obj["candidates"][:candidates]
                    ],
                }
            )
    return records


def build_checkpoint(shape: str, records: list[dict[str, Any]], workdir: Path) -> Path:
    """A random PairRanker checkpoint of ``shape`` (PairRM lengths 1224/412)."""
    from blender_core.testing.pairranker import make_random_pairranker

    texts = [r["instruction"] for r in records] + [
        c["text"] for r in records for c in r["candidates"]
    ]  # the whole data file's texts: the same tokenizer whatever --limit
    return make_random_pairranker(workdir / shape, texts, shape=shape)


def pair_flops(tokens: int, shape: dict[str, int]) -> float:
    """Forward FLOPs (2 per multiply-add) of one pair of ``tokens`` tokens in a DeBERTa-v3 encoder.

    Per layer: Q/K/V/output projections ``8 T d^2``, FFN ``4 T d f``, content attention
    ``4 T^2 d`` (scores and weighted sum), and the two disentangled terms (c2p, p2c)
    ``2 * 2 T (2k) d`` against the ``2k`` relative positions. Left out: projecting the relative
    position embeddings (``8 k d^2``, once per forward pass, shared by the whole batch),
    embeddings, layer norms and softmax (a few %).
    """
    t, d, f, k = tokens, shape["hidden"], shape["ffn"], _POSITION_BUCKETS
    per_layer = 8 * t * d * d + 4 * t * d * f + 4 * t * t * d + 8 * t * k * d
    return float(shape["layers"] * per_layer)


def time_local(checkpoint: Path, data: Path, batch_size: int, threads: int) -> dict[str, float]:
    """The local engine: read the JSONL, rank it batch by batch in this process."""
    import torch

    from blender_core.data import iter_mixinstruct
    from blender_core.pair_ranker import PairRanker

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        start = time.perf_counter()
        ranker = PairRanker.from_pretrained(checkpoint, device="cpu", dtype="float32")
        loaded = time.perf_counter()
        records = list(iter_mixinstruct(data))
        for k in range(0, len(records), batch_size):
            chunk = records[k : k + batch_size]
            ranker.rank_batch(
                [r.instruction for r in chunk],
                [r.texts for r in chunk],
                inputs=[r.input for r in chunk],
            )
        end = time.perf_counter()
    finally:
        torch.set_num_threads(before)
    stats = ranker.stats
    return {
        "wall": end - start,
        "startup": loaded - start,
        "records": len(records),
        "pairs": stats.sequences,
        "real_tokens": stats.real_tokens,
        "computed_tokens": stats.computed_tokens,
    }


def time_ray(checkpoint: Path, data: Path, batch_size: int, actors: int) -> dict[str, float]:
    """Ray Data: read_records + rank_dataset with ``actors`` actors, consumed by the driver."""
    from blender_core.distributed import rank_dataset, read_records

    start = time.perf_counter()
    ranked = rank_dataset(
        read_records(str(data)),
        checkpoint,
        batch_size=batch_size,
        concurrency=actors,
        device="cpu",
        dtype="float32",
        num_threads=1,
    ).select_columns(["id", "order"])
    first = None
    rows = 0
    for batch in ranked.iter_batches(batch_size=None, batch_format="pyarrow"):
        rows += batch.num_rows
        first = first or time.perf_counter()
    end = time.perf_counter()
    return {"wall": end - start, "startup": (first or end) - start, "records": rows}


def _progress(name: str, results: dict[str, tuple[dict[str, float], dict[str, float]]]) -> None:
    walls = ", ".join(f"{r['records']:.0f} records in {r['wall']:.1f} s" for r in results[name])
    print(f"[{name}: {walls}]", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="MixInstruct JSONL")
    parser.add_argument("--limit", type=int, default=64, help="records (default 64)")
    parser.add_argument("--candidates", type=int, default=4, help="answers per record (4)")
    parser.add_argument("--batch-size", type=int, default=4, help="records per batch (4)")
    parser.add_argument("--shape", choices=["tiny", "mid", "large"], default="tiny")
    parser.add_argument(
        "--only", choices=["local", "ray"], default=None, help="run one engine only"
    )
    parser.add_argument("--flops", action="store_true", help="model FLOPs and FLOP/s (local)")
    parser.add_argument(
        "--local-threads", type=int, nargs="+", default=[1], help="local runs (default: 1)"
    )
    args = parser.parse_args(argv)
    if not args.data.is_file():
        sys.exit(f"no data at {args.data}: pass --data FILE.jsonl")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # loopback only
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # one thread per ranker
    records = load_records(args.data, args.limit, args.candidates)
    n, half = len(records), len(records) // 2
    pairs_per_record = sum(len(r["candidates"]) * (len(r["candidates"]) - 1) for r in records) / n

    results: dict[str, tuple[dict[str, float], dict[str, float]]] = {}
    init_s = None
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        files = {}
        for size in (half, n):
            files[size] = work / f"records_{size}.jsonl"
            files[size].write_text(
                "".join(json.dumps(r) + "\n" for r in records[:size]), encoding="utf-8"
            )
        checkpoint = build_checkpoint(args.shape, load_records(args.data, 10**9, 10**9), work)
        if args.only in (None, "local"):
            for threads in args.local_threads:
                label = f"local, {threads} thread{'s' if threads > 1 else ''}"
                results[label] = (
                    time_local(checkpoint, files[half], args.batch_size, threads),
                    time_local(checkpoint, files[n], args.batch_size, threads),
                )
                _progress(label, results)
        if args.only in (None, "ray"):
            import ray

            start = time.perf_counter()
            ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
            init_s = time.perf_counter() - start
            ray.data.DataContext.get_current().enable_progress_bars = False
            try:
                for actors in (1, 2):
                    label = f"ray, {actors} actor{'s' if actors > 1 else ''}"
                    results[label] = (
                        time_ray(checkpoint, files[half], args.batch_size, actors),
                        time_ray(checkpoint, files[n], args.batch_size, actors),
                    )
                    _progress(label, results)
            finally:
                ray.shutdown()

    print(
        f"\n{half} then {n} records x {args.candidates} candidates ({pairs_per_record:.0f} ordered "
        f"pairs each), batch {args.batch_size}, shape {args.shape}, float32, {os.cpu_count()} "
        f"CPUs, load average {os.getloadavg()[0]:.1f}"
    )
    print(
        "marginal = (wall(n) - wall(n/2)) / (n/2): the cost of one more record, start-up excluded;"
        "\nstart-up = wall(n) - n x marginal (model load; for Ray the actors' start too)"
    )
    header = (
        f"{'engine':<18}{'wall s':>8}{'rec/s':>8}{'marginal rec/s':>16}{'pairs/s':>9}"
        f"{'x local-1':>11}{'start-up s':>12}"
    )
    print(header)
    print("-" * len(header))
    per_record: dict[str, float] = {}
    for name, (small, full) in results.items():
        per_record[name] = (full["wall"] - small["wall"]) / (full["records"] - small["records"])
    base = per_record.get("local, 1 thread")
    for name, (_, full) in results.items():
        rate = 1 / per_record[name] if per_record[name] > 0 else float("inf")
        ratio = f"{base / per_record[name]:.2f}" if base and per_record[name] > 0 else "-"
        startup = full["wall"] - full["records"] * per_record[name]
        print(
            f"{name:<18}{full['wall']:>8.1f}{full['records'] / full['wall']:>8.2f}{rate:>16.2f}"
            f"{rate * pairs_per_record:>9.1f}{ratio:>11}{startup:>12.1f}"
        )
    one = per_record.get("ray, 1 actor")
    if base is not None and one is not None:
        print(
            f"\nRay overhead per record (1 actor vs local 1 thread, marginal): "
            f"{(one - base) * 1000:+.1f} ms ({one * 1000:.1f} vs {base * 1000:.1f} ms per record)"
        )
    if init_s is not None:
        print(f"ray.init: {init_s:.1f} s (not in the walls above)")
    local = results.get("local, 1 thread")
    if args.flops and local is not None:
        from blender_core.testing.pairranker import RANDOM_RANKER_SHAPES

        shape, full = RANDOM_RANKER_SHAPES[args.shape], local[1]
        pairs = int(full["pairs"])
        tokens = full["computed_tokens"] / pairs
        gflop = pair_flops(round(tokens), shape) / 1e9
        print(
            f"\nFLOPs: {full['real_tokens'] / pairs:.0f} real / {tokens:.0f} computed tokens per "
            f"pair, {gflop:.1f} GFLOP per pair; local 1 thread (marginal) "
            f"{gflop * pairs_per_record / base / 1000 if base else float('nan'):.3f} TFLOP/s, "
            f"{pairs_per_record / base if base else float('nan'):.3f} pairs/s"
        )


if __name__ == "__main__":
    main()
