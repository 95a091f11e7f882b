"""Where a PairRanker forward pass spends its time at PairRM lengths (torch.profiler), and int8.

A random DeBERTa-v3-style ranker (default: the mid-size one of the other benchmarks, 6 layers,
hidden 384, FFN 1536; ``--large`` for the DeBERTa-v3-large shape) scores pairs of
1224 + 412 + 412 tokens (random ids, the PairRM maximum, 2048 per pair) through
``PairRanker._forward`` (fast attention, row-wise head: what ``rank`` runs), one pair a forward.
For each precision (fp32, bf16, and fp32 with ``torch.ao`` dynamic int8 linear layers) it prints
seconds per pair, pairs/s, and the profiler's top operators by self CPU time; for int8 also the
largest logit difference from fp32 and the sign agreement over the pairs.

Usage::

    python benchmarks/ranker_profile.py                  # 2 pairs, one forward each precision
    python benchmarks/ranker_profile.py --pairs 4 --top 12 --large
    BLENDER_COMPILE_ATTENTION=1 python benchmarks/ranker_profile.py   # the compiled bias loop
"""

from __future__ import annotations

import argparse
import copy
import time
from typing import Any


def build(large: bool) -> Any:
    """A random ranker (no tokenizer needed: the pairs are random ids)."""
    import torch

    from blender_core.modeling import PairRankerConfig, PairRankerModel
    from blender_core.testing.pairranker import RANDOM_RANKER_SHAPES, deberta_v3_config

    shape = RANDOM_RANKER_SHAPES["large" if large else "mid"]
    backbone = deberta_v3_config(vocab_size=8000, **shape)
    config = PairRankerConfig(backbone=backbone, source_maxlength=1224, candidate_maxlength=412)
    config.source_prefix_id, config.cand1_prefix_id, config.cand2_prefix_id = 5, 6, 7
    torch.manual_seed(0)
    return PairRankerModel(config).eval()


def pairs(count: int) -> list[list[int]]:
    """``count`` random 2048-token pairs laid out as PairRM pairs (1224 + 412 + 412)."""
    import torch

    generator = torch.Generator().manual_seed(1)
    out = []
    for _ in range(count):
        ids = torch.randint(10, 8000, (2048,), generator=generator).tolist()
        ids[1], ids[1225], ids[1637] = 5, 6, 7
        out.append(ids)
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=2)
    parser.add_argument("--top", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--large", action="store_true")
    parser.add_argument("--precisions", nargs="+", default=["float32", "bfloat16", "int8"])
    args = parser.parse_args(argv)

    from types import SimpleNamespace

    import torch
    from torch.profiler import ProfilerActivity, profile

    from blender_core.deberta_attention import enable_fast_attention
    from blender_core.pair_ranker import PairRanker

    torch.set_num_threads(args.threads)
    base = build(args.large)
    seqs = pairs(args.pairs)
    logits: dict[str, list[float]] = {}
    for precision in args.precisions:
        dtype = torch.float32 if precision == "int8" else getattr(torch, precision)
        model = copy.deepcopy(base).to(dtype)
        enable_fast_attention(model)
        if precision == "int8":
            from torch.ao.quantization import quantize_dynamic

            model = quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
        engine = SimpleNamespace(device=torch.device("cpu"), model=model)

        def forward(ids: list[int], engine: Any = engine) -> float:
            tensors = {
                "input_ids": torch.tensor([ids]),
                "attention_mask": torch.ones(1, len(ids), dtype=torch.long),
            }
            with torch.inference_mode():
                return float(PairRanker._forward(engine, tensors)[0])  # type: ignore[arg-type]

        forward(seqs[0])  # warm-up (kernels, allocator)
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            start = time.perf_counter()
            out = [forward(s) for s in seqs]
            seconds = time.perf_counter() - start
        logits[precision] = out
        print(
            f"\n== {precision}: {seconds / len(seqs):.2f} s/pair, "
            f"{len(seqs) / seconds:.3f} pairs/s ({len(seqs)} pairs of 2048 tokens, batch 1, "
            f"{args.threads} threads)"
        )
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.top))
    if "int8" in logits and "float32" in logits:
        a, b = logits["float32"], logits["int8"]
        diff = max(abs(x - y) for x, y in zip(a, b, strict=True))
        same = sum((x > 0) == (y > 0) for x, y in zip(a, b, strict=True))
        print(f"int8 vs fp32: max |logit difference| {diff:.3g}, same sign {same}/{len(a)}")


if __name__ == "__main__":
    main()
