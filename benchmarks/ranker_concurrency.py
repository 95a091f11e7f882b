"""Shared batches across callers: 32 concurrent single-record callers vs the same calls queued.

A mid-size random DeBERTa-v3-style ranker (6 layers, hidden 384, PairRM lengths 1224/412, a
sentencepiece tokenizer trained on the data; see ``benchmarks/ranker_speed.py``) serves
``--callers`` single-record calls on alpaca-v1 dev records: each ranks the record's first
``--candidates`` answers (``--kind rank``, N(N-1) pairs) or compares its first two
(``--kind compare``, 2 pairs). In one run, on one ranker, after one untimed warm-up of queued
and threaded calls (the first forward of each shape builds its kernels):

* **queued**: the calls one after another (what a lock around the ranker gives);
* **threads**: the same calls from ``--callers`` threads started together;
* **asyncio**: the same calls as ``--callers`` asyncio tasks (``arank`` / ``acompare``).

Printed per mode: seconds, pairs/s, the ratio to queued, forward calls, scheduling rounds,
requests per round, batch fill (computed / budget tokens), padding efficiency, user and kernel
(``ru_stime``) CPU seconds; and whether every result equals the queued (solo) one exactly.

``--small`` swaps in a small random ranker (2 layers, hidden 128, same tokenizer and lengths)
where the mid-size one is too slow for the machine at hand.

Usage::

    python benchmarks/ranker_concurrency.py                       # 32 callers, 3 candidates
    python benchmarks/ranker_concurrency.py --kind compare --dtype float32 --repeats 2
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA = REPO_ROOT.parent / "shared" / "data" / "alpaca-v1" / "dev.jsonl"


def _calls(records: list[Any], kind: str, candidates: int) -> list[tuple[str, list[str]]]:
    calls = []
    for record in records:
        texts = [c.text for c in record.candidates][: 2 if kind == "compare" else candidates]
        calls.append((record.instruction + record.input, texts))
    return calls


def _one(ranker: Any, kind: str, source: str, cands: list[str]) -> Any:
    if kind == "compare":
        return ranker.compare(source, cands[0], cands[1])
    return ranker.rank(source, cands)


async def _aone(ranker: Any, kind: str, source: str, cands: list[str]) -> Any:
    if kind == "compare":
        return await ranker.acompare(source, cands[0], cands[1])
    return await ranker.arank(source, cands)


def _measure(ranker: Any, run: Callable[[], list[Any]]) -> tuple[list[Any], dict[str, float]]:
    ranker.reset_stats()
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    start = time.perf_counter()
    results = run()
    seconds = time.perf_counter() - start
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    stats = ranker.stats
    return results, {
        "seconds": seconds,
        "pairs": stats.sequences,
        "forwards": stats.forward_calls,
        "rounds": stats.rounds,
        "per_round": stats.requests_per_round,
        "fill": stats.batch_fill,
        "pad": stats.padding_efficiency,
        "user": r1.ru_utime - r0.ru_utime,
        "sys": r1.ru_stime - r0.ru_stime,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--callers", type=int, default=32)
    parser.add_argument("--candidates", type=int, default=3)
    parser.add_argument("--kind", choices=["rank", "compare"], default="rank")
    parser.add_argument("--dtype", default=None, help="default: the automatic precision")
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    parser.add_argument("--batch-tokens", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--malloc", action="store_true", help="call tune_malloc() first")
    parser.add_argument(
        "--small",
        action="store_true",
        help="a small random ranker (2 layers, hidden 128) instead of the mid-size one",
    )
    parser.add_argument(
        "--share",
        choices=["auto", "on", "off"],
        default="on",
        help="share_batches of the ranker (default on: what this benchmark measures; auto: "
        "the ranker's default, off on CPU)",
    )
    args = parser.parse_args(argv)

    import torch

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from ranker_speed import build_ranker  # type: ignore[import-not-found]

    from blender_core.data import read_mixinstruct
    from blender_core.pair_ranker import PairRanker

    torch.set_num_threads(args.threads)
    if args.malloc:
        from blender_core.allocator import tune_malloc

        tune_malloc()
    records = list(read_mixinstruct(args.data))[: args.callers]
    if len(records) < args.callers:
        raise SystemExit(f"{args.data} has only {len(records)} records")
    calls = _calls(records, args.kind, args.candidates)
    texts = [t for source, cands in calls for t in (source, *cands)]
    with tempfile.TemporaryDirectory() as tmp:
        built = build_ranker(texts, Path(tmp), 8192)
        model = built.model
        if args.small:
            import copy

            from blender_core.modeling import PairRankerModel

            config = copy.deepcopy(model.config)
            config.backbone.hidden_size = 128
            config.backbone.num_hidden_layers = 2
            config.backbone.num_attention_heads = 4
            config.backbone.intermediate_size = 512
            torch.manual_seed(0)
            model = PairRankerModel(config).eval()
        ranker = PairRanker(
            model,
            built.tokenizer,
            dtype=args.dtype,
            share_batches={"auto": None, "on": True, "off": False}[args.share],
            **({"batch_tokens": args.batch_tokens} if args.batch_tokens else {}),
        )
    print(ranker)

    def queued() -> list[Any]:
        return [_one(ranker, args.kind, s, c) for s, c in calls]

    def threaded() -> list[Any]:
        out: list[Any] = [None] * len(calls)
        barrier = threading.Barrier(len(calls))

        def worker(k: int) -> None:
            barrier.wait()
            out[k] = _one(ranker, args.kind, *calls[k])

        threads = [threading.Thread(target=worker, args=(k,)) for k in range(len(calls))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return out

    def tasks() -> list[Any]:
        async def go() -> list[Any]:
            return list(await asyncio.gather(*(_aone(ranker, args.kind, s, c) for s, c in calls)))

        return asyncio.run(go())

    header = (
        f"{'mode':<8} {'s':>7} {'pairs/s':>8} {'x queued':>8} {'fwd':>5} {'rounds':>6} "
        f"{'req/rnd':>7} {'fill':>5} {'pad':>5} {'user s':>7} {'kern s':>7} identical"
    )
    # Warm-up: the first forward of each (batch, width) shape builds its kernels (oneDNN
    # primitives); without it the first mode measured pays for them.
    queued()
    threaded()
    print(f"{args.callers} callers, kind={args.kind}, {args.candidates} candidates")
    print(header)
    for _ in range(args.repeats):
        solo, base = _measure(ranker, queued)
        rows = [("queued", base, True)]
        for name, run in (("threads", threaded), ("asyncio", tasks)):
            results, row = _measure(ranker, run)
            rows.append((name, row, results == solo))
        for name, row, same in rows:
            rate = row["pairs"] / row["seconds"]
            ratio = rate / (base["pairs"] / base["seconds"])
            print(
                f"{name:<8} {row['seconds']:7.2f} {rate:8.2f} {ratio:8.2f} {row['forwards']:5d} "
                f"{row['rounds']:6d} {row['per_round']:7.2f} {row['fill']:5.2f} "
                f"{row['pad']:5.3f} {row['user']:7.1f} {row['sys']:7.2f} {same}"
            )


if __name__ == "__main__":
    main()
