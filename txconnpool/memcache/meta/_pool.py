"""
L{MetaMemCachePool}: a pool of memcached connections speaking the meta protocol, with the
methods and options of L{MemCachePool<txconnpool.memcache.MemCachePool>}, and stampede
protection.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred
from typing_extensions import TypeVar

from txconnpool.backoff import backoffPolicy
from txconnpool.memcache._client import (
    DEFAULT_REQUEST_TIMEOUT,
    MemCacheClient,
    changedOptions,
)
from txconnpool.memcache.meta._checks import keyChecker
from txconnpool.memcache.meta._stampede import Compute, StampedeGuard
from txconnpool.memcache.meta.protocol import MetaMemCacheProtocol
from txconnpool.memcache.protocol import DEFAULT_MAX_STATS_SIZE, DEFAULT_MAX_VALUE_SIZE
from txconnpool.memcache.serializers import Serializer
from txconnpool.pool import Pool, PooledClientFactory

Key = bytes | str
_V = TypeVar("_V", default=bytes)


class MetaMemCacheClientFactory(PooledClientFactory):
    """
    Builds the L{MetaMemCacheProtocol} of each pooled connection, and checks, before the
    connection is used, that the server speaks the meta protocol (L{MetaMemCacheProtocol.probe}).
    """

    protocol = MetaMemCacheProtocol

    def buildProtocol(self, addr: object) -> MetaMemCacheProtocol:
        """
        Build a protocol with the pool's protocol options (C{batchGets}, C{base64Keys} and
        the options of L{MetaMemCachePool} that differ from the protocol's defaults), whose
        timeouts run on the pool's reactor.
        """
        pool = self.connectionPool
        reactor = None if pool is None else pool.reactor
        if isinstance(pool, MetaMemCachePool):
            protocol = self.protocol(clock=reactor, **pool._protocolOptions)
        else:
            protocol = self.protocol(
                clock=reactor,
                batchGets=getattr(pool, "batchGets", False),
                base64Keys=getattr(pool, "base64Keys", False),
            )
        protocol.factory = self
        return protocol

    def prepareConnection(self, protocol: MetaMemCacheProtocol) -> Deferred[object]:
        """
        Probe the server: the connection is ready if it speaks the meta protocol, and is
        closed as a failed attempt otherwise, with
        L{MetaProtocolUnsupportedError<txconnpool.memcache.meta.MetaProtocolUnsupportedError>}.
        """
        probing: Deferred[Any] = protocol.probe()
        return probing


class MetaMemCachePool(MemCacheClient[_V], Pool[MetaMemCacheProtocol]):
    """
    A memcached client speaking the meta protocol, backed by a pool of connections::

        pool = MetaMemCachePool("tcp:127.0.0.1:11211", maxClients=20)
        flags, value = await pool.get(b"cached-data")
        page = await pool.getOrCompute(b"page:home", renderHome, ttl=300)

    It has every method and option of L{MemCachePool<txconnpool.memcache.MemCachePool>},
    with the same arguments, results and errors, sent as meta commands whose replies are each
    checked against their request's opaque token (see L{MetaMemCacheProtocol}); values go
    through its serializer, keys get its C{keyPrefix}, and C{ignoreErrors} turns failures into
    misses, as there. On top of those: L{getOrCompute}, L{invalidate} and L{itemInfo}.

    Each new connection first checks that the server speaks the meta protocol (memcached
    1.6.10 or later); a server that does not fails the connection attempt with
    L{MetaProtocolUnsupportedError<txconnpool.memcache.meta.MetaProtocolUnsupportedError>},
    which requests receive as the cause of
    L{ServerUnavailableError<txconnpool.errors.ServerUnavailableError>} after
    C{failFastAfter} attempts.

    Every method can also fail like L{Pool.performRequest}: with
    L{RequestTimeoutError<txconnpool.errors.RequestTimeoutError>},
    L{ConnectionLostError<txconnpool.errors.ConnectionLostError>},
    L{PoolClosedError<txconnpool.errors.PoolClosedError>},
    L{ServerUnavailableError<txconnpool.errors.ServerUnavailableError>} or
    L{CancelledError<twisted.internet.defer.CancelledError>}. The type argument is the
    serializer's value type: C{MetaMemCachePool[bytes]} by default.
    """

    clientFactory = MetaMemCacheClientFactory
    idempotentMethods = frozenset(
        {"get", "getMultiple", "delete", "touch", "version", "stats", "itemInfo", "noop"}
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
        base64Keys: bool = False,
        leasePollPolicy: Callable[[int], float] | None = None,
    ) -> None:
        """
        Take the arguments of L{MemCachePool<txconnpool.memcache.MemCachePool>}, which mean
        the same here (C{requestTimeout} is 5 seconds by default, enforced by each
        connection's L{MetaMemCacheProtocol} as C{MemCachePool}'s is by its protocol), and:

        @param batchGets: Send the C{get}s made on a connection while it has other requests
            in flight as one batch of quiet C{mg}s closed by C{mn}, once per reactor turn.
        @param noreply: The default of the C{noreply} argument of the storage commands,
            C{delete}, C{deleteMultiple}, C{increment}, C{decrement} and C{touch}: when
            true, they are sent in quiet mode (the meta protocol's C{q} flag) and fire once
            written, without knowing whether the server carried them out. The server still
            answers what did not succeed; those replies are read and logged (see
            L{MetaMemCacheProtocol}).
        @param ignoreErrors: As for C{MemCachePool}; in L{getOrCompute}, a read of the key
            that fails counts as a miss without a lease: the caller computes the value (see
            L{getOrCompute}).
        @param proxy: L{None}: there is no proxy mode. C{"twemproxy"} is refused, because
            nutcracker speaks only memcached's text protocol; use C{MemCachePool} with it.
        @param base64Keys: Send keys base64-encoded, so that a key may be any bytes (1 to
            186 of them, C{keyPrefix} included). The server stores the key decoded: C{b"k"}
            is the same key with and without this option.
        @param leasePollPolicy: The delay before poll number C{n} (from 0) of a value that
            another client is computing, in L{getOrCompute}; by default
            C{backoffPolicy(0.01, 0.5)}: 10 ms doubling up to 0.5 s, varied by up to 25%.
        @raise TypeError: An argument has the wrong type.
        @raise ValueError: An argument has an impossible value, or C{proxy} is not L{None}.
        """
        if proxy is not None:
            if proxy == "twemproxy":
                raise ValueError(
                    'MetaMemCachePool cannot use proxy="twemproxy": nutcracker speaks only '
                    "memcached's text protocol and closes the connection on the first meta "
                    'command; use MemCachePool(..., proxy="twemproxy") with it'
                )
            raise ValueError(
                f"proxy must be None for MetaMemCachePool, which has no proxy mode (a proxy "
                f"that passes meta commands on needs none), not {proxy!r}"
            )
        self.proxy = None
        self.batchGets = bool(batchGets)
        self.base64Keys = bool(base64Keys)
        options: dict[str, Any] = {
            "timeOut": silenceTimeout,
            "maxValueSize": maxValueSize,
            "maxReplySize": maxReplySize,
            "maxStatsSize": maxStatsSize,
            "keyPrefix": keyPrefix,
            "requestTimeout": requestTimeout,
        }
        # Check the protocol's options now rather than at the first connection.
        checked = MetaMemCacheProtocol(**options, base64Keys=self.base64Keys)
        # The protocol gets the options that differ from its defaults, as MemCachePool's.
        self._protocolOptions = changedOptions(options)
        self._protocolOptions["batchGets"] = self.batchGets
        self._protocolOptions["base64Keys"] = self.base64Keys
        self._setUpValues(serializer, noreply, ignoreErrors)
        Pool.__init__(
            self,
            serverAddress,
            maxClients,
            reactor,
            connectTimeout=connectTimeout,
            # Enforced by each connection's protocol instead, as in MemCachePool.
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
        self._stampede: StampedeGuard[_V] = StampedeGuard(
            self,
            self.reactor,
            backoffPolicy(0.01, 0.5) if leasePollPolicy is None else leasePollPolicy,
            keyChecker(checked.keyPrefix, self.base64Keys),
            self._codec,
            self._lenient,
        )

    def connectionClosing(self, protocol: MetaMemCacheProtocol) -> bool:
        """
        @return: Whether the protocol dropped its connection (after a protocol error, a
            timeout or a cancelled request).
        """
        return protocol._closed

    def pingConnection(self, protocol: MetaMemCacheProtocol) -> Deferred[object]:
        """
        Ping a connection with memcached's C{mn}.

        @return: A L{Deferred<twisted.internet.defer.Deferred>} firing with C{True}.
        """
        return protocol.noop()  # type: ignore[return-value]

    def close(self, timeout: float | None = None) -> Deferred[None]:
        """
        Close the pool as L{Pool.close} does; the callers of L{getOrCompute} waiting for
        another client's computation fail with
        L{PoolClosedError<txconnpool.errors.PoolClosedError>}.
        """
        self._stampede.close()
        return Pool.close(self, timeout)

    # Stampede protection

    def getOrCompute(
        self,
        key: Key,
        compute: Compute[_V],
        ttl: int,
        *,
        lockTtl: int = 30,
        staleTtl: int = 0,
        earlyRecache: int = 0,
        waitTimeout: float | None = None,
    ) -> Deferred[_V]:
        """
        Get the value of C{key}, computing and storing it if it is missing, with exactly one
        computation however many callers ask at once, in this process and in every other
        process using the same memcached.

        The callers of one key in this pool share one read. When the key is missing, the
        first reader, across every client of the server, takes its lease, calls C{compute}
        and stores the value for C{ttl} seconds; the other readers poll, with
        C{leasePollPolicy}'s growing delays, until the value is there. When the value was
        invalidated (L{invalidate}) or is within C{staleTtl} seconds past its C{ttl}, the
        first reader recomputes it while the others get the current value at once.

        If C{compute} fails, the lease is given back and this call fails with its error
        (and so do the calls of this pool that were waiting for it); the next reader, here
        or in another process, takes the lease and computes. If the process holding a lease
        dies, the lease ends after C{lockTtl} seconds.

        Values go through the pool's serializer, both ways, and the key gets the pool's
        C{keyPrefix}. With the pool's C{ignoreErrors}, a read that fails (the server cannot
        be reached, a timeout, a value the serializer cannot read...) counts as a miss,
        logged and counted in
        L{ignoredErrors<txconnpool.memcache._client.MemCacheClient.ignoredErrors>}: the
        caller computes the value without a lease, unless it holds the lease already, and
        tries to store it. C{compute}'s own
        errors, L{LeaseTimeoutError<txconnpool.memcache.meta.LeaseTimeoutError>}, bad
        arguments and the pool's closing still fail the call.

        @param key: The key, as for L{get<txconnpool.memcache._reads.ReadCommands.get>}.
        @param compute: A function of no arguments returning the value (C{bytes}, or what
            the serializer takes), a L{Deferred<twisted.internet.defer.Deferred>} firing with
            it, or a coroutine returning it.
        @param ttl: Seconds the computed value is fresh (1 to 30 days); 0 for ever.
        @param lockTtl: Seconds a lease on a missing key lasts at most (1 to 30 days): make
            it longer than C{compute} takes.
        @param staleTtl: Seconds after C{ttl} during which the old value is still served
            to every caller but the one recomputing it (the value is stored for C{ttl +
            staleTtl} seconds); 0 for none.
        @param earlyRecache: Recompute the value when it has fewer than this many seconds of
            freshness left (before C{ttl} runs out), by the first reader, while the others
            keep getting it; 0 for never. Less than C{ttl}.
        @param waitTimeout: Seconds a caller waits for another client's computation before
            failing with L{LeaseTimeoutError<txconnpool.memcache.meta.LeaseTimeoutError>};
            by default twice C{lockTtl} (by which time a lease whose holder vanished has
            expired, and a waiting caller has taken it over).
        @return: A L{Deferred<twisted.internet.defer.Deferred>} firing with the value. It fails
            with C{compute}'s error, with L{LeaseTimeoutError}, with an
            L{InvalidRequestError<txconnpool.memcache.errors.InvalidRequestError>} for a bad
            argument or for a computed value that the serializer refuses or that is too
            large, with
            L{SerializationError<txconnpool.memcache.errors.SerializationError>} for a stored
            value the serializer cannot read, or as the other methods do. Cancelling it
            abandons this call only; the computation goes on.
        """
        return self._stampede.getOrCompute(
            key, compute, ttl, lockTtl, staleTtl, earlyRecache, waitTimeout
        )

    def invalidate(self, key: Key, staleTtl: int | None = None) -> Deferred[bool]:
        """
        Mark the value of C{key} stale: readers keep getting it, and the first caller of
        L{getOrCompute} for it recomputes it (stale-while-revalidate).

        @param staleTtl: Seconds the stale value may still live at most (1 to 30 days), in
            case nobody recomputes it; C{None} keeps its expiry time.
        @return: A L{Deferred<twisted.internet.defer.Deferred>} firing with C{True}, or
            C{False} if the key is missing (or, with C{ignoreErrors}, if the request failed).
        """
        return self._write(self.performRequest("invalidate", key, staleTtl), "invalidate")

    def itemInfo(self, key: Key) -> Deferred[dict[bytes, bytes] | None]:
        """
        Read the server's metadata of an item (C{me}), without its value.

        @return: A L{Deferred<twisted.internet.defer.Deferred>} firing with a C{dict} (C{b"exp"},
            C{b"la"}, C{b"cas"}, C{b"fetch"}, C{b"cls"}, C{b"size"}), or C{None} if the key is
            missing (or, with C{ignoreErrors}, if the request failed).
        """
        d: Deferred[dict[bytes, bytes] | None] = self.performRequest("itemInfo", key)
        if self._lenient is not None:
            d.addErrback(self._lenient, "itemInfo", None, True)
        return d
