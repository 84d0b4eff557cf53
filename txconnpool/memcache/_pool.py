"""
L{MemCachePool}: a pool of memcached connections with the commands of
L{MemCacheProtocol<txconnpool.memcache.protocol.MemCacheProtocol>} as methods, typed values
through a serializer, and the options of a memcached client.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, Generic, Literal, cast, overload

from twisted.internet.defer import Deferred, fail
from typing_extensions import TypeVar

from ..pool import Pool, PooledClientFactory
from ._codec import Codec
from ._lenient import ErrorsAsMisses
from .protocol import DEFAULT_MAX_STATS_SIZE, DEFAULT_MAX_VALUE_SIZE, MemCacheProtocol
from .serializers import BytesSerializer, Serializer

__all__ = ["DEFAULT_REQUEST_TIMEOUT", "MemCacheClientFactory", "MemCachePool"]

Key = bytes | str
_V = TypeVar("_V", default=bytes)
_K = TypeVar("_K", bound=Key)
_D = TypeVar("_D")

DEFAULT_REQUEST_TIMEOUT = 5.0
"""
The C{requestTimeout} of a L{MemCachePool} not given one: 5 seconds, the poll timeout of
libmemcached (and so of pylibmc).
"""

_PROTOCOL_DEFAULTS: dict[str, object] = {
    "timeOut": 60,
    "maxValueSize": DEFAULT_MAX_VALUE_SIZE,
    "maxReplySize": None,
    "maxStatsSize": DEFAULT_MAX_STATS_SIZE,
    "keyPrefix": b"",
}

_MISS = (0, None)
_MISS_CAS = (0, b"", None)


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


class MemCachePool(Pool[MemCacheProtocol], Generic[_V]):
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
    ) -> None:
        """
        Take the arguments of L{Pool}, with C{requestTimeout} 5 seconds by default
        (L{DEFAULT_REQUEST_TIMEOUT}), and:

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
            L{ignoredErrors}. Requests refused before anything was sent, and cancelled
            ones, still fail.
        @param maxValueSize: The largest value stored or read, in bytes; raise it for a
            memcached started with a larger C{-I}.
        @param maxReplySize: The largest total of the values of one multi-key C{get} reply;
            L{None} for 64 MiB or C{maxValueSize}, whichever is larger.
        @param maxStatsSize: The largest C{stats} reply, in bytes.
        @param silenceTimeout: Seconds without any data from the server, while requests
            are in flight on a connection, after which they all fail and the connection is
            dropped (the protocol's C{timeOut}); L{None} for no limit.
        @raise TypeError: An argument has the wrong type.
        @raise ValueError: An argument has an impossible value.
        """
        self.batchGets = batchGets
        options: dict[str, Any] = {
            "timeOut": silenceTimeout,
            "maxValueSize": maxValueSize,
            "maxReplySize": maxReplySize,
            "maxStatsSize": maxStatsSize,
            "keyPrefix": keyPrefix,
        }
        # Check the protocol's options now rather than at the first connection.
        MemCacheProtocol(**options)
        # The protocol gets the options that differ from its defaults (and batchGets), so
        # that a protocol subclass taking fewer arguments keeps working with the defaults.
        self._protocolOptions = {
            name: value for name, value in options.items() if value != _PROTOCOL_DEFAULTS[name]
        }
        self._protocolOptions["batchGets"] = batchGets
        if serializer is not None and not isinstance(serializer, Serializer):
            raise TypeError(
                f"serializer must have dumps(key, value) and loads(key, data, flags) methods, "
                f"not {serializer!r}"
            )
        if serializer is None or isinstance(serializer, BytesSerializer):
            self._codec: Codec[_V] | None = None
        else:
            self._codec = Codec(serializer)
        self.serializer: Serializer[_V] = serializer or cast(Serializer[_V], BytesSerializer())
        self._noreply = bool(noreply)
        self._lenient = ErrorsAsMisses() if ignoreErrors else None
        # Nothing to do around a request: the default.
        self._plain = self._codec is None and self._lenient is None
        Pool.__init__(
            self,
            serverAddress,
            maxClients,
            reactor,
            connectTimeout=connectTimeout,
            requestTimeout=requestTimeout,
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

    @property
    def ignoredErrors(self) -> int:
        """
        How many failed requests C{ignoreErrors} turned into misses or failed writes.
        """
        return 0 if self._lenient is None else self._lenient.count

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
        return protocol.version()  # type: ignore[return-value]

    # Around requests

    def _read(
        self, d: Deferred[Any], command: str, key: Key, miss: object
    ) -> Deferred[Any]:
        if self._codec is not None:
            d.addCallback(self._codec.decode, key)
        if self._lenient is not None:
            d.addErrback(self._lenient, command, miss)
        return d

    def _write(self, d: Deferred[Any], command: str, failed: object = False) -> Deferred[Any]:
        if self._lenient is not None:
            d.addErrback(self._lenient, command, failed)
        return d

    def _encode(self, key: object, val: object, flags: object) -> tuple[object, object]:
        if self._codec is None:
            return val, flags
        return self._codec.encode(key, val, flags)  # type: ignore[arg-type]

    def _store(
        self, command: str, key: object, val: object, flags: object, *args: object
    ) -> Deferred[bool]:
        try:
            val, flags = self._encode(key, val, flags)
        except Exception as e:
            return fail(e)
        return self._write(self.performRequest(command, key, val, flags, *args), command)

    # Reading

    @overload
    def get(
        self, key: Key, withIdentifier: Literal[False] = False
    ) -> Deferred[tuple[int, _V | None]]: ...
    @overload
    def get(
        self, key: Key, withIdentifier: Literal[True]
    ) -> Deferred[tuple[int, bytes, _V | None]]: ...
    @overload
    def get(
        self, key: Key, withIdentifier: bool
    ) -> Deferred[tuple[int, _V | None] | tuple[int, bytes, _V | None]]: ...

    def get(self, key: Key, withIdentifier: bool = False) -> Deferred[Any]:
        """
        Get one value.

        @return: A L{Deferred<twisted.internet.defer.Deferred>} firing with C{(flags, value)}, or
            C{(flags, casId, value)} with C{withIdentifier}; a miss gives C{(0, None)} or
            C{(0, b"", None)}.
        """
        d = self.performRequest("get", key, withIdentifier)
        if self._plain:
            return d
        return self._read(d, "get", key, _MISS_CAS if withIdentifier else _MISS)

    @overload
    def getValue(self, key: Key) -> Deferred[_V | None]: ...
    @overload
    def getValue(self, key: Key, default: _D) -> Deferred[_V | _D]: ...

    def getValue(self, key: Key, default: object = None) -> Deferred[Any]:
        """
        Get one value alone.

        @return: A L{Deferred<twisted.internet.defer.Deferred>} firing with the value, or
            C{default} for a miss.
        """
        return self.get(key).addCallback(_valueOr, default)

    @overload
    def getAndTouch(
        self, key: Key, expireTime: int, withIdentifier: Literal[False] = False
    ) -> Deferred[tuple[int, _V | None]]: ...
    @overload
    def getAndTouch(
        self, key: Key, expireTime: int, withIdentifier: Literal[True]
    ) -> Deferred[tuple[int, bytes, _V | None]]: ...
    @overload
    def getAndTouch(
        self, key: Key, expireTime: int, withIdentifier: bool
    ) -> Deferred[tuple[int, _V | None] | tuple[int, bytes, _V | None]]: ...

    def getAndTouch(
        self, key: Key, expireTime: int, withIdentifier: bool = False
    ) -> Deferred[Any]:
        """
        Get one value and give it a new expiry time (memcached's C{gat}, or C{gats} with
        C{withIdentifier}).

        @return: A L{Deferred<twisted.internet.defer.Deferred>} firing as for L{get}.
        """
        d = self.performRequest("getAndTouch", key, expireTime, withIdentifier)
        return self._read(d, "getAndTouch", key, _MISS_CAS if withIdentifier else _MISS)

    @overload
    def getMultiple(
        self, keys: Iterable[_K], withIdentifier: Literal[False] = False
    ) -> Deferred[dict[_K, tuple[int, _V | None]]]: ...
    @overload
    def getMultiple(
        self, keys: Iterable[_K], withIdentifier: Literal[True]
    ) -> Deferred[dict[_K, tuple[int, bytes, _V | None]]]: ...
    @overload
    def getMultiple(
        self, keys: Iterable[_K], withIdentifier: bool
    ) -> Deferred[dict[_K, tuple[int, _V | None]] | dict[_K, tuple[int, bytes, _V | None]]]: ...

    def getMultiple(self, keys: Iterable[_K], withIdentifier: bool = False) -> Deferred[Any]:
        """
        Get several values in one request.

        @return: A L{Deferred<twisted.internet.defer.Deferred>} firing with a C{dict} from each key
            asked for (without the C{keyPrefix}) to its C{get}-style tuple.
        """
        if self._plain:
            return self.performRequest("getMultiple", keys, withIdentifier)
        if self._lenient is not None and not isinstance(keys, (bytes, str)):
            keys = list(keys)
        d = self.performRequest("getMultiple", keys, withIdentifier)
        if self._codec is not None:
            d.addCallback(self._codec.decodeMultiple)
        if self._lenient is not None:
            miss = _MISS_CAS if withIdentifier else _MISS
            d.addErrback(self._lenient, "getMultiple", _Misses(keys, miss))
            d.addCallback(_missesFilled)
        return d

    # Writing

    def set(
        self,
        key: Key,
        val: _V,
        flags: int = 0,
        expireTime: int = 0,
        noreply: bool | None = None,
    ) -> Deferred[bool]:
        """
        Store a value. C{flags} are added to the serializer's (which are 0 for C{bytes}).

        @param noreply: Ask the server not to answer, and fire with C{True} once written;
            L{None} for the pool's C{noreply}.
        @return: A L{Deferred<twisted.internet.defer.Deferred>} firing with C{True} when stored.
        """
        if noreply is None:
            noreply = self._noreply
        if self._plain:
            return self.performRequest("set", key, val, flags, expireTime, noreply)
        return self._store("set", key, val, flags, expireTime, noreply)

    def add(
        self,
        key: Key,
        val: _V,
        flags: int = 0,
        expireTime: int = 0,
        noreply: bool | None = None,
    ) -> Deferred[bool]:
        """
        Store a value only if the key is not already there.

        @return: A L{Deferred<twisted.internet.defer.Deferred>} firing with C{True} when stored,
            C{False} otherwise.
        """
        noreply = self._noreply if noreply is None else noreply
        return self._store("add", key, val, flags, expireTime, noreply)

    def replace(
        self,
        key: Key,
        val: _V,
        flags: int = 0,
        expireTime: int = 0,
        noreply: bool | None = None,
    ) -> Deferred[bool]:
        """
        Store a value only if the key is already there.

        @return: A L{Deferred<twisted.internet.defer.Deferred>} firing with C{True} when stored,
            C{False} otherwise.
        """
        noreply = self._noreply if noreply is None else noreply
        return self._store("replace", key, val, flags, expireTime, noreply)

    def append(self, key: Key, val: bytes, noreply: bool | None = None) -> Deferred[bool]:
        """
        Append bytes to an existing value (as stored: not through the serializer).

        @return: A L{Deferred<twisted.internet.defer.Deferred>} firing with C{True} when stored,
            C{False} for a missing key.
        """
        noreply = self._noreply if noreply is None else noreply
        return self._write(self.performRequest("append", key, val, noreply), "append")

    def prepend(self, key: Key, val: bytes, noreply: bool | None = None) -> Deferred[bool]:
        """
        Prepend bytes to an existing value (as stored: not through the serializer).

        @return: A L{Deferred<twisted.internet.defer.Deferred>} firing with C{True} when stored,
            C{False} for a missing key.
        """
        noreply = self._noreply if noreply is None else noreply
        return self._write(self.performRequest("prepend", key, val, noreply), "prepend")

    def checkAndSet(
        self,
        key: Key,
        val: _V,
        cas: int | bytes,
        flags: int = 0,
        expireTime: int = 0,
        noreply: bool | None = None,
    ) -> Deferred[bool]:
        """
        Store a value only if it has not changed since C{get(key, withIdentifier=True)} gave
        C{cas}.

        @return: A L{Deferred<twisted.internet.defer.Deferred>} firing with C{True} when stored,
            C{False} when the value changed or is gone.
        """
        noreply = self._noreply if noreply is None else noreply
        try:
            data, allFlags = self._encode(key, val, flags)
        except Exception as e:
            return fail(e)
        d = self.performRequest("checkAndSet", key, data, cas, allFlags, expireTime, noreply)
        return self._write(d, "checkAndSet")

    def setMultiple(
        self,
        values: Mapping[_K, _V],
        flags: int = 0,
        expireTime: int = 0,
        noreply: bool | None = None,
    ) -> Deferred[dict[_K, bool]]:
        """
        Store several values, all sent at once on one connection.

        @return: A L{Deferred<twisted.internet.defer.Deferred>} firing with a C{dict} from each
            key to C{True} (stored) or C{False}.
        """
        noreply = self._noreply if noreply is None else noreply
        items: Mapping[Any, Any] = values
        if self._codec is not None and isinstance(values, Mapping):
            try:
                items = self._codec.encodeMultiple(values, flags)
            except Exception as e:
                return fail(e)
        d = self.performRequest("setMultiple", items, flags, expireTime, noreply)
        if self._lenient is not None and isinstance(values, Mapping):
            d.addErrback(self._lenient, "setMultiple", dict.fromkeys(values, False))
        return d

    @overload
    def increment(
        self, key: Key, val: int = 1, *, noreply: Literal[False]
    ) -> Deferred[int | Literal[False]]: ...
    @overload
    def increment(self, key: Key, val: int = 1, *, noreply: Literal[True]) -> Deferred[None]: ...
    @overload
    def increment(
        self, key: Key, val: int = 1, noreply: bool | None = None
    ) -> Deferred[int | Literal[False] | None]: ...

    def increment(self, key: Key, val: int = 1, noreply: bool | None = None) -> Deferred[Any]:
        """
        Add to a decimal value.

        @return: A L{Deferred<twisted.internet.defer.Deferred>} firing with the new value, as
            memcached's C{incr} gives it, C{False} for a missing key, or L{None} with
            C{noreply} (which is the pool's C{noreply} unless given).
        """
        noreply = self._noreply if noreply is None else noreply
        d = self.performRequest("increment", key, val, noreply)
        return self._write(d, "increment", None)

    @overload
    def decrement(
        self, key: Key, val: int = 1, *, noreply: Literal[False]
    ) -> Deferred[int | Literal[False]]: ...
    @overload
    def decrement(self, key: Key, val: int = 1, *, noreply: Literal[True]) -> Deferred[None]: ...
    @overload
    def decrement(
        self, key: Key, val: int = 1, noreply: bool | None = None
    ) -> Deferred[int | Literal[False] | None]: ...

    def decrement(self, key: Key, val: int = 1, noreply: bool | None = None) -> Deferred[Any]:
        """
        Subtract from a decimal value (memcached stops at 0).

        @return: A L{Deferred<twisted.internet.defer.Deferred>} firing as for L{increment}.
        """
        noreply = self._noreply if noreply is None else noreply
        d = self.performRequest("decrement", key, val, noreply)
        return self._write(d, "decrement", None)

    def delete(self, key: Key, noreply: bool | None = None) -> Deferred[bool]:
        """
        Delete a key.

        @return: A L{Deferred<twisted.internet.defer.Deferred>} firing with C{True} if it was
            there, C{False} otherwise.
        """
        noreply = self._noreply if noreply is None else noreply
        return self._write(self.performRequest("delete", key, noreply), "delete")

    def deleteMultiple(
        self, keys: Iterable[_K], noreply: bool | None = None
    ) -> Deferred[dict[_K, bool]]:
        """
        Delete several keys, all sent at once on one connection.

        @return: A L{Deferred<twisted.internet.defer.Deferred>} firing with a C{dict} from each
            key to C{True} (deleted) or C{False} (missing).
        """
        noreply = self._noreply if noreply is None else noreply
        if self._lenient is None or isinstance(keys, (bytes, str)):
            return self.performRequest("deleteMultiple", keys, noreply)
        keys = list(keys)
        d = self.performRequest("deleteMultiple", keys, noreply)
        self._write(d, "deleteMultiple", _Misses(keys, False))
        return d.addCallback(_missesFilled)

    def touch(self, key: Key, expireTime: int, noreply: bool | None = None) -> Deferred[bool]:
        """
        Change a key's expiry time without fetching it.

        @return: A L{Deferred<twisted.internet.defer.Deferred>} firing with C{True} if the key was
            there, C{False} otherwise.
        """
        noreply = self._noreply if noreply is None else noreply
        return self._write(self.performRequest("touch", key, expireTime, noreply), "touch")

    # The server

    def flushAll(self, delay: int = 0) -> Deferred[bool]:
        """
        Invalidate every item on the server, now or in C{delay} seconds.

        @return: A L{Deferred<twisted.internet.defer.Deferred>} firing with C{True}.
        """
        return self.performRequest("flushAll", delay)

    def stats(self, arg: bytes | str | None = None) -> Deferred[dict[bytes, bytes]]:
        """
        Read the server's statistics (C{arg} names a group, such as C{b"items"}, or a
        subcommand, such as C{b"cachedump 1 100"} or C{b"detail dump"}).

        @return: A L{Deferred<twisted.internet.defer.Deferred>} firing with a C{dict} of C{bytes}
            names to C{bytes} values (see L{MemCacheProtocol.stats}).
        """
        return self.performRequest("stats", arg)

    def version(self) -> Deferred[bytes]:
        """
        Ask the server's version.

        @return: A L{Deferred<twisted.internet.defer.Deferred>} firing with the version as
            C{bytes}.
        """
        return self.performRequest("version")


def _valueOr(result: tuple[Any, ...], default: object) -> object:
    value = result[-1]
    return default if value is None else value


class _Misses:
    """
    The result of a failed C{getMultiple} or C{deleteMultiple} with C{ignoreErrors}: the
    same C{miss} for every key, made into a C{dict} by L{_missesFilled}.
    """

    __slots__ = ("keys", "miss")

    def __init__(self, keys: object, miss: object) -> None:
        self.keys = keys
        self.miss = miss


def _missesFilled(result: Any) -> Any:
    if isinstance(result, _Misses):
        return dict.fromkeys(result.keys, result.miss)  # type: ignore[call-overload]
    return result
