"""PairRankerJudge: TRL's PairRMJudge convention, and TRL's reward-function call."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from blender_core import PairRanker
from blender_core.judges import PairRankerJudge, PairwiseJudgeBase, trl_pairwise_judge_base


@pytest.fixture(scope="module")
def judge(tiny_pairrm_dir: Path) -> PairRankerJudge:
    return PairRankerJudge(PairRanker.from_pretrained(tiny_pairrm_dir), seed=0)


PROMPTS = ["Say hi", "Add 2+2", "Name a colour"]
PAIRS = [["hi!", "go away now please"], ["4", "it is five"], ["blue", "I do not know colours"]]


def test_judge_follows_the_pairrm_convention(judge: PairRankerJudge) -> None:
    ranker = judge.ranker
    expected = [
        0 if ranker.compare(p, a, b) >= 0 else 1 for p, (a, b) in zip(PROMPTS, PAIRS, strict=True)
    ]
    assert judge.judge(PROMPTS, PAIRS, shuffle_order=False) == expected
    assert judge.judge(PROMPTS, PAIRS) == expected  # shuffled order, mapped back
    probs = judge.judge(PROMPTS, PAIRS, return_scores=True, shuffle_order=False)
    for p, choice in zip(probs, expected, strict=True):
        assert 0.0 <= p <= 1.0 and (p >= 0.5) == (choice == 0)
    swapped = judge.judge(PROMPTS, [pair[::-1] for pair in PAIRS], return_scores=True)
    assert swapped == pytest.approx([1 - p for p in probs], abs=1e-6)
    hot = judge.judge(PROMPTS, PAIRS, return_scores=True, temperature=100.0)
    assert all(abs(h - 0.5) <= abs(p - 0.5) + 1e-9 for h, p in zip(hot, probs, strict=True))
    with pytest.raises(ValueError, match="pair of two"):
        judge.judge(["x"], [["only one"]])
    with pytest.raises(ValueError, match="one pair each"):
        judge.judge(["x", "y"], [["a", "b"]])


def test_judge_subclasses_the_trl_base_when_there_is_one(judge: PairRankerJudge) -> None:
    base = trl_pairwise_judge_base()
    assert isinstance(judge, base or PairwiseJudgeBase)
    if base is not None:  # TRL < 1.0: its own abstract interface accepts the judge
        assert not getattr(PairRankerJudge, "__abstractmethods__", set())


def test_reward_function_called_as_trl_calls_it(judge: PairRankerJudge) -> None:
    """TRL's online trainers call ``f(prompts=2*prompts, completions=..., completion_ids=...)``."""
    reward = judge.reward_function()
    firsts, seconds = [a for a, _ in PAIRS], [b for _, b in PAIRS]
    chats = [[{"role": "assistant", "content": c}] for c in firsts + seconds]
    rewards = reward(
        prompts=[[{"role": "user", "content": p}] for p in PROMPTS * 2],
        completions=chats,
        completion_ids=[[1, 2]] * 6,
        trainer_state=None,
    )
    assert len(rewards) == 6 and all(math.isfinite(r) for r in rewards)
    choices = judge.judge(PROMPTS, PAIRS, shuffle_order=False)
    for k, choice in enumerate(choices):
        assert (rewards[k] >= rewards[k + 3]) == (choice == 0)


def test_the_trl_judge_example_runs_offline(capsys: pytest.CaptureFixture[str]) -> None:
    import runpy

    example = Path(__file__).resolve().parents[2] / "examples" / "trl_judge.py"
    runpy.run_path(str(example), run_name="__main__")
    out = capsys.readouterr().out
    assert "preferred index: [" in out and "rewards: [" in out
