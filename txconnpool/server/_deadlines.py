"""
The deadlines of one served connection: how long it may stay silent, how long the head of a
request and a whole request may take to arrive.  Pure functions of its record and the options,
and the timer that applies them.
"""

from __future__ import annotations

from collections.abc import Callable

from twisted.internet.interfaces import IDelayedCall, IReactorTime

from ._options import LimiterOptions
from ._record import ConnectionRecord, State


def requestClocks(record: ConnectionRecord, at: float) -> tuple[float | None, float | None]:
    """
    The start times of the request, and of its head, that the connection's probe says are
    arriving: kept if they were already running, started at C{at} if they start now, L{None}
    for what is not arriving.
    """
    probe = record.probe
    assert probe is not None
    if not probe.isReceivingRequest():
        return None, None
    requestStart = at if record.requestStart is None else record.requestStart
    headStart = None
    if probe.isReceivingHead():
        headStart = at if record.headStart is None else record.headStart
    return requestStart, headStart


def nextDeadline(record: ConnectionRecord, options: LimiterOptions) -> float | None:
    """
    @return: The earliest moment one of the connection's deadlines may pass, or L{None} if it
        has none.
    """
    deadline: float | None = None
    for start, limit in (
        (record.lastActivity, options.idleTimeout),
        (record.headStart, options.headerTimeout),
        (record.requestStart, options.requestTimeout),
    ):
        if start is not None and limit is not None:
            moment = start + limit
            deadline = moment if deadline is None else min(deadline, moment)
    return deadline


def expiredDeadline(record: ConnectionRecord, now: float, options: LimiterOptions) -> str | None:
    """
    Which deadline the connection has overrun, given up-to-date request clocks.

    A silent connection counts as idle only while its protocol is between requests or waiting
    for the rest of a request: one whose server is working on a response is not idle.

    @return: C{"header-timeout"}, C{"request-timeout"}, C{"idle"}, or L{None}.
    """
    headerTimeout = options.headerTimeout
    if headerTimeout is not None and record.headStart is not None:
        if now - record.headStart >= headerTimeout:
            return "header-timeout"
    requestTimeout = options.requestTimeout
    if requestTimeout is not None and record.requestStart is not None:
        if now - record.requestStart >= requestTimeout:
            return "request-timeout"
    idleTimeout = options.idleTimeout
    if idleTimeout is not None and now - record.lastActivity >= idleTimeout:
        probe = record.probe
        assert probe is not None
        if probe.isReceivingRequest() or probe.isIdle():
            return "idle"
    return None


def nextLook(record: ConnectionRecord, now: float, options: LimiterOptions) -> float | None:
    """
    @return: When to look at the connection's deadlines again, after a look that found none
        overrun: at the next deadline, or, for a connection silent while its server works on
        a response, one idle period later.
    """
    deadline = nextDeadline(record, options)
    if deadline is not None and deadline <= now:
        assert options.idleTimeout is not None
        deadline = now + options.idleTimeout
    return deadline


class Deadlines:
    """
    The timer of one served connection's deadlines, owned by its record: it looks at the
    deadlines when the earliest may have passed, and reports the one overrun.

    It looks lazily: traffic does not move the timer; a look that finds the connection active
    again waits for the next deadline.  Only a request or head that starts to arrive brings
    the look forward, when its deadline is earlier.
    """

    def __init__(
        self,
        record: ConnectionRecord,
        options: LimiterOptions,
        clock: IReactorTime,
        onOverrun: Callable[[ConnectionRecord, str], None],
    ) -> None:
        self._record = record
        self._options = options
        self._clock = clock
        self._onOverrun = onOverrun
        self._call: IDelayedCall | None = None

    def start(self) -> None:
        """
        Look at the deadlines when the earliest may pass.
        """
        deadline = nextDeadline(self._record, self._options)
        if deadline is not None:
            delay = max(0.0, deadline - self._clock.seconds())
            self._call = self._clock.callLater(delay, self._due)

    def advance(self) -> None:
        """
        A request or its head started to arrive: look no later than its deadline.
        """
        call = self._call
        if call is None:
            self.start()
            return
        deadline = nextDeadline(self._record, self._options)
        if deadline is not None and call.getTime() > deadline:
            call.reset(max(0.0, deadline - self._clock.seconds()))

    def cancel(self) -> None:
        call, self._call = self._call, None
        if call is not None and call.active():
            call.cancel()

    def _due(self) -> None:
        self._call = None
        record = self._record
        if record.state is not State.ACTIVE or record.closingReason is not None:
            return
        now = self._clock.seconds()
        record.requestStart, record.headStart = requestClocks(record, record.lastActivity)
        reason = expiredDeadline(record, now, self._options)
        if reason is not None:
            self._onOverrun(record, reason)
            return
        look = nextLook(record, now, self._options)
        if look is not None:
            self._call = self._clock.callLater(look - now, self._due)
