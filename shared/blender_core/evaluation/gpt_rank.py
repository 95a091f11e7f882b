"""GPT-Rank: the paper's pairwise LLM-judge evaluation of several methods' outputs.

For each record the distinct outputs of all methods are judged pairwise by an LLM with the
paper's four-way prompt (A better / B better / same good / same bad; positions drawn from a seed)
through :class:`~blender_core.rankers.llm_judge.LLMJudgeRanker`. Each output's points are summed
(+1 / -1, +0.5 each, -0.5 each) and turned into ranks (1 = best; ties share the better rank). A
method's GPT-Rank is its output's mean rank over the records (lower is better).

"Beats X %" by the judge: the share of records where the judge preferred the method's output to
model X's answer: 1 for a win, 0.5 for "same good" (and for identical texts), 0 for a loss or
"same bad"; an unparseable verdict counts 0.5 and is reported in :attr:`GPTRankResult.invalid`.

The judge is any :class:`~blender_core.generators.base.Generator`, or any object with
``invoke(prompt)`` returning a message with ``.content`` (a LangChain chat model, duck-typed:
blender_core never imports LangChain), wrapped by :class:`ChatModelJudge`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from blender_core.data import MixRecord
from blender_core.generators.base import Generator
from blender_core.rankers.baselines import Pick, record_prompt
from blender_core.rankers.llm_judge import JudgeRanking, LLMJudgeRanker, Verdict

__all__ = ["ChatModelJudge", "GPTRank", "GPTRankResult", "as_judge"]

Output = Pick | str
"""One method's output on one record: weights over candidate indices, or a generated text."""


def _content_text(message: Any) -> str:
    content = getattr(message, "content", message)
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # content blocks: keep the text ones
        return "".join(
            b if isinstance(b, str) else str(b.get("text", "")) if isinstance(b, dict) else ""
            for b in content
        )
    raise TypeError(f"the chat model returned {type(message).__name__} without text content")


class ChatModelJudge:
    """Adapts an object with ``invoke`` (and optionally ``ainvoke``) to the Generator protocol.

    ``invoke(prompt)`` must return a message whose ``.content`` is the text (a string or a list
    of text blocks), as LangChain chat models do.

    Example:
        .. code-block:: python

            from langchain_openai import ChatOpenAI

            judge = ChatModelJudge(ChatOpenAI(model="gpt-4o-mini", temperature=0))
            judge.generate("Say hi")
    """

    def __init__(self, model: Any, *, name: str | None = None) -> None:
        if not callable(getattr(model, "invoke", None)):
            raise TypeError(f"a chat model judge needs invoke(), got {type(model).__name__}")
        self.model = model
        self.name = name or str(getattr(model, "model_name", None) or type(model).__name__)

    def generate(self, prompt: Any, **kwargs: Any) -> str:
        return _content_text(self.model.invoke(prompt, **kwargs))

    async def agenerate(self, prompt: Any, **kwargs: Any) -> str:
        if callable(getattr(self.model, "ainvoke", None)):
            return _content_text(await self.model.ainvoke(prompt, **kwargs))
        return await asyncio.to_thread(self.generate, prompt, **kwargs)


def as_judge(judge: Any) -> Generator:
    """A Generator as is; an object with ``invoke`` wrapped in :class:`ChatModelJudge`."""
    if callable(getattr(judge, "generate", None)) and callable(getattr(judge, "agenerate", None)):
        return judge
    if callable(getattr(judge, "invoke", None)):
        return ChatModelJudge(judge)
    raise TypeError(
        "the judge must be a Generator (generate/agenerate) or a chat model with invoke(), "
        f"got {type(judge).__name__}"
    )


@dataclass(frozen=True)
class GPTRankResult:
    """GPT-Rank of each method and its judge-based "beats" shares.

    Attributes:
        ranks: Method -> mean rank of its output (1 = best; lower is better).
        beats: Method -> {model -> share of records where the judge preferred the method's
            output to that model's answer}.
        rankings: The judge's ranking of each record's output pool.
        pools: Each record's distinct judged texts (the rankings' candidates).
        invalid: Number of unparseable verdicts (scored 0 for both sides).
        calls: Number of judge calls made.
    """

    ranks: Mapping[str, float]
    beats: Mapping[str, Mapping[str, float]]
    rankings: tuple[JudgeRanking, ...] = field(repr=False)
    pools: tuple[tuple[str, ...], ...] = field(repr=False)
    invalid: int = 0
    calls: int = 0


