"""
Stampede protection against a real memcached: getOrCompute in two pools of this process and
in a child process racing on one key, invalidation served stale while one caller
recomputes, failed computations giving their lease back, and a lease whose holder died.

Each computation is held until the test has seen every racer either compute or wait for
the lease, so that the race always happens; every Deferred is checked to fire.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest_twisted
from twisted.internet.defer import Deferred, gatherResults

from tests.faults.support import Child, outcomes, turnsUntil
from txconnpool.memcache import MetaMemCachePool
from txconnpool.memcache.testing import MemcachedProcess

RACER = r"""
import sys
from twisted.internet import defer, stdio, task
from twisted.protocols.basic import LineReceiver
from txconnpool.memcache import MetaMemCachePool

endpoint, key = sys.argv[1], sys.argv[2].encode()
callers, lockTtl = int(sys.argv[3]), int(sys.argv[4])

class Control(LineReceiver):
    delimiter = b"\n"
    def __init__(self):
        self.waiting = {}
    def next(self, word):
        d = self.waiting[word] = defer.Deferred()
        return d
    def lineReceived(self, line):
        self.waiting.pop(line.decode()).callback(None)

def say(text):
    sys.stdout.write(text + "\n")
    sys.stdout.flush()

polled = []
def policy(attempt):
    if not polled:
        polled.append(attempt)
        say("polling")
    return 0.005 * 2 ** min(attempt, 3)

async def main(reactor):
    control = Control()
    stdio.StandardIO(control)
    pool = MetaMemCachePool(endpoint, leasePollPolicy=policy)
    await pool.version()
    go = control.next("go")
    say("ready")
    await go
    async def compute():
        say("computing")
        await control.next("release")
        return b"from the child"
    results = await defer.gatherResults(
        [pool.getOrCompute(key, compute, 60, lockTtl=lockTtl) for _ in range(callers)]
    )
    say("results " + repr(sorted(set(results))))
    await pool.close()

