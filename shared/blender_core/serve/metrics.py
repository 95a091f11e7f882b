"""Prometheus metrics of the gateway (prometheus-client), in a registry of its own.

Names (all prefixed ``blender_``):

- ``requests_total{endpoint, model, status}`` and ``request_seconds{endpoint}``: every request.
- ``in_flight_requests``: requests being served; ``rejected_total{reason}``: 429s (``busy``),
  401s (``auth``), 413s (``too_large``) and 503s (``loading``).
- ``cancelled_total{endpoint}``: requests whose client went away (their member calls cancelled).
- ``stage_seconds{stage}``: ``generation`` (each member call), ``ranking``, ``fusion``.
- ``member_calls_total{member}`` and ``member_failures_total{member, kind}``.
- ``ranker_pairs_total{ranker}``, ``ranker_forward_calls_total{ranker}`` and
  ``ranker_batch_fill{ranker}`` (real / padded tokens) read from each PairRanker's own stats at
  scrape time; ``rank_batch_requests`` (requests that shared one ranking batch).
- ``tokens_total{kind}``: prompt and completion tokens reported by members.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

__all__ = ["CONTENT_TYPE", "Metrics"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)


class _RankerStats(Collector):
    """Reads ``PairRanker.stats`` of the served rankers when Prometheus scrapes."""

    def __init__(self) -> None:
        self.rankers: dict[str, Any] = {}

    def collect(self) -> Iterable[Any]:
        pairs = CounterMetricFamily(
            "blender_ranker_pairs", "Candidate pairs scored by the PairRanker", labels=["ranker"]
        )
        calls = CounterMetricFamily(
            "blender_ranker_forward_calls", "PairRanker forward passes (batches)", labels=["ranker"]
        )
        fill = GaugeMetricFamily(
            "blender_ranker_batch_fill",
            "Real tokens / computed (padded) tokens of the PairRanker batches",
            labels=["ranker"],
        )
        for name, ranker in self.rankers.items():
            stats = getattr(ranker, "stats", None)
            if stats is None:
                continue
            pairs.add_metric([name], float(stats.sequences))
            calls.add_metric([name], float(stats.forward_calls))
            fill.add_metric([name], float(stats.padding_efficiency))
        yield pairs
        yield calls
        yield fill


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
        self.rank_batch_requests = Histogram(
            "blender_rank_batch_requests",
            "Requests whose ranking shared one batch",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128),
            registry=r,
        )
        self.tokens = Counter("blender_tokens", "Tokens reported by members", ["kind"], registry=r)
        self.ranker_stats = _RankerStats()
        r.register(self.ranker_stats)

    def watch_rankers(self, rankers: Mapping[str, Any]) -> None:
        """Export the stats of these rankers (name -> ranker; those without stats are skipped)."""
        self.ranker_stats.rankers.update(rankers)

    def render(self) -> bytes:
        return generate_latest(self.registry)
