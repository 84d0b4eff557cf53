"""
The commands of L{MetaMemCacheProtocol<txconnpool.memcache.meta.MetaMemCacheProtocol>} that
change a key without sending a value: C{increment} and C{decrement} (C{ma}), C{delete} and
C{deleteMultiple} (C{md}), C{touch} (C{mg} with C{T}), each with C{noreply} (quiet mode).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, Literal, TypeVar, overload

from twisted.internet.defer import Deferred, fail, succeed

from txconnpool.memcache import _validate as _v
from txconnpool.memcache.errors import InvalidRequestError, InvalidTypeError
from txconnpool.memcache.meta._replies import MetaRequest
from txconnpool.memcache.meta._requests import IncrRequest, StatusRequest
from txconnpool.memcache.meta._wire import MetaWire

Key = bytes | str
_K = TypeVar("_K", bound=Key)

_DELETED = {b"HD": True, b"NF": False}
_TOUCHED = {b"HD": True, b"EN": False}
_ARITHMETIC = {b"HD": None, b"NF": None}


class MetaKeyCommands(MetaWire):
    """
    The commands on a key without a value, over the wire of L{MetaWire}.
    """

    _key: Callable[[object], bytes]

    def _keyCommand(
        self,
        req: MetaRequest,
        line: bytes,
        opaque: bytes,
        noreply: bool,
        replies: dict[bytes, Any],
        quietResult: object,
        key: bytes | None = None,
    ) -> Deferred[Any]:
        if noreply:
            return self._sendQuiet([(req.command, opaque, replies, key)], False, line, quietResult)
        return self._send(req, line)

    @overload
    def increment(
        self, key: Key, val: int = 1, noreply: Literal[False] = False
    ) -> Deferred[int | Literal[False]]: ...
    @overload
    def increment(self, key: Key, val: int, noreply: Literal[True]) -> Deferred[None]: ...
    @overload
    def increment(
        self, key: Key, val: int = 1, *, noreply: Literal[True]
    ) -> Deferred[None]: ...
    @overload
    def increment(
        self, key: Key, val: int = 1, noreply: bool = False
    ) -> Deferred[int | Literal[False] | None]: ...

    def increment(self, key: Key, val: int = 1, noreply: bool = False) -> Deferred[Any]:
        """
        Add C{val} (0 to 2**64-1) to the decimal number stored under C{key}, modulo 2**64.

        @return: fires with the new value, or C{False} if the key is missing (as Twisted's
            client does), or L{None} with C{noreply}; fails with L{ClientError} if the value
            is not a number.
        """
        return self._arithmetic("increment", key, val, b"", noreply)

    @overload
    def decrement(
        self, key: Key, val: int = 1, noreply: Literal[False] = False
    ) -> Deferred[int | Literal[False]]: ...
    @overload
    def decrement(self, key: Key, val: int, noreply: Literal[True]) -> Deferred[None]: ...
    @overload
    def decrement(
        self, key: Key, val: int = 1, *, noreply: Literal[True]
    ) -> Deferred[None]: ...
    @overload
    def decrement(
        self, key: Key, val: int = 1, noreply: bool = False
    ) -> Deferred[int | Literal[False] | None]: ...

    def decrement(self, key: Key, val: int = 1, noreply: bool = False) -> Deferred[Any]:
        """
        Subtract C{val} (0 to 2**64-1) from the number stored under C{key}, down to 0.

        @return: as for L{increment}.
        """
        return self._arithmetic("decrement", key, val, b" MD", noreply)

    def _arithmetic(
        self, command: str, key: object, val: object, mode: bytes, noreply: bool
    ) -> Deferred[Any]:
        try:
            wireKey = self._key(key)
            delta = _v.checkInt("val", val, _v.MAX_UINT64)
        except InvalidRequestError as e:
            return fail(e)
        opaque = self._opaque()
        if noreply:
            line = b"ma %s %s%s D%d%s q\r\n" % (wireKey, opaque, self._keyFlag, delta, mode)
        else:
            line = b"ma %s %s%s v D%d%s\r\n" % (wireKey, opaque, self._keyFlag, delta, mode)
        return self._keyCommand(
            IncrRequest(command, opaque), line, opaque, noreply, _ARITHMETIC, None
        )

    def delete(self, key: Key, noreply: bool = False) -> Deferred[bool]:
        """
        Delete C{key}; fires with C{True}, or C{False} if it is missing.
        """
        try:
            wireKey = self._key(key)
        except InvalidRequestError as e:
            return fail(e)
        opaque = self._opaque()
        line = b"md %s %s%s%s\r\n" % (wireKey, opaque, self._keyFlag, b" q" if noreply else b"")
        req = StatusRequest("delete", opaque, _DELETED)
        return self._keyCommand(req, line, opaque, noreply, _DELETED, True)

    def deleteMultiple(
        self, keys: Iterable[_K], noreply: bool = False
    ) -> Deferred[dict[_K, bool]]:
        """
        Delete several keys, with one C{md} each (each key once), all written at once.

        @return: fires with a C{dict} from each key given to C{True} (deleted) or C{False}
            (missing).
        """
        if isinstance(keys, (bytes, str)):
            name = type(keys).__name__
            return fail(InvalidTypeError(f"keys must be an iterable of keys, not one {name}"))
        try:
            callerKeys = [(key, self._key(key)) for key in keys]
        except InvalidRequestError as e:
            return fail(e)
        wanted = list(dict.fromkeys(wire for _, wire in callerKeys))
        if not wanted:
            return self._notConnected("delete") if self._closed else succeed({})
        first = self._reserve(len(wanted))
        opaques = [b"O%d" % (first + i,) for i in range(len(wanted))]
        quiet = b" q" if noreply else b""
        data = b"".join(
            b"md %s %s%s%s\r\n" % (wire, opaque, self._keyFlag, quiet)
            for wire, opaque in zip(wanted, opaques)
        )
        if noreply:
            commands = [("delete", opaque, _DELETED, None) for opaque in opaques]
            return self._sendQuiet(commands, False, data, {key: True for key, _ in callerKeys})
        reqs: list[MetaRequest] = [StatusRequest("delete", opaque, _DELETED) for opaque in opaques]
        d = self._gather(wanted, reqs, data, "delete")
        return d.addCallback(lambda byWire: {key: byWire[wire] for key, wire in callerKeys})

    def touch(self, key: Key, expireTime: int, noreply: bool = False) -> Deferred[bool]:
        """
        Give C{key} a new C{expireTime} (as for L{set}) without fetching it.

        @return: fires with C{True}, or C{False} if the key is missing.
        """
        try:
            wireKey = self._key(key)
            ttl = _v.checkInt("expireTime", expireTime, _v.MAX_EXPIRE_TIME)
        except InvalidRequestError as e:
            return fail(e)
        opaque = self._opaque()
        quiet = b" q" if noreply else b""
        line = b"mg %s %s%s T%d%s\r\n" % (wireKey, opaque, self._keyFlag, ttl, quiet)
        req = StatusRequest("touch", opaque, _TOUCHED, bareMiss=self._bareMisses, key=wireKey)
        return self._keyCommand(req, line, opaque, noreply, _TOUCHED, True, wireKey)
