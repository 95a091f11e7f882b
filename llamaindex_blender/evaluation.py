"""``PairRankerEvaluator``: pairwise comparison of two responses with PairRM."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence
from typing import Any

from llama_index.core.evaluation import BaseEvaluator, EvaluationResult
from llama_index.core.evaluation.pairwise import EvaluationSource
from llama_index.core.prompts.mixin import PromptDictType

from blender_core.lazy import Lazy
from blender_core.loading import DEFAULT_RANKER

__all__ = ["PairRankerEvaluator"]


class PairRankerEvaluator(BaseEvaluator):
    """Which of two responses answers the query better, judged by PairRM instead of an LLM.

    The drop-in shape of LlamaIndex's ``PairwiseComparisonEvaluator``:
    ``aevaluate(query, response, second_response)`` returns an ``EvaluationResult`` whose
    ``score`` is 1.0 when ``response`` wins, 0.0 when ``second_response`` wins and 0.5 for a tie
    (``passing`` is True, False or None). PairRM judges both orders, (response, second) and
    (second, response), as the LLM evaluator's ``enforce_consensus`` does: when the two orders
    disagree the result is a tie from ``EvaluationSource.NEITHER``; otherwise the mean logit
    ``margin`` decides, and ``|margin| <= tie_margin`` is a tie. The margin is in ``feedback``.

    PairRM reads the query and the two responses only: a ``reference`` answer or ``contexts``
    are not part of its input (the feedback says so when a reference is given).

    Args:
        model: A PairRM hub id or local path, loaded on first use (once, thread-safe); a loaded
            ranker given here (positionally) is taken as ``ranker``.
        ranker: A ready PairRanker (anything with ``compare``); used instead of ``model``.
        device: Where to load the model.
        tie_margin: Mean-logit margin at or below which the result is a tie.
        enforce_consensus: Call it a tie when the two orders disagree.

    Example:
        .. code-block:: python

            from llamaindex_blender import PairRankerEvaluator

            evaluator = PairRankerEvaluator(model="llm-blender/PairRM")
            result = evaluator.evaluate(
                query="What is 2 + 2?", response="4", second_response="5"
            )
            result.score  # 1.0: the first response is better
    """

    def __init__(
        self,
        model: Any = DEFAULT_RANKER,
        *,
        ranker: Any = None,
        device: str | None = None,
        tie_margin: float = 0.0,
        enforce_consensus: bool = True,
    ) -> None:
        if not isinstance(model, str | os.PathLike):
            # A loaded ranker given positionally (PairRankerEvaluator(ranker)) is the ranker.
            if ranker is not None:
                raise TypeError("give a loaded ranker once: as ranker= or as the first argument")
            model, ranker = DEFAULT_RANKER, model
        if ranker is not None and not callable(getattr(ranker, "compare", None)):
            raise TypeError(
                f"ranker must be a PairRanker (with compare), got {type(ranker).__name__}"
            )
        if tie_margin < 0:
            raise ValueError(f"tie_margin must be >= 0, got {tie_margin}")
        self._model = str(model)
        self._ranker: Lazy[Any] = Lazy(self._load_pairranker)
        if ranker is not None:
            self._ranker.set(ranker)
        self._device = device
        self._tie_margin = float(tie_margin)
        self._enforce_consensus = enforce_consensus

    def _get_prompts(self) -> PromptDictType:
        return {}

    def _update_prompts(self, prompts: PromptDictType) -> None:
        """PairRM has no prompts."""

    def load(self) -> Any:
        """The PairRanker, loaded on first call (once, under a lock)."""
        return self._ranker.get()

    def _load_pairranker(self) -> Any:
        from blender_core.pair_ranker import PairRanker

        return PairRanker.from_pretrained(self._model, device=self._device)

    def _logits(self, query: str, first: str, second: str) -> tuple[float, float]:
        """(logit that ``first`` beats ``second``, logit that ``second`` beats ``first``)."""
        ranker = self.load()
        compare_batch = getattr(ranker, "compare_batch", None)
        if callable(compare_batch):
            forward, backward = compare_batch(
                [query, query], [first, second], [second, first], both_directions=False
            )
        else:
            forward = ranker.compare(query, first, second, both_directions=False)
            backward = ranker.compare(query, second, first, both_directions=False)
        return float(forward), float(backward)

    def _result(
        self, query: str, response: str, second_response: str, reference: str | None
    ) -> EvaluationResult:
        forward, backward = self._logits(query, response, second_response)
        margin = (forward - backward) / 2
        note = " (PairRM does not read the reference answer)" if reference else ""
        detail = (
            f"PairRM logits: {forward:+.4f} (1 vs 2), {backward:+.4f} (2 vs 1); "
            f"margin {margin:+.4f}"
        )
        agree = forward * backward < 0  # each order prefers the same response
        passing: bool | None = None
        score, source = 0.5, EvaluationSource.ORIGINAL
        if self._enforce_consensus and not agree:
            verdict, source = "Inconclusive: the two orders disagree.", EvaluationSource.NEITHER
        elif abs(margin) <= self._tie_margin:
            verdict = f"Tie (|margin| <= {self._tie_margin})."
        else:
            passing = margin > 0
            score = 1.0 if passing else 0.0
            verdict = f"Response {'1' if passing else '2'} is better."
        return EvaluationResult(
            query=query,
            response=response,
            passing=passing,
            score=score,
            feedback=f"{verdict} {detail}{note}",
            pairwise_source=source,
        )

    async def aevaluate(
        self,
        query: str | None = None,
        response: str | None = None,
        contexts: Sequence[str] | None = None,
        second_response: str | None = None,
        reference: str | None = None,
        sleep_time_in_seconds: int = 0,
        **kwargs: Any,
    ) -> EvaluationResult:
        """Compare ``response`` with ``second_response`` for ``query`` (in a worker thread)."""
        del kwargs, contexts  # PairRM reads the query and the two responses only.
        if query is None or response is None or second_response is None:
            raise ValueError("query, response and second_response must all be provided")
        await asyncio.sleep(sleep_time_in_seconds)
        return await asyncio.to_thread(self._result, query, response, second_response, reference)
