"""
The writing commands of L{MemCachePool<txconnpool.memcache.MemCachePool>}, typed by the
serializer's values.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, Generic, Literal, overload

from twisted.internet.defer import Deferred, fail
from typing_extensions import TypeVar

from ._codec import Codec
from ._lenient import ErrorsAsMisses
from ._reads import Misses, missesFilled

Key = bytes | str
_V = TypeVar("_V", default=bytes)
_K = TypeVar("_K", bound=Key)


class WriteCommands(Generic[_V]):
    """
    The storage commands, C{increment}, C{decrement}, C{delete}, C{deleteMultiple} and
    C{touch}, sent with L{Pool.performRequest<txconnpool.pool.Pool.performRequest>}.
    """

    _codec: Codec[_V] | None
    _lenient: ErrorsAsMisses | None
    _noreply: bool
    _plain: bool

    if TYPE_CHECKING:

        def performRequest(self, method: str, *args: Any, **kwargs: Any) -> Deferred[Any]: ...

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
        self._write(d, "deleteMultiple", Misses(keys, False))
        return d.addCallback(missesFilled)

    def touch(self, key: Key, expireTime: int, noreply: bool | None = None) -> Deferred[bool]:
        """
        Change a key's expiry time without fetching it.

        @return: A L{Deferred<twisted.internet.defer.Deferred>} firing with C{True} if the key was
            there, C{False} otherwise.
        """
        noreply = self._noreply if noreply is None else noreply
        return self._write(self.performRequest("touch", key, expireTime, noreply), "touch")

