"""The torch thread budget: ``blender demo`` and ``blender rank`` with torch's default threads and
with the budget, run alternately in one go.

"before" pins ``LLM_BLENDER_KIT_TORCH_THREADS`` to the number of cores (what torch does by
itself: one intra-op thread per core in every thread that runs a model); "after" leaves it on
``auto`` (:mod:`blender_core.threads`). Each command runs as a user would run it, in a fresh
process; the script prints the wall time of each run, the demo's stage times, the load average
before and after each run, and the before/after ratio of the medians. ``blender rank``'s output
is removed before each run (it resumes by default, which would skip every record).

``blender rank`` ranks the first ``--limit`` records of ``../shared/data/alpaca-v1/dev.jsonl``
with the mid-size random PairRM-layout checkpoint of ``benchmarks/ranker_speed.py``.

Usage::

    python benchmarks/thread_budget.py                     # demo and rank, 2 rounds each
    python benchmarks/thread_budget.py --what demo --rounds 3
    python benchmarks/thread_budget.py --what rank --limit 2
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA = REPO_ROOT.parent / "shared" / "data" / "alpaca-v1" / "dev.jsonl"
PROMPT = "Give three tips for learning a new language."
CLI = "import sys; from blender_core.cli import main; sys.argv[0] = 'blender'; main()"


def _run(args: list[str], threads: str, fresh: Path | None = None) -> tuple[float, str, str]:
    """One run in a fresh process: wall seconds, stdout, load average before -> after and the
    CPU seconds the run used (user + system: under load the wall time mostly measures how much
    of the cores the other processes left; the CPU time is the work done, spinning included)."""
    env = {**os.environ, "LLM_BLENDER_KIT_TORCH_THREADS": threads, "HF_HUB_OFFLINE": "1"}
    env.pop("OMP_NUM_THREADS", None)  # it would switch the budget off
    if fresh is not None:
        fresh.unlink(missing_ok=True)  # blender rank resumes by default: start from nothing
    before = os.getloadavg()[0]
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", CLI, *args], capture_output=True, text=True, env=env, timeout=1800
    )
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"blender {' '.join(args[:2])} failed:\n{proc.stderr[-2000:]}")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - usage.ru_utime) + (after.ru_stime - usage.ru_stime)
    return seconds, proc.stdout, f"{before:.1f} -> {os.getloadavg()[0]:.1f}; CPU {cpu:.1f} s"


def _build_ranker(workdir: Path, data: Path) -> Path:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from ranker_speed import build_ranker

    from blender_core.data import read_mixinstruct

    records = read_mixinstruct(data)
    build_ranker([t for r in records for t in (r.source, *r.texts)], workdir, 8192)
    return workdir / "ranker"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--what", nargs="+", default=["demo", "rank"], choices=["demo", "rank"])
    parser.add_argument("--rounds", type=int, default=2, help="runs of each setting")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="MixInstruct JSONL")
    parser.add_argument("--limit", type=int, default=1, help="records for blender rank")
    args = parser.parse_args(argv)

    from blender_core.threads import cpu_cores

    cores = cpu_cores()
    settings = {"before": str(cores), "after": "auto"}
    print(f"cores: {cores}; before = LLM_BLENDER_KIT_TORCH_THREADS={cores}, after = auto")
    with tempfile.TemporaryDirectory() as tmp:
        commands: dict[str, list[str]] = {}
        outputs: dict[str, Path | None] = {"demo": None}
        if "demo" in args.what:
            commands["demo"] = ["demo", PROMPT, "--json"]
        if "rank" in args.what:
            checkpoint = _build_ranker(Path(tmp), args.data)
            outputs["rank"] = Path(tmp) / "ranks.jsonl"
            out = str(outputs["rank"])
            commands["rank"] = [
                "rank", str(args.data), "--model", str(checkpoint), "--limit",
                str(args.limit), "--no-progress", "--out", out,
            ]  # fmt: skip
        if "demo" in commands:  # warm the GGUF cache so that both settings load alike
            _run(["demo", "Hi", "--models", "1", "--max-new-tokens", "4", "--json"], "auto")
        for name, command in commands.items():
            walls: dict[str, list[float]] = {key: [] for key in settings}
            for round_ in range(args.rounds):
                for label, threads in settings.items():
                    seconds, stdout, load = _run(command, threads, outputs[name])
                    walls[label].append(seconds)
                    stages = ""
                    if name == "demo":
                        timings = json.loads(stdout).get("timings", {})
                        stages = "  " + ", ".join(f"{k} {v:.1f} s" for k, v in timings.items())
                    print(
                        f"{name} round {round_ + 1} {label:<6} {seconds:7.1f} s  "
                        f"(load average {load}){stages}",
                        flush=True,
                    )
            before = statistics.median(walls["before"])
            after = statistics.median(walls["after"])
            print(
                f"{name}: median before {before:.1f} s, after {after:.1f} s, "
                f"speed-up {before / after:.2f}x"
            )


if __name__ == "__main__":
    main()
