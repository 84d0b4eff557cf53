"""
The reading commands of L{MemCachePool<txconnpool.memcache.MemCachePool>} (and the ones about
the server), typed by the serializer's values.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Generic, Literal, overload

from twisted.internet.defer import Deferred
from typing_extensions import TypeVar

from ._codec import Codec
from ._lenient import ErrorsAsMisses

Key = bytes | str
_V = TypeVar("_V", default=bytes)
_K = TypeVar("_K", bound=Key)
_D = TypeVar("_D")

MISS = (0, None)
MISS_CAS = (0, b"", None)


class ReadCommands(Generic[_V]):
    """
    C{get}, C{getValue}, C{getAndTouch}, C{getMultiple}, C{flushAll}, C{stats} and
    C{version}, sent with L{Pool.performRequest<txconnpool.pool.Pool.performRequest>}.
    """

    _codec: Codec[_V] | None
    _lenient: ErrorsAsMisses | None
    _noreply: bool
    _plain: bool

    if TYPE_CHECKING:

        def performRequest(self, method: str, *args: Any, **kwargs: Any) -> Deferred[Any]: ...

    # Around requests

    def _read(
        self, d: Deferred[Any], command: str, key: Key, miss: object
    ) -> Deferred[Any]:
        if self._codec is not None:
            d.addCallback(self._codec.decode, key)
        if self._lenient is not None:
            d.addErrback(self._lenient, command, miss)
        return d

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
        return self._read(d, "get", key, MISS_CAS if withIdentifier else MISS)

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
        return self.get(key).addCallback(valueOr, default)

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
        return self._read(d, "getAndTouch", key, MISS_CAS if withIdentifier else MISS)

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
            miss = MISS_CAS if withIdentifier else MISS
            d.addErrback(self._lenient, "getMultiple", Misses(keys, miss))
            d.addCallback(missesFilled)
        return d

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


def valueOr(result: tuple[Any, ...], default: object) -> object:
    value = result[-1]
    return default if value is None else value


class Misses:
    """
    The result of a failed C{getMultiple} or C{deleteMultiple} with C{ignoreErrors}: the
    same C{miss} for every key, made into a C{dict} by L{missesFilled}.
    """

    __slots__ = ("keys", "miss")

    def __init__(self, keys: object, miss: object) -> None:
        self.keys = keys
        self.miss = miss


def missesFilled(result: Any) -> Any:
    if isinstance(result, Misses):
        return dict.fromkeys(result.keys, result.miss)  # type: ignore[call-overload]
    return result
