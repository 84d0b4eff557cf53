"""
L{MetaMemCachePool}: a pool of memcached connections speaking the meta protocol, with the
methods of L{MemCachePool<txconnpool.memcache.MemCachePool>} and stampede protection.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from functools import partial
from typing import Any

from twisted.internet.defer import Deferred

from txconnpool.backoff import backoffPolicy
from txconnpool.memcache.meta._checks import checkKey
from txconnpool.memcache.meta._stampede import Compute, StampedeGuard
from txconnpool.memcache.meta.protocol import MetaMemCacheProtocol
from txconnpool.pool import Pool, PooledClientFactory

Key = bytes | str


class MetaMemCacheClientFactory(PooledClientFactory):
    """
    Builds the L{MetaMemCacheProtocol} of each pooled connection, and checks, before the
    connection is used, that the server speaks the meta protocol (L{MetaMemCacheProtocol.probe}).
    """

    protocol = MetaMemCacheProtocol

    def buildProtocol(self, addr: object) -> MetaMemCacheProtocol:
        """
        Build a protocol whose request timeout runs on the pool's reactor, with the pool's
        C{batchGets} and C{base64Keys}.
        """
        pool = self.connectionPool
        protocol = self.protocol(
            clock=None if pool is None else pool.reactor,
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


class MetaMemCachePool(Pool[MetaMemCacheProtocol]):
    """
    A memcached client speaking the meta protocol, backed by a pool of connections::

        pool = MetaMemCachePool("tcp:127.0.0.1:11211", maxClients=20)
        flags, value = await pool.get(b"cached-data")
        page = await pool.getOrCompute(b"page:home", renderHome, ttl=300)

    It has every method of L{MemCachePool<txconnpool.memcache.MemCachePool>}, with the same
    arguments, results and errors, sent as meta commands whose replies are each checked
    against their request's opaque token (see L{MetaMemCacheProtocol}). On top of those:
    L{getOrCompute}, L{invalidate} and L{itemInfo}.

    Each new connection first checks that the server speaks the meta protocol (memcached
    1.6.10 or later); a server that does not fails the connection attempt with
    L{MetaProtocolUnsupportedError<txconnpool.memcache.meta.MetaProtocolUnsupportedError>},
    which requests receive as the cause of
    L{ServerUnavailableError<txconnpool.errors.ServerUnavailableError>} after
    C{failFastAfter} attempts.

    Every method can also fail like L{Pool.performRequest}: with
    L{ConnectionLostError<txconnpool.errors.ConnectionLostError>},
    L{PoolClosedError<txconnpool.errors.PoolClosedError>},
    L{ServerUnavailableError<txconnpool.errors.ServerUnavailableError>} or
    L{CancelledError<twisted.internet.defer.CancelledError>}.
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
        batchGets: bool = True,
        base64Keys: bool = False,
        leasePollPolicy: Callable[[int], float] | None = None,
        **poolOptions: Any,
    ) -> None:
        """
        Take the arguments of L{Pool}, and:

        @param batchGets: Send the C{get}s made on a connection while it has other requests
            in flight as one batch of quiet C{mg}s closed by C{mn}, once per reactor turn.
        @param base64Keys: Send keys base64-encoded, so that a key may be any bytes (1 to
            186 of them), whitespace and control characters included. The server stores the
            key decoded: C{b"k"} is the same key with and without this option.
        @param leasePollPolicy: The delay before poll number C{n} (from 0) of a value that
            another client is computing, in L{getOrCompute}; by default
            C{backoffPolicy(0.01, 0.5)}: 10 ms doubling up to 0.5 s, varied by up to 25%.
        """
        self.batchGets = bool(batchGets)
        self.base64Keys = bool(base64Keys)
        Pool.__init__(self, serverAddress, maxClients, reactor, **poolOptions)
        self._stampede = StampedeGuard(
            self,
            self.reactor,
            backoffPolicy(0.01, 0.5) if leasePollPolicy is None else leasePollPolicy,
            partial(checkKey, base64Keys=self.base64Keys),
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
        compute: Compute,
        ttl: int,
        *,
        lockTtl: int = 30,
        staleTtl: int = 0,
        earlyRecache: int = 0,
        waitTimeout: float | None = None,
    ) -> Deferred[bytes]:
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

        @param key: The key, as for L{get}.
        @param compute: A function of no arguments returning the value as C{bytes}, a
            L{Deferred<twisted.internet.defer.Deferred>} firing with it, or a coroutine
            returning it.
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
            argument or for a computed value that is not C{bytes} or is too large, or as the
            other methods do. Cancelling it abandons this call only; the computation goes on.
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
            C{False} if the key is missing.
        """
        return self.performRequest("invalidate", key, staleTtl)

    def itemInfo(self, key: Key) -> Deferred[dict[bytes, bytes] | None]:
        """
        Read the server's metadata of an item (C{me}), without its value.

        @return: A L{Deferred<twisted.internet.defer.Deferred>} firing with a C{dict} (C{b"exp"},
            C{b"la"}, C{b"cas"}, C{b"fetch"}, C{b"cls"}, C{b"size"}), or C{None} if the key is
            missing.
        """
        return self.performRequest("itemInfo", key)

    # The commands of MemCachePool

    def get(self, key: Key, withIdentifier: bool = False) -> Deferred[Any]:
        """
        Get one value.

        @return: A L{Deferred<twisted.internet.defer.Deferred>} firing with C{(flags, value)}, or
            C{(flags, casId, value)} with C{withIdentifier}; a miss gives C{(0, None)} or
            C{(0, b"", None)}.
        """
        return self.performRequest("get", key, withIdentifier)

    def getMultiple(self, keys: Iterable[Key], withIdentifier: bool = False) -> Deferred[Any]:
        """
        Get several values in one request.

        @return: A L{Deferred<twisted.internet.defer.Deferred>} firing with a C{dict} from each
            key asked for to its C{get}-style tuple.
        """
        return self.performRequest("getMultiple", keys, withIdentifier)

    def set(self, key: Key, val: bytes, flags: int = 0, expireTime: int = 0) -> Deferred[bool]:
        """
        Store a value.

        @return: A L{Deferred<twisted.internet.defer.Deferred>} firing with C{True} when stored.
        """
        return self.performRequest("set", key, val, flags, expireTime)

    def add(self, key: Key, val: bytes, flags: int = 0, expireTime: int = 0) -> Deferred[bool]:
        """
        Store a value only if the key is not already there.

        @return: A L{Deferred<twisted.internet.defer.Deferred>} firing with C{True} when stored,
            C{False} otherwise.
        """
        return self.performRequest("add", key, val, flags, expireTime)

    def replace(
        self, key: Key, val: bytes, flags: int = 0, expireTime: int = 0
    ) -> Deferred[bool]:
        """
        Store a value only if the key is already there.

        @return: A L{Deferred<twisted.internet.defer.Deferred>} firing with C{True} when stored,
            C{False} otherwise.
        """
        return self.performRequest("replace", key, val, flags, expireTime)

    def append(self, key: Key, val: bytes) -> Deferred[bool]:
        """
        Append to an existing value.

        @return: A L{Deferred<twisted.internet.defer.Deferred>} firing with C{True} when stored,
            C{False} for a missing key.
        """
        return self.performRequest("append", key, val)

    def prepend(self, key: Key, val: bytes) -> Deferred[bool]:
        """
        Prepend to an existing value.

        @return: A L{Deferred<twisted.internet.defer.Deferred>} firing with C{True} when stored,
            C{False} for a missing key.
        """
        return self.performRequest("prepend", key, val)

    def checkAndSet(
        self, key: Key, val: bytes, cas: int | bytes, flags: int = 0, expireTime: int = 0
    ) -> Deferred[bool]:
        """
        Store a value only if it has not changed since C{get(key, withIdentifier=True)} gave
        C{cas}.

        @return: A L{Deferred<twisted.internet.defer.Deferred>} firing with C{True} when stored,
            C{False} when the value changed or is gone.
        """
        return self.performRequest("checkAndSet", key, val, cas, flags, expireTime)

    def increment(self, key: Key, val: int = 1) -> Deferred[Any]:
        """
        Add to a decimal value.

        @return: A L{Deferred<twisted.internet.defer.Deferred>} firing with the new value, or
            C{False} for a missing key.
        """
        return self.performRequest("increment", key, val)

    def decrement(self, key: Key, val: int = 1) -> Deferred[Any]:
        """
        Subtract from a decimal value (memcached stops at 0).

        @return: A L{Deferred<twisted.internet.defer.Deferred>} firing with the new value, or
            C{False} for a missing key.
        """
        return self.performRequest("decrement", key, val)

    def delete(self, key: Key) -> Deferred[bool]:
        """
        Delete a key.

        @return: A L{Deferred<twisted.internet.defer.Deferred>} firing with C{True} if it was
            there, C{False} otherwise.
        """
        return self.performRequest("delete", key)

    def touch(self, key: Key, expireTime: int) -> Deferred[bool]:
        """
        Change a key's expiry time without fetching it.

        @return: A L{Deferred<twisted.internet.defer.Deferred>} firing with C{True} if the key
            was there, C{False} otherwise.
        """
        return self.performRequest("touch", key, expireTime)

    def flushAll(self) -> Deferred[bool]:
        """
        Invalidate every item on the server.

        @return: A L{Deferred<twisted.internet.defer.Deferred>} firing with C{True}.
        """
        return self.performRequest("flushAll")

    def stats(self, arg: bytes | str | None = None) -> Deferred[dict[bytes, bytes]]:
        """
        Read the server's statistics (C{arg} names a group, such as C{b"items"}).

        @return: A L{Deferred<twisted.internet.defer.Deferred>} firing with a C{dict} of C{bytes}
            names to C{bytes} values.
        """
        return self.performRequest("stats", arg)

    def version(self) -> Deferred[bytes]:
        """
        Ask the server's version.

        @return: A L{Deferred<twisted.internet.defer.Deferred>} firing with the version as
            C{bytes}.
        """
        return self.performRequest("version")
