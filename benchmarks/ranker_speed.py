"""PairRanker speed on real MixInstruct data: token-budget batching vs fixed batches of 8.

A mid-size random DeBERTa-v3-style ranker (6 layers, hidden 384, 6 heads, FFN 1536, PairRM lengths
1224/412, a sentencepiece tokenizer trained on the data itself) ranks the 10 candidates of each
record of ``../shared/data/alpaca-v1/dev.jsonl``. For each strategy it prints forward passes (pairs
encoded), pairs/s, real tokens/s, padding efficiency (real / computed tokens) and peak memory, and
the same for the reference's scheme (all ordered pairs in input order, fixed batches of 8, padded to
the longest in the batch), as ratios measured in the same run.

Usage::

    python benchmarks/ranker_speed.py                # 1 record (90 ordered pairs)
    python benchmarks/ranker_speed.py --limit 10 --strategies max_logits bubble
    python benchmarks/ranker_speed.py --policies RUN_DIR --data ../shared/data/alpaca-v1/dev.jsonl

``--policies`` prints the cost/agreement table of the ranking policies (all pairs in fp32 and in
the automatic precision, one-way pairs, bubble, top-K selection) for a trained checkpoint.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA = REPO_ROOT.parent / "shared" / "data" / "alpaca-v1" / "dev.jsonl"


class PeakRSS:
    """Peak resident memory of this process while a block runs (sampled every 10 ms)."""

    def __init__(self) -> None:
        import psutil

        self._process = psutil.Process()
        self.peak = 0
        self.start = 0

    @contextmanager
    def measure(self) -> Iterator[PeakRSS]:
        self.start = self.peak = self._process.memory_info().rss
        stop = threading.Event()

        def sample() -> None:
            while not stop.is_set():
                self.peak = max(self.peak, self._process.memory_info().rss)
                stop.wait(0.01)

        thread = threading.Thread(target=sample, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            stop.set()
            thread.join()
            self.peak = max(self.peak, self._process.memory_info().rss)


def build_ranker(texts: list[str], workdir: Path, batch_tokens: int) -> Any:
    """A random mid-size PairRanker with a sentencepiece tokenizer trained on ``texts``."""
    from blender_core.pair_ranker import PairRanker
    from blender_core.testing.pairranker import make_random_pairranker

    checkpoint = make_random_pairranker(workdir, texts, shape="mid")
    return PairRanker.from_pretrained(checkpoint, device="cpu", batch_tokens=batch_tokens)


def naive_fixed_batches(
    ranker: Any, sources: list[str], lists: list[list[str]], size: int = 8
) -> dict[str, float]:
    """The reference's scheme: every ordered pair in input order, fixed batches of ``size``."""
    import torch

    encoder = ranker.encoder
    src, a, b = [], [], []
    for source, cands in zip(sources, lists, strict=True):
        for i in range(len(cands)):
            for j in range(len(cands)):
                if i != j:
                    src.append(source)
                    a.append(cands[i])
                    b.append(cands[j])
    seqs = encoder.encode_pairs(src, a, b)
    encoder.clear_cache()
    real = computed = 0
    start = time.perf_counter()
    with torch.inference_mode():
        for k in range(0, len(seqs), size):
            batch = encoder.collate(seqs[k : k + size])
            ranker.model.pair_logits(batch["input_ids"], batch["attention_mask"])
            real += int(batch["attention_mask"].sum())
            computed += int(batch["input_ids"].numel())
    seconds = time.perf_counter() - start
    return {"passes": len(seqs), "seconds": seconds, "real": real, "computed": computed}


def run_strategy(
    ranker: Any, sources: list[str], lists: list[list[str]], strategy: str
) -> dict[str, float]:
    ranker.reset_stats()
    start = time.perf_counter()
    ranker.rank_batch(sources, lists, strategy=strategy, seed=0)
    seconds = time.perf_counter() - start
    stats = ranker.stats
    return {
        "passes": stats.sequences,
        "seconds": seconds,
        "real": stats.real_tokens,
        "computed": stats.computed_tokens,
    }


