"""An LLM-as-judge pairwise ranker (the paper's GPT-Rank), over any text generator.

The judge reads the instruction and two candidates, shown as "A" and "B", and answers one of four
verdicts: A is better, B is better, both are good, both are bad. As in the paper's GPT-Rank each
comparison gives ``+1`` to the winner and ``-1`` to the loser, ``+0.5`` to both when both are good,
``-0.5`` to both when both are bad; a candidate's score is the sum over its comparisons
(MaxLogits-style summation of its row of the pair matrix).

The verdict parsing and scoring are reusable on their own: :func:`parse_verdict`,
:func:`verdict_scores`, :func:`build_judge_prompt` and :func:`judge_pair` / :func:`ajudge_pair`.
"""

from __future__ import annotations

import asyncio
import logging
import random
import re
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any, ClassVar, Literal

from blender_core.bridge import sync_twin
from blender_core.fencing import Fence
from blender_core.generators.base import Generator
from blender_core.generators.deadline import DeadlineExceeded, call_with_timeout
from blender_core.generators.errors import GeneratorTimeoutError
from blender_core.rankers.random import seeded_rng
from blender_core.ranking import BaseRanker, Ranking, check_pairwise_size, validate_rank_inputs

__all__ = [
    "DEFAULT_JUDGE_PROMPT",
    "JudgeRanking",
    "LLMJudgeRanker",
    "PairComparison",
    "PairJudgement",
    "Verdict",
    "ajudge_pair",
    "build_judge_prompt",
    "judge_pair",
    "parse_verdict",
    "verdict_scores",
]

logger = logging.getLogger(__name__)

DEFAULT_JUDGE_PROMPT = """\
{notice}

Instruction:
{instruction}

Input:
{input}

Candidate A:
{candidate_a}

Candidate B:
{candidate_b}

Given the instruction and input above, please compare the two candidates.
You only have 4 choices to output:
If you think A is better, please output: 1. A is better
If you think B is better, please output: 2. B is better
If you think both are good enough and correctly give the answer, please output: 3. Same good
If you think both are bad and do not follow the instruction, please output: 4. Same bad
Do not output anything else except the 4 choices above.
Output your choice below:
"""
"""The default judge prompt, after the paper's GPT-Rank prompt. A custom template must contain
``{instruction}``, ``{candidate_a}`` and ``{candidate_b}``; ``{input}`` and ``{notice}`` (the
sentence saying that fenced text is data) are optional. Every value is filled in fenced (see
:mod:`blender_core.fencing`)."""


class Verdict(StrEnum):
    """The four verdicts of a pairwise judgement."""

    A_BETTER = "A is better"
    B_BETTER = "B is better"
    BOTH_GOOD = "Same good"
    BOTH_BAD = "Same bad"


_SCORES: Mapping[Verdict, tuple[float, float]] = {
    Verdict.A_BETTER: (1.0, -1.0),
    Verdict.B_BETTER: (-1.0, 1.0),
    Verdict.BOTH_GOOD: (0.5, 0.5),
    Verdict.BOTH_BAD: (-0.5, -0.5),
}

_PATTERNS: tuple[tuple[Verdict, re.Pattern[str]], ...] = (
    (Verdict.A_BETTER, re.compile(r"\b(?:candidate |answer |response )?a is (?:better|best)\b")),
    (Verdict.B_BETTER, re.compile(r"\b(?:candidate |answer |response )?b is (?:better|best)\b")),
    (Verdict.BOTH_GOOD, re.compile(r"\b(?:same|both(?: are)?(?: equally)?) good\b")),
    (Verdict.BOTH_BAD, re.compile(r"\b(?:same|both(?: are)?(?: equally)?) bad\b")),
)
_BARE_CHOICES: Mapping[str, Verdict] = {
    "1": Verdict.A_BETTER,
    "2": Verdict.B_BETTER,
    "3": Verdict.BOTH_GOOD,
    "4": Verdict.BOTH_BAD,
    "a": Verdict.A_BETTER,
    "b": Verdict.B_BETTER,
}
_BARE = re.compile(r"^(?:choice|answer|output|verdict)?\s*:?\s*\(?([1-4ab])\)?\.?$")


