"""Data-set ranking speed: the local engine vs Ray Data with 1 and 2 actors, in one run.

The records (MixInstruct JSONL, default ``../shared/data/alpaca-v1/dev.jsonl``, cut to
``--candidates`` answers each) are written to one JSONL file and ranked four ways, each from that
file and with the same checkpoint, batch size and float32:

* ``local``: what ``blender rank --engine local`` does (read, ``rank_batch`` per batch), 1 torch
  thread, then 2 threads;
* ``ray``: :func:`blender_core.distributed.read_records` + :func:`rank_dataset` on a local Ray
  instance (``num_cpus=2``), 1 actor, then 2 actors, 1 torch thread each.

It prints one table: wall seconds with and without start-up (model load / Ray actor start), records
and ordered pairs per second, and each rate as a ratio to ``local`` with 1 thread; then the Ray
overhead per record (steady 1-actor time per record minus local 1-thread time per record) and the
start-up costs. Ray's "steady" clock starts when the first batch comes out (every actor is warm by
then only with 1 actor: with 2, the second may still be loading, which the table shows).

``--shape`` picks the ranker: ``tiny`` (``blender_core.testing``'s 2-layer checkpoint: ranking is
cheap, so the table shows the engines' own costs), ``mid`` (DeBERTa-v3 structure, 6 layers, hidden
384, a tokenizer trained on the data), or ``large`` (the DeBERTa-v3-large shape of PairRM: 24
layers, hidden 1024, 16 heads, FFN 4096; random weights). ``--flops`` also prints the model FLOPs
of the pairs ranked and the FLOP/s reached, the basis of the per-GPU estimate in
docs/distributed.md.

Usage::

    nice -n 10 python benchmarks/rank_dataset_speed.py                  # tiny, 32 records x 4
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

#: Backbone sizes of ``--shape`` (DeBERTa-v3 structure).
SHAPES: dict[str, dict[str, int]] = {
    "mid": {"layers": 6, "hidden": 384, "heads": 6, "ffn": 1536},
    "large": {"layers": 24, "hidden": 1024, "heads": 16, "ffn": 4096},
}
_POSITION_BUCKETS = 256


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
    if shape == "tiny":
        from blender_core.testing import make_tiny_pairranker

        return make_tiny_pairranker(workdir / "tiny", layout="pairrm")
    import torch
    from transformers import DebertaV2Config

    from blender_core.modeling import PairRankerConfig, PairRankerModel
    from blender_core.testing.pairranker import train_deberta_tokenizer

    texts = [r["instruction"] for r in records] + [
        c["text"] for r in records for c in r["candidates"]
    ]
    tok_dir = workdir / "tokenizer"
    tok_dir.mkdir(parents=True, exist_ok=True)
    tokenizer = train_deberta_tokenizer(tok_dir, texts, vocab_size=4000)
    size = SHAPES[shape]
    backbone = DebertaV2Config(  # type: ignore[call-arg]
        vocab_size=len(tokenizer),
        hidden_size=size["hidden"],
        num_hidden_layers=size["layers"],
        num_attention_heads=size["heads"],
        intermediate_size=size["ffn"],
        relative_attention=True,
        position_buckets=_POSITION_BUCKETS,
        norm_rel_ebd="layer_norm",
        share_att_key=True,
        pos_att_type=["p2c", "c2p"],
        layer_norm_eps=1e-7,
        max_relative_positions=-1,
        position_biased_input=False,
        type_vocab_size=0,
    )
    config = PairRankerConfig(backbone=backbone, source_maxlength=1224, candidate_maxlength=412)
    config.set_token_ids(tokenizer)
    torch.manual_seed(0)
    out = workdir / shape
    PairRankerModel(config).save_pretrained(out, tokenizer)
    return out


def pair_flops(tokens: int, shape: dict[str, int]) -> float:
    """Forward FLOPs (2 per multiply-add) of one pair of ``tokens`` tokens in a DeBERTa-v3 encoder.

    Per layer: Q/K/V/output projections ``8 T d^2``, FFN ``4 T d f``, content attention
    ``4 T^2 d`` (scores and weighted sum), the two disentangled terms (c2p, p2c) ``2 * 2 T (2k) d``
    against the ``2k`` relative positions, and projecting those positions with the shared Q/K
    weights ``2 * 2 (2k) d^2``. Embeddings, layer norms and softmax are left out (a few %).
    """
    t, d, f, k = tokens, shape["hidden"], shape["ffn"], _POSITION_BUCKETS
    per_layer = 8 * t * d * d + 4 * t * d * f + 4 * t * t * d + 8 * t * k * d + 8 * k * d * d
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
        "steady": end - loaded,
        "steady_records": len(records),
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
    first_rows = rows = 0
    for batch in ranked.iter_batches(batch_size=None, batch_format="pyarrow"):
        rows += batch.num_rows
        if first is None:
            first, first_rows = time.perf_counter(), batch.num_rows
    end = time.perf_counter()
    assert first is not None
    return {
        "wall": end - start,
        "startup": first - start,
        "steady": end - first,
        "steady_records": rows - first_rows,
        "records": rows,
    }


def _progress(name: str, results: dict[str, dict[str, float]]) -> None:
    r = results[name]
    print(f"[{name}: {r['records']:.0f} records in {r['wall']:.1f} s]", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="MixInstruct JSONL")
    parser.add_argument("--limit", type=int, default=32, help="records (default 32)")
    parser.add_argument("--candidates", type=int, default=4, help="answers per record (4)")
    parser.add_argument("--batch-size", type=int, default=8, help="records per batch (8)")
    parser.add_argument("--shape", choices=["tiny", "mid", "large"], default="tiny")
    parser.add_argument(
        "--only", choices=["local", "ray"], default=None, help="run one engine only"
    )
    parser.add_argument("--flops", action="store_true", help="model FLOPs and FLOP/s (local)")
    args = parser.parse_args(argv)
    if not args.data.is_file():
        sys.exit(f"no data at {args.data}: pass --data FILE.jsonl")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # loopback only
    records = load_records(args.data, args.limit, args.candidates)
    n = len(records)
    ordered_pairs = sum(len(r["candidates"]) * (len(r["candidates"]) - 1) for r in records)

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        data = work / "records.jsonl"
        data.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
        checkpoint = build_checkpoint(args.shape, records, work)
        results: dict[str, dict[str, float]] = {}
        if args.only in (None, "local"):
            results["local, 1 thread"] = time_local(checkpoint, data, args.batch_size, 1)
            _progress("local, 1 thread", results)
            results["local, 2 threads"] = time_local(checkpoint, data, args.batch_size, 2)
            _progress("local, 2 threads", results)
        init_s = None
        if args.only in (None, "ray"):
            import ray

            start = time.perf_counter()
            ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
            init_s = time.perf_counter() - start
            context = ray.data.DataContext.get_current()
            context.enable_progress_bars = False
            try:
                for actors in (1, 2):
                    label = f"ray, {actors} actor{'s' if actors > 1 else ''}"
                    results[label] = time_ray(checkpoint, data, args.batch_size, actors)
                    _progress(label, results)
            finally:
                ray.shutdown()

    print(
        f"\n{n} records x {args.candidates} candidates ({ordered_pairs} ordered pairs), "
        f"batch {args.batch_size}, shape {args.shape}, float32, {os.cpu_count()} CPUs, "
        f"load average {os.getloadavg()[0]:.1f}"
    )
    base = results.get("local, 1 thread")
    header = (
        f"{'engine':<18}{'wall s':>8}{'start s':>9}{'rec/s':>8}{'steady rec/s':>14}"
        f"{'pairs/s':>9}{'x local-1':>11}"
    )
    print(header)
    print("-" * len(header))
    for name, r in results.items():
        steady_rate = r["steady_records"] / r["steady"] if r["steady"] > 0 else float("nan")
        ratio = ""
        if base is not None:
            ratio = f"{steady_rate / (base['steady_records'] / base['steady']):.2f}"
        print(
            f"{name:<18}{r['wall']:>8.1f}{r['startup']:>9.1f}{r['records'] / r['wall']:>8.2f}"
            f"{steady_rate:>14.2f}{steady_rate * ordered_pairs / n:>9.1f}{ratio:>11}"
        )
    one = results.get("ray, 1 actor")
    if base is not None and one is not None and one["steady_records"]:
        per_local = base["steady"] / base["steady_records"]
        per_ray = one["steady"] / one["steady_records"]
        print(
            f"\nRay overhead per record (1 actor vs local 1 thread, steady): "
            f"{(per_ray - per_local) * 1000:+.1f} ms ({per_ray * 1000:.1f} vs "
            f"{per_local * 1000:.1f} ms per record)"
        )
    if init_s is not None:
        starts = ", ".join(
            f"{name}: {r['startup']:.1f} s" for name, r in results.items() if name.startswith("ray")
        )
        print(f"Ray start-up: ray.init {init_s:.1f} s; to the first ranked batch: {starts}")
    if args.flops and base is not None:
        shape = SHAPES.get(args.shape)
        if shape is None:
            print("--flops: the tiny shape is not a DeBERTa-v3 size; use --shape mid or large")
        else:
            pairs = int(base["pairs"])
            tokens = base["computed_tokens"] / pairs
            flops = pair_flops(round(tokens), shape) * pairs
            print(
                f"\nFLOPs: {pairs} pairs, {base['real_tokens'] / pairs:.0f} real / {tokens:.0f} "
                f"computed tokens per pair, {pair_flops(round(tokens), shape) / 1e9:.1f} "
                f"GFLOP per pair; local 1 thread {flops / base['steady'] / 1e9:.1f} GFLOP/s, "
                f"{pairs / base['steady']:.3f} pairs/s"
            )


if __name__ == "__main__":
    main()
