"""A PairRanker as a TRL-style pairwise judge (and as a TRL reward function).

:class:`PairRankerJudge` follows the interface and return convention of TRL's ``PairRMJudge``:
``judge(prompts, completions)`` takes one pair of completions per prompt and returns the index
(0 or 1) of the preferred one, or with ``return_scores=True`` the softmax probability that the
first is better. When the installed TRL exposes ``BasePairwiseJudge`` (``trl``,
``trl.trainer.judges`` or ``trl.experimental.judges``, depending on the version) the judge
subclasses it, so TRL's judge-taking trainers and ``WinRateCallback`` accept it; TRL 1.x dropped
the judges, and there :meth:`PairRankerJudge.reward_function` gives the ``reward_funcs``
callable its online trainers (``GRPOTrainer``, ``OnlineDPOTrainer``) take. Without TRL
everything works the same.

Example:
    .. code-block:: python

        from blender_core.judges import PairRankerJudge

        judge = PairRankerJudge("llm-blender/PairRM")
        judge.judge(["Say hi"], [["hi!", "go away"]])  # [0]
        judge.judge(["Say hi"], [["hi!", "go away"]], return_scores=True)  # [0.93]
"""

from __future__ import annotations

import importlib
import importlib.util
import math
import os
import random
import warnings
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from blender_core.pair_ranker import PairRanker

__all__ = ["PairRankerJudge", "PairwiseJudgeBase", "trl_pairwise_judge_base"]

_TRL_LOCATIONS = ("trl", "trl.trainer.judges", "trl.experimental.judges")


class PairwiseJudgeBase(ABC):
    """The pairwise-judge interface of TRL, for when TRL does not provide it."""

    @abstractmethod
    def judge(
        self,
        prompts: list[str],
        completions: list[list[str]],
        shuffle_order: bool = True,
    ) -> list[int]:
        """Index of the preferred completion of each pair."""


def trl_pairwise_judge_base() -> type | None:
    """TRL's ``BasePairwiseJudge`` class where the installed TRL has one, else ``None``."""
    if importlib.util.find_spec("trl") is None:
        return None
    for location in _TRL_LOCATIONS:
        try:
            with warnings.catch_warnings():
                # Importing trl.experimental warns that its APIs are unstable: only looked up.
                warnings.simplefilter("ignore")
                base = getattr(importlib.import_module(location), "BasePairwiseJudge", None)
        except ImportError:
            continue
        if isinstance(base, type):
            return base
    return None


_Base: type = trl_pairwise_judge_base() or PairwiseJudgeBase


def _text(value: Any, what: str) -> str:
    """A string, or the last message's content of a chat (TRL's conversational format)."""
    if isinstance(value, str):
        return value
    if isinstance(value, Sequence) and value and isinstance(value[-1], dict):
        content = value[-1].get("content")
        if isinstance(content, str):
            return content
    raise TypeError(f"{what} must be a string or a list of chat messages, got {value!r:.80}")


def _prompt(value: Any, what: str) -> str:
    if isinstance(value, str):
        return value
    from blender_core.types import prompt_to_text

    try:
        return prompt_to_text(value)
    except (TypeError, ValueError, KeyError) as exc:
        raise TypeError(f"{what} must be a string or a list of chat messages") from exc


