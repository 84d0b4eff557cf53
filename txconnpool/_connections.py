"""
The connections of a pool: which are opening, ready, idle or able to take one more pipelined
request; opening them within C{maxClients} and the backoff of L{Circuit}; taking them in and
out of service; closing them; and telling when C{minClients} are up and when all are closed.

L{Connections} owns that state and is the only code that changes it. It hears about each
connection from the driver (it is the driver's L{ConnectionEvents}) and tells the pool's
core of changes through the callables it is given; it knows nothing of requests.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any, Protocol

from twisted.internet.defer import Deferred, fail, succeed
from twisted.logger import Logger
from twisted.python.failure import Failure

from . import _upkeep
from ._circuit import Circuit
from ._driver import ConnectionDriver
from ._options import PoolOptions
from ._readiness import CloseWaiters, ReadyWaiters
from ._records import Checkout, Connection, Ping, State
from .errors import PoolClosedError, PoolTimeoutError, ServerUnavailableError


class ConnectionWatcher(Protocol):
    """
    Who watches connections over time: told when one becomes idle and when one is gone.
    """

    def idled(self, connection: Connection, now: float) -> None:
        """
        C{connection} became idle at C{now}.
        """

    def removed(self, connection: Connection) -> None:
        """
        C{connection} left the pool.
        """


class Connections:
    """
    The connections of one pool.

    @ivar connecting: Connection attempts in progress, oldest first.
    @ivar open: The ready connections, idle or busy.
    @ivar idle: The idle connections, least recently used first.
    @ivar accepting: The busy connections that can take one more pipelined request, in the
        order they became able to (a C{dict} used as an ordered set).
    @ivar byProtocol: Each connected protocol's connection; a connection lost while checked
        out stays until it is released.
    @ivar pinging: How many connections are out of service for a ping.
    @ivar maxClients: The most connections open at once, attempts included.
    @ivar minClients: The connections kept open (C{minClients}, at most C{maxClients}).
    @ivar closing: Whether the pool is closing.
    @ivar circuit: The backoff and fail-fast state of connection attempts.
    @ivar created: Connections that became ready.
    @ivar closed: Ready connections closed.
    @ivar attempted: Connection attempts started.
    @ivar discards: Closed connections by reason.
    """

    _log = Logger()

    def __init__(
        self,
        driver: ConnectionDriver,
        options: PoolOptions,
        maxClients: int,
        address: str,
        describe: Callable[[], str],
        closingHook: Callable[[Any], bool] | None,
        onChange: Callable[[], None],
        onUnavailable: Callable[[Callable[[], Exception]], None],
        onEnded: Callable[[Connection, Failure], None],
    ) -> None:
        self.connecting: list[Connection] = []
        self.open: set[Connection] = set()
        self.idle: list[Connection] = []
        self.accepting: dict[Connection, None] = {}
        self.byProtocol: dict[Any, Connection] = {}
        self.pinging = 0
        self.maxClients = maxClients
        self.minClients = min(options.minClients, maxClients)
        self.closing = False
        self.created = 0
        self.closed = 0
        self.attempted = 0
        self.discards: dict[str, int] = {}
        self.watcher: ConnectionWatcher | None = None
        self._driver = driver
        driver.events = self
        self._clock = driver.clock
        self._options = options
        self._address = address
        self._describe = describe
        self._closingHook = closingHook
        self._onChange = onChange
        self._onUnavailable = onUnavailable
        self._onEnded = onEnded
        self._held = 0
        self.circuit = Circuit(
            self._clock,
            options.retryPolicy,
            options.failFastAfter,
            onRetry=self._changed,
            address=address,
        )
        self._readyWaiters = ReadyWaiters(self._clock, self._notReady)
        self._closeWaiters = CloseWaiters(
            self._clock, lambda: bool(driver.live), driver.dropAll
        )

    @property
    def busy(self) -> int:
        """
        How many ready connections carry requests, are checked out, or are being pinged.
        """
        return len(self.open) - len(self.idle)

    def total(self) -> int:
        """
        @return: The connections open or opening.
        """
        return len(self.open) + len(self.connecting)

    def mayOpen(self) -> bool:
        """
        @return: Whether a connection attempt may start now.
        """
        return (
            self.total() < self.maxClients
            and not self.closing
            and self.circuit.mayConnect(len(self.connecting))
        )

    def connect(self) -> bool:
        """
        Start a connection attempt.

        @return: Whether it is still in progress or succeeded; C{False} when it failed at
            once.
        """
        self.attempted += 1
        connection = self._driver.prepare()
        self.connecting.append(connection)
        self._driver.start(connection)
        return connection.state is not State.GONE

    def _changed(self) -> None:
        if not self._held:
            self._onChange()

    # Taking connections in and out of service

    def closingNow(self, connection: Connection) -> bool:
        """
        Whether a connection is being closed, by its transport or by its protocol.
        """
        if getattr(connection.link.transport, "disconnecting", False):
            return True
        hook = self._closingHook
        return hook is not None and hook(connection.protocol)

    def takeIdle(self) -> Connection:
        """
        Make the most recently used idle connection busy, and return it.
        """
        connection = self.idle.pop()
        connection.state = State.BUSY
        connection.validated = False
        return connection

    def hold(self, connection: Connection, holder: Checkout | Ping) -> None:
        """
        Let C{holder} (a checkout or a ping) have a busy connection to itself; an idle one
        is first taken out of service.
        """
        if connection.state is State.IDLE:
            self.idle.remove(connection)
            connection.state = State.BUSY
        connection.holder = holder
        if isinstance(holder, Ping):
            self.pinging += 1

    def pinged(self, connection: Connection, marker: Ping, answered: bool) -> bool:
        """
        A ping of a held connection ended: back to idle if it C{answered}, closed otherwise.

        @return: Whether the connection was still held by that ping.
        """
        self.pinging -= 1
        if connection.holder is not marker:
            return False
        connection.holder = None
        if not answered or connection.link.lost:
            self.retire(connection, "keepalive", abort=True)
            return True
        connection.lastActive = self._clock.seconds()
        connection.validated = marker.purpose == "validation"
        if not connection.proven:
            self.prove(connection)
        self.checkin(connection, used=False)
        return True

    def accept(self, connection: Connection) -> None:
        """
        A busy connection can take one more pipelined request.
        """
        if connection.retiring is None:
            self.accepting[connection] = None

    def refuse(self, connection: Connection, retiring: str | None = None) -> None:
        """
        A busy connection can take no more pipelined requests for now, or, with
        C{retiring}, ever: it closes for that reason once its requests are done.
        """
        self.accepting.pop(connection, None)
        if retiring is not None:
            connection.retiring = retiring

    def checkin(self, connection: Connection, used: bool = True, now: float | None = None) -> None:
        """
        Return a busy connection to the idle ones, or close it: when the pool is closing,
        over its size, or the connection is retiring or past its lifetime.

        @param used: Whether the connection served a request (rather than a ping).
        """
        if self.closing:
            self.retire(connection, "closed")
            return
        if connection.retiring is not None:
            self.retire(connection, connection.retiring)
            return
        if self.total() > self.maxClients:
            self.retire(connection, "surplus")
            return
        if now is None:
            now = self._clock.seconds()
        if _upkeep.expired(connection, now):
            self.retire(connection, "lifetime")
            return
        if used:
            connection.lastUsed = connection.lastActive = now
        connection.state = State.IDLE
        self.idle.append(connection)
        if self.watcher is not None:
            self.watcher.idled(connection, now)

    def retire(self, connection: Connection, reason: str, abort: bool = False) -> None:
        """
        Take a connection out of service for good and close it (or cancel its attempt).

        @param reason: Why, as named in L{DiscardCounts<txconnpool.stats.DiscardCounts>}.
        @param abort: Drop the connection rather than close it after pending writes.
        """
        previous = connection.state
        if previous is State.GONE:
            return
        connection.state = State.GONE
        if previous is State.CONNECTING:
            self.connecting.remove(connection)
        else:
            if previous is State.IDLE:
                self.idle.remove(connection)
            self.open.discard(connection)
            self.accepting.pop(connection, None)
            self.closed += 1
            self.discards[reason] = self.discards.get(reason, 0) + 1
            self._log.debug(
                "Closing a connection to {address}: {reason}",
                address=self._address,
                reason=reason,
                txconnpoolEvent="discard",
            )
        if not isCheckout(connection.holder):
            self.byProtocol.pop(connection.protocol, None)
        if self.watcher is not None:
            self.watcher.removed(connection)
        self._driver.close(connection, abort)

    def prove(self, connection: Connection) -> None:
        """
        A connection carried a request without breaking: the server is reachable again.
        """
        connection.proven = True
        self.circuit.proven()

    def connectFailed(self, reason: Failure) -> None:
        """
        A connection attempt failed, or a new connection broke before it proved usable:
        the next attempt waits for the backoff, and the waiting requests may have to fail.
        """
        if self.closing:
            return
        makeError = self.circuit.connectFailed(reason.value, bool(self.open))
        if makeError is not None:
            self._onUnavailable(makeError)

    def resize(self, maxClients: int, pipelined: bool) -> None:
        """
        Change C{maxClients}: idle connections over it close now; busy ones close once done,
        and pipelined ones meanwhile take no new requests (or they would never be done).
        """
        self.maxClients = maxClients
        self.minClients = min(self._options.minClients, maxClients)
        while self.idle and self.total() > maxClients:
            self.retire(self.idle[0], "surplus")
        excess = self.total() - maxClients
        if excess > 0 and pipelined:
            busy = [c for c in self.open if c.state is State.BUSY and c.retiring is None]
            busy.sort(key=lambda c: len(c.flights))
            for connection in busy[:excess]:
                connection.retiring = "surplus"
                self.accepting.pop(connection, None)

    # What the driver reports

    def made(self, connection: Connection, protocol: Any) -> None:
        """
        A connection's transport is connected and its protocol built.
        """
        connection.protocol = protocol
        self.byProtocol[protocol] = connection

    def ready(self, connection: Connection) -> None:
        """
        A connection is ready for requests.
        """
        if connection.state is not State.CONNECTING:
            return
        self.connecting.remove(connection)
        self.created += 1
        self._log.info("Connected to {address}", address=self._address, txconnpoolEvent="connect")
        self.open.add(connection)
        connection.state = State.BUSY
        now = self._clock.seconds()
        connection.lastUsed = connection.lastActive = now
        connection.expiresAt = _upkeep.expiry(now, self._options.maxLifetime, random.random())
        self.checkin(connection)
        if self._readyWaiters and len(self.open) >= self.minClients:
            self._readyWaiters.fire()
        self._changed()

    def failed(self, connection: Connection, reason: Failure) -> None:
        """
        A connection attempt failed, timed out, or its handshake failed.
        """
        if connection.state is not State.CONNECTING:
            return
        # No replacement may start before the failure is counted and the backoff runs.
        self._held += 1
        try:
            self.retire(connection, "connect", abort=True)
            self.connectFailed(reason)
        finally:
            self._held -= 1
        self._changed()

    def lost(self, connection: Connection, reason: Failure) -> None:
        """
        A ready connection's transport is gone. One lost before it proved usable, with a
        request in flight or after the server spoke, counts as a failed attempt.
        """
        if connection.state is State.GONE:
            return
        self._log.info(
            "Connection to {address} lost: {reason}",
            address=self._address,
            reason=reason.value,
            txconnpoolEvent="lost",
        )
        unproven = not connection.proven and (connection.flights or connection.link.received)
        self.retire(connection, "lost")
        if unproven:
            self.connectFailed(reason)

    def ended(self, connection: Connection, reason: Failure) -> None:
        """
        Nothing of a connection is left open.
        """
        if connection.flights:
            self._onEnded(connection, reason)
        self._changed()
        if self.closing:
            self._closeWaiters.check()

    # Checkouts

    def release(self, connection: Connection) -> None:
        """
        A checked-out connection is given back.
        """
        connection.holder = None
        if not connection.proven:
            self.prove(connection)
        self.checkin(connection)
        self._changed()

    def discard(self, connection: Connection) -> None:
        """
        A connection is given back as broken, or removed by its owner.
        """
        if isCheckout(connection.holder):
            connection.holder = None
        self.retire(connection, "caller", abort=True)
        self._changed()

    def forget(self, protocol: Any) -> Connection | None:
        """
        Forget which connection C{protocol} was on, and return it.
        """
        return self.byProtocol.pop(protocol, None)

    # Readiness and closing

    def whenReady(self, timeout: float) -> Deferred[None]:
        """
        Wait until C{minClients} connections are up; see C{Pool.whenReady}.
        """
        if self.closing:
            return fail(PoolClosedError(f"{self._describe()} is closed"))
        if len(self.open) >= self.minClients:
            return succeed(None)
        waiter = self._readyWaiters.wait(timeout)
        self._changed()
        return waiter

    def _notReady(self, timeout: float) -> Exception:
        ready = len(self.open)
        lastError = self.circuit.lastError
        if lastError is None:
            return PoolTimeoutError(
                f"only {ready} of {self.minClients} connections to {self._address} are up "
                f"after {timeout}s"
            )
        failure = ServerUnavailableError(
            f"only {ready} of {self.minClients} connections to {self._address} are up "
            f"after {timeout}s; the last connection attempt failed with: {lastError}"
        )
        failure.__cause__ = lastError
        return failure

    def stopOpening(self) -> None:
        """
        The pool is closing: open no more connections, and fail those waiting for readiness.
        """
        self.closing = True
        self.circuit.stop()
        self._readyWaiters.failAll(PoolClosedError(f"{self._describe()} was closed"))

    def closeAll(self, timeout: float | None) -> Deferred[None]:
        """
        After L{stopOpening}: close the connections unused now, and the others once unused;
        drop those still open after C{timeout} seconds, unless it is L{None}.

        @return: L{whenClosed}.
        """
        for connection in self.connecting + self.idle:
            self.retire(connection, "closed")
        self._closeWaiters.dropAfter(timeout)
        return self.whenClosed()

    def whenClosed(self) -> Deferred[None]:
        """
        @return: A L{Deferred} firing with L{None} once every connection is closed.
        """
        return self._closeWaiters.wait()

    def unavailable(self) -> ServerUnavailableError:
        """
        @return: The error of a request refused because the server is out of reach.
        """
        return self.circuit.unavailable()


def isCheckout(holder: object) -> bool:
    """
    @return: Whether a connection's holder is a checkout.
    """
    return isinstance(holder, Checkout)