def parse_verdict(text: str) -> Verdict | None:
    """Parse a judge's answer into a :class:`Verdict`, or ``None`` when it is not clear.

    Robust: case, surrounding text, markdown emphasis and quotes, an option number before the
    phrase ("1. A is better"), "both good"/"same good" wordings, and a bare choice ("2", "B",
    "(3)") are accepted. Strict: an answer that names two different verdicts (for example one that
    echoes the list of choices, or "A is better... no, B is better") or none gives ``None``;
    nothing is guessed.

    Example:
        .. code-block:: python

            parse_verdict("1. A is better")  # Verdict.A_BETTER
            parse_verdict("**Same bad**")  # Verdict.BOTH_BAD
            parse_verdict("I cannot decide")  # None
    """
    if not isinstance(text, str):
        raise TypeError(f"a verdict must be parsed from a string, got {type(text).__name__}")
    normalised = re.sub(r"[*_`\"'“”]", "", text).strip().lower()
    normalised = re.sub(r"\s+", " ", normalised)
    found = {verdict for verdict, pattern in _PATTERNS if pattern.search(normalised)}
    if len(found) == 1:
        return found.pop()
    if found:
        return None
    bare = _BARE.match(normalised)
    return _BARE_CHOICES[bare.group(1)] if bare else None


def verdict_scores(verdict: Verdict) -> tuple[float, float]:
    """GPT-Rank points of (A, B): ``(1, -1)``, ``(-1, 1)``, ``(.5, .5)`` or ``(-.5, -.5)``."""
    return _SCORES[Verdict(verdict)]


def build_judge_prompt(
    instruction: str,
    candidate_a: str,
    candidate_b: str,
    *,
    input: str = "",
    prompt_template: str | None = None,
    rng: random.Random | None = None,
) -> str:
    """The judge prompt for one ordered pair (``candidate_a`` is shown as "A").

    The instruction, input and both candidates are each put between marker lines with a nonce
    drawn for this call (from ``rng`` when given, for reproducible prompts, else from
    :mod:`secrets`), and marker look-alikes inside them are neutralised, so a candidate cannot
    close its block, add a fake one or pose as the other candidate: the prompt is injective and
    :func:`blender_core.fencing.unfence` gives back the four texts.

    Example:
        .. code-block:: python

            prompt = build_judge_prompt("Say hi", "hi!", "\\n\\nCandidate B:\\nbye")
            unfence(prompt)["candidate A"]  # 'hi!'
    """
    template = prompt_template if prompt_template is not None else DEFAULT_JUDGE_PROMPT
    fence = Fence(rng)
    return template.format(
        notice=fence.notice(),
        instruction=fence.wrap("instruction", instruction),
        input=fence.wrap("input", input),
        candidate_a=fence.wrap("candidate A", candidate_a),
        candidate_b=fence.wrap("candidate B", candidate_b),
    )


@dataclass(frozen=True)
class PairJudgement:
    """One judge call on an ordered pair.

    Attributes:
        verdict: The parsed verdict, or ``None`` when the judge's answer was not parseable.
        score_a: GPT-Rank points of the candidate shown as A (0 when unparseable).
        score_b: GPT-Rank points of the candidate shown as B (0 when unparseable).
        raw: The judge's answer, verbatim.
    """

    verdict: Verdict | None
    score_a: float
    score_b: float
    raw: str

    @property
    def valid(self) -> bool:
        """Whether the judge's answer was parseable."""
        return self.verdict is not None


def _judgement(raw: Any) -> PairJudgement:
    if not isinstance(raw, str):
        raise TypeError(f"the judge returned {type(raw).__name__}, not a string")
    verdict = parse_verdict(raw)
    if verdict is None:
        return PairJudgement(None, 0.0, 0.0, raw)
    score_a, score_b = verdict_scores(verdict)
    return PairJudgement(verdict, score_a, score_b, raw)


