"""
L{MemCachePool}: a pool of memcached connections with the commands of
L{MemCacheProtocol<txconnpool.memcache.protocol.MemCacheProtocol>} as methods, typed values
through a serializer, and the options of a memcached client.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

from twisted.internet.defer import Deferred
from typing_extensions import TypeVar

from ..pool import Pool, PooledClientFactory
from ._client import DEFAULT_REQUEST_TIMEOUT, MemCacheClient, changedOptions
from ._twemproxy import proxyRequests
from .protocol import DEFAULT_MAX_STATS_SIZE, DEFAULT_MAX_VALUE_SIZE, MemCacheProtocol
from .serializers import Serializer

Key = bytes | str
_V = TypeVar("_V", default=bytes)


class MemCacheClientFactory(PooledClientFactory):
    """
    Builds the L{MemCacheProtocol} of each pooled connection.
    """

    protocol = MemCacheProtocol

    def buildProtocol(self, addr: object) -> MemCacheProtocol:
        """
        Build a protocol with the pool's protocol options, whose timeout runs on the pool's
        reactor.
        """
        pool = self.connectionPool
        reactor = None if pool is None else pool.reactor
        if isinstance(pool, MemCachePool):
            protocol = self.protocol(clock=reactor, **pool._protocolOptions)
        else:
            protocol = self.protocol(clock=reactor, batchGets=getattr(pool, "batchGets", False))
        protocol.factory = self
        return protocol


class MemCachePool(MemCacheClient[_V], Pool[MemCacheProtocol]):
    """
    A memcached client backed by a pool of connections::

        pool = MemCachePool("tcp:127.0.0.1:11211", maxClients=20)
        flags, value = await pool.get(b"cached-data")

    Each method takes the arguments of the L{MemCacheProtocol} method of the same name and
    returns a L{Deferred<twisted.internet.defer.Deferred>} firing with its result; see that class
    for results and errors. On top of those, every method can fail like L{Pool.performRequest}:
    with L{RequestTimeoutError<txconnpool.errors.RequestTimeoutError>},
    L{ConnectionLostError<txconnpool.errors.ConnectionLostError>},
    L{PoolClosedError<txconnpool.errors.PoolClosedError>},
    L{ServerUnavailableError<txconnpool.errors.ServerUnavailableError>} or
    L{CancelledError<twisted.internet.defer.CancelledError>}.

    Keys are C{bytes}, or C{str} sent encoded as UTF-8. Values are what the serializer takes:
    C{bytes} by default (anything else fails with a C{TypeError} before anything is sent),
    any picklable object with
    L{PythonMemcacheSerializer<txconnpool.memcache.serializers.PythonMemcacheSerializer>}.
    The type argument is the serializer's value type: C{MemCachePool[bytes]} by default.
    """

    clientFactory = MemCacheClientFactory
    idempotentMethods = frozenset(
        {"get", "getMultiple", "delete", "touch", "version", "stats"}
    )
    defaultMaxRequestsPerClient = 128

    def __init__(
        self,
        serverAddress: object,
        maxClients: int = 5,
        reactor: Any = None,
        *,
        connectTimeout: float | None = 5.0,
        requestTimeout: float | None = DEFAULT_REQUEST_TIMEOUT,
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
        batchGets: bool = True,
        serializer: Serializer[_V] | None = None,
        keyPrefix: bytes | str = b"",
        noreply: bool = False,
        ignoreErrors: bool = False,
        maxValueSize: int = DEFAULT_MAX_VALUE_SIZE,
        maxReplySize: int | None = None,
        maxStatsSize: int = DEFAULT_MAX_STATS_SIZE,
        silenceTimeout: float | None = 60.0,
        proxy: str | None = None,
    ) -> None:
        """
        Take the arguments of L{Pool}, with C{requestTimeout} 5 seconds by default
        (L{DEFAULT_REQUEST_TIMEOUT<txconnpool.memcache._client.DEFAULT_REQUEST_TIMEOUT>}),
        and the options of memcached's connections below.

        C{requestTimeout} is enforced by each connection's L{MemCacheProtocol}, with one
        timer per connection (memcached answers in order, so the oldest request is the one
        that may be late), so that it also covers connections checked out. A late request
        fails with
        L{RequestTimeoutError<txconnpool.errors.RequestTimeoutError>} and its connection is
        dropped, as with L{Pool}; unlike L{Pool}'s, the limit also applies to the requests
        sent on a connection checked out with C{acquire()} or C{connection()}, and
        C{poolStats()} counts the connection as lost rather than timed out.

        @param batchGets: Gather the C{get}s sent on a connection while it has other requests
            in flight into one multi-key C{get} per reactor turn (see L{MemCacheProtocol}).
        @param serializer: Turns values into bytes and flags and back; L{None} for
            L{BytesSerializer<txconnpool.memcache.serializers.BytesSerializer>}: values are
            C{bytes}, stored as they are.
        @param keyPrefix: Put in front of every key sent (see L{MemCacheProtocol}).
        @param noreply: The default of the C{noreply} argument of the storage commands,
            C{delete}, C{deleteMultiple}, C{increment}, C{decrement} and C{touch}: when
            true, they ask the server not to answer and fire once written, without knowing
            whether the server carried them out.
        @param ignoreErrors: Turn the failures of reads into misses and of writes into
            C{False} (C{None} for C{increment} and C{decrement}), each logged and counted in
            L{ignoredErrors<txconnpool.memcache._client.MemCacheClient.ignoredErrors>}.
            Requests refused before anything was sent, and cancelled ones, still fail.
        @param maxValueSize: The largest value stored or read, in bytes; raise it for a
            memcached started with a larger C{-I}.
        @param maxReplySize: The largest total of the values of one multi-key C{get} reply;
            L{None} for 64 MiB or C{maxValueSize}, whichever is larger.
        @param maxStatsSize: The largest C{stats} reply, in bytes.
        @param silenceTimeout: Seconds without any data from the server, while requests
            are in flight on a connection, after which they all fail and the connection is
            dropped (the protocol's C{timeOut}); L{None} for no limit.
        @param proxy: C{"twemproxy"} when the server is a nutcracker (twemproxy) proxy: the
            commands it does not support, and keys over 250 bytes, fail at once with
            L{UnsupportedCommandError} or L{InvalidKeyError} instead of being sent (nutcracker
            would close the connection); gets that nutcracker fails because one of its
            backends is down are sent again key by key, so that only that backend's keys
            fail. See L{txconnpool.memcache._twemproxy}.
        @raise TypeError: An argument has the wrong type.
        @raise ValueError: An argument has an impossible value.
        """
        self.batchGets = batchGets
        self.proxy = proxy
        self._twemproxy = proxyRequests(proxy, partial(Pool.performRequest, self))
        if self._twemproxy is not None:
            self.performRequest = self._twemproxy.performRequest  # type: ignore[method-assign]
        options: dict[str, Any] = {
            "timeOut": silenceTimeout,
            "maxValueSize": maxValueSize,
            "maxReplySize": maxReplySize,
            "maxStatsSize": maxStatsSize,
            "keyPrefix": keyPrefix,
            "requestTimeout": requestTimeout,
        }
        # Check the protocol's options now rather than at the first connection.
        MemCacheProtocol(**options)
        # The protocol gets the options that differ from its defaults (and batchGets), so
        # that a protocol subclass taking fewer arguments keeps working with the defaults.
        self._protocolOptions = changedOptions(options)
        self._protocolOptions["batchGets"] = batchGets
        self._setUpValues(serializer, noreply, ignoreErrors)
        Pool.__init__(
            self,
            serverAddress,
            maxClients,
            reactor,
            connectTimeout=connectTimeout,
            # Enforced by each connection's protocol instead: see the docstring.
            requestTimeout=None,
            acquireTimeout=acquireTimeout,
            maxWaiters=maxWaiters,
            failFastAfter=failFastAfter,
            retryPolicy=retryPolicy,
            shutdownTimeout=shutdownTimeout,
            minClients=minClients,
            idleTimeout=idleTimeout,
            maxLifetime=maxLifetime,
            tcpKeepAlive=tcpKeepAlive,
            keepaliveInterval=keepaliveInterval,
            validateAfterIdle=validateAfterIdle,
            pingTimeout=pingTimeout,
            leakDetectionThreshold=leakDetectionThreshold,
            maxRequestsPerClient=maxRequestsPerClient,
        )

    def connectionClosing(self, protocol: MemCacheProtocol) -> bool:
        """
        @return: Whether the protocol dropped its connection (after a protocol error, a
            timeout or a cancelled request).
        """
        return protocol._closed

    def pingConnection(self, protocol: MemCacheProtocol) -> Deferred[object]:
        """
        Ping a connection with memcached's C{version} command.

        @return: A L{Deferred<twisted.internet.defer.Deferred>} firing with the version.
        """
        if self._twemproxy is not None:
            return self._twemproxy.ping(protocol)
        return protocol.version()  # type: ignore[return-value]
