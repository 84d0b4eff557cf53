"""
Unit tests for the stampede protection behind C{MetaMemCachePool.getOrCompute}: the lease
decisions, the in-pool sharing of a key's read, polling with backoff, timeouts and failures;
driven synchronously on a L{Clock}, with the server's lease replies scripted.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import pytest
from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock

from txconnpool.errors import ConnectionLostError, PoolClosedError
from txconnpool.memcache.errors import (
    InvalidArgumentError,
    InvalidTypeError,
    InvalidValueError,
)
from txconnpool.memcache.meta import LeaseReply, LeaseTimeoutError
from txconnpool.memcache.meta._checks import checkKey
from txconnpool.memcache.meta._stampede import StampedeGuard

from .helpers import assertNoResult, failureOf, resultOf

WON = LeaseReply(None, b"5", won=True, stale=False, leased=False)
TAKEN = LeaseReply(None, b"5", won=False, stale=False, leased=True)
NOTHING = LeaseReply(None, b"", won=False, stale=False, leased=False)


def hit(value: bytes) -> LeaseReply:
    """
    The reply for a fresh value.
    """
    return LeaseReply(value, b"6", won=False, stale=False, leased=False)


class ScriptedPool:
    """
    Stands for the pool: records each request, and lets the test answer it.
    """

    def __init__(self) -> None:
        self.requests: list[tuple[str, tuple[Any, ...], Deferred[Any]]] = []

    def performRequest(self, method: str, *args: Any, **kwargs: Any) -> Deferred[Any]:
        d: Deferred[Any] = Deferred()
        self.requests.append((method, args, d))
        return d

    def methods(self) -> list[str]:
        """
        The methods requested so far.
        """
        return [method for method, _, _ in self.requests]

    def answer(self, method: str, result: Any) -> tuple[Any, ...]:
        """
        Answer the oldest unanswered request, which must be for C{method}; return its
        arguments.
        """
        for name, args, d in self.requests:
            if not d.called:
                assert name == method, f"the next request is {name}, not {method}"
                d.callback(result)
                return args
        raise AssertionError("no request is waiting")

    def fail(self, method: str, error: Exception) -> None:
        """
        Fail the oldest unanswered request, which must be for C{method}.
        """
        for name, _, d in self.requests:
            if not d.called:
                assert name == method
                d.errback(error)
                return
        raise AssertionError("no request is waiting")


def guard(
    delays: tuple[float, ...] = (0.01, 0.02, 0.04),
) -> tuple[StampedeGuard, ScriptedPool, Clock]:
    """
    A guard over a scripted pool, on a fresh clock, polling after C{delays} (the last one
    repeated).
    """
    pool = ScriptedPool()
    clock = Clock()
    policy = lambda attempt: delays[min(attempt, len(delays) - 1)]  # noqa: E731
    return StampedeGuard(pool, clock, policy, partial(checkKey, base64Keys=False)), pool, clock


def call(g: StampedeGuard, compute: Any, key: Any = b"k", ttl: int = 60, **kw: Any) -> Any:
    """
    getOrCompute with the defaults of the pool's method.
    """
    options = {"lockTtl": 30, "staleTtl": 0, "earlyRecache": 0, "waitTimeout": None, **kw}
    return g.getOrCompute(key, compute, ttl, **options)


class Computer:
    """
    A compute function whose calls are counted and whose results the test controls.
    """

    def __init__(self) -> None:
        self.calls = 0
        self.results: list[Deferred[Any]] = []

    def __call__(self) -> Deferred[Any]:
        self.calls += 1
        d: Deferred[Any] = Deferred()
        self.results.append(d)
        return d


def test_missComputesOnceUnderTheLeaseAndStores() -> None:
    """
    The caller that wins the lease of a missing key computes the value, stores it with the
    lease's CAS token for ttl seconds, and fires with it.
    """
    g, pool, clock = guard()
    compute = Computer()
    d = call(g, compute)
    assert pool.answer("leaseGet", WON) == (b"k", 30, 0)
    assert compute.calls == 1
    compute.results[0].callback(b"value")
    assert pool.answer("leaseStore", True) == (b"k", b"value", 60, b"5", 0)
    assert resultOf(d) == b"value"
    assert clock.getDelayedCalls() == []


def test_callersOfOneKeyShareOneRead() -> None:
    """
    Concurrent callers of one key in one pool (with bytes or str keys) share one lease read
    and one computation, and all fire with the value.
    """
    g, pool, _ = guard()
    compute = Computer()
    calls = [call(g, compute, key) for key in (b"k", "k", b"k")]
    other = call(g, lambda: b"other", b"j")
    assert pool.methods() == ["leaseGet", "leaseGet"]
    pool.answer("leaseGet", WON)
    compute.results[0].callback(b"v")
    pool.answer("leaseGet", hit(b"j-value"))
    pool.answer("leaseStore", True)
    assert [resultOf(d) for d in calls] == [b"v", b"v", b"v"]
    assert resultOf(other) == b"j-value"
    assert compute.calls == 1


def test_waitsWithBackoffWhileAnotherClientComputes() -> None:
    """
    While another client holds the lease of a missing key, the caller polls after the
    policy's growing delays, and fires with the value once it is there, computing nothing.
    """
    g, pool, clock = guard()
    compute = Computer()
    d = call(g, compute)
    pool.answer("leaseGet", TAKEN)
    for delay in (0.01, 0.02, 0.04, 0.04):
        clock.advance(delay - 0.001)
        assert [r for r in pool.requests if not r[2].called] == []
        clock.advance(0.001)
        pool.answer("leaseGet", TAKEN)
    clock.advance(0.04)
    pool.answer("leaseGet", hit(b"theirs"))
    assert resultOf(d) == b"theirs"
    assert compute.calls == 0
    assert clock.getDelayedCalls() == []


def test_waitingGivesUpAfterWaitTimeout() -> None:
    """
    A caller waiting for another client's computation fails with LeaseTimeoutError after
    waitTimeout seconds, leaving no timer behind.
    """
    g, pool, clock = guard(delays=(0.25,))
    d = call(g, Computer(), waitTimeout=1.0)
    pool.answer("leaseGet", TAKEN)
    for _ in range(3):
        clock.advance(0.25)
        pool.answer("leaseGet", TAKEN)
    assertNoResult(d)
    clock.advance(0.25)
    pool.answer("leaseGet", TAKEN)
    assert "waited 1.0s" in str(failureOf(d, LeaseTimeoutError).value)
    assert clock.getDelayedCalls() == []


def test_defaultWaitTimeoutOutlivesTheLease() -> None:
    """
    By default a caller waits twice lockTtl: long enough to take over a lease whose holder
    vanished, once it expires.
    """
    g, pool, clock = guard(delays=(1.0,))
    compute = Computer()
    d = call(g, compute, lockTtl=2)
    pool.answer("leaseGet", TAKEN)
    clock.advance(1.0)
    pool.answer("leaseGet", TAKEN)
    clock.advance(1.0)
    pool.answer("leaseGet", TAKEN)
    clock.advance(1.0)
    pool.answer("leaseGet", WON)
    compute.results[0].callback(b"mine")
    pool.answer("leaseStore", True)
    assert resultOf(d) == b"mine"


def test_failedComputeReleasesTheLease() -> None:
    """
    When compute fails, the placeholder's lease is given back (deleted if unchanged), and
    the caller and those sharing its read fail with compute's error.
    """
    g, pool, _ = guard()
    compute = Computer()
    first, second = call(g, compute), call(g, compute)
    pool.answer("leaseGet", WON)
    compute.results[0].errback(RuntimeError("database down"))
    assert pool.answer("leaseRelease", True) == (b"k", b"5", False)
    for d in (first, second):
        assert "database down" in str(failureOf(d, RuntimeError).value)
    again = call(g, compute)
    pool.answer("leaseGet", WON)
    compute.results[1].callback(b"ok")
    pool.answer("leaseStore", True)
    assert resultOf(again) == b"ok"


def test_failedReleaseStillFailsWithComputesError() -> None:
    """
    If giving the lease back fails too, the caller still fails with compute's error (the
    lease ends when the placeholder expires).
    """
    g, pool, _ = guard()
    d = call(g, lambda: succeed(b"x").addCallback(lambda _: 1 / 0))
    pool.answer("leaseGet", WON)
    pool.fail("leaseRelease", ConnectionLostError("gone"))
    failureOf(d, ZeroDivisionError)


def test_staleValueServedWhileOneCallerRecomputes() -> None:
    """
    When the caller wins the lease of a stale value, the callers sharing its read get the
    stale value at once, and so do later ones, while it recomputes; it fires with the new
    value.
    """
    g, pool, _ = guard()
    compute = Computer()
    leader, joined = call(g, compute), call(g, compute)
    pool.answer("leaseGet", LeaseReply(b"old", b"7", won=True, stale=True, leased=False))
    assert resultOf(joined) == b"old"
    assert resultOf(call(g, compute)) == b"old"
    assertNoResult(leader)
    compute.results[0].callback(b"new")
    assert pool.answer("leaseStore", True) == (b"k", b"new", 60, b"7", 0)
    assert resultOf(leader) == b"new"
    assert compute.calls == 1


def test_staleValueWhileAnotherRecomputes() -> None:
    """
    A stale value whose lease another client holds is returned as it is, without computing.
    """
    g, pool, _ = guard()
    compute = Computer()
    d = call(g, compute)
    pool.answer("leaseGet", LeaseReply(b"old", b"7", won=False, stale=True, leased=True))
    assert resultOf(d) == b"old"
    assert compute.calls == 0


def test_failedRecomputeMarksTheValueStaleAgain() -> None:
    """
    When recomputing a stale value fails, the lease is given back by marking the value
    stale once more, so that the next reader takes it.
    """
    g, pool, _ = guard()
    compute = Computer()
    d = call(g, compute)
    pool.answer("leaseGet", LeaseReply(b"old", b"7", won=True, stale=True, leased=False))
    compute.results[0].errback(KeyError("gone"))
    assert pool.answer("leaseRelease", True) == (b"k", b"7", True)
    failureOf(d, KeyError)


def test_staleTtlAndEarlyRecache() -> None:
    """
    The value is stored for ttl + staleTtl seconds, and the lease is handed out once fewer
    than staleTtl + earlyRecache seconds are left; the winner recomputes a value that is
    still there.
    """
    g, pool, _ = guard()
    compute = Computer()
    d = call(g, compute, ttl=100, staleTtl=20, earlyRecache=10)
    assert pool.answer("leaseGet", LeaseReply(b"cur", b"3", True, False, False)) == (
        b"k", 30, 30
    )
    compute.results[0].callback(b"fresh")
    assert pool.answer("leaseStore", True) == (b"k", b"fresh", 120, b"3", 0)
    assert resultOf(d) == b"fresh"


def test_noLeasePossibleComputesAndStores() -> None:
    """
    When the server could not create the placeholder (EN), the caller computes and stores
    without a CAS token, and gives nothing back if compute fails.
    """
    g, pool, _ = guard()
    d = call(g, lambda: b"v")
    pool.answer("leaseGet", NOTHING)
    assert pool.answer("leaseStore", True) == (b"k", b"v", 60, None, 0)
    assert resultOf(d) == b"v"
    d = call(g, lambda: 1 / 0)
    pool.answer("leaseGet", NOTHING)
    failureOf(d, ZeroDivisionError)
    assert pool.methods()[-1] == "leaseGet"


def test_computeMayReturnBytesADeferredOrACoroutine() -> None:
    """
    compute may return bytes, a Deferred of bytes, or a coroutine returning bytes.
    """

    async def coroutine() -> bytes:
        return b"from a coroutine"

    for compute, value in [
        (lambda: b"plain", b"plain"),
        (lambda: succeed(b"deferred"), b"deferred"),
        (coroutine, b"from a coroutine"),
    ]:
        g, pool, _ = guard()
        d = call(g, compute)
        pool.answer("leaseGet", WON)
        pool.answer("leaseStore", True)
        assert resultOf(d) == value


@pytest.mark.parametrize(
    "value, error", [("text", InvalidTypeError), (None, InvalidTypeError)]
)
def test_computedValueThatIsNotBytes(value: object, error: type[Exception]) -> None:
    """
    A computed value that is not bytes fails the call with a typed error and gives the
    lease back.
    """
    g, pool, _ = guard()
    d = call(g, lambda: value)
    pool.answer("leaseGet", WON)
    pool.answer("leaseRelease", True)
    failureOf(d, error)


def test_valueTheStoreRefuses() -> None:
    """
    A computed value the store refuses (too large) fails the call with that error and gives
    the lease back.
    """
    g, pool, _ = guard()
    d = call(g, lambda: b"huge")
    pool.answer("leaseGet", WON)
    pool.fail("leaseStore", InvalidValueError("too large"))
    pool.answer("leaseRelease", True)
    failureOf(d, InvalidValueError)


def test_valueTheServerCouldNotStoreIsStillReturned() -> None:
    """
    If storing the computed value fails for want of the server, the caller still gets the
    value, and the lease is given back.
    """
    g, pool, _ = guard()
    d = call(g, lambda: b"v")
    pool.answer("leaseGet", WON)
    pool.fail("leaseStore", ConnectionLostError("lost"))
    assert pool.answer("leaseRelease", True) == (b"k", b"5", False)
    assert resultOf(d) == b"v"


def test_valueNotStoredIsStillReturned() -> None:
    """
    If the item changed while the value was computed (the store answers EX or NF), the
    value is still returned.
    """
    g, pool, _ = guard()
    d = call(g, lambda: b"v")
    pool.answer("leaseGet", WON)
    pool.answer("leaseStore", False)
    assert resultOf(d) == b"v"


@pytest.mark.parametrize(
    "kwargs, error",
    [
        ({"key": b"has space"}, ValueError),
        ({"compute": b"not callable"}, InvalidTypeError),
        ({"ttl": -1}, InvalidArgumentError),
        ({"ttl": 60 * 60 * 24 * 31}, InvalidArgumentError),
        ({"ttl": 1.5}, InvalidTypeError),
        ({"lockTtl": 0}, InvalidArgumentError),
        ({"staleTtl": 5, "ttl": 0}, InvalidArgumentError),
        ({"earlyRecache": 60}, InvalidArgumentError),
        ({"ttl": 60 * 60 * 24 * 30, "staleTtl": 1}, InvalidArgumentError),
        ({"waitTimeout": 0}, InvalidArgumentError),
        ({"waitTimeout": "1"}, InvalidTypeError),
    ],
)
def test_invalidArgumentsSendNothing(kwargs: dict[str, Any], error: type[Exception]) -> None:
    """
    Invalid arguments fail the call with a typed error, and nothing is requested.
    """
    g, pool, _ = guard()
    arguments: dict[str, Any] = {"key": b"k", "compute": lambda: b"v", **kwargs}
    failureOf(call(g, **arguments), error)
    assert pool.requests == []


def test_closeFailsTheWaitingCallers() -> None:
    """
    Closing fails the callers waiting for another client's computation with
    PoolClosedError, leaving no timer, and refuses new calls.
    """
    g, pool, clock = guard()
    d = call(g, Computer())
    pool.answer("leaseGet", TAKEN)
    assert len(clock.getDelayedCalls()) == 1
    g.close()
    failureOf(d, PoolClosedError)
    assert clock.getDelayedCalls() == []
    failureOf(call(g, Computer()), PoolClosedError)


def test_cancelledCallerLeavesTheComputationRunning() -> None:
    """
    Cancelling one caller abandons that call only: the others of its key still get the
    value.
    """
    g, pool, _ = guard()
    compute = Computer()
    leader, joined, other = call(g, compute), call(g, compute), call(g, compute)
    joined.cancel()
    leader.cancel()
    pool.answer("leaseGet", WON)
    compute.results[0].callback(b"v")
    pool.answer("leaseStore", True)
    assert resultOf(other) == b"v"
    failureOf(joined)
    failureOf(leader)


def test_failedLeaseReadFailsTheCallers() -> None:
    """
    A lease read that fails (the connection was lost) fails the callers sharing it with
    that error, and a later call starts afresh.
    """
    g, pool, _ = guard()
    first, second = call(g, Computer()), call(g, Computer())
    pool.fail("leaseGet", ConnectionLostError("lost"))
    failureOf(first, ConnectionLostError)
    failureOf(second, ConnectionLostError)
    call(g, Computer())
    assert pool.methods() == ["leaseGet", "leaseGet"]
