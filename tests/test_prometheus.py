"""
Unit tests of PoolCollector: every statistic of a pool as a Prometheus metric, parsed back
from the text exposition and compared with poolStats().
"""

from __future__ import annotations

import queue
import subprocess
import sys
import threading
from typing import Any

import attrs
import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as openMetrics
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as parseOpenMetrics,
)
from prometheus_client.parser import text_string_to_metric_families
from twisted.internet.error import ConnectionLost

from txconnpool import Pool, PoolStats
from txconnpool.prometheus import PoolCollector
from txconnpool.stats import DiscardCounts

from .helpers import Harness, makePool

GAUGES = {
    "busy": "txconnpool_connections_busy",
    "idle": "txconnpool_connections_idle",
    "connecting": "txconnpool_connections_connecting",
    "waiting": "txconnpool_requests_waiting",
    "maxClients": "txconnpool_max_clients",
    "minClients": "txconnpool_min_clients",
}
COUNTERS = {
    "created": "txconnpool_connections_created",
    "closed": "txconnpool_connections_closed",
    "requests": "txconnpool_requests",
    "failedRequests": "txconnpool_requests_failed",
    "requestsWaited": "txconnpool_requests_waited",
    "connectsAttempted": "txconnpool_connects_attempted",
    "connectsFailed": "txconnpool_connects_failed",
}
TIMINGS = {"waitTime": "txconnpool_wait", "requestTime": "txconnpool_request"}


def scrape(registry: CollectorRegistry) -> dict[str, Any]:
    """
    Expose a registry as Prometheus text and parse it back into metric families by name.
    """
    text = generate_latest(registry).decode()
    return {family.name: family for family in text_string_to_metric_families(text)}


def samples(family: Any) -> dict[tuple[tuple[str, str], ...], float]:
    """
    The values of a metric family's samples, by their sorted labels.
    """
    return {tuple(sorted(s.labels.items())): s.value for s in family.samples}


def expectedSamples(stats: PoolStats, pool: str) -> dict[str, dict[Any, float]]:
    """
    The samples the collector must export for C{stats}, by metric family.
    """
    label = (("pool", pool),)
    expected: dict[str, dict[Any, float]] = {}
    for field, name in {**GAUGES, **COUNTERS}.items():
        expected[name] = {label: getattr(stats, field)}
    expected["txconnpool_connections_discarded"] = {
        (("pool", pool), ("reason", reason)): value
        for reason, value in attrs.asdict(stats.discarded).items()
    }
    for field, prefix in TIMINGS.items():
        summary = getattr(stats, field)
        expected[f"{prefix}_seconds"] = {
            (("pool", pool), ("quantile", q)): getattr(summary, attribute)
            for q, attribute in (("0.5", "p50"), ("0.99", "p99"), ("1", "max"))
        }
        expected[f"{prefix}_window_samples"] = {label: summary.count}
    return expected


def busyPool() -> Harness:
    """
    A pool with something in every statistic but idle: connections busy and connecting,
    requests waiting, done, failed and waited, failed connection attempts, a discarded
    connection, and timings.
    """
    h = makePool(maxClients=3, minClients=1, connectTimeout=None)
    outcomes: list[Any] = []
    first = h.connect()
    for value in "abcd":
        h.pool.performRequest("ask", value).addBoth(outcomes.append)
    second = h.connect()
    h.clock.advance(0.25)
    first.answer()
    h.attemptFor(second).lose(ConnectionLost())
    h.clock.advance(1)
    h.endpoint.pending()[0].fail()
    for value in "efg":
        h.pool.performRequest("ask", value).addBoth(outcomes.append)
    h.clock.advance(1)
    return h


def test_everyStatisticIsExported() -> None:
    """
    Each field of PoolStats is exported with the pool's name as a label, with its value.
    """
    h = busyPool()
    registry = CollectorRegistry()
    registry.register(PoolCollector(h.pool, name="cache"))
    families = scrape(registry)
    stats = h.pool.poolStats()
    assert {f.name for f in attrs.fields(PoolStats)} == {
        *GAUGES, *COUNTERS, *TIMINGS, "discarded",
    }
    assert stats.busy and stats.connecting and stats.waiting
    assert stats.failedRequests and stats.requestsWaited and stats.connectsFailed
    assert stats.discarded.lost and stats.requestTime.count and stats.requestTime.max
    expected = expectedSamples(stats, "cache")
    assert {name: samples(families[name]) for name in expected} == expected
    assert set(families) == set(expected)


def test_metricTypes() -> None:
    """
    Current sizes are gauges, totals are counters (exposed with _total), and the timing
    quantiles are gauges.
    """
    registry = CollectorRegistry()
    registry.register(PoolCollector(busyPool().pool))
    families = scrape(registry)
    for name in GAUGES.values():
        assert families[name].type == "gauge"
    for name in [*COUNTERS.values(), "txconnpool_connections_discarded"]:
        assert families[name].type == "counter"
        assert {s.name for s in families[name].samples} == {name + "_total"}
    for prefix in TIMINGS.values():
        assert families[f"{prefix}_seconds"].type == "gauge"
        assert families[f"{prefix}_window_samples"].type == "gauge"


def test_discardReasonsAreOneFamily() -> None:
    """
    Discarded connections are one counter family with a sample for every reason, zero or not.
    """
    h = busyPool()
    registry = CollectorRegistry()
    registry.register(PoolCollector(h.pool))
    family = scrape(registry)["txconnpool_connections_discarded"]
    byReason = {s.labels["reason"]: s.value for s in family.samples}
    assert set(byReason) == {f.name for f in attrs.fields(DiscardCounts)}
    assert byReason["lost"] == 1
    assert sum(byReason.values()) == 1


