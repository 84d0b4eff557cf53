"""
Tests for L{txconnpool.retry}: attempts, delays, errors, logging and cancellation, on a clock.
"""

from __future__ import annotations

from typing import Any

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st
from twisted.internet import error
from twisted.internet.defer import CancelledError, Deferred, fail, succeed
from twisted.internet.task import Clock
from twisted.logger import Logger, LogLevel, formatEvent

from txconnpool.backoff import backoffPolicy
from txconnpool.errors import (
    ConnectionLostError,
    PoolClosedError,
    ProtocolError,
    RequestTimeoutError,
    ServerUnavailableError,
)
from txconnpool.retry import RETRYABLE_ERRORS, RetryPolicy, retry

from .helpers import assertNoResult, failureOf, makePool, resultOf


class Flaky:
    """
    A function that fails with the given errors, one per call, then succeeds with C{"ok"},
    recording the clock's time at each call.
    """

    def __init__(self, clock: Clock, *errors: BaseException) -> None:
        self.clock = clock
        self.errors = list(errors)
        self.times: list[float] = []

    def __call__(self, *args: Any, **kwargs: Any) -> Deferred[str]:
        self.times.append(self.clock.seconds())
        if self.errors:
            return fail(self.errors.pop(0))
        return succeed("ok")


def lost(n: int = 0) -> ConnectionLostError:
    """
    A connection error told apart by C{n}.
    """
    return ConnectionLostError(f"lost {n}")


def test_successFirstTime() -> None:
    """
    A call that succeeds at once fires with its result and schedules nothing.
    """
    clock = Clock()
    flaky = Flaky(clock)
    d = retry(reactor=clock)(flaky)()
    assert resultOf(d) == "ok"
    assert flaky.times == [0]
    assert clock.getDelayedCalls() == []


def test_argumentsPassedThrough() -> None:
    """
    Every attempt gets the positional and keyword arguments of the call.
    """
    clock = Clock()
    seen: list[tuple[Any, ...]] = []

    @retry(reactor=clock)
    def f(a: int, b: int = 0) -> Deferred[int]:
        seen.append((a, b))
        return fail(lost()) if len(seen) == 1 else succeed(a + b)

    d = f(1, b=2)
    clock.advance(0)
    assert resultOf(d) == 3
    assert seen == [(1, 2), (1, 2)]


def test_intervalBetweenAttempts() -> None:
    """
    With C{interval}, each retry starts that many seconds after the failure before it.
    """
    clock = Clock()
    flaky = Flaky(clock, lost(1), lost(2))
    d = retry(interval=2.5, reactor=clock)(flaky)()
    clock.advance(2.4)
    assertNoResult(d)
    assert flaky.times == [0]
    clock.pump([0.1, 2.5])
    assert resultOf(d) == "ok"
    assert flaky.times == [0, 2.5, 5.0]
    assert clock.getDelayedCalls() == []


def test_backoffDelays() -> None:
    """
    With C{backoff}, retry number n (from 0) waits C{backoff(n)} seconds.
    """
    clock = Clock()
    flaky = Flaky(clock, lost(), lost(), lost())
    policy = backoffPolicy(initialDelay=1.0, jitter=lambda: 0.5)
    d = retry(maxFailures=4, backoff=policy, reactor=clock)(flaky)()
    clock.pump([1, 2, 4])
    assert resultOf(d) == "ok"
    assert flaky.times == [0, 1, 3, 7]


def test_defaultRetriesOnNextIteration() -> None:
    """
    By default a retry waits no time, but starts on a later reactor iteration, not within the
    failing call.
    """
    clock = Clock()
    flaky = Flaky(clock, lost())
    d = retry(reactor=clock)(flaky)()
    assertNoResult(d)
    assert [call.getTime() for call in clock.getDelayedCalls()] == [0]
    clock.advance(0)
    assert resultOf(d) == "ok"
    assert len(flaky.times) == 2


def test_exhaustionFailsWithLastError() -> None:
    """
    After C{maxFailures} failed attempts the call fails with the last attempt's error.
    """
    clock = Clock()
    flaky = Flaky(clock, lost(1), lost(2), lost(3), lost(4))
    d = retry(maxFailures=3, interval=1, reactor=clock)(flaky)()
    clock.pump([1, 1, 1])
    assert str(failureOf(d, ConnectionLostError).value) == "lost 3"
    assert flaky.times == [0, 1, 2]
    assert clock.getDelayedCalls() == []