class GPTRank:
    """Pairwise LLM-judge evaluation of methods (the paper's GPT-Rank).

    Args:
        judge: A Generator or a chat model with ``invoke`` (see :func:`as_judge`).
        seed: Seed of the A/B position draws (reproducible per record).
        prompt_template: A custom judge prompt (see
            :data:`~blender_core.rankers.llm_judge.DEFAULT_JUDGE_PROMPT`).
        max_concurrency: Judge calls in flight at once.
        generate_kwargs: Extra keyword arguments of every judge call (e.g. ``max_new_tokens``).
        max_chars: Show the judge at most this many characters of each output (``None``: all);
            for small local judges with short contexts or slow prompt processing.

    Example:
        .. code-block:: python

            gpt_rank = GPTRank(judge, seed=0)
            result = gpt_rank.evaluate(
                records,
                {"longest": longest_picks, "blender": fused_texts},
                beats_models=["vicuna-13b"],
            )
            result.ranks["blender"], result.beats["blender"]["vicuna-13b"]
    """

    def __init__(
        self,
        judge: Any,
        *,
        seed: int | None = 0,
        prompt_template: str | None = None,
        max_concurrency: int = 8,
        generate_kwargs: Mapping[str, Any] | None = None,
        max_chars: int | None = None,
    ) -> None:
        if max_chars is not None and max_chars < 1:
            raise ValueError(f"max_chars must be >= 1 or None, got {max_chars}")
        self.max_chars = max_chars
        self.judge = as_judge(judge)
        self.seed = seed
        self.ranker = LLMJudgeRanker(
            self.judge,
            seed=seed,
            prompt_template=prompt_template,
            max_concurrency=max_concurrency,
            generate_kwargs=generate_kwargs,
        )

    @staticmethod
    def _weighted(record: MixRecord, output: Output) -> list[tuple[str, float]]:
        if isinstance(output, str):
            return [(output, 1.0)]
        return [(record.candidates[i].text, w) for i, w in output.items() if w > 0]

    def evaluate(
        self,
        records: Sequence[MixRecord],
        outputs: Mapping[str, Sequence[Output]],
        *,
        beats_models: Sequence[str] = (),
        show_progress: bool = False,
    ) -> GPTRankResult:
        """Judge each record's pool of outputs and aggregate per method.

        Args:
            records: The evaluated records.
            outputs: Method name -> one output per record: a generated text, or weights over the
                record's candidates (a distribution is judged as all its candidates and scored
                by its expected rank, so the random baseline puts every candidate in the pool).
            beats_models: Models whose answers join the pool for the "beats X" shares.
            show_progress: A progress bar over records.
        """
        from tqdm.auto import tqdm

        for name, per_record in outputs.items():
            if len(per_record) != len(records):
                raise ValueError(
                    f"method {name!r} has {len(per_record)} outputs for {len(records)} records"
                )
        pools: list[tuple[str, ...]] = []
        for k, record in enumerate(records):
            pool: dict[str, None] = {}
            for per_record in outputs.values():
                for text, _ in self._weighted(record, per_record[k]):
                    pool.setdefault(text)
            for model in beats_models:
                pool.setdefault(self._model_text(record, model))
            pools.append(tuple(pool))

        rankings: list[JudgeRanking] = []
        for k in tqdm(range(len(records)), desc="GPT-Rank", disable=not show_progress):
            if len(pools[k]) == 1:
                rankings.append(JudgeRanking(order=(0,), ranks=(1,), scores=(0.0,)))
                continue
            shown = [t[: self.max_chars] if self.max_chars else t for t in pools[k]]
            ranking = self.ranker.rank_batch([record_prompt(records[k])], [shown])[0]
            assert isinstance(ranking, JudgeRanking)
            rankings.append(ranking)

        ranks: dict[str, float] = {}
        beats: dict[str, dict[str, float]] = {}
        for name, per_record in outputs.items():
            total = 0.0
            wins = dict.fromkeys(beats_models, 0.0)
            for k, record in enumerate(records):
                texts, ranking = pools[k], rankings[k]
                for text, weight in self._weighted(record, per_record[k]):
                    i = texts.index(text)
                    total += weight * ranking.ranks[i]
                    for model in beats_models:
                        j = texts.index(self._model_text(record, model))
                        wins[model] += weight * _beat(ranking, i, j)
            ranks[name] = total / len(records)
            beats[name] = {m: wins[m] / len(records) for m in beats_models}
        return GPTRankResult(
            ranks=ranks,
            beats=beats,
            rankings=tuple(rankings),
            pools=tuple(pools),
            invalid=sum(len(r.invalid) for r in rankings),
            calls=sum(len(r.comparisons) for r in rankings),
        )

    @staticmethod
    def _model_text(record: MixRecord, model: str) -> str:
        for candidate in record.candidates:
            if candidate.model == model:
                return candidate.text
        raise KeyError(f"record {record.id!r} has no candidate from model {model!r}")


def _beat(ranking: JudgeRanking, i: int, j: int) -> float:
    """1 if the judge preferred pool text i to j, 0.5 for same good or identical, else 0."""
    if i == j:
        return 0.5
    for comparison in ranking.comparisons:
        if {comparison.first, comparison.second} != {i, j}:
            continue
        verdict = comparison.judgement.verdict
        if verdict is None or verdict == Verdict.BOTH_GOOD:
            return 0.5
        if verdict == Verdict.BOTH_BAD:
            return 0.0
        winner = comparison.first if verdict == Verdict.A_BETTER else comparison.second
        return 1.0 if winner == i else 0.0
    raise KeyError(f"pair ({i}, {j}) was not judged")
