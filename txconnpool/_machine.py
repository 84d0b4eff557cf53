"""
The state machine of a pool: requests waiting, connections connecting, idle and busy, and the
dispatch loop that brings them together. L{txconnpool.pool.Pool} is its public face.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from twisted.internet import error
from twisted.internet.defer import Deferred, fail
from twisted.logger import Logger
from twisted.python.failure import Failure

from ._circuit import Circuit
from ._connection import Connection, PoolFactory, Request, State
from ._options import PoolOptions
from .errors import (
    ConnectionLostError,
    NoSuchCommand,
    PoolClosedError,
    PoolFullError,
    PoolTimeoutError,
    RequestTimeoutError,
    ServerUnavailableError,
)


class PoolMachine:
    """
    The pool's state and every change to it. Requests and connections meet in one place,
    L{_dispatch}, a loop that callbacks re-entering the pool never recurse into.

    Subclasses provide C{clientFactory}, C{brokenConnectionErrors} and C{idempotentMethods}.
    """

    clientFactory: Any
    brokenConnectionErrors: tuple[type[BaseException], ...]
    idempotentMethods: frozenset[str]

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

        self._waiters: deque[Request] = deque()
        self._waiting = 0
        self._cancelledWaiters = 0
        self._idle: list[Connection] = []
        self._connecting: list[Connection] = []
        self._busy = 0
        self._live: set[Connection] = set()
        self._byProtocol: dict[Any, Connection] = {}
        self._dispatching = False

        self._created = 0
        self._closedCount = 0
        self._requests = 0
        self._failedRequests = 0

        self._closing = False
        self._closeWaiters: list[Deferred[None]] = []
        self._closeTimer: Any = None

    def _submit(
        self, method: str | None, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Deferred[Any]:
        self._requests += 1
        refusal = self._refusal()
        if refusal is not None:
            self._failedRequests += 1
            return fail(refusal)
        request = Request(method, args, kwargs, Deferred(lambda d: self._cancel(request)))
        self._waiters.append(request)
        self._waiting += 1
        self._dispatch()
        timeout = self._options.acquireTimeout
        if timeout is not None and request.connection is None and not request.done:
            request.timer = self._reactor.callLater(timeout, self._waitTimedOut, request)
        return request.deferred

    def _refusal(self) -> Exception | None:
        """
        @return: Why a new request must fail at once, or L{None} if it may wait.
        """
        if self._closing:
            return PoolClosedError(f"{self!r} is closed")
        if self._circuit.isOpen() and not (self._busy or self._idle):
            return self._unavailable()
        maxWaiters = self._options.maxWaiters
        if (
            maxWaiters is not None
            and self._total() >= self._maxClients
            and self._waiting - len(self._connecting) >= maxWaiters
        ):
            return PoolFullError(
                f"too many requests waiting for a connection to {self._address} "
                f"(maxWaiters={maxWaiters}; {self._counts()})"
            )
        return None

    def _dispatch(self) -> None:
        """
        Hand waiting requests to idle connections, and open connections for the rest within
        C{maxClients}. Re-entrant calls (from callbacks run meanwhile) return at once, and
        this loop picks up the work they made.
        """
        if self._dispatching:
            return
        self._dispatching = True
        try:
            while True:
                while self._waiting and self._idle:
                    if getattr(self._idle[-1].transport, "disconnecting", False):
                        self._retire(self._idle[-1])
                        continue
                    request = self._waiters.popleft()
                    if request.done:
                        self._cancelledWaiters -= 1
                        continue
                    self._waiting -= 1
                    self._assign(request, self._idle.pop())
                while (
                    self._waiting > len(self._connecting)
                    and self._total() < self._maxClients
                    and not self._closing
                    and self._circuit.mayConnect(len(self._connecting))
                ):
                    if not self._connect():
                        break
                if not (self._waiting and self._idle):
                    break
        finally:
            self._dispatching = False

    def _assign(self, request: Request, connection: Connection) -> None:
        connection.state = State.BUSY
        self._busy += 1
        connection.current = request
        request.connection = connection
        if request.timer is not None:
            request.timer.cancel()
            request.timer = None
        if request.method is None:
            self._settle(request, connection.protocol)
            return
        request.mark = connection.received
        timeout = self._options.requestTimeout
        if timeout is not None:
            request.timer = self._reactor.callLater(timeout, self._requestTimedOut, request)
        method = getattr(connection.protocol, request.method, None)
        if not callable(method):
            result: Any = Failure(self._noSuchCommand(type(connection.protocol), request.method))
        else:
            try:
                result = method(*request.args, **request.kwargs)
            except Exception:
                result = Failure()
        if isinstance(result, Deferred):
            result.addBoth(self._finished, connection, request)
        else:
            self._finished(result, connection, request)

    def _finished(self, result: Any, connection: Connection, request: Request) -> None:
        if connection.current is request:
            connection.current = None
            if (
                connection.lost
                or getattr(connection.transport, "disconnecting", False)
                or (isinstance(result, Failure) and result.check(*self.brokenConnectionErrors))
            ):
                self._retire(connection, abort=True)
            else:
                if not connection.proven:
                    self._prove(connection)
                self._checkin(connection)
        if request.done:
            return None
        if isinstance(result, Failure) and result.check(
            error.ConnectionClosed, ConnectionLostError
        ):
            if self._mayRetry(request, connection):
                self._requeue(request)
                self._dispatch()
                return None
            if not result.check(ConnectionLostError):
                result = Failure(self._lostError(result))
        self._settle(request, result)
        return None

    def _mayRetry(self, request: Request, connection: Connection) -> bool:
        """
        Whether a request that failed because its connection went away may be sent again: it
        never was answered (no data arrived after it was sent), it is idempotent, and it was
        not retried already.
        """
        return (
            not request.retried
            and not self._closing
            and not self._circuit.isOpen()
            and request.method in self.idempotentMethods
            and connection.received == request.mark
        )

    def _requeue(self, request: Request) -> None:
        """
        Put a request back at the head of the queue, to be sent on another connection.
        """
        self._log.info(
            "Retrying {method} on a new connection to {address}: the connection it was sent "
            "on had been closed",
            method=request.method,
            address=self._address,
        )
        if request.timer is not None:
            request.timer.cancel()
            request.timer = None
        request.retried = True
        request.connection = None
        self._waiters.appendleft(request)
        self._waiting += 1

    def _settle(self, request: Request, result: Any) -> None:
        """
        Fire a request's L{Deferred}, then serve waiting requests. Requests that its callbacks
        make queue behind those already waiting.
        """
        request.done = True
        if request.timer is not None:
            request.timer.cancel()
            request.timer = None
        if isinstance(result, Failure):
            self._failedRequests += 1
        request.deferred.callback(result)
        self._dispatch()

    def _cancel(self, request: Request) -> None:
        """
        The canceller of a request's L{Deferred}, which then fails with
        L{CancelledError<twisted.internet.defer.CancelledError>}.
        """
        request.done = True
        self._failedRequests += 1
        if request.timer is not None:
            request.timer.cancel()
            request.timer = None
        connection = request.connection
        if connection is None:
            self._dequeue(request)
        elif connection.current is request:
            self._retire(connection, abort=True)
            self._dispatch()

    def _dequeue(self, request: Request) -> None:
        """
        Forget a waiting request that was cancelled or timed out (it stays in the queue until
        the dispatch loop or a compaction skips it), and cancel a connection attempt that no
        request needs any more.
        """
        self._waiting -= 1
        self._cancelledWaiters += 1
        if self._cancelledWaiters > 32 and self._cancelledWaiters > self._waiting:
            self._waiters = deque(r for r in self._waiters if not r.done)
            self._cancelledWaiters = 0
        if len(self._connecting) > self._waiting:
            surplus = self._connecting[-1]
            if surplus.attempt is not None:
                self._retire(surplus)

    def _waitTimedOut(self, request: Request) -> None:
        """
        A request waited C{acquireTimeout} seconds for a connection: fail it with
        L{PoolTimeoutError}.
        """
        request.timer = None
        if request.done or request.connection is not None:
            return
        request.done = True
        self._dequeue(request)
        self._settle(
            request,
            Failure(
                PoolTimeoutError(
                    f"timed out after {self._options.acquireTimeout}s waiting for a connection "
                    f"to {self._address} ({self._counts()})"
                )
            ),
        )

    def _requestTimedOut(self, request: Request) -> None:
        """
        A request had no reply within C{requestTimeout} seconds: fail it with
        L{RequestTimeoutError} and drop its connection, whose late reply cannot be trusted.
        """
        request.timer = None
        connection = request.connection
        if request.done or connection is None:
            return
        if connection.current is request:
            connection.current = None
            self._retire(connection, abort=True)
        self._settle(
            request,
            Failure(
                RequestTimeoutError(
                    f"no reply to {request.method} from {self._address} within "
                    f"{self._options.requestTimeout}s; the connection was dropped"
                )
            ),
        )

    # Connections

    def _total(self) -> int:
        return self._busy + len(self._idle) + len(self._connecting)

    def _connect(self) -> bool:
        """
        Start a connection attempt.

        @return: Whether the attempt is still in progress or succeeded; C{False} when it
            failed at once.
        """
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
            self._retire(connection)
            self._connectFailed(reason)
        self._dispatch()
        self._maybeClosed()

    def _connectTimedOut(self, connection: Connection) -> None:
        """
        A connection attempt, or the handshake after it, took longer than C{connectTimeout}.
        """
        connection.timer = None
        if connection.state is State.CONNECTING:
            self._connectFailed(
                Failure(
                    error.TimeoutError(
                        f"connecting to {self._address} took longer than "
                        f"{self._options.connectTimeout}s"
                    )
                )
            )
            self._retire(connection, abort=True)
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
            self._connectFailed(reason)
            self._retire(connection, abort=True)
            self._dispatch()

    def _markReady(self, connection: Connection) -> None:
        self._stopConnectTimer(connection)
        self._connecting.remove(connection)
        self._created += 1
        self._log.debug("Connected to {address}", address=self._address)
        self._busy += 1
        connection.state = State.BUSY
        self._checkin(connection)
        self._dispatch()

    def _checkin(self, connection: Connection) -> None:
        """
        Return a busy connection to the idle set, or close it when the pool is closing or
        over its size.
        """
        if self._closing or self._total() > self._maxClients:
            self._retire(connection)
            return
        self._busy -= 1
        connection.state = State.IDLE
        self._idle.append(connection)

    def _retire(self, connection: Connection, abort: bool = False) -> None:
        """
        Take a connection out of service for good and close it (or cancel its attempt).
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
        current = connection.current
        if current is None or current.method is not None:
            self._byProtocol.pop(connection.protocol, None)
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
        request = connection.current
        inFlight = request is not None and request.method is not None
        if state is not State.GONE:
            self._log.info(
                "Connection to {address} lost: {reason}",
                address=self._address,
                reason=reason.value,
            )
            self._retire(connection)
            if state is State.CONNECTING or (inFlight and not connection.proven):
                self._connectFailed(reason)
        protocol = connection.protocol
        try:
            protocol.connectionLost(reason)
        except Exception:
            self._log.failure("connectionLost of {protocol!r} raised", protocol=protocol)
        if request is not None and inFlight and connection.current is request:
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
        delay = self._circuit.failed(reason.value)
        self._log.warn(
            "Could not connect to {address} ({failures} consecutive failures): {reason}; "
            "next attempt in {delay:.2f}s",
            address=self._address,
            failures=self._circuit.failures,
            reason=reason.value,
            delay=delay,
        )
        if not self._circuit.exhausted() or self._busy or self._idle:
            return
        self._log.warn(
            "Circuit to {address} open: requests fail fast until a connection succeeds",
            address=self._address,
        )
        waiters, self._waiters = self._waiters, deque()
        self._waiting = self._cancelledWaiters = 0
        for request in waiters:
            if not request.done:
                self._settle(request, Failure(self._unavailable()))

    def _prove(self, connection: Connection) -> None:
        """
        A connection carried a request without breaking: the server is reachable again.
        """
        connection.proven = True
        if self._circuit.succeeded():
            self._log.info("Circuit to {address} closed", address=self._address)

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

    # Helpers

    def _checkedOut(self, protocol: Any) -> Connection | None:
        """
        Find the connection that C{protocol} was checked out on. L{None} means it was lost
        meanwhile and there is nothing to do.
        """
        connection = self._byProtocol.get(protocol)
        if connection is not None and connection.state is State.GONE:
            del self._byProtocol[protocol]
            return None
        if connection is None or connection.current is None or connection.current.method:
            raise ValueError(f"{protocol!r} is not checked out from {self!r}")
        return connection

    def _lostError(self, reason: Failure) -> ConnectionLostError:
        lost = ConnectionLostError(
            f"connection to {self._address} was lost before the reply: {reason.value}"
        )
        lost.__cause__ = reason.value
        return lost

    def _noSuchCommand(self, protocolClass: type, method: str) -> NoSuchCommand:
        return NoSuchCommand(f"{protocolClass.__name__} has no method {method!r}")

