"""
L{MemCachePool}: a pool of memcached connections with the commands of
L{MemCacheProtocol<txconnpool.memcache.protocol.MemCacheProtocol>} as methods.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import partial
from typing import Any

from twisted.internet.defer import Deferred

from ..pool import Pool, PooledClientFactory
from ._twemproxy import proxyRequests
from .protocol import MemCacheProtocol

Key = bytes | str


class MemCacheClientFactory(PooledClientFactory):
    """
    Builds the L{MemCacheProtocol} of each pooled connection.
    """

    protocol = MemCacheProtocol

    def buildProtocol(self, addr: object) -> MemCacheProtocol:
        """
        Build a protocol whose request timeout runs on the pool's reactor.
        """
        pool = self.connectionPool
        reactor = None if pool is None else pool.reactor
        batchGets = getattr(pool, "batchGets", False)
        protocol = self.protocol(clock=reactor, batchGets=batchGets)
        protocol.factory = self
        return protocol


class MemCachePool(Pool[MemCacheProtocol]):
    """
    A memcached client backed by a pool of connections::

        pool = MemCachePool("tcp:127.0.0.1:11211", maxClients=20)
        flags, value = await pool.get(b"cached-data")

    Each method takes the arguments of the L{MemCacheProtocol} method of the same name and
    returns a L{Deferred<twisted.internet.defer.Deferred>} firing with its result; see that class
    for results and errors. On top of those, every method can fail like L{Pool.performRequest}:
    with L{ConnectionLostError<txconnpool.errors.ConnectionLostError>},
    L{PoolClosedError<txconnpool.errors.PoolClosedError>},
    L{ServerUnavailableError<txconnpool.errors.ServerUnavailableError>} or
    L{CancelledError<twisted.internet.defer.CancelledError>}.

    Keys are C{bytes}, or C{str} sent encoded as UTF-8. Values are C{bytes}; anything else
    fails with a C{TypeError} before anything is sent.
    """

    clientFactory = MemCacheClientFactory
    idempotentMethods = frozenset(
        {"get", "getMultiple", "delete", "touch", "version", "stats"}
    )
    defaultMaxRequestsPerClient = 128

    def __init__(
        self, *args: Any, batchGets: bool = True, proxy: str | None = None, **kwargs: Any
    ) -> None:
        """
        Take the arguments of L{Pool}, and:

        @param batchGets: Gather the C{get}s sent on a connection while it has other requests
            in flight into one multi-key C{get} per reactor turn (see L{MemCacheProtocol}).
        @param proxy: C{"twemproxy"} when the server is a nutcracker (twemproxy) proxy: the
            commands it does not support, and keys over 250 bytes, fail at once with
            L{UnsupportedCommandError} or L{InvalidKeyError} instead of being sent (nutcracker
            would close the connection); gets that nutcracker fails because one of its
            backends is down are sent again key by key, so that only that backend's keys
            fail. See L{txconnpool.memcache._twemproxy}.
        """
        self.batchGets = batchGets
        self.proxy = proxy
        self._twemproxy = proxyRequests(proxy, partial(Pool.performRequest, self))
        if self._twemproxy is not None:
            self.performRequest = self._twemproxy.performRequest  # type: ignore[method-assign]
        Pool.__init__(self, *args, **kwargs)

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

        @return: A L{Deferred<twisted.internet.defer.Deferred>} firing with a C{dict} from each key
            asked for to its C{get}-style tuple.
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

        @return: A L{Deferred<twisted.internet.defer.Deferred>} firing with the new value, as
            memcached's C{incr} gives it.
        """
        return self.performRequest("increment", key, val)

    def decrement(self, key: Key, val: int = 1) -> Deferred[Any]:
        """
        Subtract from a decimal value (memcached stops at 0).

        @return: A L{Deferred<twisted.internet.defer.Deferred>} firing with the new value, as
            memcached's C{decr} gives it.
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

        @return: A L{Deferred<twisted.internet.defer.Deferred>} firing with C{True} if the key was
            there, C{False} otherwise.
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
