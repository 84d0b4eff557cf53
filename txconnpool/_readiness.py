"""
Those waiting on a pool's connections as a whole: callers of C{whenReady()}, until
C{minClients} connections are up, and callers of C{close()}, until every connection is
closed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred, succeed


class ReadyWaiters:
    """
    The callers of C{whenReady()} still waiting, each with its timeout.
    """

    def __init__(self, clock: Any, notReady: Callable[[float], Exception]) -> None:
        """
        @param notReady: Makes the error of a waiter whose timeout came, given the timeout.
        """
        self._clock = clock
        self._notReady = notReady
        self._waiters: list[tuple[Deferred[None], Any]] = []

    def wait(self, timeout: float) -> Deferred[None]:
        """
        @return: A L{Deferred} firing with L{None} at L{fire}, or failing at L{failAll} or
            after C{timeout} seconds.
        """
        waiter: Deferred[None] = Deferred()
        timer = self._clock.callLater(timeout, self._timedOut, waiter, timeout)
        self._waiters.append((waiter, timer))
        return waiter

    def fire(self) -> None:
        """
        The connections are up: fire every waiter.
        """
        for waiter in self._takeAll():
            waiter.callback(None)

    def failAll(self, error: Exception) -> None:
        """
        Fail every waiter with C{error}.
        """
        for waiter in self._takeAll():
            waiter.errback(error)

    def __bool__(self) -> bool:
        return bool(self._waiters)

    def _timedOut(self, waiter: Deferred[None], timeout: float) -> None:
        self._waiters = [(w, t) for w, t in self._waiters if w is not waiter]
        waiter.errback(self._notReady(timeout))

    def _takeAll(self) -> list[Deferred[None]]:
        waiters, self._waiters = self._waiters, []
        for _, timer in waiters:
            if timer.active():
                timer.cancel()
        return [waiter for waiter, _ in waiters]


class CloseWaiters:
    """
    The callers of C{close()} waiting for every connection to close, and the timer that
    drops the connections still open after C{close()}'s timeout.
    """

    def __init__(self, clock: Any, live: Callable[[], bool], dropAll: Callable[[], None]) -> None:
        """
        @param live: Tells whether any connection is still open.
        @param dropAll: Drops every connection still open.
        """
        self._clock = clock
        self._live = live
        self._dropAll = dropAll
        self._waiters: list[Deferred[None]] = []
        self._timer: Any = None

    def dropAfter(self, timeout: float | None) -> None:
        """
        Drop the connections still open after C{timeout} seconds, unless it is L{None}.
        """
        if timeout is not None and self._live():
            self._timer = self._clock.callLater(timeout, self._dropAll)

    def wait(self) -> Deferred[None]:
        """
        @return: A L{Deferred} firing with L{None} once every connection is closed.
        """
        if not self._live():
            self.check()
            return succeed(None)
        waiter: Deferred[None] = Deferred()
        self._waiters.append(waiter)
        return waiter

    def check(self) -> None:
        """
        A connection ended: fire the waiters if it was the last.
        """
        if self._live():
            return
        if self._timer is not None:
            if self._timer.active():
                self._timer.cancel()
            self._timer = None
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            waiter.callback(None)
