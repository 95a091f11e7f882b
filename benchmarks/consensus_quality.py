"""Consensus ranker quality on the AlpacaEval MixInstruct sets: judge score of its top-1 pick.

For every instruction the ranker picks one candidate; the table reports the mean judge score of
the picks (``gpt4_pref`` on alpaca-v1, ``gpt4t_pref`` on alpaca-v2: the judge's preference for
the candidate over the set's baseline answer, in [0, 1]) next to:

- random: the expected score of a uniformly random pick (the mean over the candidates),
- longest: the longest candidate (judges are known to like long answers),
- best fixed model: the single model with the best mean score on this split (an oracle choice),
- oracle: the best candidate of each instruction (the ceiling of any ranker).

Also the consensus ranker with the instruction-relevance term (``instruction_weight``) and the
share of instructions where the consensus pick beats the random expectation.

    python benchmarks/consensus_quality.py [--sets alpaca-v1 alpaca-v2] [--limit N]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from blender_core.data import read_mixinstruct
from blender_core.rankers.consensus import ConsensusRanker

DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data"
METRIC = {"alpaca-v1": "gpt4_pref", "alpaca-v2": "gpt4t_pref"}


def evaluate(name: str, limit: int | None, rankers: dict[str, ConsensusRanker]) -> None:
    records = read_mixinstruct(DATA / name / "dev.jsonl", limit=limit)
    metric = METRIC[name]
    instructions = [r.instruction + (f"\n\n{r.input}" if r.input else "") for r in records]
    texts = [r.texts for r in records]
    scores = [r.scores(metric) for r in records]

    rows: dict[str, list[float]] = {}
    timings: dict[str, float] = {}
    for label, ranker in rankers.items():
        start = time.perf_counter()
        rankings = ranker.rank_batch(instructions, texts)
        timings[label] = time.perf_counter() - start
        rows[label] = [s[r.best] for s, r in zip(scores, rankings, strict=True)]
    rows["random (expected)"] = [statistics.fmean(s) for s in scores]
    rows["longest"] = [
        s[max(range(len(t)), key=lambda i: len(t[i]))] for s, t in zip(scores, texts, strict=True)
    ]
    models = records[0].models
    by_model = {m: statistics.fmean(s[i] for s in scores) for i, m in enumerate(models)}
    best_model = max(by_model, key=by_model.__getitem__)
    rows[f"best fixed model ({best_model})"] = [s[models.index(best_model)] for s in scores]
    rows["oracle (best per instruction)"] = [max(s) for s in scores]

    n_candidates = statistics.fmean(len(t) for t in texts)
    print(
        f"\n{name} dev: {len(records)} instructions, {n_candidates:.1f} candidates each, "
        f"judge metric {metric}"
    )
    print(f"{'top-1 pick':<44}{'mean ' + metric:>16}")
    for label, values in rows.items():
        extra = f"   ({timings[label]:.0f} s)" if label in timings else ""
        print(f"{label:<44}{statistics.fmean(values):>16.3f}{extra}")
    consensus = rows["consensus"]
    wins = sum(c > r for c, r in zip(consensus, rows["random (expected)"], strict=True))
    print(f"consensus pick above the random expectation on {wins}/{len(records)} instructions")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", nargs="+", default=["alpaca-v1", "alpaca-v2"])
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--device", default=None)
    args = parser.parse_args()
    base = ConsensusRanker(device=args.device).load()
    relevance = ConsensusRanker(device=args.device, instruction_weight=0.3)
    # share the loaded encoder
    relevance._model, relevance._tokenizer = base._model, base._tokenizer
    relevance._torch_device, relevance.max_length = base._torch_device, base.max_length
    rankers = {"consensus": base, "consensus + relevance (w=0.3)": relevance}
    for name in args.sets:
        evaluate(name, args.limit, rankers)


if __name__ == "__main__":
    main()
