"""GPT-Rank end to end with a scripted judge (and a duck-typed chat model)."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from types import SimpleNamespace
from typing import Any

import pytest
from suite_helpers import judged_pair

from blender_core.data import MixRecord
from blender_core.evaluation.gpt_rank import ChatModelJudge, GPTRank, as_judge
from blender_core.evaluation.runner import evaluate
from blender_core.generators.callable import CallableGenerator
from blender_core.rankers.baselines import (
    FixedModelSelector,
    LongestRanker,
    RankerSelector,
    UniformSelector,
)


class ScriptedJudge:
    """Prefers the longer answer; equal lengths are 'same good'. Records what it was shown."""

    def __init__(self) -> None:
        self.shown: list[tuple[str, str]] = []
        self._lock = threading.Lock()

    def __call__(self, prompt: Any) -> str:
        a, b = judged_pair(prompt)
        with self._lock:
            self.shown.append((a, b))
        if len(a) == len(b):
            return "3. Same good"
        return "1. A is better" if len(a) > len(b) else "**2. B is better**"


class Fixed:
    def __init__(self, text: str, name: str) -> None:
        self.text, self.name = text, name

    def generate(self, records: Sequence[MixRecord], *, show_progress: bool = False) -> list[str]:
        return [self.text] * len(records)


def test_gpt_rank_end_to_end(records: list[MixRecord]) -> None:
    script = ScriptedJudge()
    judge = CallableGenerator(script, name="scripted")
    results = evaluate(
        records,
        [
            RankerSelector(LongestRanker(), name="longest"),
            FixedModelSelector("a"),
            UniformSelector(),
            Fixed("a generated answer", name="fused"),
        ],
        beats_models=["a"],
        gpt_rank=GPTRank(judge, seed=0, max_concurrency=2),
    )
    assert results.gpt_rank is not None and results.gpt_rank.invalid == 0
    values = {m.name: m.values for m in results.methods}
    assert values["fused"]["gpt_rank"] == pytest.approx(1.0)  # always the longest text
    assert values["fused"]["gpt_beats:a"] == pytest.approx(1.0)
    # longest: rank 2 in r0 and r1; in r2 "bbb" ties "ccc" (same good) -> both rank 2.
    assert values["longest"]["gpt_rank"] == pytest.approx(2.0)
    # longest vs a (the judge prefers length): wins r0 and r2, identical texts in r1 (0.5).
    assert values["longest"]["gpt_beats:a"] == pytest.approx(2.5 / 3)
    assert values["a"]["gpt_beats:a"] == pytest.approx(0.5)
    # random: the expected rank over all candidates of each pool.
    pools = results.gpt_rank.pools
    assert all(len(pool) == 4 for pool in pools)  # 3 candidates + the fused text
    table = results.table()
    assert "GPT-Rank" in [c.title for c in table.columns]
    assert table.formatted("fused", "gpt_rank") == "1.00"
    # every unordered pair judged once per record, with both A/B positions used
    assert results.gpt_rank.calls == 3 * 6 == len(script.shown)
    first_shown = {tuple(sorted(p)): p for p in script.shown}
    assert any(p[0] > p[1] for p in first_shown.values())
    assert any(p[0] < p[1] for p in first_shown.values())


def test_positions_are_reproducible_by_seed(records: list[MixRecord]) -> None:
    def shown(seed: int) -> list[tuple[str, str]]:
        script = ScriptedJudge()
        GPTRank(CallableGenerator(script), seed=seed, max_concurrency=1).evaluate(
            records, {"random": UniformSelector().select(records)}
        )
        return sorted(script.shown)

    assert shown(1) == shown(1)
    assert any(shown(s) != shown(1) for s in (2, 3, 4))


def test_unparseable_verdicts_are_counted(records: list[MixRecord]) -> None:
    judge = CallableGenerator(lambda prompt: "I cannot decide.")
    results = evaluate(
        records,
        [FixedModelSelector("a"), FixedModelSelector("b")],
        beats_models=["a"],
        gpt_rank=GPTRank(judge),
    )
    assert results.gpt_rank is not None
    assert results.gpt_rank.invalid == results.gpt_rank.calls == 3
    assert results.method("b").values["gpt_beats:a"] == pytest.approx(0.5)
    assert "unparseable" in results.notes[0]


def test_chat_model_duck_typing() -> None:
    class FakeChat:
        model_name = "fake-chat"

        def invoke(self, prompt: Any, **kw: Any) -> Any:
            return SimpleNamespace(content=[{"type": "text", "text": "1. A is better"}])

    judge = as_judge(FakeChat())
    assert isinstance(judge, ChatModelJudge)
    assert judge.name == "fake-chat"
    assert judge.generate("x") == "1. A is better"
    generator = CallableGenerator(lambda p: "x")
    assert as_judge(generator) is generator
    with pytest.raises(TypeError, match="invoke"):
        as_judge(object())


async def test_chat_model_async_falls_back_to_thread() -> None:
    class SyncOnly:
        def invoke(self, prompt: Any, **kw: Any) -> Any:
            return SimpleNamespace(content="2. B is better")

    assert await ChatModelJudge(SyncOnly()).agenerate("x") == "2. B is better"


def test_output_count_mismatch(records: list[MixRecord]) -> None:
    with pytest.raises(ValueError, match="has 1 outputs for 3 records"):
        GPTRank(CallableGenerator(lambda p: "3")).evaluate(records, {"m": ["only one"]})


def test_max_chars_truncates_what_the_judge_sees(records: list[MixRecord]) -> None:
    script = ScriptedJudge()
    result = GPTRank(CallableGenerator(script), max_chars=2).evaluate(
        records, {"a": FixedModelSelector("a").select(records)}, beats_models=["b"]
    )
    assert script.shown and all(len(a) <= 2 and len(b) <= 2 for a, b in script.shown)
    assert result.pools[1] == ("aaaaa", "b")  # the pool keeps the full texts
    with pytest.raises(ValueError, match="max_chars"):
        GPTRank(CallableGenerator(script), max_chars=0)