async def ajudge_pair(
    judge: Generator,
    instruction: str,
    candidate_a: str,
    candidate_b: str,
    *,
    input: str = "",
    prompt_template: str | None = None,
    **generate_kwargs: Any,
) -> PairJudgement:
    """Ask ``judge`` to compare two answers (``candidate_a`` shown first) and score its verdict
    (through the judge's ``agenerate``).

    Errors of the judge itself propagate; an unparseable answer gives a judgement with
    ``verdict=None`` and zero points (check ``.valid``).

    Example:
        .. code-block:: python

            judgement = await ajudge_pair(judge, "Say hi", "hi!", "go away")
            judgement.verdict, judgement.score_a, judgement.score_b
    """
    prompt = build_judge_prompt(
        instruction, candidate_a, candidate_b, input=input, prompt_template=prompt_template
    )
    return _judgement(await judge.agenerate(prompt, **generate_kwargs))


judge_pair = sync_twin(
    ajudge_pair,
    name="judge_pair",
    doc="""Sync :func:`ajudge_pair`: the same parameters and judgement.

    Example:
        .. code-block:: python

            judgement = judge_pair(judge, "Say hi", "hi!", "go away")
            judgement.verdict, judgement.score_a, judgement.score_b
    """,
)


@dataclass(frozen=True)
class PairComparison:
    """A judged pair inside a :class:`JudgeRanking`: candidate ``first`` was shown as A."""

    first: int
    second: int
    judgement: PairJudgement


@dataclass(frozen=True)
class JudgeRanking(Ranking):
    """A :class:`Ranking` that also records every judge call (unparseable ones included).

    Attributes:
        comparisons: One entry per judged pair, in pair order.
    """

    comparisons: tuple[PairComparison, ...] = field(default=(), compare=False)

    @property
    def invalid(self) -> tuple[PairComparison, ...]:
        """The comparisons whose verdict could not be parsed (they scored 0 for both)."""
        return tuple(c for c in self.comparisons if not c.judgement.valid)

    def to_dict(self) -> dict[str, Any]:
        out = super().to_dict()
        out["comparisons"] = [
            {
                "a": c.first,
                "b": c.second,
                "verdict": c.judgement.verdict.value if c.judgement.verdict else None,
                "raw": c.judgement.raw,
            }
            for c in self.comparisons
        ]
        return out


