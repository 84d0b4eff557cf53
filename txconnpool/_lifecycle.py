"""
The connections of a pool, from connection attempt to close: opening them (with a timeout and
the backoff of L{Circuit}), noticing when they are ready and when they are lost, taking them
in and out of service, and closing them all.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet import error
from twisted.internet.defer import Deferred, fail
from twisted.logger import Logger
from twisted.python.failure import Failure

from ._circuit import Circuit
from ._connection import Connection, PoolFactory, Request, State
from ._options import PoolOptions
from .errors import ConnectionLostError, ServerUnavailableError


class ConnectionMachine:
    """
    The connection half of a pool's state. L{txconnpool._machine.PoolMachine} adds the
    requests, and provides the methods this half calls when connections come and go.
    """

    clientFactory: Any

    _log = Logger()

    def __init__(
        self, reactor: Any, endpoint: Any, address: str, maxClients: int, options: PoolOptions
    ) -> None:
        self._reactor = reactor
        self._endpoint = endpoint
        self._address = address
        self._maxClients = maxClients
        self._options = options
        self._circuit = Circuit(
            reactor, options.retryPolicy, options.failFastAfter, onRetry=self._dispatch
        )
        self._idle: list[Connection] = []
        self._connecting: list[Connection] = []
        self._busy = 0
        self._live: set[Connection] = set()
        self._byProtocol: dict[Any, Connection] = {}
        self._created = 0
        self._closedCount = 0
        self._discards: dict[str, int] = {}
        self._connectsAttempted = 0
        self._connectsFailed = 0
        self._closing = False
        self._closeWaiters: list[Deferred[None]] = []
        self._closeTimer: Any = None

    # Provided by PoolMachine.

    _waiting: int
    _dispatching: bool

    def _dispatch(self) -> None:
        raise NotImplementedError()

    def _finished(self, result: Any, connection: Connection, request: Request) -> None:
        raise NotImplementedError()

    def _failWaiters(self, makeError: Callable[[], Exception]) -> None:
        raise NotImplementedError()

    # Provided by Housekeeping.

    _timed: bool
    _sweepTimer: Any
    _sweepAt: float
    _idleInterval: float

    def _connectionReady(self, connection: Connection) -> None:
        raise NotImplementedError()

    def _connectionIdle(self, connection: Connection, now: float) -> None:
        raise NotImplementedError()

    def _checkedIn(self, connection: Connection) -> None:
        raise NotImplementedError()

    def _fireReady(self) -> None:
        raise NotImplementedError()

    def _stopAccepting(self, connection: Connection) -> None:
        raise NotImplementedError()

    # Connections

    def _total(self) -> int:
        return self._busy + len(self._idle) + len(self._connecting)

    def _connect(self) -> bool:
        """
        Start a connection attempt.

        @return: Whether the attempt is still in progress or succeeded; C{False} when it
            failed at once.
        """
        self._connectsAttempted += 1
        factory = self.clientFactory()
        factory.connectionPool = self
        if factory.deferred is None:
            factory.deferred = Deferred()
        connection = Connection(factory, factory.deferred)
        self._connecting.append(connection)
        self._live.add(connection)
        timeout = self._options.connectTimeout
        if timeout is not None:
            connection.timer = self._reactor.callLater(
                timeout, self._connectTimedOut, connection
            )
        connection.ready.addCallbacks(
            self._readyFired,
            self._readyFailed,
            callbackArgs=(connection,),
            errbackArgs=(connection,),
        )
        try:
            attempt = self._endpoint.connect(PoolFactory(self, connection))
        except Exception:
            attempt = fail()
        if not attempt.called:
            connection.attempt = attempt
        attempt.addCallbacks(
            self._attemptSucceeded,
            self._attemptFailed,
            callbackArgs=(connection,),
            errbackArgs=(connection,),
        )
        return connection.state is not State.GONE

    def _attemptSucceeded(self, protocol: object, connection: Connection) -> None:
        connection.attempt = None

    def _attemptFailed(self, reason: Failure, connection: Connection) -> None:
        connection.attempt = None
        self._live.discard(connection)
        if connection.state is State.CONNECTING:
            self._retire(connection, "connect")
            self._connectFailed(reason)
        self._dispatch()
        self._maybeClosed()

    def _connectTimedOut(self, connection: Connection) -> None:
        """
        A connection attempt, or the handshake after it, took longer than C{connectTimeout}.
        """
        connection.timer = None
        if connection.state is State.CONNECTING:
            self._abandonAttempt(connection)
            self._connectFailed(
                Failure(
                    error.TimeoutError(
                        f"connecting to {self._address} took longer than "
                        f"{self._options.connectTimeout}s"
                    )
                )
            )
            self._dispatch()

    def _connectionMade(self, connection: Connection, protocol: Any, transport: Any) -> None:
        """
        Called by the connection's L{PoolProtocol} when the transport is connected.
        """
        connection.attempt = None
        connection.transport = transport
        self._byProtocol[protocol] = connection
        protocol.makeConnection(transport)
        if connection.state is not State.CONNECTING or connection.ready.called:
            return
        try:
            preparing = connection.factory.prepareConnection(protocol)
        except Exception:
            preparing = fail()
        if preparing is None:
            connection.ready.callback(protocol)
            return

        def prepared(result: object) -> None:
            if not connection.ready.called:
                connection.ready.callback(protocol)

        def notPrepared(reason: Failure) -> None:
            if not connection.ready.called:
                connection.ready.errback(reason)

        preparing.addCallbacks(prepared, notPrepared)

    def _readyFired(self, result: object, connection: Connection) -> object:
        if connection.state is State.CONNECTING and not connection.lost:
            self._markReady(connection)
        return result

    def _readyFailed(self, reason: Failure, connection: Connection) -> None:
        if connection.state is State.CONNECTING:
            self._abandonAttempt(connection)
            self._connectFailed(reason)
            self._dispatch()

    def _abandonAttempt(self, connection: Connection) -> None:
        """
        Give up a connection attempt (cancel it, or drop the connection still in its
        handshake), holding dispatch off so that no replacement starts before the failure is
        counted.
        """
        held, self._dispatching = self._dispatching, True
        try:
            self._retire(connection, "connect", abort=True)
        finally:
            self._dispatching = held

    def _markReady(self, connection: Connection) -> None:
        self._stopConnectTimer(connection)
        self._connecting.remove(connection)
        self._created += 1
        self._log.info(
            "Connected to {address}", address=self._address, txconnpoolEvent="connect"
        )
        self._busy += 1
        connection.state = State.BUSY
        self._connectionReady(connection)
        self._checkin(connection)
        self._fireReady()
        self._dispatch()

    def _checkin(
        self, connection: Connection, used: bool = True, now: float | None = None
    ) -> None:
        """
        Return a busy connection to the idle set, or close it when the pool is closing, over
        its size, or past the connection's lifetime.

        @param used: Whether the connection served a request (rather than a ping).
        @param now: The time, if the caller has it.
        """
        if self._closing:
            self._retire(connection, "closed")
            return
        if self._busy + len(self._idle) + len(self._connecting) > self._maxClients:
            self._retire(connection, "surplus")
            return
        if now is None:
            now = self._reactor.seconds()
        if connection.expiresAt is not None and now >= connection.expiresAt:
            self._retire(connection, "lifetime")
            return
        if used:
            connection.lastUsed = connection.lastActive = now
        self._busy -= 1
        connection.state = State.IDLE
        self._idle.append(connection)
        # Skip the deadline arithmetic when the pending sweep comes first anyway.
        if self._timed and (
            self._sweepTimer is None
            or connection.expiresAt is not None
            or self._sweepAt > now + self._idleInterval
        ):
            self._connectionIdle(connection, now)

    def _retire(self, connection: Connection, reason: str, abort: bool = False) -> None:
        """
        Take a connection out of service for good and close it (or cancel its attempt).

        @param reason: Why, as named in L{DiscardCounts<txconnpool.stats.DiscardCounts>}.
        @param abort: Drop the connection rather than close it after pending writes.
        """
        state = connection.state
        if state is State.GONE:
            return
        connection.state = State.GONE
        self._stopConnectTimer(connection)
        if state is State.IDLE:
            self._idle.remove(connection)
        elif state is State.BUSY:
            self._busy -= 1
        else:
            self._connecting.remove(connection)
        if state is not State.CONNECTING:
            self._closedCount += 1
            self._discards[reason] = self._discards.get(reason, 0) + 1
            self._log.debug(
                "Closing a connection to {address}: {reason}",
                address=self._address,
                reason=reason,
                txconnpoolEvent="discard",
            )
        if connection.accepting:
            self._stopAccepting(connection)
        holder = connection.holder
        if holder is None or holder.method is not None:
            self._byProtocol.pop(connection.protocol, None)
        self._checkedIn(connection)
        if connection.attempt is not None:
            connection.attempt.cancel()
        else:
            connection.close(abort)

    def _connectionLost(self, connection: Connection, reason: Failure) -> None:
        """
        Called by the connection's L{PoolProtocol} when the transport is gone.
        """
        connection.lost = True
        state = connection.state
        inFlight = bool(connection.requests)
        if state is not State.GONE:
            self._log.info(
                "Connection to {address} lost: {reason}",
                address=self._address,
                reason=reason.value,
                txconnpoolEvent="lost",
            )
            self._retire(connection, "lost")
            if state is State.CONNECTING or (inFlight and not connection.proven):
                self._connectFailed(reason)
        protocol = connection.protocol
        try:
            protocol.connectionLost(reason)
        except Exception:
            self._log.failure("connectionLost of {protocol!r} raised", protocol=protocol)
        for request in list(connection.requests):
            self._finished(Failure(self._lostError(reason)), connection, request)
        self._live.discard(connection)
        self._dispatch()
        self._maybeClosed()

    def _connectFailed(self, reason: Failure) -> None:
        """
        A connection attempt failed, or a new connection broke before it proved usable. The
        next attempt waits for the backoff delay; after C{failFastAfter} consecutive failures,
        with no connection open, the waiting requests fail with L{ServerUnavailableError}
        rather than wait on a server out of reach.
        """
        if self._closing:
            return
        self._connectsFailed += 1
        delay = self._circuit.failed(reason.value)
        self._log.warn(
            "Could not connect to {address} ({failures} consecutive failures): {reason}; "
            "next attempt in {delay:.2f}s",
            address=self._address,
            failures=self._circuit.failures,
            reason=reason.value,
            delay=delay,
            txconnpoolEvent="connectFailed",
        )
        if not self._circuit.exhausted() or self._busy or self._idle:
            return
        if self._circuit.failures == self._options.failFastAfter:
            self._log.warn(
                "Circuit to {address} open: requests fail fast until a connection succeeds",
                address=self._address,
                txconnpoolEvent="circuitOpen",
            )
        self._failWaiters(self._unavailable)

    def _prove(self, connection: Connection) -> None:
        """
        A connection carried a request without breaking: the server is reachable again.
        """
        connection.proven = True
        if self._circuit.succeeded():
            self._log.info(
                "Circuit to {address} closed",
                address=self._address,
                txconnpoolEvent="circuitClosed",
            )

    def _stopConnectTimer(self, connection: Connection) -> None:
        if connection.timer is not None:
            connection.timer.cancel()
            connection.timer = None

    def _unavailable(self) -> ServerUnavailableError:
        unavailable = ServerUnavailableError(
            f"cannot connect to {self._address}: {self._circuit.failures} consecutive "
            f"attempts failed, the last with: {self._circuit.lastError}"
        )
        unavailable.__cause__ = self._circuit.lastError
        return unavailable

    def _counts(self) -> str:
        return (
            f"{self._busy} busy, {len(self._idle)} idle, {len(self._connecting)} connecting, "
            f"{self._waiting} waiting"
        )

    def _dropAll(self) -> None:
        self._closeTimer = None
        for connection in list(self._live):
            if connection.attempt is not None:
                connection.attempt.cancel()
            else:
                connection.close(abort=True)

    def _maybeClosed(self) -> None:
        if not self._closing or self._live:
            return
        if self._closeTimer is not None:
            self._closeTimer.cancel()
            self._closeTimer = None
        waiters, self._closeWaiters = self._closeWaiters, []
        for waiter in waiters:
            waiter.callback(None)

    def _checkedOut(self, protocol: Any) -> Connection | None:
        """
        Find the connection that C{protocol} was checked out on. L{None} means it was lost
        meanwhile and there is nothing to do.
        """
        connection = self._byProtocol.get(protocol)
        if connection is not None and connection.state is State.GONE:
            del self._byProtocol[protocol]
            return None
        if connection is None or connection.holder is None or connection.holder.method:
            raise ValueError(f"{protocol!r} is not checked out from {self!r}")
        return connection

    def _lostError(self, reason: Failure) -> ConnectionLostError:
        lost = ConnectionLostError(
            f"connection to {self._address} was lost before the reply: {reason.value}"
        )
        lost.__cause__ = reason.value
        return lost
