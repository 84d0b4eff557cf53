"""
The timed care of a pool's connections: closing those idle too long or past their lifetime,
pinging idle ones (keepalive) and stale ones before use (validation), and warning about
checkouts held too long (leak detection). One timer serves them all: it fires at the earliest
deadline, carries out what L{txconnpool._upkeep} decides is due, and is set for the next one.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred, maybeDeferred
from twisted.logger import Logger
from twisted.python.failure import Failure

from . import _upkeep
from ._connections import Connections
from ._options import PoolOptions
from ._records import Checkout, Connection, Ping, State


class Housekeeper:
    """
    Watches the connections of L{Connections} over time; it is their L{ConnectionWatcher}.
    """

    _log = Logger()

    def __init__(
        self,
        connections: Connections,
        clock: Any,
        options: PoolOptions,
        address: str,
        ping: Callable[[Any], Deferred[object]],
        onChange: Callable[[], None],
    ) -> None:
        self._connections = connections
        connections.watcher = self
        self._clock = clock
        self._options = options
        self._address = address
        self._pingHook = ping
        self._onChange = onChange
        self._leaks = _upkeep.LeakWatch()
        self._timer: Any = None
        self._timerAt = 0.0
        self._stopped = False
        self._timed = (
            options.idleTimeout is not None
            or options.keepaliveInterval is not None
            or options.maxLifetime is not None
        )
        self._idleInterval = min(
            (t for t in (options.idleTimeout, options.keepaliveInterval) if t is not None),
            default=0.0,
        )

    # What the connections report

    def idled(self, connection: Connection, now: float) -> None:
        """
        A connection became idle at C{now}: make sure the timer will look at it.
        """
        # Skip the deadline arithmetic when the pending sweep comes first anyway.
        if self._timed and (
            self._timer is None
            or connection.expiresAt is not None
            or self._timerAt > now + self._idleInterval
        ):
            deadline = _upkeep.nextIdleDeadline(connection, now, self._options)
            if deadline is not None:
                self._sweepBy(deadline)

    def removed(self, connection: Connection) -> None:
        """
        A connection left the pool: stop watching it.
        """
        self._leaks.unwatch(connection)

    # What the pool's core reports

    def checkedOut(self, connection: Connection, now: float) -> None:
        """
        A connection was checked out at C{now}: watch it when leak detection is on.
        """
        threshold = self._options.leakDetectionThreshold
        if threshold is not None:
            self._leaks.watch(connection, now + threshold)
            self._sweepBy(now + threshold)

    def checkedIn(self, connection: Connection) -> None:
        """
        A checked-out connection came back.
        """
        self._leaks.unwatch(connection)

    def checkoutOrigin(self) -> str | None:
        """
        @return: Where a checkout is being made (the caller's caller), when leak detection
            is on.
        """
        if self._options.leakDetectionThreshold is None:
            return None
        return "".join(traceback.format_stack(limit=16)[:-2])

    def validate(self, connection: Connection) -> None:
        """
        Ping an idle connection before it is handed out.
        """
        self._ping(connection, "validation")

    def stop(self) -> None:
        """
        The pool is closing: stop the timer.
        """
        self._stopped = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    # The timer

    def _sweepBy(self, deadline: float) -> None:
        """
        Have the timer fire no later than C{deadline}.
        """
        if self._stopped:
            return
        if self._timer is not None:
            if self._timerAt <= deadline:
                return
            self._timer.cancel()
        self._timerAt = deadline
        self._timer = self._clock.callLater(
            max(0.0, deadline - self._clock.seconds()), self._sweep
        )

    def _sweep(self) -> None:
        """
        Handle every deadline that has come, then set the timer for the next one.
        """
        self._timer = None
        connections = self._connections
        now = self._clock.seconds()
        for connection in list(connections.idle):
            if connection.state is not State.IDLE:
                continue
            verdict = _upkeep.idleVerdict(
                connection, now, self._options, connections.total() > connections.minClients
            )
            if verdict == "keepalive":
                self._ping(connection, "keepalive")
            elif verdict is not None:
                connections.retire(connection, verdict)
        for connection in self._leaks.due(now):
            self._warnLeak(connection)
        deadline = _upkeep.nearestDeadline(
            [_upkeep.nextIdleDeadline(c, now, self._options) for c in connections.idle]
            + [self._leaks.nextDeadline()]
        )
        if deadline is not None:
            self._sweepBy(deadline)
        self._onChange()

    # Pings

    def _ping(self, connection: Connection, purpose: str) -> None:
        """
        Take an idle connection out of service and ping it: back to idle if it answers
        within C{pingTimeout}, discarded otherwise.

        @param purpose: C{"keepalive"} or C{"validation"}, for the logs.
        """
        marker = Ping(purpose)
        self._connections.hold(connection, marker)
        d = maybeDeferred(self._pingHook, connection.protocol)
        d.addTimeout(self._options.pingTimeout, self._clock)
        d.addBoth(self._pinged, connection, marker)

    def _pinged(self, result: object, connection: Connection, marker: Ping) -> None:
        answered = not isinstance(result, Failure)
        if not self._connections.pinged(connection, marker, answered):
            return
        if not answered:
            self._log.warn(
                "{purpose} ping of a connection to {address} failed: {reason}",
                purpose=marker.purpose,
                address=self._address,
                reason=getattr(result, "value", result),
                txconnpoolEvent="pingFailed",
            )
        self._onChange()

    def _warnLeak(self, connection: Connection) -> None:
        holder = connection.holder
        origin = holder.origin if isinstance(holder, Checkout) else None
        self._log.warn(
            "A connection to {address} has been checked out for more than {threshold}s, "
            "longer than leakDetectionThreshold; it was acquired at:\n{origin}",
            address=self._address,
            threshold=self._options.leakDetectionThreshold,
            origin=origin or "(unknown)",
            txconnpoolEvent="leak",
        )
