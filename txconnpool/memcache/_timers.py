"""
The timers of a memcached connection: the clock, the timeout on the server's silence, and
the deadline of each request. The text protocol's wire and the meta protocol's share them.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Generic, Protocol, TypeVar, cast

from twisted.internet.defer import TimeoutError
from twisted.internet.interfaces import IDelayedCall, IReactorTime

from txconnpool.errors import ConnectionLostError, RequestTimeoutError


class TimedRequest(Protocol):
    """
    What the timers need of a pending request: its command's name, for messages, and when
    it was sent.
    """

    command: str
    sentAt: float


_R = TypeVar("_R", bound=TimedRequest)


class WireTimers(Generic[_R]):
    """
    The timers of L{MemCacheWire<txconnpool.memcache._wire.MemCacheWire>} and
    L{MetaWire<txconnpool.memcache.meta._wire.MetaWire>}, whose pending requests are C{_R}s.
    """

    timeOut: float | None
    requestTimeout: float | None
    _clock: IReactorTime | None
    _timeoutCall: IDelayedCall | None
    _deadlineCall: IDelayedCall | None
    _pending: deque[_R]
    _closed: bool

    def _shutDown(
        self,
        reason: Exception,
        first: _R | None = None,
        firstReason: BaseException | None = None,
    ) -> None:
        raise NotImplementedError()

    def callLater(self, delay: float, f: Callable[[], None]) -> IDelayedCall:
        """
        Schedule C{f} after C{delay} seconds on the clock given to the constructor.
        """
        return self._clockOrReactor().callLater(delay, f)

    def seconds(self) -> float:
        """
        The time now, on the clock given to the constructor.
        """
        return self._clockOrReactor().seconds()

    def _clockOrReactor(self) -> IReactorTime:
        clock = self._clock
        if clock is None:
            from twisted.internet import reactor

            clock = cast(IReactorTime, reactor)
        return clock

    # Silence and deadlines

    def _resetTimeout(self) -> None:
        call = self._timeoutCall
        if call is not None:
            if self._pending and self.timeOut is not None:
                call.reset(self.timeOut)
            else:
                self._cancelTimeout()

    def _cancelTimeout(self) -> None:
        call = self._timeoutCall
        if call is not None:
            self._timeoutCall = None
            if call.active():
                call.cancel()

    def _cancelDeadline(self) -> None:
        call = self._deadlineCall
        if call is not None:
            self._deadlineCall = None
            if call.active():
                call.cancel()

    def _deadlineDue(self) -> None:
        """
        The request deadline timer: fail the oldest pending request if it has waited
        C{requestTimeout} seconds, or come back when it will have.

        One timer per connection serves every request, since they are answered in order:
        it is left to run out when nothing is pending, and set again only when it fires.
        """
        self._deadlineCall = None
        limit = self.requestTimeout
        if self._closed or not self._pending or limit is None:
            return
        head = self._pending[0]
        remaining = head.sentAt + limit - self.seconds()
        if remaining > 0:
            self._deadlineCall = self.callLater(remaining, self._deadlineDue)
            return
        self._pending.popleft()
        exc = RequestTimeoutError(
            f"no reply to memcached {head.command} within {limit}s; connection dropped"
        )
        lost = ConnectionLostError(
            f"memcached connection dropped because {head.command} had no reply within {limit}s"
        )
        lost.__cause__ = exc
        self._shutDown(lost, head, exc)

    def _timedOut(self) -> None:
        self._timeoutCall = None
        if self._pending and not self._closed:
            self._shutDown(
                TimeoutError(
                    f"memcached sent nothing for {self.timeOut} seconds while "
                    f"{len(self._pending)} requests were pending; connection dropped"
                )
            )

    def _startDeadline(self, req: _R) -> None:
        """
        Note when C{req} was sent, and have the deadline timer run.
        """
        req.sentAt = self.seconds()
        if self._deadlineCall is None:
            self._deadlineCall = self.callLater(self.requestTimeout or 0, self._deadlineDue)

