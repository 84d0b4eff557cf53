"""
One of three real memcached nodes killed under load: every Deferred fires, and only that node's
keys fail; with ejection, its keys move to the survivors, and the node comes back once its
server is restarted.
"""

from __future__ import annotations

import signal
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import defer, reactor
from twisted.logger import globalLogPublisher

from txconnpool.errors import ConnectionLostError, ServerUnavailableError
from txconnpool.memcache import MemCacheCluster, MemCachePool
from txconnpool.memcache.testing import MemcachedProcess

from ..cluster_support import startMemcacheds

WORKERS = 50
OPERATIONS = 40
KEYS = [b"load-%d" % i for i in range(300)]
OPTIONS: dict[str, Any] = {
    "maxClients": 4,
    "connectTimeout": 2.0,
    "requestTimeout": 5.0,
    "retryPolicy": lambda n: 0.05,
}


@pytest.fixture
def nodes(tmp_path: Path) -> Iterator[list[MemcachedProcess]]:
    """
    Three memcached servers of the test's own on free ports of 127.0.0.1.
    """
    processes = startMemcacheds(tmp_path, [("127.0.0.1", None)] * 3)
    yield processes
    for process in processes:
        process.stop()


def kill(server: MemcachedProcess) -> None:
    """
    SIGKILL a server and wait until it is gone.
    """
    server.signal(signal.SIGKILL)
    assert server.process is not None
    server.process.wait()


async def load(
    cluster: MemCacheCluster, onProgress: Callable[[int], None]
) -> list[tuple[bytes, MemCachePool, BaseException | None]]:
    """
    WORKERS callers each running OPERATIONS sets and gets back to back over KEYS; return each
    operation's key, the pool its key belonged to when it was sent, and its error or None.
    """
    outcomes: list[tuple[bytes, MemCachePool, BaseException | None]] = []

    async def worker(index: int) -> None:
        for i in range(OPERATIONS):
            key = KEYS[(index * 7 + i * 13) % len(KEYS)]
            pool = cluster.poolFor(key)
            op = cluster.set(key, b"v") if i % 2 else cluster.get(key)
            try:
                await op
                outcomes.append((key, pool, None))
            except Exception as e:
                outcomes.append((key, pool, e))
            onProgress(len(outcomes))

    await defer.gatherResults(
        [defer.Deferred.fromCoroutine(worker(i)) for i in range(WORKERS)]
    )
    return outcomes


def nextEvent(name: str, timeout: float = 20.0) -> defer.Deferred[dict[str, Any]]:
    """
    A Deferred firing with the next log event of that txconnpoolEvent, or failing after
    C{timeout} seconds.
    """
    d: defer.Deferred[dict[str, Any]] = defer.Deferred()

    def observer(event: dict[str, Any]) -> None:
        if event.get("txconnpoolEvent") == name and not d.called:
            d.callback(event)

    def giveUp() -> None:
        if not d.called:
            d.errback(defer.TimeoutError(f"no {name} event within {timeout}s"))

    timer = reactor.callLater(timeout, giveUp)  # type: ignore[attr-defined]

    def done(result: Any) -> Any:
        if timer.active():
            timer.cancel()
        reactor.callLater(0, globalLogPublisher.removeObserver, observer)  # type: ignore[attr-defined]
        return result

    globalLogPublisher.addObserver(observer)
    return d.addBoth(done)


@pytest_twisted.ensureDeferred
async def test_aKilledNodeFailsOnlyItsKeys(nodes: list[MemcachedProcess]) -> None:
    """
    Without ejection, killing one node under load fails only operations on its keys, with
    ConnectionLostError or ServerUnavailableError, and every operation completes.
    """
    cluster = MemCacheCluster([n.endpoint for n in nodes], **OPTIONS)
    victim = nodes[1]
    victimPool = list(cluster.pools.values())[1]
    killed: list[int] = []

    def onProgress(done: int) -> None:
        if done >= WORKERS * OPERATIONS // 4 and not killed:
            killed.append(done)
            kill(victim)

    try:
        outcomes = await load(cluster, onProgress)
        assert len(outcomes) == WORKERS * OPERATIONS
        failed = [(key, pool, e) for key, pool, e in outcomes if e is not None]
        assert failed, "the killed node's keys did not fail"
        assert all(pool is victimPool for _, pool, _ in failed)
        assert all(isinstance(e, (ConnectionLostError, ServerUnavailableError))
                   for _, _, e in failed)
        survivors = [o for o in outcomes if o[1] is not victimPool]
        assert survivors and all(e is None for _, _, e in survivors)
        assert cluster.poolStats().ejections == 0
    finally:
        await cluster.close()


@pytest_twisted.ensureDeferred
async def test_ejectionMovesKeysAndTheNodeComesBack(nodes: list[MemcachedProcess]) -> None:
    """
    With ejection, a node killed under load leaves the continuum: only operations sent to it
    fail, its keys are then served by the survivors, and once its server is back it is
    re-admitted and its keys go to it again.
    """
    cluster = MemCacheCluster(
        [n.endpoint for n in nodes], ejectAfter=3, retryTimeout=0.3, **OPTIONS
    )
    victim = nodes[0]
    victimPool = next(iter(cluster.pools.values()))
    victimKeys = [k for k in KEYS if cluster.poolFor(k) is victimPool]
    ejected = nextEvent("nodeEjected")
    killed: list[int] = []

    def onProgress(done: int) -> None:
        if done >= WORKERS * OPERATIONS // 4 and not killed:
            killed.append(done)
            kill(victim)

    try:
        outcomes = await load(cluster, onProgress)
        assert len(outcomes) == WORKERS * OPERATIONS
        failed = [(key, pool, e) for key, pool, e in outcomes if e is not None]
        assert failed and all(pool is victimPool for _, pool, _ in failed)
        event = await ejected
        assert event["node"] == victim.endpoint.removeprefix("tcp:")
        stats = cluster.poolStats()
        assert (stats.liveNodes, stats.node(event["node"]).ejections) == (2, 1)

        assert all(cluster.poolFor(k) is not victimPool for k in victimKeys)
        assert all(await defer.gatherResults([cluster.set(k, b"moved") for k in victimKeys]))
        assert await cluster.getMultiple(victimKeys) == {k: (0, b"moved") for k in victimKeys}

        readmitted = nextEvent("nodeReadmitted")
        victim.start()
        await readmitted
        assert all(cluster.poolFor(k) is victimPool for k in victimKeys)
        assert await cluster.getMultiple(victimKeys) == {k: (0, None) for k in victimKeys}
        assert all(await defer.gatherResults([cluster.set(k, b"home") for k in victimKeys]))
        assert await victimPool.getMultiple(victimKeys) == {
            k: (0, b"home") for k in victimKeys
        }
        node = cluster.poolStats().node(event["node"])
        assert (node.ejected, node.ejections, node.readmissions) == (False, 1, 1)
    finally:
        await cluster.close()
