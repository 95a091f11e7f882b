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
"""

from __future__ import annotations

import argparse
import os
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
    import torch
    from transformers import DebertaV2Config

    from blender_core.modeling import PairRankerConfig, PairRankerModel
    from blender_core.pair_ranker import PairRanker
    from blender_core.testing.pairranker import train_deberta_tokenizer

    tok_dir = workdir / "tokenizer"
    tok_dir.mkdir()
    tokenizer = train_deberta_tokenizer(tok_dir, texts, vocab_size=8000)
    backbone = DebertaV2Config(  # type: ignore[call-arg]
        vocab_size=len(tokenizer),
        hidden_size=384,
        num_hidden_layers=6,
        num_attention_heads=6,
        intermediate_size=1536,
        relative_attention=True,
        position_buckets=256,
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
    PairRankerModel(config).save_pretrained(workdir / "ranker", tokenizer)
    return PairRanker.from_pretrained(workdir / "ranker", device="cpu", batch_tokens=batch_tokens)


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


if __name__ == "__main__":
    main()
