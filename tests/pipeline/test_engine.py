"""The core engine (blender_core.engine), the chat policy (blender_core.chat) and the one
factory (blender_core.loading): lazy, same options everywhere, typed specs."""

from __future__ import annotations

from pathlib import Path

import pytest
from pipeline_fakes import LengthRanker

from blender_core.chat import chat_prompt
from blender_core.engine import Engine
from blender_core.loading import build_ranker, load_fuser, load_ranker, register_ranker
from blender_core.members import MemberResults, ModelFailure
from blender_core.rankers.random import RandomRanker
from blender_core.tool_calls import ToolCall, ToolProposal


def test_chat_policy_latest_user_message_and_history_in_their_places() -> None:
    messages = [
        ("system", "Be brief."),
        ("human", "Hi"),
        {"role": "ai", "content": "Hello!"},
        ("user", "Capital of France?"),
        ("tool", "lookup: Paris"),
    ]
    instruction, history = chat_prompt(messages)
    assert instruction == "Capital of France?"
    assert history == ("system: Be brief.\n\nuser: Hi\n\nassistant: Hello!\n\ntool: lookup: Paris")
    assert chat_prompt([("user", "only")]) == ("only", "")
    assert chat_prompt([("system", "s"), ("assistant", "a")]) == ("a", "system: s")
    with pytest.raises(ValueError, match="empty"):
        chat_prompt([])
    with pytest.raises(TypeError, match="message 0"):
        chat_prompt(["bare string"])


def test_engine_builds_nothing_until_used_and_then_once() -> None:
    built: list[int] = []

    def factory(**options: object) -> LengthRanker:
        built.append(1)
        return LengthRanker()

    register_ranker("test-length", factory)
    engine = Engine(ranker={"type": "test-length"}, fuser="select", top_k=1)
    assert not engine.loaded and built == []
    results = MemberResults(
        outputs={"a": "short", "b": "the longest"},
        failures=[ModelFailure("c", "error", "RuntimeError: boom")],
        latencies={"a": 0.1, "b": 0.2, "c": 0.3},
    )
    result = engine.blend("q", results, input="user: hi")
    assert result.text == "the longest" and result.input == "user: hi"
    assert result.to_dict()["blend_mode"] == "text"
    assert [f.model for f in result.failures] == ["c"]
    events = list(engine.stream("q", results))
    assert events[-1].result is not None and events[-1].result.text == "the longest"
    chosen = engine.select("q", {"a": "x", "b": ToolProposal(tool_calls=(ToolCall("f"),))})
    assert chosen.model == "b" and chosen.result.blend_mode == "tool_calls"
    assert built == [1]


async def test_engine_async_forms() -> None:
    engine = Engine(ranker=LengthRanker(), fuser="select")
    result = await engine.ablend("q", {"a": "x", "b": "yy"})
    assert result.text == "yy"
    events = [e async for e in engine.astream("q", {"a": "x", "b": "yy"})]
    assert events[-1].kind == "result"
    chosen = await engine.aselect("q", {"a": "x", "b": "yy"})
    assert chosen.model == "b"


def test_engine_refuses_bad_options_before_loading() -> None:
    with pytest.raises(ValueError, match="top_k"):
        Engine(top_k=0)
    with pytest.raises(ValueError, match="timeout"):
        Engine(timeout=-1)
    with pytest.raises(ValueError, match="min_candidates"):
        Engine(min_candidates=0)


def test_typed_specs_through_the_one_factory() -> None:
    ranker = load_ranker({"type": "random", "seed": 3, "device": "cpu"})
    assert isinstance(ranker, RandomRanker) and ranker.seed == 3
    assert isinstance(build_ranker("random", seed=None), RandomRanker)
    with pytest.raises(ValueError, match="unknown ranker type 'nope'"):
        load_ranker({"type": "nope"})
    with pytest.raises(ValueError, match="needs a 'type'"):
        load_ranker({"checkpoint": "x"})


def test_a_path_is_a_checkpoint_spec(tmp_path: Path) -> None:
    # Regression: Blender(fuser=Path(...)) was refused with a TypeError though the docs say a
    # path works (make_tiny_genfuser returns a Path). Now it reaches the checkpoint loader.
    missing = tmp_path / "no-such-fuser"
    with pytest.raises(Exception) as info:
        load_fuser(missing)
    assert not isinstance(info.value, TypeError)
    assert "no-such-fuser" in str(info.value)


@pytest.mark.slow
def test_one_way_pairs_with_bubble_is_refused_clearly(tiny_pairrm_dir: Path) -> None:
    # Regression: pairs="one-way" was silently ignored with strategy="bubble".
    from blender_core.pair_ranker import PairRanker

    ranker = PairRanker.from_pretrained(tiny_pairrm_dir, device="cpu")
    with pytest.raises(ValueError, match=r"'bubble' .* has no one-way form"):
        ranker.rank("q", ["a", "b", "c"], strategy="bubble", pairs="one-way")
    assert len(ranker.rank("q", ["a", "b", "c"], strategy="max_wins", pairs="one-way")) == 3


def test_blender_accepts_a_path_fuser(tmp_path: Path) -> None:
    # Regression: Blender(fuser=Path(...)) raised TypeError though the docs say a path works.
    from blender_core.blend import Blender

    with pytest.raises(Exception) as info:
        Blender([], ranker=LengthRanker(), fuser=tmp_path / "missing-fuser")
    assert not isinstance(info.value, TypeError)


@pytest.mark.slow
def test_top_k_selection_scores_are_comparable_or_marked(tiny_pairrm_dir: Path) -> None:
    # Regression: with top_k, eliminated candidates got knockout positions as scores (ranks
    # like (4, 2, 3, 4, 1, 4)) and the survivors positions too (what /v1/rerank returned as
    # relevance_score). Now the survivors keep their max_logits scores and Ranking.ordered
    # says how many of the best are really ordered; the eliminated sit below, in tiers.
    from blender_core.pair_ranker import PairRanker

    ranker = PairRanker.from_pretrained(tiny_pairrm_dir, device="cpu")
    candidates = [f"answer number {i}" for i in range(7)]
    selection = ranker.rank("Say hi", candidates, top_k=1, seed=0)
    assert selection.strategy == "top_k" and selection.ordered is not None
    survivors = list(selection.order[: selection.ordered])
    full = ranker.rank("Say hi", [candidates[i] for i in survivors])
    # The survivors' scores are those of ranking them with max_logits (not positions).
    assert [selection.scores[i] for i in survivors] == pytest.approx(list(full.scores))
    eliminated = [selection.scores[i] for i in selection.order[selection.ordered :]]
    assert max(eliminated) < min(selection.scores[i] for i in survivors)
    assert selection.to_dict()["ordered"] == selection.ordered
    assert "ordered" not in ranker.rank("Say hi", candidates[:3]).to_dict()  # a full order