class LLMJudgeRanker(BaseRanker):
    """Ranks candidates by pairwise LLM judgements, scored as in the paper's GPT-Rank.

    Every unordered pair is judged once; which candidate is shown as "A" is drawn at random
    (reproducibly with ``seed``) to cancel the judge's position bias on average. The pair matrix
    ``M[i][j]`` holds candidate i's points from its comparison with j; scores are row sums.

    An unparseable answer is never guessed: with ``on_invalid="skip"`` (default) the pair scores
    0 for both, a warning is logged and the comparison is kept in
    :attr:`JudgeRanking.comparisons` / :attr:`JudgeRanking.invalid`; with ``"raise"`` a
    ``ValueError`` quoting the answer is raised. Errors of the judge itself always propagate.

    Args:
        judge: Any :class:`~blender_core.generators.base.Generator`.
        seed: Seed of the A/B position draws (the draw depends on the seed and the input only).
        prompt_template: A template with ``{instruction}``, ``{candidate_a}``, ``{candidate_b}``
            and optionally ``{input}``; defaults to :data:`DEFAULT_JUDGE_PROMPT`.
        max_concurrency: Judge calls in flight at once (threads for :meth:`rank`, tasks for
            :meth:`arank`).
        on_invalid: ``"skip"`` or ``"raise"`` (see above).
        max_candidates: Most candidates per input: N candidates cost N(N-1)/2 judge calls, so a
            longer list raises ``ValueError`` before any call (a warning above 64).
        generate_kwargs: Extra keyword arguments for every judge call.
        timeout: Seconds each judge call may take (``None``: no limit); past it
            :class:`~blender_core.generators.errors.GeneratorTimeoutError` is raised naming the
            judge (a stuck sync call is abandoned in its thread).

    Example:
        .. code-block:: python

            from blender_core import LLMJudgeRanker, OpenAICompatibleGenerator

            judge = OpenAICompatibleGenerator("gpt-4o-mini", temperature=0)
            ranker = LLMJudgeRanker(judge, seed=0)
            ranking = await ranker.arank("Say hi", ["hi!", "go away", "hello there!"])
            ranking.matrix, ranking.invalid
    """

    accepts_input: ClassVar[bool] = True
    """``rank``/``arank`` take ``input=``: the conversation goes in the prompt's input fence,
    apart from the instruction (the pipeline passes it there)."""

    def __init__(
        self,
        judge: Generator,
        *,
        seed: int | None = None,
        prompt_template: str | None = None,
        max_concurrency: int = 8,
        timeout: float | None = 60.0,
        on_invalid: Literal["skip", "raise"] = "skip",
        generate_kwargs: Mapping[str, Any] | None = None,
        max_candidates: int = 128,
    ) -> None:
        if max_candidates < 2:
            raise ValueError(f"max_candidates must be >= 2, got {max_candidates}")
        if not callable(getattr(judge, "generate", None)) or not callable(
            getattr(judge, "agenerate", None)
        ):
            raise TypeError(
                f"judge must be a Generator (with generate and agenerate), "
                f"got {type(judge).__name__}"
            )
        if timeout is not None and (
            isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0
        ):
            raise ValueError(f"timeout must be a number of seconds > 0 or None, got {timeout!r}")
        self.timeout = timeout
        if max_concurrency < 1:
            raise ValueError(f"max_concurrency must be >= 1, got {max_concurrency}")
        if on_invalid not in ("skip", "raise"):
            raise ValueError(f"on_invalid must be 'skip' or 'raise', got {on_invalid!r}")
        if prompt_template is not None:
            for key in ("{instruction}", "{candidate_a}", "{candidate_b}"):
                if key not in prompt_template:
                    raise ValueError(f"prompt_template must contain {key}")
        self.judge = judge
        self.seed = seed
        self.prompt_template = prompt_template
        self.max_concurrency = max_concurrency
        self.on_invalid = on_invalid
        self.generate_kwargs = dict(generate_kwargs or {})
        self.max_candidates = max_candidates

    def _check(self, instructions: Sequence[str], candidate_lists: Sequence[Sequence[str]]) -> None:
        validate_rank_inputs(instructions, candidate_lists)
        check_pairwise_size(
            candidate_lists, strategy="llm_judge", limit=self.max_candidates, ordered=False
        )

    def _pairs(self, instruction: str, candidates: Sequence[str]) -> list[tuple[int, int]]:
        """The judged pairs as (shown as A, shown as B), positions drawn from the seed."""
        rng = seeded_rng(self.seed, instruction, candidates)
        pairs = []
        for i in range(len(candidates)):
            for j in range(i + 1, len(candidates)):
                pairs.append((j, i) if rng.random() < 0.5 else (i, j))
        return pairs

    def _timeout_error(self) -> GeneratorTimeoutError:
        return GeneratorTimeoutError(
            f"judge {getattr(self.judge, 'name', '?')!r} gave no verdict within {self.timeout:g} s"
        )

    def _generate(self, prompt: str) -> str:
        try:
            return call_with_timeout(
                self.judge.generate, self.timeout, prompt, **self.generate_kwargs
            )
        except DeadlineExceeded:
            raise self._timeout_error() from None

    def _prompt(
        self, instruction: str, input: str, candidates: Sequence[str], pair: tuple[int, int]
    ) -> str:
        return build_judge_prompt(
            instruction,
            candidates[pair[0]],
            candidates[pair[1]],
            input=input,
            prompt_template=self.prompt_template,
        )

    def _jobs(
        self,
        instructions: Sequence[str],
        candidate_lists: Sequence[Sequence[str]],
        inputs: Sequence[str] | None,
    ) -> list[tuple[str, str, Sequence[str], list[tuple[int, int]]]]:
        self._check(instructions, candidate_lists)
        extra = list(inputs) if inputs is not None else [""] * len(instructions)
        if len(extra) != len(instructions):
            raise ValueError(
                f"inputs ({len(extra)}) and instructions ({len(instructions)}) must have the "
                "same length"
            )
        return [
            (instruction, input, candidates, self._pairs(instruction, candidates))
            for instruction, input, candidates in zip(
                instructions, extra, candidate_lists, strict=True
            )
        ]

    def rank(self, instruction: str, candidates: Sequence[str], *, input: str = "") -> Ranking:
        """Rank ``candidates``; ``input`` (e.g. the conversation so far) goes in its own fence."""
        if isinstance(candidates, str):
            raise TypeError("candidates must be a list of strings, not a single string")
        return self.rank_batch([instruction], [candidates], inputs=[input])[0]

    def _aggregate(
        self,
        instruction: str,
        candidates: Sequence[str],
        pairs: Sequence[tuple[int, int]],
        raws: Sequence[Any],
    ) -> JudgeRanking:
        n = len(candidates)
        matrix = [[0.0] * n for _ in range(n)]
        comparisons = []
        for (a, b), raw in zip(pairs, raws, strict=True):
            judgement = _judgement(raw)
            if not judgement.valid:
                if self.on_invalid == "raise":
                    raise ValueError(
                        f"unparseable verdict from judge {getattr(self.judge, 'name', '?')!r} "
                        f"comparing candidates {a} (A) and {b} (B): {raw!r}"
                    )
                logger.warning(
                    "unparseable verdict comparing candidates %d (A) and %d (B), "
                    "scored 0 for both: %r",
                    a,
                    b,
                    raw,
                )
            matrix[a][b] = judgement.score_a
            matrix[b][a] = judgement.score_b
            comparisons.append(PairComparison(a, b, judgement))
        ranking = JudgeRanking.from_scores(
            [sum(row) for row in matrix], matrix=matrix, strategy="llm_judge"
        )
        return replace(ranking, comparisons=tuple(comparisons))

    def rank_batch(
        self,
        instructions: Sequence[str],
        candidate_lists: Sequence[Sequence[str]],
        *,
        inputs: Sequence[str] | None = None,
    ) -> list[Ranking]:
        """Judge every pair of every list, ``max_concurrency`` calls at a time (threads)."""
        jobs = self._jobs(instructions, candidate_lists, inputs)
        prompts = [
            self._prompt(instruction, input, candidates, pair)
            for instruction, input, candidates, pairs in jobs
            for pair in pairs
        ]
        with ThreadPoolExecutor(max_workers=self.max_concurrency) as pool:
            raws = list(pool.map(self._generate, prompts))
        return self._rankings(jobs, raws)

    def _rankings(
        self,
        jobs: Sequence[tuple[str, str, Sequence[str], list[tuple[int, int]]]],
        raws: Sequence[Any],
    ) -> list[Ranking]:
        rankings: list[Ranking] = []
        offset = 0
        for instruction, _, candidates, pairs in jobs:
            chunk = raws[offset : offset + len(pairs)]
            offset += len(pairs)
            rankings.append(self._aggregate(instruction, candidates, pairs, chunk))
        return rankings

    async def arank(
        self, instruction: str, candidates: Sequence[str], *, input: str = ""
    ) -> Ranking:
        """Async :meth:`rank`: judge calls run concurrently on the judge's ``agenerate``."""
        if isinstance(candidates, str):
            raise TypeError("candidates must be a list of strings, not a single string")
        return (await self.arank_batch([instruction], [candidates], inputs=[input]))[0]

    async def arank_batch(
        self,
        instructions: Sequence[str],
        candidate_lists: Sequence[Sequence[str]],
        *,
        inputs: Sequence[str] | None = None,
    ) -> list[Ranking]:
        """Async :meth:`rank_batch`, at most ``max_concurrency`` judge calls in flight."""
        jobs = self._jobs(instructions, candidate_lists, inputs)
        semaphore = asyncio.Semaphore(self.max_concurrency)

        async def call(prompt: str) -> str:
            async with semaphore:
                try:
                    async with asyncio.timeout(self.timeout) as scope:
                        return await self.judge.agenerate(prompt, **self.generate_kwargs)
                except TimeoutError:
                    if scope.expired():
                        raise self._timeout_error() from None
                    raise

        raws = await asyncio.gather(
            *(
                call(self._prompt(instruction, input, candidates, pair))
                for instruction, input, candidates, pairs in jobs
                for pair in pairs
            )
        )
        return self._rankings(jobs, raws)

    def __repr__(self) -> str:
        return (
            f"LLMJudgeRanker(judge={getattr(self.judge, 'name', self.judge)!r}, "
            f"seed={self.seed!r}, max_concurrency={self.max_concurrency})"
        )
