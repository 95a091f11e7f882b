"""PairRankerJudge, TRL-style: judge completion pairs and score completions as a reward function.

Runs offline on a tiny *untrained* PairRanker built on the spot, so its verdicts are arbitrary;
pass ``llm-blender/PairRM`` instead for real judgments. With TRL installed, hand the judge (TRL
< 1.0) or ``judge.reward_function()`` (TRL 1.x ``reward_funcs=``) to an online trainer.

    python examples/trl_judge.py
"""

from __future__ import annotations

import tempfile

from blender_core.judges import PairRankerJudge, trl_pairwise_judge_base
from blender_core.testing import make_tiny_pairranker


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = make_tiny_pairranker(tmp, layout="pairrm")
        judge = PairRankerJudge(checkpoint, device="cpu", seed=0)
    print("NOTE: the tiny ranker is untrained: its preferences are random, not meaningful.")
    base = trl_pairwise_judge_base()
    try:
        from importlib.metadata import version

        trl_version = f"TRL {version('trl')}"
    except ImportError:  # PackageNotFoundError is an ImportError
        trl_version = "no TRL installed"
    if base is not None:
        print(f"{trl_version}: the judge subclasses {base.__module__}.BasePairwiseJudge")
    else:
        print(f"{trl_version}: no BasePairwiseJudge; use judge.reward_function() as reward_funcs")
    prompts = ["What is the capital of France?", "Write a haiku about rain."]
    pairs = [
        ["Paris is the capital of France.", "I think it might be Lyon."],
        ["Soft rain on the roof / ...", "Rain is water falling from clouds."],
    ]
    print("preferred index:", judge.judge(prompts, pairs))
    print(
        "P(first better):", [round(p, 3) for p in judge.judge(prompts, pairs, return_scores=True)]
    )
    reward = judge.reward_function()
    print(
        "rewards:",
        [
            round(r, 4)
            for r in reward(
                prompts=prompts * 2,
                completions=[pairs[0][0], pairs[1][0], pairs[0][1], pairs[1][1]],
            )
        ],
    )
    print(
        "Why these numbers: the checkpoint's weights are random, so every probability is near "
        "0.5 and\nevery reward near 0, whatever the answers say. They show the shapes a TRL "
        "trainer gets; with\nllm-blender/PairRM, 'Paris' would beat 'Lyon' clearly."
    )


if __name__ == "__main__":
    main()
