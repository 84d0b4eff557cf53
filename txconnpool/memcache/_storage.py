"""
The storage commands of L{MemCacheProtocol<txconnpool.memcache.protocol.MemCacheProtocol>}:
C{set}, C{add}, C{replace}, C{append}, C{prepend}, C{cas} and several C{set}s at once.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from twisted.internet.defer import Deferred, fail, succeed

from txconnpool.memcache import _validate as _v
from txconnpool.memcache._requests import CAS_REPLIES, NO_CAS, STORE_REPLIES, KeyedGather, Request
from txconnpool.memcache._wire import MemCacheWire
from txconnpool.memcache.errors import InvalidRequestError

Key = bytes | str
_K = TypeVar("_K", bound=Key)


class StorageCommands(MemCacheWire):
    """
    The storage commands, over the wire of L{MemCacheWire}.
    """

    _checkKey: Callable[[object], bytes]

    def _storeLine(
        self, command: bytes, key: object, val: object, flags: object, expireTime: object,
        noreply: bool, cas: object = NO_CAS,
    ) -> bytes:
        """
        Return the command line and data block of a storage command, or raise
        L{InvalidRequestError}.
        """
        value = _v.checkValue(val, self.maxValueSize)
        return b"%s %s %d %d %d%s%s\r\n%s\r\n" % (
            command,
            self._checkKey(key),
            _v.checkInt("flags", flags, _v.MAX_FLAGS),
            _v.checkInt("expireTime", expireTime, _v.MAX_EXPIRE_TIME),
            len(value),
            b"" if cas is NO_CAS else b" " + _v.checkCas(cas),
            b" noreply" if noreply else b"",
            value,
        )

    def _store(
        self,
        command: bytes,
        key: object,
        val: object,
        flags: object,
        expireTime: object,
        noreply: bool,
        cas: object = NO_CAS,
    ) -> Deferred[bool]:
        try:
            line = self._storeLine(command, key, val, flags, expireTime, noreply, cas)
        except InvalidRequestError as e:
            return fail(e)
        if noreply:
            return self._sendQuiet(command.decode(), line, True)
        replies = STORE_REPLIES if cas is NO_CAS else CAS_REPLIES
        return self._send(Request(command.decode(), replies, True), line)

    def set(
        self, key: Key, val: bytes, flags: int = 0, expireTime: int = 0, noreply: bool = False
    ) -> Deferred[bool]:
        """
        Store C{val} under C{key}, with C{flags} (0 to 2**32-1, opaque to the server) and
        C{expireTime} (0 for never, seconds up to 30 days, or a Unix time; at most 2**31-1).

        @param noreply: ask the server not to answer (see the module docstring).
        @return: fires with C{True} (C{STORED}) or C{False} (C{NOT_STORED}).
        """
        return self._store(b"set", key, val, flags, expireTime, noreply)

    def add(
        self, key: Key, val: bytes, flags: int = 0, expireTime: int = 0, noreply: bool = False
    ) -> Deferred[bool]:
        """
        Like L{set}, only if C{key} is not stored yet; fires with C{True} or C{False}.
        """
        return self._store(b"add", key, val, flags, expireTime, noreply)

    def replace(
        self, key: Key, val: bytes, flags: int = 0, expireTime: int = 0, noreply: bool = False
    ) -> Deferred[bool]:
        """
        Like L{set}, only if C{key} is already stored; fires with C{True} or C{False}.
        """
        return self._store(b"replace", key, val, flags, expireTime, noreply)

    def append(self, key: Key, val: bytes, noreply: bool = False) -> Deferred[bool]:
        """
        Append C{val} to the value of C{key}; fires with C{True}, or C{False} if missing.
        """
        return self._store(b"append", key, val, 0, 0, noreply)

    def prepend(self, key: Key, val: bytes, noreply: bool = False) -> Deferred[bool]:
        """
        Prepend C{val} to the value of C{key}; fires with C{True}, or C{False} if missing.
        """
        return self._store(b"prepend", key, val, 0, 0, noreply)

    def checkAndSet(
        self,
        key: Key,
        val: bytes,
        cas: bytes | int,
        flags: int = 0,
        expireTime: int = 0,
        noreply: bool = False,
    ) -> Deferred[bool]:
        """
        Like L{set}, only if the CAS identifier of C{key} is still C{cas}: the C{bytes}
        from C{get(key, withIdentifier=True)}, or an C{int} from 0 to 2**64-1.

        @return: fires with C{True} if stored, C{False} if the key changed since
            (C{EXISTS}) or is missing (C{NOT_FOUND}).
        """
        return self._store(b"cas", key, val, flags, expireTime, noreply, cas)

    def setMultiple(
        self,
        values: Mapping[_K, bytes | tuple[int, bytes]],
        flags: int = 0,
        expireTime: int = 0,
        noreply: bool = False,
    ) -> Deferred[dict[_K, bool]]:
        """
        Store several values, with one C{set} each, all written at once. A value is
        C{bytes}, stored with C{flags}, or a C{(flags, value)} tuple as C{get} returns it.
        Nothing is written unless every key and value is valid.

        @return: fires with a C{dict} from each key given to C{True} (stored) or C{False},
            once every reply is in; it fails with the first error reply, if any.
        """
        try:
            items = _v.itemsToStore(values, flags)
            lines = [
                self._storeLine(b"set", key, val, itemFlags, expireTime, noreply)
                for key, itemFlags, val in items
            ]
        except InvalidRequestError as e:
            return fail(e)
        keys = [key for key, _, _ in items]
        return self._sendAll("set", keys, b"".join(lines), STORE_REPLIES, True, noreply)

    def _sendAll(
        self,
        command: str,
        keys: list[Any],
        data: bytes,
        replies: dict[bytes, bool],
        hasData: bool,
        noreply: bool,
    ) -> Deferred[Any]:
        """
        Send one C{command} per key, written as C{data}, and gather the results by key.
        """
        if not keys:
            return self._notConnected(command) if self._closed else succeed({})
        if noreply:
            return self._sendQuiet(command, data, dict.fromkeys(keys, True))
        ds = self._sendMany([Request(command, replies, hasData) for _ in keys], data)
        if ds is None:
            return self._notConnected(command)
        return KeyedGather(keys, ds).deferred