def _row(name: str, r: dict[str, float], peak_mb: float, rss_mb: float) -> str:
    return (
        f"{name:<24}{int(r['passes']):>8}{r['passes'] / r['seconds']:>10.2f}"
        f"{r['real'] / r['seconds']:>12.0f}{r['real'] / r['computed']:>9.3f}"
        f"{peak_mb:>12.0f}{rss_mb:>9.0f}{r['seconds']:>9.1f}"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="MixInstruct JSONL")
    parser.add_argument("--limit", type=int, default=1, help="records to time (default 1)")
    parser.add_argument(
        "--batch-tokens", type=int, default=None, help="token budget (default: library's)"
    )
    parser.add_argument(
        "--strategies",
        nargs="+",
        default=["max_logits", "max_wins", "bubble"],
        help="strategies to run",
    )
    parser.add_argument("--no-naive", action="store_true", help="skip the fixed-batch baseline")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    import torch

    from blender_core.batching import DEFAULT_BATCH_TOKENS, padding_efficiency, plan_batches
    from blender_core.data import read_mixinstruct

    batch_tokens = args.batch_tokens or DEFAULT_BATCH_TOKENS
    every = read_mixinstruct(args.data)
    records = every[: args.limit]
    with tempfile.TemporaryDirectory() as tmp:
        texts = [t for r in every for t in (r.source, *r.texts)]
        ranker = build_ranker(texts, Path(tmp), batch_tokens)

    # Padding efficiency of all ordered pairs of the whole file (lengths only, no model run).
    enc = ranker.encoder
    lengths: list[int] = []
    for r in every:
        ids = enc.tokenize([r.source, *r.texts])
        for i in range(len(r.texts)):
            for j in range(len(r.texts)):
                if i != j:
                    lengths.append(
                        sum(enc.part_lengths(len(ids[0]), len(ids[1 + i]), len(ids[1 + j])))
                    )
    enc.clear_cache()
    fixed8 = [list(range(k, min(k + 8, len(lengths)))) for k in range(0, len(lengths), 8)]
    print(
        f"data: {args.data.name}, {len(every)} records, {len(lengths)} ordered pairs, "
        f"mean pair length {sum(lengths) / len(lengths):.0f} tokens, max {max(lengths)}"
    )
    print(
        f"padding efficiency over the whole file: token budget {batch_tokens}: "
        f"{padding_efficiency(lengths, plan_batches(lengths, batch_tokens)):.3f}; "
        f"fixed batches of 8 in input order: {padding_efficiency(lengths, fixed8):.3f}"
    )
    print(
        f"model: random DeBERTa-v3 6x384 (heads 6, FFN 1536), vocab {len(ranker.tokenizer)}, "
        f"lengths 1224/412, fp32, torch threads {torch.get_num_threads()}; "
        f"timed on the first {len(records)} records"
    )

    sources = [r.source for r in records]
    lists = [r.texts for r in records]
    ranker.rank_batch(sources[:1], [lists[0][:2]])  # warm-up
    print(
        f"\n{'strategy':<24}{'passes':>8}{'pairs/s':>10}{'real tok/s':>12}{'pad eff':>9}"
        f"{'peak RSS MB':>12}{'+RSS MB':>9}{'seconds':>9}"
    )
    meter = PeakRSS()
    results: dict[str, dict[str, float]] = {}
    runs: list[tuple[str, Callable[[], dict[str, float]]]] = [
        (s, lambda s=s: run_strategy(ranker, sources, lists, s)) for s in args.strategies
    ]
    if not args.no_naive:
        runs.append(("fixed-8 (reference)", lambda: naive_fixed_batches(ranker, sources, lists)))
    for name, run in runs:
        with meter.measure():
            result = run()
        results[name] = result
        print(
            _row(name, result, meter.peak / 2**20, (meter.peak - meter.start) / 2**20), flush=True
        )

    naive = results.get("fixed-8 (reference)")
    if naive is not None:
        print("\nratios vs fixed-8 (same pairs as max_logits/max_wins):")

        def speed(r: dict[str, float]) -> float:
            return r["real"] / r["seconds"]

        for name in args.strategies:
            r = results[name]
            print(
                f"  {name:<12} wall time x{naive['seconds'] / r['seconds']:.2f} faster, "
                f"real tokens/s x{speed(r) / speed(naive):.2f}, "
                f"computed tokens x{r['computed'] / naive['computed']:.2f}, "
                f"forward passes x{r['passes'] / naive['passes']:.2f}"
            )


