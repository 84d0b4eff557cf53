"""
A pool of client connections for any Twisted protocol.

A L{Pool} opens up to C{maxClients} connections to one server, hands each request to a
connection with room for it (an idle one, or with pipelining a busy one carrying fewer than
C{maxRequestsPerClient} requests), queues requests (first in, first out) when every connection
is full, and replaces connections that fail. Every L{Deferred} it returns fires exactly once.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic

from twisted.internet import error
from twisted.internet.defer import CancelledError, Deferred, TimeoutError
from twisted.internet.interfaces import IReactorCore, IReactorTime
from twisted.logger import Logger
from typing_extensions import TypeVar

from ._address import endpointFor
from ._context import CheckedOutConnection
from ._core import Hooks, PoolCore
from ._driver import ConnectionDriver
from ._options import PoolOptions, checkMaxClients, checkTimeout
from .backoff import backoffPolicy
from .errors import (
    ConnectionLostError,
    NoSuchCommand,
    ProtocolError,
)
from .factory import PooledClientFactory
from .interfaces import ICancellableRequests
from .stats import DiscardCounts, PoolStats

__all__ = [
    "BROKEN_CONNECTION_ERRORS",
    "CheckedOutConnection",
    "NoSuchCommand",
    "Pool",
    "PooledClientFactory",
]

_P = TypeVar("_P", default=Any)

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


class Pool(Generic[_P]):
    """
    A pool of connections to one server.

    Subclass it with C{clientFactory} set to a L{PooledClientFactory} subclass, and give the
    subclass methods that call L{performRequest}.

    @cvar clientFactory: The L{PooledClientFactory} subclass building each connection.
    @cvar brokenConnectionErrors: Exception classes meaning that the connection a request
        failed on is unusable; see L{BROKEN_CONNECTION_ERRORS}.
    @cvar defaultMaxRequestsPerClient: The C{maxRequestsPerClient} of pools of this class
        when the constructor is not given one: 1, no pipelining, unless a subclass whose
        protocol answers in order says otherwise.
    @cvar idempotentMethods: Names of the protocol methods that are safe to send twice. A
        request for one of them that fails because its connection had been closed before any
        reply arrived (a stale idle connection) is sent once more on another connection.
    @cvar multiplexed: Whether the protocol tags each reply with its request's id, so replies
        may arrive in any order and a request cancelled or timed out in flight leaves its
        connection usable (its late reply is matched to nothing and dropped by the protocol).
        C{False} by default: such a request discards its connection.
    """

    clientFactory: type[PooledClientFactory] = PooledClientFactory
    brokenConnectionErrors: tuple[type[BaseException], ...] = BROKEN_CONNECTION_ERRORS
    idempotentMethods: frozenset[str] = frozenset()
    defaultMaxRequestsPerClient: int = 1
    multiplexed: bool = False

    _log = Logger()

    def __init__(
        self,
        serverAddress: object,
        maxClients: int = 5,
        reactor: Any = None,
        *,
        connectTimeout: float | None = 5.0,
        requestTimeout: float | None = None,
        acquireTimeout: float | None = None,
        maxWaiters: int | None = None,
        failFastAfter: int = 3,
        retryPolicy: Callable[[int], float] | None = None,
        shutdownTimeout: float = 5.0,
        minClients: int = 0,
        idleTimeout: float | None = 600.0,
        maxLifetime: float | None = None,
        tcpKeepAlive: bool = False,
        keepaliveInterval: float | None = None,
        validateAfterIdle: float | None = None,
        pingTimeout: float = 5.0,
        leakDetectionThreshold: float | None = None,
        maxRequestsPerClient: int | None = None,
    ) -> None:
        """
        @param serverAddress: Where to connect: an endpoint description string such as
            C{"tcp:127.0.0.1:11211"} or C{"unix:/run/memcached.sock"} (anything
            C{clientFromString} accepts, TLS and IPv6 forms included), an
            L{IStreamClientEndpoint<twisted.internet.interfaces.IStreamClientEndpoint>}
            provider, or an L{IPv4Address<twisted.internet.address.IPv4Address>},
            L{IPv6Address<twisted.internet.address.IPv6Address>} or
            L{UNIXAddress<twisted.internet.address.UNIXAddress>}.
        @param maxClients: The most connections open at once, connection attempts included.
        @param reactor: The reactor to connect and keep time with; the global reactor if
            L{None}.
        @param connectTimeout: Seconds a connection attempt, handshake included, may take
            before it is abandoned and counts as failed; L{None} for no limit.
        @param requestTimeout: Seconds a request sent on a connection may wait for its reply
            before it fails with L{RequestTimeoutError} and the connection is dropped; L{None}
            for no limit.
        @param acquireTimeout: Seconds a request may wait for a connection before it fails with
            L{PoolTimeoutError}; L{None} for no limit.
        @param maxWaiters: The most requests waiting for a busy connection; more fail at once
            with L{PoolFullError}. L{None} for no limit; 0 refuses any wait for a busy
            connection (a request may still wait for a connection being opened for it).
        @param failFastAfter: After this many consecutive failed connection attempts, with no
            connection open, the waiting requests fail with L{ServerUnavailableError}, and new
            ones fail at once until the next attempt is due.
        @param retryPolicy: The delay before the next connection attempt after a failure,
            given the number of the retry (0 for the first); by default
            C{backoffPolicy()}: 0.1s doubling up to 10s, varied by up to 25%.
        @param shutdownTimeout: When the reactor shuts down, the pool closes itself and waits
            this many seconds for requests in flight before dropping their connections.
        @param minClients: Connections opened when the pool is made and kept open, idle or
            not; one lost is replaced in the background, with the reconnection backoff. See
            C{whenReady()}.
        @param idleTimeout: Seconds after which a connection left unused is closed, as long as
            more than C{minClients} are open; L{None} to keep idle connections open.
        @param maxLifetime: Seconds after which a connection is retired, less a random part of
            up to 5% so that connections do not all expire together; a busy connection is
            retired when its request is done. L{None} for no limit.
        @param tcpKeepAlive: Turn on TCP keepalive (C{SO_KEEPALIVE}) on every connection.
        @param keepaliveInterval: Ping each connection idle for this many seconds, with
            L{pingConnection}; a failed or timed-out ping discards the connection. L{None} for
            no pings.
        @param validateAfterIdle: Ping a connection idle for more than this many seconds before
            handing it out; a dead one is discarded and the request waits for another.
            L{None} for no validation.
        @param pingTimeout: Seconds a ping may take before the connection counts as dead.
        @param leakDetectionThreshold: Log a warning, with the stack of the C{acquire()} call,
            when a connection stays checked out longer than this many seconds. L{None} to not
            watch.
        @param maxRequestsPerClient: How many requests may be in flight on one connection at
            once (pipelining), for protocols that answer requests in the order they were sent.
            New connections are opened only when every connection carries this many. A
            checkout (C{acquire()}, C{connection()}) still gets a connection to itself. L{None}
            for the class's C{defaultMaxRequestsPerClient}.

        @raise TypeError: An argument has the wrong type.
        @raise ValueError: An argument has an impossible value.
        """
        if reactor is None:
            from twisted.internet import reactor as globalReactor

            reactor = globalReactor
        if not IReactorTime.providedBy(reactor):
            raise TypeError(
                f"reactor must provide IReactorTime (callLater and seconds) for the pool's "
                f"timeouts, not {reactor!r}"
            )
        checkMaxClients(maxClients)
        options = PoolOptions(
            connectTimeout=connectTimeout,
            requestTimeout=requestTimeout,
            acquireTimeout=acquireTimeout,
            maxWaiters=maxWaiters,
            failFastAfter=failFastAfter,
            retryPolicy=backoffPolicy() if retryPolicy is None else retryPolicy,
            shutdownTimeout=shutdownTimeout,
            minClients=minClients,
            idleTimeout=idleTimeout,
            maxLifetime=maxLifetime,
            tcpKeepAlive=tcpKeepAlive,
            keepaliveInterval=keepaliveInterval,
            validateAfterIdle=validateAfterIdle,
            pingTimeout=pingTimeout,
            leakDetectionThreshold=leakDetectionThreshold,
            maxRequestsPerClient=(
                self.defaultMaxRequestsPerClient
                if maxRequestsPerClient is None
                else maxRequestsPerClient
            ),
        )
        if minClients > maxClients:
            raise ValueError(
                f"minClients ({minClients}) must not be more than maxClients ({maxClients})"
            )
        if (keepaliveInterval is not None or validateAfterIdle is not None) and (
            type(self).pingConnection is Pool.pingConnection
            and not callable(getattr(getattr(self.clientFactory, "protocol", None), "ping", None))
        ):
            raise ValueError(
                "keepaliveInterval and validateAfterIdle need a way to ping a connection: "
                f"override {type(self).__name__}.pingConnection, or give the protocol a "
                "ping() method"
            )
        endpoint, address = endpointFor(reactor, serverAddress)
        self._reactor: Any = reactor
        self._address = address
        self._options = options
        protocolClass = getattr(self.clientFactory, "protocol", None)
        self._core = PoolCore(
            ConnectionDriver(
                reactor,
                endpoint,
                self.clientFactory,
                self,
                address,
                options.connectTimeout,
                options.tcpKeepAlive,
            ),
            options,
            maxClients,
            address,
            Hooks(
                describe=self.__repr__,
                closing=(
                    None
                    if type(self).connectionClosing is Pool.connectionClosing
                    else self.connectionClosing
                ),
                ping=self.pingConnection,
                brokenErrors=self.brokenConnectionErrors,
                idempotent=self.idempotentMethods,
                direct=isinstance(protocolClass, type)
                and ICancellableRequests.implementedBy(protocolClass),
                multiplexed=self.multiplexed,
            ),
        )
        self._submit = self._core.submit
        self._methodsSeen: set[str] = set()
        self._shutdownTrigger: Any = None
        self._shutdownDeferred: Deferred[None] | None = None
        if IReactorCore.providedBy(reactor):
            self._shutdownTrigger = reactor.addSystemEventTrigger(
                "before", "shutdown", self._atShutdown
            )
        self._core.start()

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
        if method not in self._methodsSeen:
            if not isinstance(method, str):
                raise TypeError(f"method must be a str naming a protocol method, not {method!r}")
            protocolClass = getattr(self.clientFactory, "protocol", None)
            if (
                isinstance(protocolClass, type)
                and not hasattr(protocolClass, method)
                and not hasattr(protocolClass, "__getattr__")
            ):
                return self._core.refuse(
                    NoSuchCommand(f"{protocolClass.__name__} has no method {method!r}")
                )
            self._methodsSeen.add(method)
        return self._submit(method, args, kwargs)

    def acquire(self) -> Deferred[_P]:
        """
        Check a connection out for several commands in a row; give it back with L{release}.

        @return: A L{Deferred} firing with the protocol of a ready connection, which no other
            request uses until it is released. It fails like L{performRequest} does while
            waiting.
        """
        return self._submit(None, (), {}, self._core.checkoutOrigin())

    def release(self, protocol: _P) -> None:
        """
        Give back a connection checked out with L{acquire}.

        Releasing a connection that was lost meanwhile is allowed and does nothing more.

        @raise ValueError: C{protocol} is not checked out from this pool.
        """
        self._core.checkouts.release(protocol)

    def discard(self, protocol: _P) -> None:
        """
        Close a connection checked out with L{acquire} instead of giving it back: it is never
        handed out again, and a new one is opened if requests are waiting.

        @raise ValueError: C{protocol} is not checked out from this pool.
        """
        self._core.checkouts.discard(protocol)

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

    @property
    def reactor(self) -> Any:
        """
        The reactor the pool connects and keeps time with.
        """
        return self._reactor

    def connectionClosing(self, protocol: _P) -> bool:
        """
        Tell whether a connection's protocol has closed, or started to close, its connection,
        so that the pool stops handing it out at once. Transports report C{loseConnection} at
        once (C{disconnecting}), but report C{abortConnection} only when C{connectionLost}
        comes, a reactor turn later. Override this for a protocol that aborts its own
        connection, as L{MemCachePool<txconnpool.memcache.MemCachePool>} does.

        @param protocol: The protocol of a connection of this pool.
        @return: C{False} by default.
        """
        return False

    def pingConnection(self, protocol: _P) -> Deferred[object]:
        """
        Check that a connection still answers; used by C{keepaliveInterval} and
        C{validateAfterIdle}. Override it to send your protocol's cheapest request.

        @param protocol: The protocol of an idle connection, not handed to anyone meanwhile.
        @return: A L{Deferred} that fires when the connection answered, or fails if it did not;
            the pool also gives up after C{pingTimeout} seconds. By default, the result of the
            protocol's C{ping()} method.
        """
        pinger: Any = protocol
        result: Deferred[object] = pinger.ping()
        return result

    def poolStats(self) -> PoolStats:
        """
        @return: A snapshot of the pool's counters.
        """
        core = self._core
        connections = core.connections
        return PoolStats(
            busy=connections.busy,
            idle=len(connections.idle),
            connecting=len(connections.connecting),
            waiting=len(core.waiters),
            maxClients=connections.maxClients,
            created=connections.created,
            closed=connections.closed,
            requests=core.requests,
            failedRequests=core.failedRequests + core.sender.failed,
            minClients=self._options.minClients,
            requestsWaited=core.requestsWaited,
            connectsAttempted=connections.attempted,
            connectsFailed=connections.circuit.failedTotal,
            discarded=DiscardCounts(**connections.discards),
            waitTime=core.waitTimes.summary(),
            requestTime=core.sender.requestTimes.summary(),
        )

    def suggestMaxClients(self, maxClients: int) -> None:
        """
        Change the most connections open at once. Growing serves waiting requests at once;
        shrinking closes idle connections now, and takes busy ones out of service (no new
        requests go to them) to close them once their requests are done.

        @raise TypeError: C{maxClients} is not an C{int}.
        @raise ValueError: C{maxClients} is less than 1.
        """
        checkMaxClients(maxClients)
        self._core.resize(maxClients)

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
        checkTimeout("timeout", timeout)
        if self._shutdownTrigger is not None:
            self._reactor.removeSystemEventTrigger(self._shutdownTrigger)
            self._shutdownTrigger = None
        return self._core.close(timeout)

    def whenReady(self, timeout: float = 30.0) -> Deferred[None]:
        """
        Wait until C{minClients} connections are up.

        @param timeout: How many seconds to wait at most.
        @return: A L{Deferred} firing with L{None} when C{minClients} connections are ready (at
            once if they are, or if C{minClients} is 0). It fails with
            L{ServerUnavailableError} (whose C{__cause__} is the last connection error) or,
            when no attempt failed, L{PoolTimeoutError} after C{timeout} seconds; with
            L{PoolClosedError} if the pool is or gets closed.
        @raise TypeError: C{timeout} is not a number.
        @raise ValueError: C{timeout} is negative.
        """
        checkTimeout("timeout", timeout, optional=False)
        return self._core.connections.whenReady(timeout)

    @property
    def shutdown_requested(self) -> bool:
        """
        Whether the pool was closed (txconnpool 0.1.1's name: it was set at reactor
        shutdown).
        """
        return self._core.connections.closing

    @property
    def shutdown_deferred(self) -> Deferred[None] | None:
        """
        The L{Deferred} the reactor waits for at shutdown, once shutdown has begun
        (txconnpool 0.1.1's name); L{None} before.
        """
        return self._shutdownDeferred

    def __repr__(self) -> str:
        connections = self._core.connections
        return (
            f"<{type(self).__name__} {self._address}"
            f"{' closed' if connections.closing else ''} busy={connections.busy} "
            f"idle={len(connections.idle)} connecting={len(connections.connecting)} "
            f"waiting={len(self._core.waiters)} maxClients={connections.maxClients}>"
        )

    # The txconnpool 0.1.1 notifications

    def clientFree(self, client: Any) -> None:
        """
        Note that C{client} can take requests: a connection that is connecting becomes ready,
        and one marked busy with L{clientBusy} or checked out is given back. Anything else is
        left as it is: a request in flight frees its connection by itself.
        """
        self._core.checkouts.clientFree(client)

    def clientBusy(self, client: Any) -> None:
        """
        Take the idle connection C{client} out of service as if checked out, until
        L{clientFree} or L{release} gives it back. Other connections are left as they are.
        """
        self._core.checkouts.clientBusy(client)

    def clientGone(self, client: Any) -> None:
        """
        Remove C{client} from the pool for good, closing its connection if still open. Unknown
        clients are ignored.
        """
        self._core.checkouts.clientGone(client)

    def _atShutdown(self) -> Deferred[None]:
        self._shutdownTrigger = None
        self._shutdownDeferred = self.close(timeout=self._options.shutdownTimeout)
        return self._shutdownDeferred
