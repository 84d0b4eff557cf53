"""
The pool's view of whether the server can be reached: consecutive failed connections, the
backoff before the next attempt, and the circuit that makes requests fail fast meanwhile.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.logger import Logger

from .errors import ServerUnavailableError

FALLBACK_DELAY = 10.0
"""
Seconds before the next connection attempt when the retry policy fails.
"""


class Circuit:
    """
    Counts consecutive connection failures and times the next attempt.

      - Closed (no failures): connections open as needed.
      - After a failure: the next attempt waits for the backoff delay, and then connections
        are opened one at a time until one proves usable.
      - Open (C{failFastAfter} consecutive failures and the backoff delay still running):
        the pool fails requests at once instead of queueing them.

    @ivar failures: Consecutive failed connection attempts.
    @ivar lastError: The exception of the latest failure.
    @ivar failedTotal: Failed connection attempts since the pool was made.
    """

    _log = Logger()

    def __init__(
        self,
        reactor: Any,
        policy: Callable[[int], float],
        failFastAfter: int,
        onRetry: Callable[[], None],
        address: str = "",
    ) -> None:
        self._reactor = reactor
        self._address = address
        self.failedTotal = 0
        self._policy = policy
        self._failFastAfter = failFastAfter
        self._onRetry = onRetry
        self._timer: Any = None
        self.failures = 0
        self.lastError: BaseException | None = None

    def failed(self, reason: BaseException | None) -> tuple[float, Exception | None]:
        """
        Record a failed connection and start the delay before the next attempt.

        @return: The delay, in seconds, and L{None}; or, when the retry policy raised or
            gave something other than a number of seconds, the fallback delay used instead
            and an exception that says what went wrong.
        """
        self.failures += 1
        self.lastError = reason
        retry = self.failures - 1
        problem: Exception | None = None
        try:
            delay = self._policy(retry)
        except Exception as e:
            problem = TypeError(f"retryPolicy({retry}) raised {type(e).__name__}: {e}")
            problem.__cause__ = e
        else:
            if isinstance(delay, bool) or not isinstance(delay, (int, float)):
                problem = TypeError(
                    f"retryPolicy({retry}) returned {delay!r}, not a number of seconds"
                )
            elif not delay >= 0:
                problem = ValueError(
                    f"retryPolicy({retry}) returned {delay!r}, not 0 seconds or more"
                )
        if problem is not None:
            delay = FALLBACK_DELAY
        self.stop()
        self._timer = self._reactor.callLater(delay, self._retry)
        return float(delay), problem

    def connectFailed(
        self, reason: BaseException | None, anyOpen: bool
    ) -> Callable[[], Exception] | None:
        """
        A connection attempt failed, or a new connection broke before it proved usable:
        count it, log it, and start the backoff.

        @param anyOpen: Whether a connection to the server is open nonetheless.
        @return: L{None}, or, when the requests waiting for a connection must fail rather
            than wait on a server out of reach (C{failFastAfter} consecutive failures with
            no connection open, or a retry policy that failed), what makes their error.
        """
        self.failedTotal += 1
        delay, problem = self.failed(reason)
        if problem is not None:
            self._log.error(
                "retryPolicy of the pool for {address} failed ({problem}); waiting "
                "requests fail, and the next attempt is in {delay:.2f}s",
                address=self._address,
                problem=problem,
                delay=delay,
                txconnpoolEvent="retryPolicyFailed",
            )
            return lambda: self._policyFailure(problem)
        self._log.warn(
            "Could not connect to {address} ({failures} consecutive failures): {reason}; "
            "next attempt in {delay:.2f}s",
            address=self._address,
            failures=self.failures,
            reason=reason,
            delay=delay,
            txconnpoolEvent="connectFailed",
        )
        if not self.exhausted() or anyOpen:
            return None
        if self.failures == self._failFastAfter:
            self._log.warn(
                "Circuit to {address} open: requests fail fast until a connection succeeds",
                address=self._address,
                txconnpoolEvent="circuitOpen",
            )
        return self.unavailable

    def unavailable(self) -> ServerUnavailableError:
        """
        @return: The error of a request refused because the server is out of reach.
        """
        unavailable = ServerUnavailableError(
            f"cannot connect to {self._address}: {self.failures} consecutive "
            f"attempts failed, the last with: {self.lastError}"
        )
        unavailable.__cause__ = self.lastError
        return unavailable

    def _policyFailure(self, problem: Exception) -> ServerUnavailableError:
        unavailable = ServerUnavailableError(
            f"cannot connect to {self._address} (the last attempt failed with: "
            f"{self.lastError}), and the pool's retryPolicy failed: {problem}"
        )
        unavailable.__cause__ = problem
        return unavailable

    def proven(self) -> None:
        """
        A connection carried a request without breaking: forget the failures.
        """
        if self.succeeded():
            self._log.info(
                "Circuit to {address} closed",
                address=self._address,
                txconnpoolEvent="circuitClosed",
            )

    def succeeded(self) -> bool:
        """
        Record that a connection proved usable: failures are forgotten.

        @return: Whether there were failures to forget.
        """
        if not self.failures:
            return False
        self.failures = 0
        self.lastError = None
        self.stop()
        return True

    def isOpen(self) -> bool:
        """
        @return: Whether requests should fail fast: too many failures, and the delay before the
            next attempt is still running.
        """
        return self.failures >= self._failFastAfter and self._timer is not None

    def exhausted(self) -> bool:
        """
        @return: Whether there have been C{failFastAfter} consecutive failures or more, so that
            requests waiting for a connection should fail rather than wait for the next try.
        """
        return self.failures >= self._failFastAfter

    def mayConnect(self, connecting: int) -> bool:
        """
        @param connecting: Connection attempts in progress.
        @return: Whether a new connection attempt may start now.
        """
        if self._timer is not None:
            return False
        return not self.failures or not connecting

    def stop(self) -> None:
        """
        Cancel the pending retry, if any.
        """
        if self._timer is not None:
            if self._timer.active():
                self._timer.cancel()
            self._timer = None

    def _retry(self) -> None:
        self._timer = None
        self._onRetry()
