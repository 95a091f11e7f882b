"""Preference pairs from rankings: the ``{"prompt", "chosen", "rejected"}`` rows DPO trains on.

A ranking of N candidates gives ordered (chosen, rejected) pairs by a policy:

- ``"best-worst"``: one pair per record, the top candidate against the bottom one;
- ``"all"``: every pair whose scores differ, N(N-1)/2 at most;
- ``"margin=X"``: every pair whose score gap is at least ``X`` (``X > 0``).

Pairs whose scores tie are never emitted (the ranker expressed no preference). Rows carry the
fields TRL's ``DPOTrainer`` reads (``prompt``, ``chosen``, ``rejected``) plus ``score_chosen``,
``score_rejected``, the record ``id`` and the two models' names.

Example:
    .. code-block:: python

        from blender_core import PairRanker
        from blender_core.preferences import preference_pairs

        ranking = ranker.rank("Say hi", ["hi!", "go away", "hello"])
        rows = preference_pairs("Say hi", ["hi!", "go away", "hello"], ranking, policy="all")
        rows[0]  # {"prompt": "Say hi", "chosen": ..., "rejected": ..., "score_chosen": ...}
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from blender_core.ranking import Ranking

__all__ = ["PAIR_FIELDS", "PairPolicy", "parse_pair_policy", "preference_pairs", "prompt_text"]

#: Fields of every preference-pair row, in output order.
PAIR_FIELDS = (
    "id",
    "prompt",
    "chosen",
    "rejected",
    "score_chosen",
    "score_rejected",
    "chosen_model",
    "rejected_model",
)


@dataclass(frozen=True)
class PairPolicy:
    """Which (chosen, rejected) pairs a ranking yields.

    Attributes:
        kind: ``"best-worst"``, ``"all"`` or ``"margin"``.
        margin: The minimum score gap of ``"margin"`` (0 for the others).
    """

    kind: Literal["best-worst", "all", "margin"]
    margin: float = 0.0

    def __str__(self) -> str:
        return f"margin={self.margin:g}" if self.kind == "margin" else self.kind


def parse_pair_policy(policy: str | PairPolicy) -> PairPolicy:
    """Parse ``"best-worst"``, ``"all"`` or ``"margin=X"`` (``X`` a positive number).

    Raises:
        ValueError: Naming the accepted spellings.
    """
    if isinstance(policy, PairPolicy):
        return policy
    text = str(policy).strip()
    if text in ("best-worst", "all"):
        return PairPolicy(text)  # type: ignore[arg-type]
    if text.startswith("margin="):
        try:
            margin = float(text.removeprefix("margin="))
        except ValueError:
            margin = math.nan
        if not math.isfinite(margin) or margin <= 0:
            raise ValueError(f"pair policy {text!r}: the margin must be a positive number")
        return PairPolicy("margin", margin)
    raise ValueError(f"unknown pair policy {text!r}: use best-worst, all or margin=X")


def prompt_text(instruction: str, input: str = "") -> str:
    """The DPO prompt of a MixInstruct record: the instruction, then the input on its own line."""
    return f"{instruction}\n{input}" if input else instruction


def preference_pairs(
    prompt: str,
    candidates: Sequence[str],
    ranking: Ranking,
    *,
    policy: str | PairPolicy = "best-worst",
    models: Sequence[str] | None = None,
    record_id: str | None = None,
) -> list[dict[str, Any]]:
    """The preference-pair rows of one ranked record, best pairs first.

    Args:
        prompt: The prompt text written to each row.
        candidates: The candidate texts, in the ranking's input order.
        ranking: Their :class:`~blender_core.ranking.Ranking`.
        policy: ``"best-worst"``, ``"all"``, ``"margin=X"`` or a :class:`PairPolicy`.
        models: The candidates' model names (default: ``candidate_<i>``).
        record_id: Written to each row's ``id`` (default: ``None``).

    Returns:
        Rows with the fields of :data:`PAIR_FIELDS`.
    """
    rule = parse_pair_policy(policy)
    n = len(ranking)
    if len(candidates) != n:
        raise ValueError(f"{len(candidates)} candidates for a ranking of {n}")
    names = list(models) if models is not None else [f"candidate_{i}" for i in range(n)]
    if len(names) != n:
        raise ValueError(f"{len(names)} model names for {n} candidates")
    scores = ranking.scores
    order = ranking.order
    if rule.kind == "best-worst":
        pairs = [(order[0], order[-1])] if n > 1 else []
    else:
        pairs = [(order[a], order[b]) for a in range(n) for b in range(a + 1, n)]
    threshold = rule.margin if rule.kind == "margin" else 0.0
    rows = []
    for i, j in pairs:
        gap = scores[i] - scores[j]
        if gap <= 0 or gap < threshold:
            continue
        rows.append(
            {
                "id": record_id,
                "prompt": prompt,
                "chosen": candidates[i],
                "rejected": candidates[j],
                "score_chosen": scores[i],
                "score_rejected": scores[j],
                "chosen_model": names[i],
                "rejected_model": names[j],
            }
        )
    return rows
