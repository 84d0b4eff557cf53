"""
A bounded chaos test: about twenty seconds of load through a MemCachePool (requests of every
kind, some cancelled, some on checked-out connections) while memcached is killed and
restarted on the same port several times, and hung once.
"""

from __future__ import annotations

import random
import signal
from collections import Counter
from typing import Any

import pytest_twisted
from twisted.internet.defer import ensureDeferred, gatherResults
from twisted.python.failure import Failure

from tests.faults.support import TYPED_ERRORS, Hung, kill, later, outcome, pause, reactor
from txconnpool import ProtocolError
from txconnpool.backoff import backoffPolicy
from txconnpool.memcache import MemCachePool
from txconnpool.memcache.testing import MemcachedProcess

CONCURRENCY = 300
MAX_DELAY = 0.5
KEYS = [b"chaos-%d" % (i,) for i in range(50)]

# (seconds of healthy load before the fault, the fault, seconds it lasts)
SCHEDULE = [
    (2.0, "kill", 0.4),
    (2.0, "kill", 1.5),
    (2.0, "pause", 1.5),
    (2.0, "kill", 0.1),
    (2.0, "kill", 2.0),
    (2.0, "kill", 0.8),
]
FINAL_HEALTHY = 1.5


def expected(key: bytes) -> bytes:
    return b"value-of-" + key


class Load:
    """
    Workers that each issue one request at a time, as fast as the pool answers, and record
    how every request settled.
    """

    def __init__(self, pool: MemCachePool) -> None:
        self.pool = pool
        self.running = True
        self.issued = 0
        self.succeeded = 0
        self.successTimes: list[float] = []
        self.errors: Counter[str] = Counter()
        self.untyped: list[Failure] = []
        self.wrong: list[Any] = []
        self.slowest = 0.0

    def request(self, rng: random.Random) -> tuple[Any, Any]:
        key = rng.choice(KEYS)
        kind = rng.randrange(20)
        if kind < 7:
            return self.pool.get(key), ("get", key)
        if kind < 11:
            return self.pool.set(key, expected(key)), ("set", key)
        if kind < 13:
            return self.pool.getMultiple(rng.sample(KEYS, 3)), ("getMultiple", key)
        if kind == 13:
            return self.pool.increment(b"chaos-counter"), ("increment", key)
        if kind == 14:
            return self.pool.delete(key), ("delete", key)
        if kind == 15:
            return self.pool.version(), ("version", key)
        if kind < 18:
            d = self.pool.get(key)
            reactor.callLater(rng.uniform(0, 0.01), d.cancel)
            return d, ("get", key)
        return ensureDeferred(self.checkout(key)), ("checkout", key)

    async def checkout(self, key: bytes) -> Any:
        """
        Check a connection out for two commands in a row.
        """
        async with self.pool.connection() as protocol:
            stored = await protocol.set(key, expected(key))
            got = await protocol.get(key)
        return stored, got

    def check(self, what: tuple[str, bytes], result: Any) -> bool:
        kind, key = what
        if kind == "get":
            return result in ((0, None), (0, expected(key)))
        if kind == "set":
            return result is True
        if kind == "getMultiple":
            return all(v in ((0, None), (0, expected(k))) for k, v in result.items())
        if kind == "increment":
            return result is False or isinstance(result, int)
        if kind == "delete":
            return result in (True, False)
        if kind == "checkout":
            return result[0] is True and result[1] in ((0, None), (0, expected(key)))
        return isinstance(result, bytes) and result.startswith(b"1.")

    async def worker(self, seed: int) -> None:
        rng = random.Random(seed)
        while self.running:
            d, what = self.request(rng)
            self.issued += 1
            started = reactor.seconds()
            (result,) = await outcome(d, deadline=10)
            now = reactor.seconds()
            self.slowest = max(self.slowest, now - started)
            if isinstance(result, Failure):
                if result.check(Hung) or not result.check(*TYPED_ERRORS):
                    self.untyped.append(result)
                self.errors[type(result.value).__name__] += 1
                await later(0.05)
            else:
                self.succeeded += 1
                self.successTimes.append(now)
                if not self.check(what, result):
                    self.wrong.append((what, result))
                await later(0)


@pytest_twisted.ensureDeferred
async def test_chaos(freshMemcached: MemcachedProcess) -> None:
    """
    Under load while memcached is killed and restarted on the same port, and hung once,
    every request settles with a right result or a typed error, and after each restart
    requests succeed again within the retry policy's maximum delay.
    """
    pool = MemCachePool(
        freshMemcached.endpoint,
        maxClients=20,
        connectTimeout=1.0,
        requestTimeout=1.0,
        acquireTimeout=2.0,
        retryPolicy=backoffPolicy(initialDelay=0.05, maxDelay=MAX_DELAY),
    )
    load = Load(pool)
    workers = [ensureDeferred(load.worker(seed)) for seed in range(CONCURRENCY)]
    recoveries: list[tuple[str, float]] = []
    try:
        for healthy, fault, lasting in SCHEDULE:
            await later(healthy)
            if fault == "kill":
                kill(freshMemcached)
                await later(lasting)
                freshMemcached.start()
            else:
                await pause(freshMemcached)
                await later(lasting)
                freshMemcached.signal(signal.SIGCONT)
            recoveries.append((fault, reactor.seconds()))
        await later(FINAL_HEALTHY)
    finally:
        load.running = False
        done = await outcome(gatherResults(workers), deadline=15)
        closed = await outcome(pool.close(), deadline=15)
        freshMemcached.signal(signal.SIGCONT)
    assert done == ([None] * CONCURRENCY,)
    assert closed == (None,)

    assert not load.untyped, load.untyped[:5]
    assert not load.wrong, load.wrong[:5]
    assert ProtocolError.__name__ not in load.errors
    assert load.slowest < 5.0

    delays = []
    for fault, back in recoveries:
        first = min((t for t in load.successTimes if t >= back), default=None)
        assert first is not None, f"no success after the {fault} at {back}"
        delays.append(first - back)
    assert max(delays) <= MAX_DELAY + 0.25, delays

    stats = pool.poolStats()
    assert (stats.busy, stats.idle, stats.connecting, stats.waiting) == (0, 0, 0, 0)
    assert stats.requests == load.issued
    assert stats.created == stats.closed
    assert load.succeeded > 10 * CONCURRENCY
    print(
        f"\nchaos: {load.issued} requests, {load.succeeded} succeeded, errors "
        f"{dict(load.errors)}, recovery delays {[round(d, 3) for d in delays]}, "
        f"slowest {load.slowest:.2f}s"
    )
