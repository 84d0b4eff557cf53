"""
Retrying calls that fail because a connection broke: L{retry} and L{RetryPolicy}.

Only wrap idempotent operations (a read, an overwrite, a delete), never one that must not
happen twice: when a connection is lost while a request is in flight, nobody knows whether the
server carried it out. Nothing in txconnpool retries your calls unless you ask for it.

Each attempt runs on a different connection: the pool discards a connection whose request
failed with a connection error, so the next attempt gets another one.
"""

from __future__ import annotations

import functools
import inspect
import math
from collections.abc import Callable, Coroutine
from typing import Any, ParamSpec, TypeVar, overload

import attrs
from twisted.internet import error
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger, LogLevel
from twisted.python.failure import Failure

from .errors import ConnectionLostError, ServerUnavailableError

__all__ = ["RETRYABLE_ERRORS", "RetryPolicy", "retry"]

_P = ParamSpec("_P")
_T = TypeVar("_T")

RETRYABLE_ERRORS: tuple[type[BaseException], ...] = (
    ConnectionLostError, ServerUnavailableError, error.ConnectionClosed, error.ConnectError
)  # fmt: skip
"""
The errors L{retry} retries by default: the connection carrying the request was lost
(L{ConnectionLostError}, C{ConnectionClosed}), or none could be made, so nothing was sent
(L{ServerUnavailableError}, C{ConnectError}). Left out: L{ProtocolError
<txconnpool.errors.ProtocolError>} (the server may have carried the request out, and a retry
usually meets the same reply again), timeouts (retrying adds load to a slow server and
stretches the caller's deadline), a full or closed pool, and C{CancelledError}.
"""


