"""
C{requestTimeout} for every request in flight, with one timer: it is set for the deadline of
the oldest request in flight, and, when it fires, fails the requests past their deadline and
is set again for the next. Sending a request costs a comparison, not a timer.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from ._records import Connection, Flight


class RequestDeadlines:
    """
    The request timeout timer of one pool.
    """

    def __init__(
        self,
        clock: Any,
        timeout: float,
        connections: Callable[[], Iterable[Connection]],
        expire: Callable[[Flight], None],
    ) -> None:
        """
        @param connections: Gives the connections whose requests in flight to watch; each
            connection's requests are kept oldest first.
        @param expire: Called with each request in flight past its deadline; it takes the
            request off its connection.
        """
        self._clock = clock
        self._timeout = timeout
        self._connections = connections
        self._expire = expire
        self._timer: Any = None
        self._expiring = False

    def sent(self, now: float) -> None:
        """
        A request was sent at C{now}. With no timer set, it is the oldest in flight.
        """
        if self._timer is None and not self._expiring:
            self._timer = self._clock.callLater(self._timeout, self._due)

    def maybeIdle(self) -> None:
        """
        A connection's last request in flight is done: stop the timer if no other is left.
        """
        if self._timer is not None and not any(c.flights for c in self._connections()):
            self._timer.cancel()
            self._timer = None

    def stopped(self, result: object = None) -> object:
        """
        The pool is closed: stop the timer.

        @return: C{result}, so that this can be a callback.
        """
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        return result

    def _due(self) -> None:
        self._timer = None
        now = self._clock.seconds()
        timeout = self._timeout
        self._expiring = True
        try:
            for connection in list(self._connections()):
                flights = connection.flights
                while flights and flights[0].sentAt + timeout <= now:
                    self._expire(flights[0])
        finally:
            self._expiring = False
        oldest = min((c.flights[0].sentAt for c in self._connections() if c.flights), default=None)
        if oldest is not None and self._timer is None:
            self._timer = self._clock.callLater(oldest + timeout - now, self._due)