def test_maxFailuresOneMeansNoRetry() -> None:
    """
    C{maxFailures=1} makes one attempt only.
    """
    clock = Clock()
    flaky = Flaky(clock, lost())
    d = retry(maxFailures=1, reactor=clock)(flaky)()
    failureOf(d, ConnectionLostError)
    assert len(flaky.times) == 1
    assert clock.getDelayedCalls() == []


@pytest.mark.parametrize(
    "exc",
    [
        ValueError("bad"),
        ProtocolError("garbled"),
        RequestTimeoutError("slow"),
        PoolClosedError("closed"),
        CancelledError(),
    ],
)
def test_otherErrorFailsAtOnce(exc: BaseException) -> None:
    """
    An error outside C{excClasses}, protocol errors and timeouts included, fails the call at
    once, unretried.
    """
    clock = Clock()
    flaky = Flaky(clock, exc, exc)
    d = retry(reactor=clock)(flaky)()
    assert failureOf(d).value is exc
    assert len(flaky.times) == 1
    assert clock.getDelayedCalls() == []


@pytest.mark.parametrize(
    "exc",
    [
        ConnectionLostError("lost"),
        ServerUnavailableError("down"),
        error.ConnectionDone(),
        error.ConnectionLost(),
        error.ConnectionRefusedError(),
        error.TimeoutError(),
    ],
)
def test_defaultErrorsRetried(exc: BaseException) -> None:
    """
    Lost connections and failed connection attempts are retried by default.
    """
    clock = Clock()
    flaky = Flaky(clock, exc)
    d = retry(reactor=clock)(flaky)()
    clock.advance(0)
    assert resultOf(d) == "ok"
    assert len(flaky.times) == 2


def test_customExcClasses() -> None:
    """
    C{excClasses} replaces the default set: a single class is accepted, and errors outside it
    are no longer retried.
    """
    clock = Clock()
    flaky = Flaky(clock, ProtocolError("garbled"), lost())
    d = retry(excClasses=ProtocolError, reactor=clock)(flaky)()  # type: ignore[call-overload]
    clock.advance(0)
    failureOf(d, ConnectionLostError)
    assert len(flaky.times) == 2
    assert RetryPolicy(excClasses=[KeyError]).excClasses == (KeyError,)
    assert RetryPolicy().excClasses == RETRYABLE_ERRORS


def test_raisedExceptionIsAFailedAttempt() -> None:
    """
    An exception raised by the function counts as a failed attempt, and a plain return value
    as a success.
    """
    clock = Clock()
    calls: list[int] = []

    @retry(reactor=clock)
    def f() -> Any:
        calls.append(1)
        if len(calls) == 1:
            raise lost()
        return "plain"

    d = f()
    clock.advance(0)
    assert resultOf(d) == "plain"
    assert len(calls) == 2


def test_coroutineFunction() -> None:
    """
    A coroutine function is retried like a Deferred-returning one, and the result is a
    Deferred that a coroutine can await.
    """
    clock = Clock()
    pending: list[Deferred[str]] = []

    @retry(interval=1, reactor=clock)
    async def fetch(key: str) -> str:
        d: Deferred[str] = Deferred()
        pending.append(d)
        return key + await d

    async def caller() -> str:
        return await fetch("k")

    d = Deferred.fromCoroutine(caller())
    pending[0].errback(lost())
    clock.advance(1)
    assertNoResult(d)
    pending[1].callback("-value")
    assert resultOf(d) == "k-value"
    assert len(pending) == 2


def test_method() -> None:
    """
    A decorated method gets its instance on every attempt and keeps its name and docstring.
    """
    clock = Clock()

    class Client:
        def __init__(self) -> None:
            self.calls = 0

        @retry(reactor=clock)
        def fetch(self, key: str) -> Deferred[str]:
            """Fetch a key."""
            self.calls += 1
            return fail(lost()) if self.calls == 1 else succeed(f"{key}@{id(self)}")

    client = Client()
    d = client.fetch("k")
    clock.advance(0)
    assert resultOf(d) == f"k@{id(client)}"
    assert client.calls == 2
    assert Client.fetch.__name__ == "fetch"
    assert Client.fetch.__doc__ == "Fetch a key."


def test_bareForm() -> None:
    """
    Bare C{@retry} decorates with the default policy: three attempts, connection errors only.
    """
    calls: list[int] = []

    @retry
    def f(fail_: bool) -> Deferred[str]:
        calls.append(1)
        return fail(KeyError("k")) if fail_ else succeed("ok")

    assert resultOf(f(False)) == "ok"
    failureOf(f(True), KeyError)
    assert calls == [1, 1]
    assert RetryPolicy() == RetryPolicy(maxFailures=3, excClasses=RETRYABLE_ERRORS)


