"""Prometheus metrics of the gateway (prometheus-client), in a registry of its own.

Names (all prefixed ``blender_``):

- ``requests_total{endpoint, model, status}`` and ``request_seconds{endpoint}``: every request.
- ``in_flight_requests``: requests being served; ``rejected_total{reason}``: 429s (``busy``),
  401s (``auth``), 413s (``too_large``) and 503s (``loading``).
- ``cancelled_total{endpoint}``: requests whose client went away (their member calls cancelled).
- ``stage_seconds{stage}``: ``generation`` (each member call), ``ranking``, ``fusion``.
- ``member_calls_total{member}`` and ``member_failures_total{member, kind}``.
- From each PairRanker's own stats (:class:`~blender_core.pair_ranker.PairRankerStats`), read at
  scrape time: ``ranker_pairs_total{ranker}``, ``ranker_forward_calls_total{ranker}``,
  ``ranker_rounds_total{ranker}`` and ``ranker_requests_total{ranker}`` (scheduling rounds and the
  caller requests they served: concurrent requests share rounds), ``ranker_requests_per_round``,
  ``ranker_batch_fill{ranker}`` (computed / budget tokens of the forward calls) and
  ``ranker_padding_efficiency{ranker}`` (real / computed tokens).
- ``tokens_total{kind}``: prompt and completion tokens reported by members.
- Policies (which members a blend calls, ``[ensembles.NAME] policy``):
  ``ensemble_member_calls_total{ensemble, member}`` (the calls an ensemble's policy made),
  ``member_calls_saved_total{ensemble, policy}`` (members not called, against calling all),
  ``member_skips_total{ensemble, member, reason}`` (why a member was not called),
  ``policy_stops_total{ensemble, policy, reason}`` (why a blend called no more members) and
  ``member_cost_total{ensemble, member}`` (the calls' price from the ensemble's ``costs``).
  Ensembles and members come from the configuration and reasons from a fixed set, so the
  label sets stay bounded.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

__all__ = ["CONTENT_TYPE", "POLICY_REASONS", "Metrics"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

POLICY_REASONS = frozenset(
    {
        "all_called",
        "confident",
        "budget",
        "max_members",
        "latency_budget",
        "routed",
        "not_routed",
        "rank_error",
    }
)
"""The stop and skip reasons of :mod:`blender_core.policies` (any other counts as ``other``)."""

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)


_RANKER_STATS: tuple[tuple[str, type[CounterMetricFamily | GaugeMetricFamily], str, str], ...] = (
    # (PairRankerStats field, family, metric name, help)
    (
        "sequences",
        CounterMetricFamily,
        "blender_ranker_pairs",
        "Candidate pairs scored by the PairRanker",
    ),
    (
        "forward_calls",
        CounterMetricFamily,
        "blender_ranker_forward_calls",
        "PairRanker forward passes (batches)",
    ),
    (
        "rounds",
        CounterMetricFamily,
        "blender_ranker_rounds",
        "PairRanker scheduling rounds (each serves every caller with pending pairs)",
    ),
    (
        "requests",
        CounterMetricFamily,
        "blender_ranker_requests",
        "Caller requests served by the PairRanker's rounds",
    ),
    (
        "requests_per_round",
        GaugeMetricFamily,
        "blender_ranker_requests_per_round",
        "Mean caller requests sharing a PairRanker round (> 1: requests coalesced)",
    ),
    (
        "batch_fill",
        GaugeMetricFamily,
        "blender_ranker_batch_fill",
        "Computed tokens / token budget of the PairRanker forward calls",
    ),
    (
        "padding_efficiency",
        GaugeMetricFamily,
        "blender_ranker_padding_efficiency",
        "Real tokens / computed (padded) tokens of the PairRanker forward calls",
    ),
)


class _RankerStats(Collector):
    """Reads ``PairRanker.stats`` of the served rankers when Prometheus scrapes."""

    def __init__(self) -> None:
        self.rankers: dict[str, Any] = {}

    def collect(self) -> Iterable[Any]:
        families = {
            field: family(name, help_text, labels=["ranker"])
            for field, family, name, help_text in _RANKER_STATS
        }
        for name, ranker in self.rankers.items():
            stats = getattr(ranker, "stats", None)
            if stats is None:
                continue
            for field, metric in families.items():
                metric.add_metric([name], float(getattr(stats, field)))
        yield from families.values()


class Metrics:
    """The gateway's metrics; :meth:`render` is the ``/metrics`` body."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "blender_requests", "Requests served", ["endpoint", "model", "status"], registry=r
        )
        self.request_seconds = Histogram(
            "blender_request_seconds",
            "Request latency",
            ["endpoint"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.in_flight = Gauge("blender_in_flight_requests", "Requests in flight", registry=r)
        self.rejected = Counter(
            "blender_rejected", "Requests refused before any work", ["reason"], registry=r
        )
        self.cancelled = Counter(
            "blender_cancelled", "Requests whose client disconnected", ["endpoint"], registry=r
        )
        self.stage_seconds = Histogram(
            "blender_stage_seconds",
            "Seconds per blend stage",
            ["stage"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.member_calls = Counter(
            "blender_member_calls", "Member calls made", ["member"], registry=r
        )
        self.member_failures = Counter(
            "blender_member_failures", "Member calls that failed", ["member", "kind"], registry=r
        )
        self.tokens = Counter("blender_tokens", "Tokens reported by members", ["kind"], registry=r)
        self.ensemble_member_calls = Counter(
            "blender_ensemble_member_calls",
            "Member calls an ensemble's policy made",
            ["ensemble", "member"],
            registry=r,
        )
        self.calls_saved = Counter(
            "blender_member_calls_saved",
            "Member calls a policy did not make (against calling every member)",
            ["ensemble", "policy"],
            registry=r,
        )
        self.member_skips = Counter(
            "blender_member_skips",
            "Members a policy did not call, by reason",
            ["ensemble", "member", "reason"],
            registry=r,
        )
        self.policy_stops = Counter(
            "blender_policy_stops",
            "Blends whose policy called no more members, by reason",
            ["ensemble", "policy", "reason"],
            registry=r,
        )
        self.member_cost = Counter(
            "blender_member_cost",
            "Price of the member calls (the ensemble's costs)",
            ["ensemble", "member"],
            registry=r,
        )
        self.ranker_stats = _RankerStats()
        r.register(self.ranker_stats)

    def watch_rankers(self, rankers: Mapping[str, Any]) -> None:
        """Export the stats of these rankers (name -> ranker; those without stats are skipped)."""
        self.ranker_stats.rankers.update(rankers)

    def record_calls(self, ensemble: str, report: Any) -> None:
        """Count a blend's member calls (a :class:`~blender_core.staging.CallReport`)."""
        policy = str(report.policy)
        for member in report.called:
            self.ensemble_member_calls.labels(ensemble, member).inc()
        self.calls_saved.labels(ensemble, policy).inc(report.calls_saved)
        for member, reason in report.skipped.items():
            self.member_skips.labels(ensemble, member, _bounded(reason)).inc()
        self.policy_stops.labels(ensemble, policy, _bounded(report.stop_reason)).inc()
        for member, price in report.cost.items():
            self.member_cost.labels(ensemble, member).inc(max(0.0, float(price)))

    def render(self) -> bytes:
        """The ``/metrics`` body (Prometheus text format)."""
        return generate_latest(self.registry)


def _bounded(reason: str) -> str:
    return reason if reason in POLICY_REASONS else "other"