task.react(lambda reactor: defer.ensureDeferred(main(reactor)))
"""


class Racer:
    """
    One pool of this process in the race: its compute function, held until released, and
    whether it computed or waited for the lease.

    @ivar computed: How many times its compute function was called.
    @ivar status: Fires with C{"computing"} or C{"polling"}, whichever comes first.
    """

    def __init__(self, memcached: MemcachedProcess, value: bytes) -> None:
        self.value = value
        self.computed = 0
        self.held: list[Deferred[bytes]] = []
        self.status: Deferred[str] = Deferred()
        self.pool = MetaMemCachePool(memcached.endpoint, leasePollPolicy=self._policy)

    def _report(self, status: str) -> None:
        if not self.status.called:
            self.status.callback(status)

    def _policy(self, attempt: int) -> float:
        self._report("polling")
        return float(0.005 * 2 ** min(attempt, 3))

    def compute(self) -> Deferred[bytes]:
        """
        The compute function: counted, and held until L{release} or L{fail}.
        """
        self.computed += 1
        self._report("computing")
        d: Deferred[bytes] = Deferred()
        self.held.append(d)
        return d

    def failing(self, error: Exception) -> Callable[[], Deferred[bytes]]:
        """
        A compute function that fails with C{error} once released.
        """

        def compute() -> Deferred[bytes]:
            return self.compute().addCallback(lambda _: _raise(error))

        return compute

    def release(self) -> None:
        """
        Let the held computations finish with this racer's value.
        """
        held, self.held = self.held, []
        for d in held:
            d.callback(self.value)

    def calls(self, key: bytes, count: int, compute: Any = None) -> list[Deferred[bytes]]:
        """
        C{count} concurrent getOrCompute calls of C{key}.
        """
        return [
            self.pool.getOrCompute(key, compute or self.compute, 60, lockTtl=5)
            for _ in range(count)
        ]


def _raise(error: Exception) -> bytes:
    raise error


def firstOf(*ds: Deferred[str]) -> Deferred[str]:
    """
    A Deferred firing with the result of whichever of C{ds} fires first; the others' later
    outcomes (a child's unmet line fails when it exits) are swallowed.
    """
    first: Deferred[str] = Deferred()

    def fired(result: object) -> None:
        if isinstance(result, str) and not first.called:
            first.callback(result)

    for d in ds:
        d.addBoth(fired)
    return first


async def closeAll(*racers: Racer) -> None:
    for racer in racers:
        await racer.pool.close()


@pytest_twisted.ensureDeferred
async def test_computeRunsOnceAcrossPoolsAndProcesses(memcached: MemcachedProcess) -> None:
    """
    Two pools of this process (50 callers each) and a child process (20 callers) race on one
    cold key: exactly one of them computes, the others wait for its lease, and all 120
    callers get the value it computed.
    """
    key = b"meta-race"
    a, b = Racer(memcached, b"from pool a"), Racer(memcached, b"from pool b")
    await a.pool.delete(key)
    await b.pool.version()
    child = Child(RACER, memcached.endpoint, key.decode(), "20", "30")
    try:
        await child.line("ready")
        childStatus = firstOf(
            child.line("computing").addCallback(lambda _: "computing"),
            child.line("polling").addCallback(lambda _: "polling"),
        )
        child.write("go\n")
        calls = a.calls(key, 50) + b.calls(key, 50)
        statuses = await gatherResults([a.status, b.status, childStatus])
        assert sorted(statuses) == ["computing", "polling", "polling"]
        winner = statuses.index("computing")
        if winner == 2:
            child.write("release\n")
            expected = b"from the child"
        else:
            (a, b)[winner].release()
            expected = (a, b)[winner].value
        results = await outcomes(calls)
        assert results == [expected] * 100
        childResult = await child.line("results ")
        assert childResult == repr([expected])
        code, out, err = await child.exited
        assert code == 0, err
        assert a.computed + b.computed + out.count("computing") == 1
    finally:
        child.kill()
        await closeAll(a, b)


@pytest_twisted.ensureDeferred
async def test_invalidatedValueIsServedStaleWhileOneRecomputes(
    memcached: MemcachedProcess,
) -> None:
    """
    After invalidate, the callers of two pools get the old value at once while exactly one
    of them recomputes it; once it is stored, everyone gets the new value.
    """
    key = b"meta-revalidate"
    a, b = Racer(memcached, b"v2 from a"), Racer(memcached, b"v2 from b")
    try:
        assert await a.pool.set(key, b"v1", expireTime=60) is True
        assert await b.pool.invalidate(key) is True
        calls = a.calls(key, 30) + b.calls(key, 30)
        await turnsUntil(lambda: sum(d.called for d in calls) == 59)
        assert a.computed + b.computed == 1
        leader = next(d for d in calls if not d.called)
        assert [resultOf(d) for d in calls if d is not leader] == [b"v1"] * 59
        assert await b.pool.get(key) == (0, b"v1")
        winner = a if a.computed else b
        winner.release()
        assert await leader == winner.value
        assert await b.pool.getOrCompute(key, b.compute, 60) == winner.value
        assert await a.pool.get(key) == (0, winner.value)
        assert a.computed + b.computed == 1
        await outcomes(calls)
    finally:
        await closeAll(a, b)


@pytest_twisted.ensureDeferred
async def test_failedComputeReleasesTheLease(memcached: MemcachedProcess) -> None:
    """
    When the lease holder's computation fails, its callers fail with that error, the lease
    is given back, and a caller of another pool waiting for it takes it and computes.
    """
    key = b"meta-failing"
    a, b = Racer(memcached, b"unused"), Racer(memcached, b"from b")
    try:
        await a.pool.delete(key)
        failing = a.calls(key, 10, a.failing(RuntimeError("backend down")))
        assert await a.status == "computing"
        waiting = b.calls(key, 10)
        assert await b.status == "polling"
        a.release()
        failures = await outcomes(failing)
        assert all(f.check(RuntimeError) for f in failures)
        await turnsUntil(lambda: b.computed == 1)
        b.release()
        assert await outcomes(waiting) == [b"from b"] * 10
        assert await a.pool.get(key) == (0, b"from b")
        assert (a.computed, b.computed) == (1, 1)
    finally:
        await closeAll(a, b)


@pytest_twisted.ensureDeferred
async def test_failedRecomputeOfAStaleValueReleasesTheLease(
    memcached: MemcachedProcess,
) -> None:
    """
    When recomputing an invalidated value fails, the value is marked stale again: readers
    still get the old value, and the next caller recomputes it.
    """
    key = b"meta-failing-stale"
    a, b = Racer(memcached, b"unused"), Racer(memcached, b"v2")
    try:
        assert await a.pool.set(key, b"v1") is True
        assert await a.pool.invalidate(key) is True
        failing = a.calls(key, 1, a.failing(KeyError("gone")))
        assert await a.status == "computing"
        assert await b.pool.getOrCompute(key, b.compute, 60) == b"v1"
        a.release()
        (failure,) = await outcomes(failing)
        assert failure.check(KeyError)
        assert await b.pool.get(key) == (0, b"v1")
        recomputed = b.pool.getOrCompute(key, b.compute, 60)
        await turnsUntil(lambda: b.computed == 1)
        b.release()
        assert await recomputed == b"v2"
        assert (a.computed, b.computed) == (1, 1)
    finally:
        await closeAll(a, b)


@pytest_twisted.ensureDeferred
async def test_earlyRecacheAndStaleTtl(memcached: MemcachedProcess) -> None:
    """
    A value with fewer seconds left than staleTtl + earlyRecache is recomputed by one reader
    while the readers of another pool keep getting it, and the new value is stored for
    ttl + staleTtl seconds.
    """
    key = b"meta-early"
    a, b = Racer(memcached, b"recached"), Racer(memcached, b"unused")
    options = {"staleTtl": 20, "earlyRecache": 15}
    try:
        assert await a.pool.set(key, b"current", expireTime=30) is True
        leader = a.pool.getOrCompute(key, a.compute, 60, **options)
        assert await a.status == "computing"
        others = [b.pool.getOrCompute(key, b.compute, 60, **options) for _ in range(5)]
        assert await outcomes(others) == [b"current"] * 5
        a.release()
        assert await leader == b"recached"
        info = await a.pool.itemInfo(key)
        assert info is not None and 75 <= abs(int(info[b"exp"])) <= 80
        assert await b.pool.getOrCompute(key, b.compute, 60, **options) == b"recached"
        assert (a.computed, b.computed) == (1, 0)
    finally:
        await closeAll(a, b)


@pytest_twisted.ensureDeferred
async def test_leaseOfADeadProcessExpires(memcached: MemcachedProcess) -> None:
    """
    When the process holding a lease dies mid-computation, the lease ends after lockTtl
    and a waiting caller of this process takes it over and computes.
    """
    key = b"meta-orphaned"
    racer = Racer(memcached, b"taken over")
    await racer.pool.delete(key)
    child = Child(RACER, memcached.endpoint, key.decode(), "1", "1")
    try:
        await child.line("ready")
        child.write("go\n")
        await child.line("computing")
        child.kill()
        await child.exited
        d = racer.pool.getOrCompute(key, racer.compute, 60, lockTtl=1, waitTimeout=10)
        assert await racer.status == "polling"
        await turnsUntil(lambda: racer.computed == 1, deadline=10)
        racer.release()
        assert await d == b"taken over"
    finally:
        child.kill()
        await racer.pool.close()


def resultOf(d: Deferred[Any]) -> Any:
    """
    What a fired Deferred fired with.
    """
    box: list[Any] = []
    d.addBoth(box.append)
    assert box
    return box[0]