def test_valuesFollowThePool() -> None:
    """
    Each scrape reads the pool anew.
    """
    h = makePool(maxClients=2)
    registry = CollectorRegistry()
    registry.register(PoolCollector(h.pool))
    assert samples(scrape(registry)["txconnpool_requests"]) == {(("pool", "cache"),): 0}
    h.pool.performRequest("echo", 1)
    h.connect()
    families = scrape(registry)
    assert samples(families["txconnpool_requests"]) == {(("pool", "cache"),): 1}
    assert samples(families["txconnpool_connections_idle"]) == {(("pool", "cache"),): 1}


def test_severalPoolsInOneCollector() -> None:
    """
    add() exports another pool from the same collector, each pool under its own label.
    """
    cache, sessions = busyPool(), makePool(maxClients=7)
    collector = PoolCollector(cache.pool, name="cache")
    collector.add(sessions.pool, "sessions")
    registry = CollectorRegistry()
    registry.register(collector)
    families = scrape(registry)
    for pool, h in (("cache", cache), ("sessions", sessions)):
        for name, values in expectedSamples(h.pool.poolStats(), pool).items():
            assert values.items() <= samples(families[name]).items()
    assert samples(families["txconnpool_max_clients"]) == {
        (("pool", "cache"),): 3,
        (("pool", "sessions"),): 7,
    }


def test_secondCollectorInARegistryIsRefused() -> None:
    """
    A registry refuses a second collector, whose metric names would repeat the first's.
    """
    registry = CollectorRegistry()
    registry.register(PoolCollector(makePool().pool, name="cache"))
    with pytest.raises(ValueError, match="Duplicated timeseries"):
        registry.register(PoolCollector(makePool().pool, name="sessions"))


@pytest.mark.parametrize(
    ("pool", "name", "error", "message"),
    [
        (None, "cache", TypeError, "pool must be a txconnpool Pool"),
        ("pool", b"cache", TypeError, "name must be a str"),
        ("pool", "", ValueError, "name must not be empty"),
        ("pool", "first", ValueError, "name 'first' already names"),
    ],
)
def test_badArguments(pool: Any, name: Any, error: type[Exception], message: str) -> None:
    """
    Bad arguments to add() raise an error that names the argument.
    """
    collector = PoolCollector(makePool().pool, name="first")
    with pytest.raises(error, match=message):
        collector.add(makePool().pool if pool == "pool" else pool, name)


class _ThreadRecordingPool(Pool[Any]):
    """
    A pool that records the thread each statistics snapshot is taken on.
    """

    threads: list[int]

    def poolStats(self) -> PoolStats:
        self.threads.append(threading.get_ident())
        return Pool.poolStats(self)


def runningPool() -> tuple[_ThreadRecordingPool, queue.Queue[Any]]:
    """
    A pool on a fake reactor that says it is running and queues what callFromThread gets.
    """
    h = makePool(poolClass=_ThreadRecordingPool)
    pool: Any = h.pool
    pool.threads = []
    calls: queue.Queue[Any] = queue.Queue()
    h.clock.running = True
    h.clock.callFromThread = lambda f, *args: calls.put((f, args))  # type: ignore[attr-defined]
    return pool, calls


def collectInThread(collector: PoolCollector) -> tuple[threading.Thread, list[Any]]:
    """
    Run collect() in a new thread, as an HTTP exporter does.
    """
    result: list[Any] = []
    thread = threading.Thread(target=lambda: result.extend(collector.collect()))
    thread.start()
    return thread, result


def test_collectOffTheReactorThreadReadsOnTheReactorThread() -> None:
    """
    collect() called from another thread takes the snapshot on the reactor's thread.
    """
    pool, calls = runningPool()
    collector = PoolCollector(pool)
    thread, result = collectInThread(collector)
    f, args = calls.get(timeout=10)
    f(*args)
    thread.join(10)
    assert not thread.is_alive()
    assert pool.threads == [threading.get_ident()]
    assert {m.name for m in result} >= set(GAUGES.values())


def test_collectOffTheReactorThreadWhenTheReactorIsStuck() -> None:
    """
    When the reactor thread does not answer within threadTimeout, collect() reads the
    statistics from its own thread.
    """
    pool, calls = runningPool()
    collector = PoolCollector(pool)
    collector.threadTimeout = 0.01
    thread, result = collectInThread(collector)
    thread.join(10)
    assert not thread.is_alive()
    assert len(pool.threads) == 1 and pool.threads[0] != threading.get_ident()
    assert calls.qsize() == 1
    assert {m.name for m in result} >= set(GAUGES.values())


def test_txconnpoolWithoutPrometheusClient() -> None:
    """
    txconnpool imports without prometheus_client; txconnpool.prometheus says which extra
    to install.
    """
    program = """
import sys
sys.modules["prometheus_client"] = None
import txconnpool, txconnpool.service, txconnpool.memcache
try:
    import txconnpool.prometheus
except ImportError as e:
    print(e)
"""
    out = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, timeout=60, check=True
    ).stdout
    assert "pip install 'txconnpool[prometheus]'" in out


def test_openMetricsExposition() -> None:
    """
    The OpenMetrics exposition, which Prometheus may ask for, parses back to the same values.
    """
    h = busyPool()
    registry = CollectorRegistry()
    registry.register(PoolCollector(h.pool))
    families = {f.name: f for f in parseOpenMetrics(openMetrics(registry).decode())}
    expected = expectedSamples(h.pool.poolStats(), "cache")
    assert {name: samples(families[name]) for name in expected} == expected
