"""
A pool of client connections for any Twisted protocol.

A L{Pool} opens up to C{maxClients} connections to one server, hands each request to an idle
connection, queues requests (first in, first out) when every connection is busy, and replaces
connections that fail. Every L{Deferred} it returns fires exactly once.
"""

from __future__ import annotations

from collections import deque
from typing import Any, Generic, TypeVar

from twisted.internet import error
from twisted.internet.defer import CancelledError, Deferred, TimeoutError, fail, succeed
from twisted.internet.interfaces import IReactorCore
from twisted.internet.protocol import Factory
from twisted.logger import Logger
from twisted.python.failure import Failure

from ._address import endpointFor
from ._connection import Connection, PoolFactory, Request, State
from .errors import (
    ConnectionLostError,
    NoSuchCommand,
    PoolClosedError,
    ProtocolError,
    ServerUnavailableError,
)
from .stats import PoolStats

__all__ = ["BROKEN_CONNECTION_ERRORS", "NoSuchCommand", "Pool", "PooledClientFactory"]

_P = TypeVar("_P")

BROKEN_CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    error.ConnectionClosed,
    ConnectionLostError,
    ProtocolError,
    TimeoutError,
    CancelledError,
)
"""
Errors that mean a connection can no longer be trusted: a request failing with one of these,
or a C{connection()} block left with one, discards the connection instead of reusing it.
"""


class PooledClientFactory(Factory):
    """
    Builds the protocol of each pooled connection; subclass it and set C{protocol}.

    The pool makes one factory per connection, calling the class with no arguments, and then
    sets C{connectionPool}. A connection is handed out once it is ready, which is one of:

      - the protocol fires C{self.factory.deferred} with itself (usually in C{connectionMade},
        which is the txconnpool 0.1.1 contract; calling
        C{self.factory.connectionPool.clientFree(self)} there is accepted too);
      - otherwise, when C{connectionMade} has run and L{prepareConnection} returned L{None}
        (the default), or once the L{Deferred} it returned has fired.

    @ivar connectionPool: The L{Pool} this factory's connection belongs to.
    @ivar deferred: The readiness L{Deferred} of this factory's connection.
    """

    noisy = False
    connectionPool: Pool[Any] | None = None
    deferred: Deferred[Any] | None = None

    def __init__(self) -> None:
        self.deferred = Deferred()

    def prepareConnection(self, protocol: Any) -> Deferred[object] | None:
        """
        Make a newly connected protocol ready for requests: the hook for protocols that must
        complete a handshake, select a database or authenticate first.

        Called once the protocol's C{connectionMade} has run, unless the protocol already
        signalled readiness through C{self.deferred}.

        @param protocol: The connected protocol.
        @return: L{None} when the protocol is ready at once, or a L{Deferred} that fires when it
            is ready; if that L{Deferred} fails, the connection is closed and counts as a failed
            connection attempt.
        """
        return None


