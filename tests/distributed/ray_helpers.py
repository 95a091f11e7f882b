"""Helpers of the distributed-ranking tests: records, Ray settings, local reference rankings."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from suite_helpers import command_group

#: Keyword arguments of every Ray start in these tests.
RAY_LOCAL = {"include_dashboard": False, "log_to_driver": False}


def make_records(n: int, candidates: int = 3, words: int = 4) -> list[dict[str, Any]]:
    """``n`` MixInstruct records with ``candidates`` answers of different lengths each."""
    return [
        {
            "id": f"r{i}",
            "instruction": f"Question {i}: what is {i} + {i}?",
            "input": "" if i % 3 else f"context {i}",
            "output": "",
            "candidates": [
                {"model": f"m{j}", "text": " ".join([f"answer{i}-{j}"] * (words * (j + 1)))}
                for j in range(candidates)
            ],
        }
        for i in range(n)
    ]


def configure_ray_data() -> None:
    """Quiet, ordered Ray Data execution for the tests."""
    import ray

    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    context.execution_options.preserve_order = True


def local_rankings(checkpoint: Path, records: list[dict[str, Any]], strategy: str) -> dict:
    """id -> Ranking from the single-process PairRanker on the same records."""
    from blender_core import PairRanker

    ranker = PairRanker.from_pretrained(checkpoint, dtype="float32")
    rankings = ranker.rank_batch(
        [r["instruction"] for r in records],
        [[c["text"] for c in r["candidates"]] for r in records],
        inputs=[r["input"] for r in records],
        strategy=strategy,  # type: ignore[arg-type]
    )
    return {r["id"]: ranking for r, ranking in zip(records, rankings, strict=True)}


def stop_ray(*stops: Callable[[], Any], timeout: float = 30.0) -> None:
    """Run ``stops`` (``ray.shutdown``, ``cluster.shutdown``...), then wait until every process
    Ray started from this test process has exited.

    Ray's processes are the descendants of this process that run Ray's programs (a local
    instance's raylet and GCS, the actors' worker processes, a cluster's nodes; other tests'
    children are left alone); they are listed before stopping (an orphaned
    worker is no longer a descendant). Actor workers exit on their own shortly after their raylet;
    any still alive after ``timeout`` is killed and the test fails.
    """
    import psutil

    procs = [p for p in psutil.Process().children(recursive=True) if _is_ray(p)]
    assert procs, "no Ray process found under this test process"
    for stop in stops:
        stop()
    _, alive = psutil.wait_procs(procs, timeout=timeout)
    for proc in alive:
        proc.kill()
    assert not alive, f"Ray processes still running {timeout} s after stopping: {alive}"


def _is_ray(proc: Any) -> bool:
    import psutil

    try:
        command = " ".join(proc.cmdline())
    except psutil.Error:
        return False
    return command.startswith("ray::") or any(
        part in command for part in ("/ray/", "raylet", "gcs_server")
    )


def rank_cli_app() -> Any:
    """A Typer app with ``blender rank`` alone (``CliRunner().invoke(app, ["rank", ...])``)."""
    from blender_core.cli.rank import rank_command

    return command_group("rank", rank_command)
