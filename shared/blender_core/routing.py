"""A learned router: each member's chance to give the best answer, from the prompt alone.

The router reads a sentence embedding of the prompt (by default the MiniLM encoder the
consensus ranker ships with) and scores every member; a softmax over the members of an ensemble
gives each one's probability of writing the best answer. Two heads, both fitted in NumPy:

- ``softmax``: multinomial logistic regression, ``scores = x @ W + b``, trained with
  cross-entropy against the judge's best members (ties share the target);
- ``mf``: matrix factorisation as in RouteLLM, ``scores = (x @ P) @ V.T + b`` with a
  low-rank prompt projection ``P`` and member vectors ``V``, trained on pairwise wins
  (``P(a beats b) = sigmoid(score_a - score_b)``).

:func:`fit_router` with ``kind="auto"`` fits both on part of the training records, keeps the one
whose top-1 member has the higher held-out judge score, and refits it on all of them. Models are
saved and loaded as JSON like the member priors (``format`` field, atomic writes).

Example:
    .. code-block:: python

        from blender_core.routing import RouterModel, embed_prompts, fit_router

        model = fit_router(embed_prompts(records), records)
        model.save("router.json")
        RouterModel.load("router.json").probabilities(embed_prompts(["Say hi"]))
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from blender_core.data import MixRecord
from blender_core.io import atomic_write_text, check_format, read_json_file
from blender_core.lazy import Lazy

__all__ = [
    "ROUTER_FORMAT",
    "RouterKind",
    "RouterModel",
    "embed_prompts",
    "fit_router",
]

ROUTER_FORMAT = "llm-blender-kit/member-router@1"
"""The ``format`` field of a router file."""

RouterKind = Literal["softmax", "mf"]


def embed_prompts(prompts: Sequence[str | MixRecord], *, encoder: Any = None) -> np.ndarray:
    """Prompt embeddings (float32, L2-normalised) with the consensus ranker's MiniLM encoder.

    Args:
        prompts: Prompt texts, or MixInstruct records (their instruction and input).
        encoder: An object with ``embed(texts)`` (e.g. a loaded
            :class:`~blender_core.rankers.consensus.ConsensusRanker`); default: a new one on CPU.
    """
    from blender_core.rankers.baselines import record_prompt

    texts = [p if isinstance(p, str) else record_prompt(p) for p in prompts]
    if encoder is None:
        from blender_core.rankers.consensus import ConsensusRanker

        encoder = ConsensusRanker(device="cpu")
    if not texts:
        return np.zeros((0, 0), dtype=np.float32)
    return np.asarray(encoder.embed(texts), dtype=np.float32)


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


@dataclass(frozen=True)
class RouterModel:
    """A fitted router over named members.

    Attributes:
        kind: ``"softmax"`` or ``"mf"``.
        members: The member names, in the column order of the parameters.
        params: NumPy arrays: ``W`` (dim x members) and ``b`` for softmax; ``P`` (dim x rank),
            ``V`` (members x rank) and ``b`` for mf.
        encoder: The prompt encoder the model was trained with (``"minilm"``: the default).
        fitted_on: What the fit saw (data, records, held-out numbers, settings).
    """

    kind: RouterKind
    members: tuple[str, ...]
    params: Mapping[str, np.ndarray]
    encoder: str = "minilm"
    fitted_on: Mapping[str, Any] = field(default_factory=dict)
    _embedder: Lazy[Callable[[Sequence[str]], np.ndarray]] = field(
        init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        object.__setattr__(self, "_embedder", Lazy(self._minilm_embedder))
        if self.kind not in ("softmax", "mf"):
            raise ValueError(f"router kind must be 'softmax' or 'mf', got {self.kind!r}")
        if not self.members or len(set(self.members)) != len(self.members):
            raise ValueError(f"router members must be unique names, got {self.members!r}")
        need = ("W", "b") if self.kind == "softmax" else ("P", "V", "b")
        missing = [k for k in need if k not in self.params]
        if missing:
            raise ValueError(
                f"a {self.kind} router needs parameters {list(need)}, missing {missing}"
            )
        params = {k: np.asarray(v, dtype=np.float64) for k, v in self.params.items()}
        m = len(self.members)
        if params["b"].shape != (m,):
            raise ValueError(f"router bias has shape {params['b'].shape}, need ({m},)")
        if self.kind == "softmax" and (params["W"].ndim != 2 or params["W"].shape[1] != m):
            raise ValueError(f"router W has shape {params['W'].shape}, need (dim, {m})")
        if self.kind == "mf" and (
            params["P"].ndim != 2 or params["V"].shape != (m, params["P"].shape[1])
        ):
            raise ValueError(
                f"router P {params['P'].shape} and V {params['V'].shape} do not fit {m} members"
            )
        if not all(np.isfinite(v).all() for v in params.values()):
            raise ValueError("router parameters must be finite")
        object.__setattr__(self, "params", params)
        object.__setattr__(self, "members", tuple(self.members))

    @property
    def dim(self) -> int:
        """The embedding size the model reads."""
        return int(self.params["W" if self.kind == "softmax" else "P"].shape[0])

    def scores(self, embeddings: np.ndarray) -> np.ndarray:
        """Raw member scores, shape ``(prompts, members)``."""
        x = np.asarray(embeddings, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise ValueError(f"router embeddings must have shape (n, {self.dim}), got {x.shape}")
        p = self.params
        if self.kind == "softmax":
            return x @ p["W"] + p["b"]
        return (x @ p["P"]) @ p["V"].T + p["b"]

    def probabilities(
        self, embeddings: np.ndarray, *, members: Sequence[str] | None = None
    ) -> np.ndarray:
        """Each member's probability of the best answer, shape ``(prompts, len(members))``.

        Args:
            embeddings: Prompt embeddings from the router's encoder.
            members: The ensemble's members (default: all the router knows), renormalised over
                them. A member the router does not know gets the lowest score it knows.

        Raises:
            ValueError: Bad shapes, or none of ``members`` is known to the router.
        """
        scores = self.scores(embeddings)
        if members is None:
            return _softmax(scores)
        names = list(members)
        column = {m: k for k, m in enumerate(self.members)}
        known = [m for m in names if m in column]
        if not known:
            raise ValueError(
                f"the router knows none of the members {names}; it was trained on "
                f"{list(self.members)}"
            )
        floor = scores.min(axis=1)
        cols = [scores[:, column[m]] if m in column else floor for m in names]
        return _softmax(np.stack(cols, axis=1))

    def default_embedder(self) -> Callable[[Sequence[str]], np.ndarray]:
        """The embedding function of :attr:`encoder` (MiniLM, built once per router on first
        use and shared by every request and thread)."""
        if self.encoder != "minilm":
            raise ValueError(
                f"this router was trained on {self.encoder!r} embeddings: pass embed= to the policy"
            )
        return self._embedder.get()

    @staticmethod
    def _minilm_embedder() -> Callable[[Sequence[str]], np.ndarray]:
        from blender_core.rankers.consensus import ConsensusRanker

        encoder = ConsensusRanker(device="cpu")
        return lambda texts: embed_prompts(list(texts), encoder=encoder)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (see :meth:`save`)."""
        return {
            "format": ROUTER_FORMAT,
            "kind": self.kind,
            "encoder": self.encoder,
            "members": list(self.members),
            "params": {k: v.tolist() for k, v in self.params.items()},
            "fitted_on": dict(self.fitted_on),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RouterModel:
        """Read :meth:`to_dict`'s form; a clear ``ValueError`` for anything else."""
        data = check_format(data, ROUTER_FORMAT, "router")
        params = data.get("params")
        if not isinstance(params, Mapping):
            raise ValueError("'params' must map parameter names to arrays")
        try:
            arrays = {str(k): np.asarray(v, dtype=np.float64) for k, v in params.items()}
        except (TypeError, ValueError) as exc:
            raise ValueError(f"router parameters are not numeric arrays: {exc}") from exc
        return cls(
            kind=data.get("kind"),  # type: ignore[arg-type]
            members=tuple(str(m) for m in data.get("members") or ()),
            params=arrays,
            encoder=str(data.get("encoder", "minilm")),
            fitted_on=dict(data.get("fitted_on") or {}),
        )

    def save(self, path: str | Path) -> Path:
        """Write the model as JSON (atomically); returns the path."""
        target = Path(path)
        atomic_write_text(target, json.dumps(self.to_dict()) + "\n")
        return target

    @classmethod
    def load(cls, path: str | Path) -> RouterModel:
        """Read a file written by :meth:`save`."""
        return cls.from_dict(read_json_file(path, "router file"))


# -- fitting ------------------------------------------------------------------------------------


def _judge_matrix(records: Sequence[MixRecord], members: Sequence[str], metric: str) -> np.ndarray:
    column = {m: k for k, m in enumerate(members)}
    y = np.full((len(records), len(members)), np.nan)
    for r, record in enumerate(records):
        for candidate in record.candidates:
            if candidate.model in column:
                y[r, column[candidate.model]] = float(candidate.scores[metric])
    return y


class _Adam:
    def __init__(self, params: dict[str, np.ndarray], lr: float) -> None:
        self.params, self.lr, self.t = params, lr, 0
        self.m = {k: np.zeros_like(v) for k, v in params.items()}
        self.v = {k: np.zeros_like(v) for k, v in params.items()}

    def step(self, grads: Mapping[str, np.ndarray]) -> None:
        self.t += 1
        for k, g in grads.items():
            self.m[k] = 0.9 * self.m[k] + 0.1 * g
            self.v[k] = 0.999 * self.v[k] + 0.001 * g * g
            mh = self.m[k] / (1 - 0.9**self.t)
            vh = self.v[k] / (1 - 0.999**self.t)
            self.params[k] -= self.lr * mh / (np.sqrt(vh) + 1e-8)


def _fit_softmax(
    x: np.ndarray, y: np.ndarray, *, l2: float, steps: int, lr: float, tie: float
) -> dict[str, np.ndarray]:
    n, m = len(x), y.shape[1]
    known = ~np.isnan(y)
    filled = np.where(known, y, -np.inf)
    best = filled >= filled.max(axis=1, keepdims=True) - tie
    target = best / best.sum(axis=1, keepdims=True)
    params = {"W": np.zeros((x.shape[1], m)), "b": np.zeros(m)}
    opt = _Adam(params, lr)
    for _ in range(steps):
        p = _softmax(x @ params["W"] + params["b"])
        diff = (p - target) / n
        opt.step({"W": x.T @ diff + l2 * params["W"], "b": diff.sum(axis=0)})
    return params


def _fit_mf(
    x: np.ndarray,
    y: np.ndarray,
    *,
    l2: float,
    steps: int,
    lr: float,
    tie: float,
    rank: int,
    seed: int,
) -> dict[str, np.ndarray]:
    m = y.shape[1]
    rows, win, lose = [], [], []
    for r in range(len(y)):
        for a in range(m):
            for b in range(m):
                if not (np.isnan(y[r, a]) or np.isnan(y[r, b])) and y[r, a] > y[r, b] + tie:
                    rows.append(r)
                    win.append(a)
                    lose.append(b)
    if not rows:
        raise ValueError("no pairs with a judge-score gap to fit the mf router on")
    ri, wi, li = np.array(rows), np.array(win), np.array(lose)
    rng = np.random.default_rng(seed)
    params = {
        "P": rng.normal(0, 0.1, (x.shape[1], rank)),
        "V": rng.normal(0, 0.1, (m, rank)),
        "b": np.zeros(m),
    }
    opt = _Adam(params, lr)
    count = len(ri)
    for _ in range(steps):
        h = x @ params["P"]  # (n, rank)
        s = h @ params["V"].T + params["b"]
        z = s[ri, wi] - s[ri, li]
        g = -1.0 / (1.0 + np.exp(z)) / count  # d loss / d z of log(1 + exp(-z))
        gs = np.zeros_like(s)
        np.add.at(gs, (ri, wi), g)
        np.add.at(gs, (ri, li), -g)
        opt.step(
            {
                "P": x.T @ (gs @ params["V"]) + l2 * params["P"],
                "V": gs.T @ h + l2 * params["V"],
                "b": gs.sum(axis=0),
            }
        )
    return params


def _routed_score(model: RouterModel, x: np.ndarray, y: np.ndarray) -> float:
    pick = model.scores(x).argmax(axis=1)
    return float(np.nanmean(y[np.arange(len(y)), pick]))


def fit_router(
    embeddings: np.ndarray,
    records: Sequence[MixRecord],
    *,
    kind: RouterKind | Literal["auto"] = "auto",
    metric: str | None = None,
    l2: float = 1e-3,
    steps: int = 400,
    lr: float = 0.02,
    rank: int = 16,
    tie: float = 1e-9,
    holdout: float = 0.2,
    seed: int = 0,
    encoder: str = "minilm",
    data_name: str | None = None,
) -> RouterModel:
    """Fit a router on labelled records and their prompt embeddings.

    Args:
        embeddings: ``(len(records), dim)`` prompt embeddings (:func:`embed_prompts`).
        records: Labelled MixInstruct records (``candidate.model`` names the member).
        kind: ``"softmax"``, ``"mf"``, or ``"auto"``: fit both on ``1 - holdout`` of the
            records and keep the one whose top member scores higher on the rest.
        metric: The judge score (default: the one every candidate has).
        l2: L2 penalty on the weights.
        steps: Full-batch Adam steps.
        lr: Adam's learning rate.
        rank: The mf head's rank.
        tie: Judge scores within this of the best count as best (softmax) / as ties (mf).
        holdout: Share of the records held out by ``"auto"`` (and for the reported numbers).
        seed: Seed of the split and of the mf initialisation.
        encoder: The name of the prompt encoder, recorded in the file.
        data_name: A name for the data, recorded.

    Returns:
        The fitted model; ``fitted_on`` holds the held-out top-1 judge score of each kind tried
        and, beside it, that of the best single member (chosen on the rest).

    Raises:
        ValueError: No records, mismatched embeddings, or bad settings.
    """
    from blender_core.data import judge_metric

    records = list(records)
    x = np.asarray(embeddings, dtype=np.float64)
    if not records:
        raise ValueError("no records to fit the router on")
    if x.ndim != 2 or len(x) != len(records):
        raise ValueError(f"embeddings must be (records={len(records)}, dim), got {x.shape}")
    if kind not in ("auto", "softmax", "mf"):
        raise ValueError(f"router kind must be 'auto', 'softmax' or 'mf', got {kind!r}")
    if not 0.0 < holdout < 1.0:
        raise ValueError(f"holdout must be in (0, 1), got {holdout}")
    if steps < 1 or lr <= 0 or l2 < 0 or rank < 1:
        raise ValueError("steps and rank must be >= 1, lr > 0 and l2 >= 0")
    metric = metric or judge_metric(records)
    members = tuple(sorted({c.model for r in records for c in r.candidates}))
    y = _judge_matrix(records, members, metric)

    def fit(which: str, rows: np.ndarray) -> RouterModel:
        if which == "softmax":
            params = _fit_softmax(x[rows], y[rows], l2=l2, steps=steps, lr=lr, tie=tie)
        else:
            params = _fit_mf(
                x[rows], y[rows], l2=l2, steps=steps, lr=lr, tie=tie, rank=rank, seed=seed
            )
        return RouterModel(which, members, params, encoder=encoder)  # type: ignore[arg-type]

    order = np.random.default_rng(seed).permutation(len(records))
    cut = max(1, round(len(records) * (1.0 - holdout)))
    train_rows, held_rows = np.sort(order[:cut]), np.sort(order[cut:])
    tried: dict[str, float] = {}
    held_single = None
    if len(held_rows):
        best_member = int(np.nanargmax(np.nanmean(y[train_rows], axis=0)))
        held_single = float(np.nanmean(y[held_rows, best_member]))
        for which in ("softmax", "mf") if kind == "auto" else (kind,):
            model = fit(which, train_rows)
            tried[which] = _routed_score(model, x[held_rows], y[held_rows])
    chosen: RouterKind = "softmax"
    if kind != "auto":
        chosen = kind
    elif tried:
        chosen = "mf" if tried.get("mf", -math.inf) > tried.get("softmax", -math.inf) else "softmax"
    model = fit(chosen, np.arange(len(records)))
    means = np.nanmean(y, axis=0)
    train_top1 = _routed_score(model, x, y)
    if not math.isfinite(train_top1):
        raise ValueError("the router's fit produced no finite score")
    fitted_on = {
        "data": {"name": data_name, "records": len(records)},
        "metric": metric,
        "kind_requested": kind,
        "heldout_top1_judge": tried,
        "heldout_records": len(held_rows),
        "heldout_best_single_judge": held_single,
        "best_single_member": members[int(np.argmax(means))],
        "train_top1_judge": train_top1,
        "settings": {"l2": l2, "steps": steps, "lr": lr, "rank": rank, "tie": tie, "seed": seed},
    }
    return RouterModel(chosen, members, model.params, encoder=encoder, fitted_on=fitted_on)