class Pool(Generic[_P]):
    """
    A pool of connections to one server.

    Subclass it with C{clientFactory} set to a L{PooledClientFactory} subclass, and give the
    subclass methods that call L{performRequest}.

    @cvar clientFactory: The L{PooledClientFactory} subclass building each connection.
    @cvar brokenConnectionErrors: Exception classes meaning that the connection a request
        failed on is unusable; see L{BROKEN_CONNECTION_ERRORS}.
    """

    clientFactory: type[PooledClientFactory] = PooledClientFactory
    brokenConnectionErrors: tuple[type[BaseException], ...] = BROKEN_CONNECTION_ERRORS

    _log = Logger()

    def __init__(
        self,
        serverAddress: object,
        maxClients: int = 5,
        reactor: Any = None,
        *,
        shutdownTimeout: float = 5.0,
    ) -> None:
        """
        @param serverAddress: Where to connect: an endpoint description string such as
            C{"tcp:127.0.0.1:11211"} or C{"unix:/run/memcached.sock"} (anything
            C{clientFromString} accepts, TLS and IPv6 forms included), an
            L{IStreamClientEndpoint} provider, or an L{IPv4Address}, L{IPv6Address} or
            L{UNIXAddress}.
        @param maxClients: The most connections open at once, connection attempts included.
        @param reactor: The reactor to connect and keep time with; the global reactor if
            L{None}.
        @param shutdownTimeout: When the reactor shuts down, the pool closes itself and waits
            this many seconds for requests in flight before dropping their connections.

        @raise TypeError: An argument has the wrong type.
        @raise ValueError: An argument has an impossible value.
        """
        _checkMaxClients(maxClients)
        if isinstance(shutdownTimeout, bool) or not isinstance(shutdownTimeout, (int, float)):
            raise TypeError(f"shutdownTimeout must be a number, not {shutdownTimeout!r}")
        if not shutdownTimeout >= 0:
            raise ValueError(f"shutdownTimeout must be 0 or more, not {shutdownTimeout!r}")
        if reactor is None:
            from twisted.internet import reactor as globalReactor

            reactor = globalReactor
        self._reactor = reactor
        endpoint, self._address = endpointFor(reactor, serverAddress)
        self._endpoint: Any = endpoint
        self._maxClients = maxClients
        self._shutdownTimeout = float(shutdownTimeout)

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
        self._shutdownTrigger: Any = None
        if IReactorCore.providedBy(reactor):
            self._shutdownTrigger = reactor.addSystemEventTrigger(
                "before", "shutdown", self._atShutdown
            )

    # Requests

    def performRequest(self, method: str, *args: Any, **kwargs: Any) -> Deferred[Any]:
        """
        Call C{method} of a connection's protocol with the given arguments, on the first
        connection free.

        @param method: The name of the protocol's method.
        @return: A L{Deferred} firing with what the method's L{Deferred} fires with (or what
            it returns, if it is not a L{Deferred}). It fails with the method's own error; with
            L{NoSuchCommand} when the protocol has no such method; with L{ConnectionLostError}
            when the connection is lost before the reply; with L{PoolClosedError} when the
            pool is or gets closed before the request is sent; with L{ServerUnavailableError}
            when no connection to the server can be made; with L{CancelledError} when
            cancelled. Cancelling a request in flight discards its connection.
        """
        if not isinstance(method, str):
            raise TypeError(f"method must be a str naming a protocol method, not {method!r}")
        protocolClass = getattr(self.clientFactory, "protocol", None)
        if (
            isinstance(protocolClass, type)
            and not hasattr(protocolClass, method)
            and not hasattr(protocolClass, "__getattr__")
        ):
            self._requests += 1
            self._failedRequests += 1
            return fail(self._noSuchCommand(protocolClass, method))
        return self._submit(method, args, kwargs)

    def acquire(self) -> Deferred[_P]:
        """
        Check a connection out for several commands in a row; give it back with L{release}.

        @return: A L{Deferred} firing with the protocol of a ready connection, which no other
            request uses until it is released. It fails like L{performRequest} does while
            waiting.
        """
        return self._submit(None, (), {})

    def release(self, protocol: _P) -> None:
        """
        Give back a connection checked out with L{acquire}.

        Releasing a connection that was lost meanwhile is allowed and does nothing more.

        @raise ValueError: C{protocol} is not checked out from this pool.
        """
        connection = self._checkedOut(protocol)
        if connection is not None:
            connection.current = None
            self._checkin(connection)
            self._dispatch()

    def discard(self, protocol: _P) -> None:
        """
        Close a connection checked out with L{acquire} instead of giving it back: it is never
        handed out again, and a new one is opened if requests are waiting.

        @raise ValueError: C{protocol} is not checked out from this pool.
        """
        connection = self._checkedOut(protocol)
        if connection is not None:
            connection.current = None
            self._retire(connection, abort=True)
            self._dispatch()

    def connection(self) -> CheckedOutConnection[_P]:
        """
        Check a connection out for the length of an C{async with} block::

            async with pool.connection() as protocol:
                await protocol.set(b"a", b"1")
                await protocol.get(b"a")

        Leaving the block gives the connection back, unless it is left with one of
        C{brokenConnectionErrors}, which discards it.
        """
        return CheckedOutConnection(self)

    # State and lifecycle

    def poolStats(self) -> PoolStats:
        """
        @return: A snapshot of the pool's counters.
        """
        return PoolStats(
            busy=self._busy,
            idle=len(self._idle),
            connecting=len(self._connecting),
            waiting=self._waiting,
            maxClients=self._maxClients,
            created=self._created,
            closed=self._closedCount,
            requests=self._requests,
            failedRequests=self._failedRequests,
        )

    def suggestMaxClients(self, maxClients: int) -> None:
        """
        Change the most connections open at once. Growing serves waiting requests at once;
        shrinking closes idle connections now and busy ones when they come back.

        @raise TypeError: C{maxClients} is not an C{int}.
        @raise ValueError: C{maxClients} is less than 1.
        """
        _checkMaxClients(maxClients)
        self._maxClients = maxClients
        while self._idle and self._total() > maxClients:
            self._retire(self._idle[0])
        self._dispatch()

    def close(self, timeout: float | None = None) -> Deferred[None]:
        """
        Close the pool. New requests fail at once with L{PoolClosedError}, and so do the
        queued ones; requests in flight finish, connections checked out are closed when
        released, and every connection is closed once unused.

        @param timeout: If not L{None}, after this many seconds the connections still open are
            dropped, and their requests fail with L{ConnectionLostError}.
        @return: A L{Deferred} firing with L{None} once every connection is closed. It never
            fails.
        """
        if self._closing:
            if not self._live:
                return succeed(None)
            waiter: Deferred[None] = Deferred()
            self._closeWaiters.append(waiter)
            return waiter
        self._closing = True
        if self._shutdownTrigger is not None:
            self._reactor.removeSystemEventTrigger(self._shutdownTrigger)
            self._shutdownTrigger = None
        waiters, self._waiters = self._waiters, deque()
        self._waiting = self._cancelledWaiters = 0
        for request in waiters:
            if not request.done:
                self._settle(request, Failure(PoolClosedError(f"{self!r} was closed")))
        for connection in self._connecting + self._idle:
            self._retire(connection)
        waiter = Deferred()
        self._closeWaiters.append(waiter)
        if timeout is not None and self._live:
            self._closeTimer = self._reactor.callLater(timeout, self._dropAll)
        self._maybeClosed()
        return waiter

    def __repr__(self) -> str:
        return (
            f"<{type(self).__name__} {self._address}"
            f"{' closed' if self._closing else ''} busy={self._busy} idle={len(self._idle)} "
            f"connecting={len(self._connecting)} waiting={self._waiting} "
            f"maxClients={self._maxClients}>"
        )

    # The txconnpool 0.1.1 notifications

    def clientFree(self, client: Any) -> None:
        """
        Note that C{client} can take requests: a connection that is connecting becomes ready,
        and one marked busy with L{clientBusy} or checked out is given back. Anything else is
        left as it is: a request in flight frees its connection by itself.
        """
        connection = self._byProtocol.get(client)
        if connection is None:
            return
        if connection.state is State.CONNECTING:
            self._markReady(connection)
        elif connection.state is State.GONE:
            del self._byProtocol[client]
        elif connection.current is not None and connection.current.method is None:
            self.release(client)

    def clientBusy(self, client: Any) -> None:
        """
        Take the idle connection C{client} out of service as if checked out, until
        L{clientFree} or L{release} gives it back. Other connections are left as they are.
        """
        connection = self._byProtocol.get(client)
        if connection is not None and connection.state is State.IDLE:
            self._idle.remove(connection)
            self._busy += 1
            connection.state = State.BUSY
            checkout = Request(None, (), {}, Deferred())
            checkout.done = True
            checkout.connection = connection
            connection.current = checkout

    def clientGone(self, client: Any) -> None:
        """
        Remove C{client} from the pool for good, closing its connection if still open. Unknown
        clients are ignored.
        """
        connection = self._byProtocol.pop(client, None)
        if connection is not None and connection.state is not State.GONE:
            if connection.current is not None and connection.current.method is None:
                connection.current = None
            self._retire(connection, abort=True)
            self._dispatch()

    # The dispatch loop: the one place requests meet connections

    def _submit(
        self, method: str | None, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Deferred[Any]:
        self._requests += 1
        if self._closing:
            self._failedRequests += 1
            return fail(PoolClosedError(f"{self!r} is closed"))
        request = Request(method, args, kwargs, Deferred(lambda d: self._cancel(request)))
        self._waiters.append(request)
        self._waiting += 1
        self._dispatch()
        return request.deferred

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
        if request.method is None:
            self._settle(request, connection.protocol)
            return
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
            if connection.lost or (
                isinstance(result, Failure) and result.check(*self.brokenConnectionErrors)
            ):
                self._retire(connection, abort=True)
            else:
                self._checkin(connection)
        if request.done:
            return None
        if isinstance(result, Failure) and result.check(error.ConnectionClosed):
            result = Failure(self._lostError(result))
        self._settle(request, result)
        return None

    def _settle(self, request: Request, result: Any) -> None:
        """
        Fire a request's L{Deferred}. Callbacks run with dispatch held off, so requests they
        make queue behind those already waiting.
        """
        request.done = True
        if isinstance(result, Failure):
            self._failedRequests += 1
        if self._dispatching:
            request.deferred.callback(result)
            return
        self._dispatching = True
        try:
            request.deferred.callback(result)
        finally:
            self._dispatching = False
        self._dispatch()

    def _cancel(self, request: Request) -> None:
        """
        The canceller of a request's L{Deferred}, which then fails with L{CancelledError}.
        """
        request.done = True
        self._failedRequests += 1
        connection = request.connection
        if connection is None:
            self._waiting -= 1
            self._cancelledWaiters += 1
            if self._cancelledWaiters > 32 and self._cancelledWaiters > self._waiting:
                self._waiters = deque(r for r in self._waiters if not r.done)
                self._cancelledWaiters = 0
            if len(self._connecting) > self._waiting:
                surplus = self._connecting[-1]
                if surplus.attempt is not None:
                    self._retire(surplus)
        elif connection.current is request:
            self._retire(connection, abort=True)
            self._dispatch()

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
        cancelled = connection.state is State.GONE
        connection.attempt = None
        self._live.discard(connection)
        if connection.state is State.CONNECTING:
            self._connecting.remove(connection)
            connection.state = State.GONE
        if not cancelled:
            self._connectFailed(reason)
        self._dispatch()
        self._maybeClosed()

    def _connectionMade(self, connection: Connection, protocol: Any, transport: Any) -> None:
        """
        Called by the connection's L{PoolProtocol} when the transport is connected.
        """
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
            self._connecting.remove(connection)
            connection.state = State.GONE
            connection.close(abort=True)
            self._connectFailed(reason)
            self._dispatch()

    def _markReady(self, connection: Connection) -> None:
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
        protocol = connection.protocol
        try:
            protocol.connectionLost(reason)
        except Exception:
            self._log.failure("connectionLost of {protocol!r} raised", protocol=protocol)
        state = connection.state
        if state is not State.GONE:
            self._log.info(
                "Connection to {address} lost: {reason}",
                address=self._address,
                reason=reason.value,
            )
            self._retire(connection)
            if state is State.CONNECTING:
                self._connectFailed(reason)
        request = connection.current
        if request is not None and request.method is not None:
            connection.current = None
            if not request.done:
                self._settle(request, Failure(self._lostError(reason)))
        self._live.discard(connection)
        self._dispatch()
        self._maybeClosed()

    def _connectFailed(self, reason: Failure) -> None:
        """
        A connection attempt failed. When no other connection is open or coming, the server is
        out of reach: fail the waiting requests rather than leave them hanging.
        """
        self._log.warn(
            "Could not connect to {address}: {reason}", address=self._address, reason=reason.value
        )
        if self._busy or self._idle or self._connecting or not self._waiting:
            return
        waiters, self._waiters = self._waiters, deque()
        self._waiting = self._cancelledWaiters = 0
        for request in waiters:
            if not request.done:
                unavailable = ServerUnavailableError(
                    f"could not connect to {self._address}: {reason.value}"
                )
                unavailable.__cause__ = reason.value
                self._settle(request, Failure(unavailable))

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

    def _atShutdown(self) -> Deferred[None]:
        self._shutdownTrigger = None
        return self.close(timeout=self._shutdownTimeout)

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


class CheckedOutConnection(Generic[_P]):
    """
    The asynchronous context manager returned by L{Pool.connection}.
    """

    def __init__(self, pool: Pool[_P]) -> None:
        self._pool = pool
        self._protocol: _P | None = None

    async def __aenter__(self) -> _P:
        self._protocol = await self._pool.acquire()
        return self._protocol

    async def __aexit__(self, excType: object, exc: BaseException | None, tb: object) -> None:
        protocol, self._protocol = self._protocol, None
        if exc is not None and isinstance(exc, self._pool.brokenConnectionErrors):
            self._pool.discard(protocol)  # type: ignore[arg-type]
        else:
            self._pool.release(protocol)  # type: ignore[arg-type]


def _checkMaxClients(maxClients: object) -> None:
    if isinstance(maxClients, bool) or not isinstance(maxClients, int):
        raise TypeError(f"maxClients must be an int, not {maxClients!r}")
    if maxClients < 1:
        raise ValueError(f"maxClients must be at least 1, not {maxClients!r}")