def _seconds(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number of seconds, not {value!r}")
    if not 0 <= value < math.inf:
        raise ValueError(f"{name} must be a finite number of seconds >= 0, not {value!r}")
    return float(value)


def _toClasses(value: Any) -> tuple[type[BaseException], ...]:
    classes = (value,) if isinstance(value, type) else value
    if not isinstance(classes, (tuple, list, frozenset, set)) or not all(
        isinstance(cls, type) and issubclass(cls, BaseException) for cls in classes
    ):
        raise TypeError(f"excClasses must be a tuple of exception classes, not {value!r}")
    if not classes:
        raise ValueError("excClasses must name at least one exception class")
    return tuple(classes)


@attrs.frozen(kw_only=True)
class RetryPolicy:
    """
    How to retry a call; a policy is also a decorator, like the result of L{retry}.

    @ivar maxFailures: The number of failed attempts after which the call gives up, which is
        also the most attempts made: 3 by default. (geventconnpool's C{max_failures=N} made
        C{N + 1} attempts, and retried forever by default: a hang, so here there is a bound.)
    @ivar interval: Seconds between a failed attempt and the next; 0 (the next reactor
        iteration) when neither C{interval} nor C{backoff} is given.
    @ivar backoff: Instead of C{interval}, a function of the retry number (0 for the first
        retry) returning seconds, such as L{backoffPolicy<txconnpool.backoff.backoffPolicy>}C{()}.
    @ivar excClasses: The exception classes that are retried; L{RETRYABLE_ERRORS} by default.
    @ivar logger: If given, each failed attempt of a retried error is logged to it: at C{info}
        level when it will be retried, at C{warn} level when the call gives up. The events
        carry C{function}, C{attempt}, C{maxFailures}, C{error}, C{failure} and C{delay}
        (L{None} when giving up).
    @ivar reactor: The L{IReactorTime} that times the delays; the global reactor by default.
    """

    maxFailures: int = 3
    interval: float | None = None
    backoff: Callable[[int], float] | None = None
    excClasses: tuple[type[BaseException], ...] = attrs.field(
        default=RETRYABLE_ERRORS, converter=_toClasses
    )
    logger: Logger | None = None
    reactor: IReactorTime | None = None

    def __attrs_post_init__(self) -> None:
        if isinstance(self.maxFailures, bool) or not isinstance(self.maxFailures, int):
            raise TypeError(f"maxFailures must be an int, not {self.maxFailures!r}")
        if self.maxFailures < 1:
            raise ValueError(f"maxFailures must be at least 1, not {self.maxFailures!r}")
        if self.interval is not None:
            _seconds("interval", self.interval)
        if self.backoff is not None and not callable(self.backoff):
            raise TypeError(
                f"backoff must be a function of the retry number, not {self.backoff!r}"
            )
        if self.backoff is not None and self.interval is not None:
            raise ValueError("give interval or backoff, not both")
        if self.logger is not None and not isinstance(self.logger, Logger):
            raise TypeError(f"logger must be a twisted.logger.Logger, not {self.logger!r}")
        if self.reactor is not None and not IReactorTime.providedBy(self.reactor):
            raise TypeError(f"reactor must provide IReactorTime, not {self.reactor!r}")

    def delay(self, retryNumber: int) -> float:
        """
        @param retryNumber: 0 for the first retry, 1 for the second, and so on.
        @return: Seconds to wait before that retry.
        @raise TypeError: C{backoff} returned something other than a number.
        @raise ValueError: C{backoff} returned a negative or infinite number.
        """
        if self.backoff is None:
            return float(self.interval or 0)
        return _seconds("the delay backoff returned", self.backoff(retryNumber))

    def call(
        self,
        function: Callable[_P, Deferred[_T] | Coroutine[Any, Any, _T]],
        *args: _P.args,
        **kwargs: _P.kwargs,
    ) -> Deferred[_T]:
        """
        Call C{function} until it succeeds, fails with an error not in C{excClasses}, or has
        failed C{maxFailures} times. The first attempt is made before this returns.

        @param function: Returns a L{Deferred}, or is a coroutine function (C{async def}); a
            plain result counts as a success and a raised exception as a failure.
        @return: A L{Deferred} (awaitable) firing with the first attempt's result that
            succeeds. It fails at once with an error not in C{excClasses}, or with the last
            attempt's error after C{maxFailures} failed attempts. Cancelling it cancels the
            attempt in progress, or the pending delay, and stops retrying: it then fails with
            C{CancelledError}.
        """
        return _Retrying(self, function, args, kwargs).result

    def __call__(
        self, function: Callable[_P, Deferred[_T] | Coroutine[Any, Any, _T]]
    ) -> Callable[_P, Deferred[_T]]:
        """
        @return: C{function} (or method) decorated so that each call goes through L{call}.
        """

        @functools.wraps(function)
        def retrying(*args: _P.args, **kwargs: _P.kwargs) -> Deferred[_T]:
            return self.call(function, *args, **kwargs)

        return retrying


class _Retrying:
    """
    One call of a function under a L{RetryPolicy}, from the first attempt to the result.
    """

    def __init__(
        self, policy: RetryPolicy, function: Callable[..., Any], args: Any, kwargs: Any
    ) -> None:
        self._policy, self._function, self._args, self._kwargs = policy, function, args, kwargs
        self._name = getattr(function, "__qualname__", repr(function))
        self._failures = 0
        self._cancelled = False
        self._attempt: Deferred[Any] | None = None
        self._timer: IDelayedCall | None = None
        self.result: Deferred[Any] = Deferred(self._cancel)
        self._start()

    def _start(self) -> None:
        self._timer = None
        try:
            outcome = self._function(*self._args, **self._kwargs)
        except Exception:
            self._failed(Failure())
            return
        if inspect.iscoroutine(outcome):
            outcome = Deferred.fromCoroutine(outcome)
        elif not isinstance(outcome, Deferred):
            outcome = succeed(outcome)
        self._attempt = outcome
        outcome.addCallbacks(self._succeeded, self._failed)

    def _succeeded(self, value: object) -> None:
        self._attempt = None
        if not self._cancelled:
            self.result.callback(value)

    def _failed(self, failure: Failure) -> None:
        self._attempt = None
        if self._cancelled:
            return  # Deferred.cancel fails the result with CancelledError
        policy = self._policy
        if not failure.check(*policy.excClasses):
            self.result.errback(failure)
            return
        self._failures += 1
        delay: float | None = None
        if self._failures < policy.maxFailures:
            try:
                delay = policy.delay(self._failures - 1)
            except (TypeError, ValueError) as e:
                e.__cause__ = failure.value
                self.result.errback(e)
                return
        if policy.logger is not None:
            policy.logger.emit(
                LogLevel.warn if delay is None else LogLevel.info,
                "{function} failed (attempt {attempt} of {maxFailures}) with {error!r}; "
                + ("giving up" if delay is None else "retrying in {delay}s"),
                function=self._name,
                attempt=self._failures,
                maxFailures=policy.maxFailures,
                error=failure.value,
                failure=failure,
                delay=delay,
            )
        if delay is None:
            self.result.errback(failure)
            return
        reactor = policy.reactor
        if reactor is None:
            from twisted.internet import reactor as globalReactor

            reactor = globalReactor
        self._timer = reactor.callLater(delay, self._start)

    def _cancel(self, result: Deferred[Any]) -> None:
        self._cancelled = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        elif self._attempt is not None:
            self._attempt.cancel()


@overload
def retry(
    function: Callable[_P, Deferred[_T] | Coroutine[Any, Any, _T]], /
) -> Callable[_P, Deferred[_T]]: ...


@overload
def retry(
    *,
    maxFailures: int = 3,
    interval: float | None = None,
    backoff: Callable[[int], float] | None = None,
    excClasses: tuple[type[BaseException], ...] = RETRYABLE_ERRORS,
    logger: Logger | None = None,
    reactor: IReactorTime | None = None,
) -> RetryPolicy: ...


def retry(function: Any = None, /, **options: Any) -> Any:
    """
    Retry a function that returns a L{Deferred}, or a coroutine function, when it fails with a
    connection error. Use it bare or with the options of L{RetryPolicy}::

        @retry
        def fetch(key):
            return pool.get(key)

        @retry(maxFailures=5, backoff=backoffPolicy(), logger=log)
        async def fetchMany(keys):
            return await pool.getMultiple(keys)

    Only wrap idempotent operations; see the module documentation.

    @param function: The function or method to decorate, when used bare.
    @return: The decorated function, whose calls return a L{Deferred} as L{RetryPolicy.call}
        describes; or, without C{function}, the L{RetryPolicy} to decorate with.
    @raise TypeError: An option has the wrong type, or is unknown.
    @raise ValueError: An option has an impossible value, or both C{interval} and C{backoff}
        are given.
    """
    if function is not None and not callable(function):
        raise TypeError(f"retry decorates a callable, not {function!r}")
    policy = RetryPolicy(**options)
    return policy if function is None else policy(function)
