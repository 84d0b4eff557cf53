"""
The timed care of a pool's connections: closing those idle too long or past their lifetime,
pinging idle ones (keepalive) and stale ones before use (validation), warning about checkouts
held too long (leak detection), and telling when C{minClients} connections are up.

One timer serves them all: it fires at the earliest deadline, handles what is due, and is set
again for the next one.
"""

from __future__ import annotations

import random
import traceback
from typing import Any

from twisted.internet.defer import Deferred, fail, maybeDeferred, succeed
from twisted.python.failure import Failure

from ._connection import Connection, Request, State
from ._lifecycle import ConnectionMachine
from ._options import PoolOptions
from .errors import PoolClosedError, PoolTimeoutError, ServerUnavailableError

LIFETIME_VARIATION = 0.05
"""
Each connection's lifetime is C{maxLifetime} less a random part of up to this fraction of
it, so that connections made together are not all retired together.
"""


class Housekeeping(ConnectionMachine):
    """
    Timers over the connections of L{ConnectionMachine}.
    """

    def __init__(
        self, reactor: Any, endpoint: Any, address: str, maxClients: int, options: PoolOptions
    ) -> None:
        ConnectionMachine.__init__(self, reactor, endpoint, address, maxClients, options)
        self._sweepTimer: Any = None
        self._sweepAt = 0.0
        self._pinging = 0
        self._checkouts: set[Connection] = set()
        self._readyWaiters: list[tuple[Deferred[None], Any]] = []
        self._timed = (
            options.idleTimeout is not None
            or options.keepaliveInterval is not None
            or options.maxLifetime is not None
        )
        self._min = min(options.minClients, maxClients)
        intervals = [t for t in (options.idleTimeout, options.keepaliveInterval) if t is not None]
        self._idleInterval = min(intervals, default=0.0)

    def pingConnection(self, protocol: Any) -> Deferred[object]:
        raise NotImplementedError()

    # Called by the rest of the pool as connections change.

    def _connectionReady(self, connection: Connection) -> None:
        """
        A new connection is ready: start its clocks.
        """
        now = self._reactor.seconds()
        connection.lastUsed = connection.lastActive = now
        lifetime = self._options.maxLifetime
        if lifetime is not None:
            connection.expiresAt = now + lifetime * (1 - LIFETIME_VARIATION * random.random())
        if self._options.tcpKeepAlive:
            setKeepAlive = getattr(connection.transport, "setTcpKeepAlive", None)
            if setKeepAlive is not None:
                setKeepAlive(1)

    def _fireReady(self) -> None:
        """
        Fire the L{whenReady} waiters if C{minClients} connections are now up.
        """
        if self._readyWaiters and self._busy + len(self._idle) >= self._minimum():
            waiters, self._readyWaiters = self._readyWaiters, []
            for waiter, timer in waiters:
                timer.cancel()
                waiter.callback(None)

    def _connectionIdle(self, connection: Connection, now: float) -> None:
        """
        A connection became idle at C{now}: make sure the timer will look at it.
        """
        options = self._options
        deadlines = [connection.expiresAt]
        if options.idleTimeout is not None:
            deadlines.append(connection.lastUsed + options.idleTimeout)
        if options.keepaliveInterval is not None:
            deadlines.append(connection.lastActive + options.keepaliveInterval)
        # A deadline already past is one the timer chose to let pass (an idle connection kept
        # for minClients): the next sweep for another reason looks at it again.
        future = [deadline for deadline in deadlines if deadline is not None and deadline > now]
        if future:
            self._sweepBy(min(future))

    def _checkedOutNow(self, connection: Connection, request: Request) -> None:
        """
        A connection was checked out: watch it when leak detection is on.
        """
        threshold = self._options.leakDetectionThreshold
        if threshold is not None:
            connection.leakAt = self._reactor.seconds() + threshold
            self._checkouts.add(connection)
            self._sweepBy(connection.leakAt)

    def _needsValidation(self, connection: Connection) -> bool:
        """
        Whether an idle connection about to be handed out must be pinged first.
        """
        if connection.validated:
            return False
        limit = self._options.validateAfterIdle
        return limit is not None and self._reactor.seconds() - connection.lastActive > limit

    def _expired(self, connection: Connection) -> bool:
        expiresAt = connection.expiresAt
        return expiresAt is not None and self._reactor.seconds() >= expiresAt

    def _minimum(self) -> int:
        return self._min

    # The timer

    def _sweepBy(self, deadline: float) -> None:
        """
        Have the timer fire no later than C{deadline}.
        """
        if self._closing:
            return
        if self._sweepTimer is not None:
            if self._sweepAt <= deadline:
                return
            self._sweepTimer.cancel()
        self._sweepAt = deadline
        self._sweepTimer = self._reactor.callLater(
            max(0.0, deadline - self._reactor.seconds()), self._sweep
        )

    def _stopSweeping(self) -> None:
        if self._sweepTimer is not None:
            self._sweepTimer.cancel()
            self._sweepTimer = None

    def _sweep(self) -> None:
        """
        Handle every deadline that has come, then set the timer for the next one.
        """
        self._sweepTimer = None
        now = self._reactor.seconds()
        options = self._options
        for connection in list(self._idle):
            if connection.state is not State.IDLE:
                continue
            if connection.expiresAt is not None and now >= connection.expiresAt:
                self._retire(connection, "lifetime")
            elif (
                options.idleTimeout is not None
                and now - connection.lastUsed >= options.idleTimeout
                and self._total() > self._minimum()
            ):
                self._retire(connection, "idle")
            elif (
                options.keepaliveInterval is not None
                and now - connection.lastActive >= options.keepaliveInterval
            ):
                self._ping(connection, "keepalive")
        for connection in list(self._checkouts):
            if connection.leakAt is not None and now >= connection.leakAt:
                self._warnLeak(connection, now)
        for connection in self._idle:
            self._connectionIdle(connection, now)
        for connection in self._checkouts:
            if connection.leakAt is not None:
                self._sweepBy(connection.leakAt)
        self._dispatch()

    # Pings

    def _ping(self, connection: Connection, purpose: str) -> None:
        """
        Take an idle connection out of service and ping it: back to idle if it answers within
        C{pingTimeout}, discarded otherwise.

        @param purpose: C{"keepalive"} or C{"validation"}, for the logs.
        """
        self._idle.remove(connection)
        connection.state = State.BUSY
        self._busy += 1
        self._pinging += 1
        marker = Request("<ping>", (), {})
        marker.done = True
        marker.connection = connection
        marker.mark = connection.received
        marker.sentAt = self._reactor.seconds()
        connection.holder = marker
        d = maybeDeferred(self.pingConnection, connection.protocol)
        d.addTimeout(self._options.pingTimeout, self._reactor)
        d.addBoth(self._pinged, connection, marker, purpose)

    def _pinged(
        self, result: object, connection: Connection, marker: Request, purpose: str
    ) -> None:
        self._pinging -= 1
        if connection.holder is not marker:
            return
        connection.holder = None
        if isinstance(result, Failure) or connection.lost:
            self._log.warn(
                "{purpose} ping of a connection to {address} failed: {reason}",
                purpose=purpose,
                address=self._address,
                reason=getattr(result, "value", "connection lost"),
                txconnpoolEvent="pingFailed",
            )
            self._retire(connection, "keepalive", abort=True)
        else:
            connection.lastActive = self._reactor.seconds()
            connection.validated = purpose == "validation"
            if not connection.proven:
                self._prove(connection)
            self._checkin(connection, used=False)
        self._dispatch()

    # Leaks

    def _checkoutOrigin(self) -> str | None:
        """
        @return: Where a checkout is being made, when leak detection is on.
        """
        if self._options.leakDetectionThreshold is None:
            return None
        return "".join(traceback.format_stack(limit=16)[:-2])

    def _checkedIn(self, connection: Connection) -> None:
        """
        A checked-out connection came back or went away.
        """
        if self._checkouts:
            self._checkouts.discard(connection)
            connection.leakAt = None

    def _warnLeak(self, connection: Connection, now: float) -> None:
        threshold = self._options.leakDetectionThreshold
        connection.leakAt = None
        origin = connection.holder.origin if connection.holder is not None else None
        self._log.warn(
            "A connection to {address} has been checked out for more than {threshold}s, "
            "longer than leakDetectionThreshold; it was acquired at:\n{origin}",
            address=self._address,
            threshold=threshold,
            origin=origin or "(unknown)",
            txconnpoolEvent="leak",
        )

    # Readiness

    def whenReady(self, timeout: float = 30.0) -> Deferred[None]:
        """
        Wait until C{minClients} connections are up.

        @param timeout: How many seconds to wait at most.
        @return: A L{Deferred} firing with L{None} when C{minClients} connections are ready (at
            once if they are, or if C{minClients} is 0). It fails with
            L{ServerUnavailableError} (whose C{__cause__} is the last connection error) or,
            when no attempt failed, L{PoolTimeoutError} after C{timeout} seconds; with
            L{PoolClosedError} if the pool is or gets closed.
        """
        if self._closing:
            return fail(PoolClosedError(f"{self!r} is closed"))
        if self._busy + len(self._idle) >= self._minimum():
            return succeed(None)
        waiter: Deferred[None] = Deferred()
        timer = self._reactor.callLater(timeout, self._notReady, waiter, timeout)
        self._readyWaiters.append((waiter, timer))
        self._dispatch()
        return waiter

    def _notReady(self, waiter: Deferred[None], timeout: float) -> None:
        self._readyWaiters = [(w, t) for w, t in self._readyWaiters if w is not waiter]
        ready = self._busy + len(self._idle)
        lastError = self._circuit.lastError
        error: Exception
        if lastError is not None:
            error = ServerUnavailableError(
                f"only {ready} of {self._minimum()} connections to {self._address} are up "
                f"after {timeout}s; the last connection attempt failed with: {lastError}"
            )
            error.__cause__ = lastError
        else:
            error = PoolTimeoutError(
                f"only {ready} of {self._minimum()} connections to {self._address} are up "
                f"after {timeout}s"
            )
        waiter.errback(error)

    def _closeHousekeeping(self) -> None:
        """
        The pool is closing: stop the timer, and fail those waiting for readiness.
        """
        self._stopSweeping()
        waiters, self._readyWaiters = self._readyWaiters, []
        for waiter, timer in waiters:
            timer.cancel()
            waiter.errback(PoolClosedError(f"{self!r} was closed"))