class PairRankerJudge(_Base):
    """A pairwise judge backed by a :class:`~blender_core.pair_ranker.PairRanker`.

    Args:
        model: A loaded :class:`PairRanker`, or a hub id / local checkpoint to load.
        seed: Seed of the order shuffling (default: unseeded).
        **ranker_kwargs: Passed to :meth:`PairRanker.from_pretrained` when ``model`` is a name
            (``device``, ``dtype``, ``batch_tokens``...).

    Example:
        .. code-block:: python

            judge = PairRankerJudge("llm-blender/PairRM", device="cuda")
            trainer = GRPOTrainer(model, reward_funcs=judge.reward_function(), ...)
    """

    def __init__(
        self,
        model: PairRanker | str | os.PathLike[str],
        *,
        seed: int | None = None,
        **ranker_kwargs: Any,
    ) -> None:
        if isinstance(model, str | os.PathLike):
            from blender_core.pair_ranker import PairRanker

            self.ranker = PairRanker.from_pretrained(model, **ranker_kwargs)
        else:
            if ranker_kwargs:
                raise TypeError(f"{sorted(ranker_kwargs)}: only for a model given by name")
            self.ranker = model
        self._random = random.Random(seed)

    def judge(
        self,
        prompts: list[str],
        completions: list[list[str]],
        shuffle_order: bool = True,
        return_scores: bool = False,
        temperature: float = 1.0,
    ) -> list[int | float]:
        """Judge one pair of completions per prompt.

        Args:
            prompts: The prompts (strings, or chats whose last user turn is the prompt).
            completions: One ``[first, second]`` pair per prompt.
            shuffle_order: Show each pair to the ranker in a random order (the answer is mapped
                back), as TRL's judges do against position bias.
            return_scores: Return the probability that the first completion is better (a
                softmax of the two ranking scores at ``temperature``) instead of an index.
            temperature: Softmax temperature of ``return_scores``.

        Returns:
            Per prompt: ``0`` or ``1``, the index of the preferred completion (ties go to the
            first), or a probability in ``[0, 1]`` with ``return_scores``.
        """
        if len(prompts) != len(completions):
            raise ValueError(
                f"{len(prompts)} prompts but {len(completions)} completion pairs: one pair each"
            )
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        sources = [_prompt(p, f"prompts[{k}]") for k, p in enumerate(prompts)]
        pairs: list[list[str]] = []
        for k, pair in enumerate(completions):
            if isinstance(pair, str) or len(pair) != 2:
                raise ValueError(f"completions[{k}] must be a pair of two completions")
            pairs.append([_text(c, f"completions[{k}][{i}]") for i, c in enumerate(pair)])
        flips = [shuffle_order and self._random.random() < 0.5 for _ in pairs]
        shown = [pair[::-1] if flip else pair for pair, flip in zip(pairs, flips, strict=True)]
        rankings = self.ranker.rank_batch(sources, shown, strategy="max_logits") if shown else []
        results: list[int | float] = []
        for ranking, flip in zip(rankings, flips, strict=True):
            first, second = ranking.scores[::-1] if flip else ranking.scores
            if return_scores:
                gap = (second - first) / temperature
                results.append(1.0 / (1.0 + math.exp(gap)) if gap < 700 else 0.0)
            else:
                results.append(0 if first >= second else 1)
        return results

    def reward_function(self) -> Callable[..., list[float]]:
        """A TRL ``reward_funcs`` callable: each completion's ranking score among its group.

        TRL calls it as ``f(prompts=..., completions=..., **kwargs)`` with the completions of
        each prompt repeated side by side; completions of the same prompt are ranked together
        (MaxLogits) and each gets its score, so a better completion gets a higher reward.
        """

        def pairranker_reward(
            prompts: list[Any], completions: list[Any], **kwargs: Any
        ) -> list[float]:
            if len(prompts) != len(completions):
                raise ValueError(f"{len(prompts)} prompts but {len(completions)} completions")
            groups: dict[str, list[int]] = {}
            sources = [_prompt(p, f"prompts[{k}]") for k, p in enumerate(prompts)]
            texts = [_text(c, f"completions[{k}]") for k, c in enumerate(completions)]
            for k, source in enumerate(sources):
                groups.setdefault(source, []).append(k)
            keys = list(groups)
            rankings = self.ranker.rank_batch(
                keys, [[texts[k] for k in groups[key]] for key in keys], strategy="max_logits"
            )
            rewards = [0.0] * len(texts)
            for key, ranking in zip(keys, rankings, strict=True):
                for k, score in zip(groups[key], ranking.scores, strict=True):
                    rewards[k] = float(score)
            return rewards

        return pairranker_reward
