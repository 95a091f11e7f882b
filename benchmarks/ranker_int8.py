"""int8 (opt-in) against float32 and the automatic precision: agreement and speed, one run.

Ranks the first ``--limit`` records of a MixInstruct-style JSONL with one checkpoint in float32,
the automatic precision and ``dtype="int8"`` (``torch.ao`` dynamic int8 linear layers, offered
only on CPUs with AMX-INT8 or VNNI), each in its own process, all ordered pairs (max_logits), and
prints per precision: seconds, pairs/s, the ratio to float32, the largest logit-score difference
from float32, top-1 agreement and full-order agreement with float32.

Run it on a trained ranker (``docs/training.md``) for the agreement that decides whether int8
may be recommended; on a random checkpoint (the default, built by
``../shared/tools/reference/bench.py``) the scores are ~1e-4 and any rounding reorders them, so
its agreement says little.

Usage::

    python benchmarks/ranker_int8.py --checkpoint RUN_DIR/ranker \
        --data ../shared/data/alpaca-v1/dev.jsonl --limit 120
    python benchmarks/ranker_int8.py --limit 4          # the random reference checkpoint
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
DEFAULT_DATA = REPO.parent / "shared" / "data" / "alpaca-v1" / "dev.jsonl"


def run_one(args: argparse.Namespace) -> None:
    """One precision in this process: print one JSON line."""
    import time

    import torch

    from blender_core.data import read_mixinstruct
    from blender_core.pair_ranker import PairRanker

    torch.set_num_threads(args.threads)
    records = read_mixinstruct(args.data, limit=args.limit)
    dtype = None if args.dtype == "auto" else args.dtype
    ranker = PairRanker.from_pretrained(args.checkpoint, device="cpu", dtype=dtype)
    sources = [r.instruction for r in records]
    inputs = [r.input for r in records]
    lists = [r.texts for r in records]
    ranker.rank(sources[0], lists[0][:2], input=inputs[0])  # warm-up
    start = time.perf_counter()
    rankings = ranker.rank_batch(sources, lists, inputs=inputs)
    seconds = time.perf_counter() - start
    print(
        json.dumps(
            {
                "seconds": seconds,
                "pairs": sum(len(c) * (len(c) - 1) for c in lists),
                "precision": ranker.stats.precision,
                "scores": [list(r.scores) for r in rankings],
                "orders": [list(r.order) for r in rankings],
            }
        )
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--checkpoint", type=Path, default=None)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--limit", type=int, default=4)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "ranker-ref")
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--dtype", default="float32", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ["BLENDER_EXPERIMENTAL_INT8"] = "1"  # measured here, not offered to users
    if args.one:
        run_one(args)
        return
    checkpoint = args.checkpoint or args.work / "ranker"
    if not checkpoint.exists():
        sys.exit(f"no checkpoint at {checkpoint}: run benchmarks/ranker_vs_reference.py once")
    results: dict[str, dict[str, Any]] = {}
    for dtype in ("float32", "auto", "int8"):
        print(f"ranking in {dtype}...", flush=True)
        cmd = [sys.executable, __file__, "--one", "--dtype", dtype, "--checkpoint", str(checkpoint)]
        cmd += ["--data", str(args.data), "--limit", str(args.limit)]
        cmd += ["--threads", str(args.threads)]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
        if proc.returncode != 0 or not lines:
            print(f"  {dtype}: failed\n{proc.stderr[-2000:]}")
            continue
        results[dtype] = json.loads(lines[-1])
    base = results["float32"]
    n = len(base["orders"])
    print(f"\n{n} records, {base['pairs']} ordered pairs, {args.threads} threads, {checkpoint}")
    print(
        f"{'precision':<18}{'seconds':>9}{'pairs/s':>9}{'x fp32':>8}"
        f"{'max |score diff|':>18}{'top-1 agree':>12}{'order agree':>12}"
    )
    for r in results.values():
        diff = max(
            abs(a - b)
            for s, t in zip(r["scores"], base["scores"], strict=True)
            for a, b in zip(s, t, strict=True)
        )
        top1 = sum(a[0] == b[0] for a, b in zip(r["orders"], base["orders"], strict=True)) / n
        same = sum(a == b for a, b in zip(r["orders"], base["orders"], strict=True)) / n
        pps = r["pairs"] / r["seconds"]
        ratio = pps / (base["pairs"] / base["seconds"])
        print(
            f"{r['precision']:<18}{r['seconds']:>9.1f}{pps:>9.2f}{ratio:>8.2f}"
            f"{diff:>18.3g}{top1:>12.3f}{same:>12.3f}"
        )


if __name__ == "__main__":
    main()