def test_parametrisedFormsAreRetryPolicies() -> None:
    """
    C{retry(...)} with options returns a L{RetryPolicy}, which decorates; L{RetryPolicy.call}
    runs a function at once.
    """
    clock = Clock()
    decorator = retry(maxFailures=5, reactor=clock)
    assert decorator == RetryPolicy(maxFailures=5, reactor=clock)
    flaky = Flaky(clock, lost(), lost(), lost(), lost())
    d = decorator(flaky)()
    clock.pump([0, 0, 0, 0])
    assert resultOf(d) == "ok"
    flaky = Flaky(clock, lost())
    d = decorator.call(flaky, "ignored", key="ignored")
    clock.advance(0)
    assert resultOf(d) == "ok"
    d = retry(Flaky(clock), reactor=clock)()  # type: ignore[call-overload]
    assert resultOf(d) == "ok"


def test_policyIsFrozen() -> None:
    """
    A L{RetryPolicy} cannot be changed once made, and its delay is C{interval}, 0 by default.
    """
    policy = RetryPolicy()
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        policy.maxFailures = 7  # type: ignore[misc]
    assert policy.delay(0) == 0.0
    assert RetryPolicy(interval=3).delay(5) == 3.0


def test_loggingEachFailedAttempt() -> None:
    """
    Each failed attempt is a structured event: retried ones at info level, the last at warn
    level.
    """
    clock = Clock()
    events: list[dict[str, Any]] = []
    log = Logger(observer=events.append)  # type: ignore[arg-type]
    flaky = Flaky(clock, lost(1), lost(2), lost(3))
    d = retry(interval=2, logger=log, reactor=clock)(flaky)()
    clock.pump([2, 2])
    failureOf(d, ConnectionLostError)
    assert [e["log_level"] for e in events] == [LogLevel.info, LogLevel.info, LogLevel.warn]
    assert [e["attempt"] for e in events] == [1, 2, 3]
    assert [e["delay"] for e in events] == [2.0, 2.0, None]
    assert {e["maxFailures"] for e in events} == {3}
    assert [str(e["error"]) for e in events] == ["lost 1", "lost 2", "lost 3"]
    assert events[2]["failure"].value is events[2]["error"]
    assert events[0]["function"] == repr(flaky)
    assert formatEvent(events[0]) == (
        f"{flaky!r} failed (attempt 1 of 3) with ConnectionLostError('lost 1'); retrying in 2.0s"
    )
    assert formatEvent(events[2]).endswith("with ConnectionLostError('lost 3'); giving up")


def test_loggingNamesTheFunction() -> None:
    """
    Events name the decorated function by its qualified name, and an error that is not retried
    logs nothing.
    """
    clock = Clock()
    events: list[dict[str, Any]] = []

    @retry(logger=Logger(observer=events.append), reactor=clock)  # type: ignore[arg-type]
    def fetch() -> Deferred[None]:
        return fail(lost()) if not events else fail(KeyError("k"))

    d = fetch()
    clock.advance(0)
    failureOf(d, KeyError)
    assert len(events) == 1
    assert events[0]["function"].endswith("test_loggingNamesTheFunction.<locals>.fetch")


def test_cancelDuringAttempt() -> None:
    """
    Cancelling during an attempt cancels that attempt and stops retrying.
    """
    clock = Clock()
    cancelled: list[Deferred[None]] = []
    attempts: list[Deferred[None]] = []

    def f() -> Deferred[None]:
        attempts.append(Deferred(cancelled.append))
        return attempts[-1]

    d = retry(excClasses=(ConnectionLostError, CancelledError), reactor=clock)(f)()
    d.cancel()
    failureOf(d, CancelledError)
    assert cancelled == attempts
    clock.advance(10)
    assert len(attempts) == 1
    assert clock.getDelayedCalls() == []


def test_cancelDuringDelay() -> None:
    """
    Cancelling while waiting to retry cancels the delay; no further attempt is made.
    """
    clock = Clock()
    flaky = Flaky(clock, lost())
    d = retry(interval=5, reactor=clock)(flaky)()
    assert len(clock.getDelayedCalls()) == 1
    d.cancel()
    failureOf(d, CancelledError)
    assert clock.getDelayedCalls() == []
    clock.advance(10)
    assert len(flaky.times) == 1


