"""
L{PoolCollector}: a pool's statistics as Prometheus metrics, for C{prometheus_client}
(install C{txconnpool[prometheus]})::

    from prometheus_client import REGISTRY
    from txconnpool.prometheus import PoolCollector

    REGISTRY.register(PoolCollector(pool, name="cache"))

Every field of L{PoolStats<txconnpool.stats.PoolStats>} is exported, with the pool's name in
the C{pool} label:

  - gauges C{txconnpool_connections_busy}, C{txconnpool_connections_idle},
    C{txconnpool_connections_connecting}, C{txconnpool_requests_waiting},
    C{txconnpool_max_clients} and C{txconnpool_min_clients};
  - counters C{txconnpool_connections_created_total},
    C{txconnpool_connections_closed_total}, C{txconnpool_requests_total},
    C{txconnpool_requests_failed_total}, C{txconnpool_requests_waited_total},
    C{txconnpool_connects_attempted_total}, C{txconnpool_connects_failed_total}, and
    C{txconnpool_connections_discarded_total} with a C{reason} label for each field of
    L{DiscardCounts<txconnpool.stats.DiscardCounts>} (C{lost}, C{timeout}, C{keepalive}...);
  - gauges C{txconnpool_wait_seconds} and C{txconnpool_request_seconds} with a C{quantile}
    label (C{"0.5"}, C{"0.99"}, and C{"1"} for the maximum), and
    C{txconnpool_wait_window_samples} and C{txconnpool_request_window_samples}, the number of
    requests those quantiles cover.

The timings are quantiles of a sliding window (the latest 1024 requests), without the
cumulative count and sum that a Prometheus summary must carry, so they are gauges: graph them
as they are; C{rate()} does not apply to them. For rates, use the counters.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import attrs
from twisted.python.threadable import isInIOThread

from .pool import Pool
from .stats import DiscardCounts, LatencySummary, PoolStats

try:
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
    from prometheus_client.registry import Collector
except ImportError as e:  # pragma: no cover - exercised in a subprocess by the tests
    raise ImportError(
        "txconnpool.prometheus needs prometheus_client: pip install 'txconnpool[prometheus]'"
    ) from e

__all__ = ["PoolCollector"]

_GAUGES = (
    ("connections_busy", "busy", "Connections carrying a request, checked out, or pinged."),
    ("connections_idle", "idle", "Connections ready and unused."),
    ("connections_connecting", "connecting", "Connection attempts and handshakes under way."),
    ("requests_waiting", "waiting", "Requests waiting for a connection."),
    ("max_clients", "maxClients", "The most connections the pool opens at once."),
    ("min_clients", "minClients", "The connections the pool keeps open even when idle."),
)
_COUNTERS = (
    ("connections_created", "created", "Connections that became ready."),
    ("connections_closed", "closed", "Ready connections that left the pool."),
    ("requests", "requests", "Requests accepted."),
    ("requests_failed", "failedRequests", "Accepted requests that failed or were cancelled."),
    ("requests_waited", "requestsWaited", "Requests that waited in the queue."),
    ("connects_attempted", "connectsAttempted", "Connection attempts started."),
    ("connects_failed", "connectsFailed", "Connection attempts that failed or timed out."),
)
_TIMINGS = (
    ("wait", "waitTime", "waited for a connection"),
    ("request", "requestTime", "took once sent, until their reply"),
)
_QUANTILES = (("0.5", "p50"), ("0.99", "p99"), ("1", "max"))
_REASONS = tuple(field.name for field in attrs.fields(DiscardCounts))


class PoolCollector(Collector):
    """
    A C{prometheus_client} collector of the statistics of one or more pools.

    Register one collector per registry: a second would repeat the metric names, which the
    registry refuses. Export further pools from the same collector with L{add}.

    When C{collect()} is called from another thread than the reactor's (as
    C{prometheus_client.start_http_server} and C{prometheus_client.twisted.MetricsResource}
    do), the statistics are read on the reactor thread, waiting at most C{threadTimeout}
    seconds before reading them from the calling thread.

    @ivar threadTimeout: Seconds to wait for the reactor thread.
    """

    threadTimeout = 1.0

    def __init__(self, pool: Pool[Any], name: str = "cache") -> None:
        """
        @param pool: The pool to export.
        @param name: The pool's name, the value of the C{pool} label.

        @raise TypeError: An argument has the wrong type.
        @raise ValueError: C{name} is empty.
        """
        self._pools: dict[str, Pool[Any]] = {}
        self.add(pool, name)

    def add(self, pool: Pool[Any], name: str) -> None:
        """
        Export one more pool.

        @raise TypeError: An argument has the wrong type.
        @raise ValueError: C{name} is empty, or already names a pool of this collector.
        """
        if not isinstance(pool, Pool):
            raise TypeError(f"pool must be a txconnpool Pool, not {pool!r}")
        if not isinstance(name, str):
            raise TypeError(f"name must be a str, not {name!r}")
        if not name:
            raise ValueError("name must not be empty")
        if name in self._pools:
            raise ValueError(f"name {name!r} already names {self._pools[name]!r}")
        self._pools[name] = pool

    def describe(self) -> Iterator[Metric]:
        """
        @return: The metric families, without samples, so that a registry can check that no
            other collector exports the same names.
        """
        return _families({})

    def collect(self) -> Iterator[Metric]:
        """
        @return: The metric families with one sample per pool (per reason, or per quantile).
        """
        return _families({name: self._snapshot(pool) for name, pool in self._pools.items()})

    def _snapshot(self, pool: Pool[Any]) -> PoolStats:
        reactor = pool.reactor
        inReactorThread: bool = isInIOThread()  # type: ignore[no-untyped-call]
        if inReactorThread or not getattr(reactor, "running", False):
            return pool.poolStats()
        box: list[PoolStats] = []
        done = threading.Event()

        def take() -> None:
            try:
                box.append(pool.poolStats())
            finally:
                done.set()

        reactor.callFromThread(take)
        done.wait(self.threadTimeout)
        return box[0] if box else pool.poolStats()


def _families(snapshots: dict[str, PoolStats]) -> Iterator[Metric]:
    label = ["pool"]
    for suffix, field, doc in _GAUGES:
        gauge = GaugeMetricFamily(f"txconnpool_{suffix}", doc, labels=label)
        for name, stats in snapshots.items():
            gauge.add_metric([name], getattr(stats, field))
        yield gauge
    for suffix, field, doc in _COUNTERS:
        counter = CounterMetricFamily(f"txconnpool_{suffix}", doc, labels=label)
        for name, stats in snapshots.items():
            counter.add_metric([name], getattr(stats, field))
        yield counter
    discarded = CounterMetricFamily(
        "txconnpool_connections_discarded",
        "Connections closed or lost, by reason.",
        labels=["pool", "reason"],
    )
    for name, stats in snapshots.items():
        for reason in _REASONS:
            discarded.add_metric([name, reason], getattr(stats.discarded, reason))
    yield discarded
    for prefix, field, doc in _TIMINGS:
        quantiles = GaugeMetricFamily(
            f"txconnpool_{prefix}_seconds",
            f"How long recent requests {doc}: quantiles of a sliding window; 1 is the maximum.",
            labels=["pool", "quantile"],
        )
        samples = GaugeMetricFamily(
            f"txconnpool_{prefix}_window_samples",
            f"How many recent requests txconnpool_{prefix}_seconds covers.",
            labels=label,
        )
        for name, stats in snapshots.items():
            summary: LatencySummary = getattr(stats, field)
            for quantile, attribute in _QUANTILES:
                quantiles.add_metric([name, quantile], getattr(summary, attribute))
            samples.add_metric([name], summary.count)
        yield quantiles
        yield samples