def policy_table(checkpoint: Path, data_files: list[Path], limit: int | None) -> None:
    """Cost and agreement of each ranking policy against full max_logits in fp32.

    Full max_logits runs once per precision with the pair-logit cache on; the cheaper policies
    then run through the same public API and are answered from the cache (their logits are
    entries of the full matrix, batch-independent), so their cost is counted as the pairs they
    look up (hits + misses), not as time.
    """
    from blender_core.data import read_mixinstruct
    from blender_core.pair_ranker import PairRanker

    exact = PairRanker.from_pretrained(checkpoint, device="cpu", dtype="float32", cache=True)
    auto = PairRanker.from_pretrained(checkpoint, device="cpu", cache=True)
    print(f"checkpoint {checkpoint.name}: {exact!r}\nauto precision: {auto.precision.reason}")
    print(
        f"\n{'data':<11}{'policy':<28}{'passes/record':>14}{'x full':>7}"
        f"{'top-1 agree':>12}{'top-3 agree':>12}"
    )
    policies: list[tuple[str, Any, dict[str, Any]]] = [
        ("max_logits (all pairs) fp32", exact, {}),
        (f"max_logits {auto.precision.name} (auto)", auto, {}),
        ("one-way pairs", exact, {"pairs": "one-way", "seed": 0}),
        ("bubble", exact, {"strategy": "bubble", "seed": 0}),
        ("top_k=1 (knockout)", exact, {"top_k": 1, "seed": 0}),
        ("top_k=3 (partial tournament)", exact, {"top_k": 3, "seed": 0}),
    ]
    for path in data_files:
        records = read_mixinstruct(path, limit=limit)
        records = [r for r in records if len(r.texts) >= 2]
        sources, lists = [r.source for r in records], [r.texts for r in records]
        reference: list[Any] = []
        full_passes = sum(len(c) * (len(c) - 1) for c in lists) / len(lists)
        for name, ranker, kwargs in policies:
            ranker.reset_stats()
            if "top_k" in kwargs:
                rankings = ranker.select_top_k(sources, lists, kwargs["top_k"], seed=0)
            else:
                rankings = ranker.rank_batch(sources, lists, **kwargs)
            passes = (ranker.stats.cache_hits + ranker.stats.cache_misses) / len(lists)
            if not reference:
                reference = rankings
            top1 = sum(r.best == f.best for r, f in zip(rankings, reference, strict=True))
            top3 = sum(
                set(r.top_k(min(3, len(r)))) == set(f.top_k(min(3, len(f))))
                for r, f in zip(rankings, reference, strict=True)
            )
            print(
                f"{path.parent.name:<11}{name:<28}{passes:>14.1f}{passes / full_passes:>7.2f}"
                f"{top1 / len(lists):>12.3f}{top3 / len(lists):>12.3f}",
                flush=True,
            )


if __name__ == "__main__" and "--policies" in sys.argv:
    _p = argparse.ArgumentParser()
    _p.add_argument("--policies", type=Path, required=True, help="trained PairRanker checkpoint")
    _p.add_argument("--data", type=Path, nargs="+", default=[DEFAULT_DATA])
    _p.add_argument("--limit", type=int, default=None)
    _a = _p.parse_args()
    policy_table(_a.policies, _a.data, _a.limit)
    sys.exit(0)


if __name__ == "__main__":
    main()