def test_cancelUncancellableAttempt() -> None:
    """
    When the attempt ignores cancellation, the call still fails with C{CancelledError}, and the
    attempt's later result, success or retryable failure, is dropped.
    """
    clock = Clock()
    attempts: list[Deferred[str]] = []

    def f() -> Deferred[str]:
        attempts.append(Deferred())
        return attempts[-1]

    decorated = retry(reactor=clock)(f)
    first, second = decorated(), decorated()
    first.cancel()
    second.cancel()
    attempts[0].callback("late")
    attempts[1].errback(lost())
    failureOf(first, CancelledError)
    failureOf(second, CancelledError)
    assert len(attempts) == 2
    assert clock.getDelayedCalls() == []


def test_badBackoffResult() -> None:
    """
    A backoff returning a negative delay fails the call with C{ValueError}, caused by the
    attempt's error.
    """
    clock = Clock()
    d = retry(backoff=lambda n: -1.0, reactor=clock)(Flaky(clock, lost(7)))()
    failure = failureOf(d, ValueError)
    assert "backoff" in str(failure.value)
    assert str(getattr(failure.value, "__cause__", None)) == "lost 7"
    assert clock.getDelayedCalls() == []


@pytest.mark.parametrize(
    ("options", "exception", "named"),
    [
        ({"maxFailures": 0}, ValueError, "maxFailures"),
        ({"maxFailures": 2.0}, TypeError, "maxFailures"),
        ({"maxFailures": True}, TypeError, "maxFailures"),
        ({"interval": -1}, ValueError, "interval"),
        ({"interval": float("nan")}, ValueError, "interval"),
        ({"interval": "1"}, TypeError, "interval"),
        ({"backoff": 1.0}, TypeError, "backoff"),
        ({"backoff": lambda n: 1.0, "interval": 1}, ValueError, "interval or backoff"),
        ({"excClasses": ()}, ValueError, "excClasses"),
        ({"excClasses": (ValueError, "x")}, TypeError, "excClasses"),
        ({"excClasses": "ValueError"}, TypeError, "excClasses"),
        ({"logger": print}, TypeError, "logger"),
        ({"reactor": object()}, TypeError, "reactor"),
        ({"maxFailure": 3}, TypeError, "maxFailure"),
    ],
)
def test_validation(options: dict[str, Any], exception: type[Exception], named: str) -> None:
    """
    A bad option raises C{TypeError} or C{ValueError} with a message naming it.
    """
    with pytest.raises(exception, match=named):
        retry(**options)


def test_decoratingANonCallable() -> None:
    """
    Passing something other than a function to the bare form raises C{TypeError}.
    """
    with pytest.raises(TypeError, match="callable"):
        retry(3)  # type: ignore[call-overload]


def test_eachAttemptOnANewPoolConnection() -> None:
    """
    A request whose connection is lost is retried on a new connection, which the pool opens
    because it discarded the broken one.
    """
    harness = makePool(maxClients=1)
    clock = harness.clock
    d = retry(reactor=clock)(harness.pool.performRequest)("ask", "q")
    first = harness.connect()
    assert [value for value, _ in first.asked] == ["q"]
    harness.attemptFor(first).lose()
    clock.advance(0)
    assertNoResult(d)
    clock.advance(1)  # the pool's own reconnection delay
    second = harness.connect()
    assert second is not first
    second.answer()
    assert resultOf(d) == "q"
    assert harness.pool.poolStats().idle == 1


@given(
    maxFailures=st.integers(min_value=1, max_value=8),
    failures=st.integers(min_value=0, max_value=10),
    interval=st.sampled_from([0, 0.5, 3]),
)
def test_attemptsProperty(maxFailures: int, failures: int, interval: float) -> None:
    """
    A function failing k times is called min(k + 1, maxFailures) times, succeeds iff
    k < maxFailures, and leaves no delayed call behind.
    """
    clock = Clock()
    flaky = Flaky(clock, *[lost(i) for i in range(failures)])
    d = retry(maxFailures=maxFailures, interval=interval, reactor=clock)(flaky)()
    clock.pump([interval] * (maxFailures + 1))
    assert len(flaky.times) == min(failures + 1, maxFailures)
    assert flaky.times == [i * interval for i in range(len(flaky.times))]
    if failures < maxFailures:
        assert resultOf(d) == "ok"
    else:
        assert str(failureOf(d, ConnectionLostError).value) == f"lost {maxFailures - 1}"
    assert clock.getDelayedCalls() == []
