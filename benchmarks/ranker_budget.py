"""The batch budget tuned per device vs the old fixed ``batch_tokens=8192``: speed and kernel time.

The mid-size random DeBERTa-v3-style ranker of ``benchmarks/ranker_speed.py`` (6 layers, hidden
384, FFN 1536, PairRM lengths 1224/412) ranks alpaca-v1 dev records (all ordered pairs), each
configuration in a fresh process (so that the allocator's state is its own), all in one run.
Printed per configuration: the budget, pairs/s, the ratio to the first row, user and kernel
(``ru_stime``) CPU seconds, minor page faults, peak RSS.

Usage::

    python benchmarks/ranker_budget.py                  # 1 record (90 ordered pairs)
    python benchmarks/ranker_budget.py --limit 2 --dtypes float32
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA = REPO_ROOT.parent / "shared" / "data" / "alpaca-v1" / "dev.jsonl"


def child(args: argparse.Namespace) -> None:
    """One configuration (this process): print one JSON line."""
    import resource
    import time

    import torch

    torch.set_num_threads(args.threads)
    if args.malloc:
        from blender_core.allocator import tune_malloc

        tune_malloc()
    from blender_core.data import read_mixinstruct
    from blender_core.pair_ranker import PairRanker

    records = read_mixinstruct(args.data, limit=args.limit)
    sources = [r.source for r in records]
    lists = [[c.text for c in r.candidates][: args.candidates] for r in records]
    ranker = PairRanker.from_pretrained(
        args.checkpoint,
        device="cpu",
        dtype=None if args.dtype == "auto" else args.dtype,
        batch_tokens=args.batch_tokens or None,
    )
    ranker.rank(sources[0], lists[0][:2])  # warm-up
    ranker.reset_stats()
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    start = time.perf_counter()
    ranker.rank_batch(sources, lists)
    seconds = time.perf_counter() - start
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    print(
        json.dumps(
            {
                "budget": ranker.batch_tokens,
                "dtype": ranker.precision.name,
                "seconds": seconds,
                "pairs": ranker.stats.sequences,
                "forwards": ranker.stats.forward_calls,
                "user": r1.ru_utime - r0.ru_utime,
                "sys": r1.ru_stime - r0.ru_stime,
                "faults": r1.ru_minflt - r0.ru_minflt,
                "rss_mb": r1.ru_maxrss / 1024,
            }
        )
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--limit", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--candidates", type=int, default=10, help="per record, at most")
    parser.add_argument("--dtypes", nargs="+", default=["float32", "auto"])
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--checkpoint", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--dtype", help=argparse.SUPPRESS)
    parser.add_argument("--batch-tokens", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--malloc", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args)
        return

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from ranker_speed import build_ranker  # type: ignore[import-not-found]

    from blender_core.data import read_mixinstruct

    records = read_mixinstruct(args.data, limit=args.limit)
    texts = [t for r in records for t in (r.source, *(c.text for c in r.candidates))]
    with tempfile.TemporaryDirectory() as tmp:
        build_ranker(texts, Path(tmp), 8192)
        configs = [
            (dtype, tokens, malloc)
            for dtype in args.dtypes
            for tokens, malloc in ((8192, False), (0, False), (8192, True), (0, True))
        ]
        print(
            f"{'dtype':<9} {'budget':>6} {'malloc':>6} {'pairs/s':>8} {'x first':>7} {'fwd':>4} "
            f"{'user s':>7} {'kern s':>7} {'faults':>9} {'RSS MB':>7}"
        )
        first: dict[str, float] = {}
        for dtype, tokens, malloc in configs:
            command = [
                sys.executable,
                __file__,
                "--child",
                "--checkpoint",
                str(Path(tmp) / "ranker"),
                "--data",
                str(args.data),
                "--limit",
                str(args.limit),
                "--threads",
                str(args.threads),
                "--candidates",
                str(args.candidates),
                "--dtype",
                dtype,
                "--batch-tokens",
                str(tokens),
                *(["--malloc"] if malloc else []),
            ]
            out = subprocess.run(
                command, check=True, capture_output=True, text=True, env=dict(os.environ)
            )
            row = json.loads(out.stdout.strip().splitlines()[-1])
            rate = row["pairs"] / row["seconds"]
            first.setdefault(dtype, rate)
            label = f"{row['budget']}{'' if tokens else '*'}"
            print(
                f"{row['dtype']:<9} {label:>6} {'yes' if malloc else 'no':>6} {rate:8.2f} "
                f"{rate / first[dtype]:7.2f} {row['forwards']:4d} {row['user']:7.1f} "
                f"{row['sys']:7.2f} {row['faults']:9d} {row['rss_mb']:7.0f}",
                flush=True,
            )
    print("* the budget chosen for the device (batch_tokens=None)")


if __name__ == "__main__":
    main()
