"""
The storage commands of
L{MetaMemCacheProtocol<txconnpool.memcache.meta.MetaMemCacheProtocol>}, sent as C{ms}: C{set},
C{add}, C{replace}, C{append}, C{prepend}, C{checkAndSet} and several C{set}s at once, each
with C{noreply} (quiet mode).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TypeVar

from twisted.internet.defer import Deferred, fail, succeed

from txconnpool.memcache import _validate as _v
from txconnpool.memcache.errors import InvalidRequestError, InvalidTypeError
from txconnpool.memcache.meta._replies import MetaRequest
from txconnpool.memcache.meta._requests import StatusRequest
from txconnpool.memcache.meta._wire import MetaWire

Key = bytes | str
_K = TypeVar("_K", bound=Key)

STORED = {b"HD": True, b"NS": False}
CAS_STORED = {b"HD": True, b"EX": False, b"NF": False}

_SET = b""
_ADD = b" ME"
_REPLACE = b" MR"
_APPEND = b" MA"
_PREPEND = b" MP"


class MetaStorage(MetaWire):
    """
    The storage commands, over the wire of L{MetaWire}.
    """

    _key: Callable[[object], bytes]

    def _arguments(self, flags: object, expireTime: object, cas: object, mode: bytes) -> bytes:
        """
        Check the arguments of a storage command, and return them as they follow the opaque
        token on its command line; C{flags} L{None} for none (C{append}, C{prepend}).

        @raise InvalidRequestError: An argument cannot be sent.
        """
        if flags is None:
            return mode
        clientFlags = _v.checkInt("flags", flags, _v.MAX_FLAGS)
        ttl = _v.checkInt("expireTime", expireTime, _v.MAX_EXPIRE_TIME)
        compare = b"" if cas is None else b" C" + _v.checkCas(cas)
        return b" F%d T%d%s%s" % (clientFlags, ttl, compare, mode)

    def _storeLine(
        self, wireKey: bytes, value: bytes, opaque: bytes, arguments: bytes, noreply: bool
    ) -> bytes:
        return b"ms %s %d %s%s%s%s\r\n%s\r\n" % (
            wireKey, len(value), opaque, self._keyFlag, arguments, b" q" if noreply else b"",
            value,
        )

    def _store(
        self,
        command: str,
        key: object,
        val: object,
        flags: object,
        expireTime: object,
        mode: bytes,
        noreply: bool,
        cas: object = None,
    ) -> Deferred[bool]:
        try:
            wireKey = self._key(key)
            value = _v.checkValue(val, self.maxValueSize)
            arguments = self._arguments(flags, expireTime, cas, mode)
        except InvalidRequestError as e:
            return fail(e)
        replies = STORED if cas is None else CAS_STORED
        opaque = self._opaque()
        line = self._storeLine(wireKey, value, opaque, arguments, noreply)
        if noreply:
            return self._sendQuiet([(command, opaque, replies, None)], True, line, True)
        return self._send(StatusRequest(command, opaque, replies, hasData=True), line)

    def set(
        self, key: Key, val: bytes, flags: int = 0, expireTime: int = 0, noreply: bool = False
    ) -> Deferred[bool]:
        """
        Store C{val} under C{key}, with C{flags} (0 to 2**32-1, opaque to the server) and
        C{expireTime} (0 for never, seconds up to 30 days, or a Unix time; at most 2**31-1).

        @param noreply: send the command in quiet mode and fire with C{True} once it is
            written, without waiting for the server (see the module docstring of
            L{txconnpool.memcache.meta.protocol}).
        @return: fires with C{True} (C{HD}) or C{False} (C{NS}).
        """
        return self._store("set", key, val, flags, expireTime, _SET, noreply)

    def add(
        self, key: Key, val: bytes, flags: int = 0, expireTime: int = 0, noreply: bool = False
    ) -> Deferred[bool]:
        """
        Like L{set}, only if C{key} is not stored yet; fires with C{True} or C{False}.
        """
        return self._store("add", key, val, flags, expireTime, _ADD, noreply)

    def replace(
        self, key: Key, val: bytes, flags: int = 0, expireTime: int = 0, noreply: bool = False
    ) -> Deferred[bool]:
        """
        Like L{set}, only if C{key} is already stored; fires with C{True} or C{False}.
        """
        return self._store("replace", key, val, flags, expireTime, _REPLACE, noreply)

    def append(self, key: Key, val: bytes, noreply: bool = False) -> Deferred[bool]:
        """
        Append C{val} to the value of C{key}; fires with C{True}, or C{False} if missing.
        """
        return self._store("append", key, val, None, None, _APPEND, noreply)

    def prepend(self, key: Key, val: bytes, noreply: bool = False) -> Deferred[bool]:
        """
        Prepend C{val} to the value of C{key}; fires with C{True}, or C{False} if missing.
        """
        return self._store("prepend", key, val, None, None, _PREPEND, noreply)

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

        @return: fires with C{True} if stored, C{False} if the key changed since (C{EX}) or
            is missing (C{NF}).
        """
        if cas is None:
            return fail(InvalidTypeError("cas must be an int or bytes, not NoneType"))
        return self._store("checkAndSet", key, val, flags, expireTime, _SET, noreply, cas)

    def setMultiple(
        self,
        values: Mapping[_K, bytes | tuple[int, bytes]],
        flags: int = 0,
        expireTime: int = 0,
        noreply: bool = False,
    ) -> Deferred[dict[_K, bool]]:
        """
        Store several values, with one C{ms} each, all written at once. A value is C{bytes},
        stored with C{flags}, or a C{(flags, value)} tuple as C{get} returns it. Nothing is
        written unless every key and value is valid.

        @return: fires with a C{dict} from each key given to C{True} (stored) or C{False},
            once every reply is in; it fails with the first error reply, if any.
        """
        try:
            checked = [
                (
                    key,
                    self._key(key),
                    _v.checkValue(val, self.maxValueSize),
                    self._arguments(itemFlags, expireTime, None, _SET),
                )
                for key, itemFlags, val in _v.itemsToStore(values, flags)
            ]
        except InvalidRequestError as e:
            return fail(e)
        if not checked:
            return self._notConnected("set") if self._closed else succeed({})
        first = self._reserve(len(checked))
        opaques = [b"O%d" % (first + i,) for i in range(len(checked))]
        data = b"".join(
            self._storeLine(wireKey, value, opaque, rest, noreply)
            for (_, wireKey, value, rest), opaque in zip(checked, opaques)
        )
        keys = [key for key, _, _, _ in checked]
        if noreply:
            quiet = [("set", opaque, STORED, None) for opaque in opaques]
            return self._sendQuiet(quiet, True, data, dict.fromkeys(keys, True))
        reqs: list[MetaRequest] = [
            StatusRequest("set", opaque, STORED, hasData=True) for opaque in opaques
        ]
        return self._gather(keys, reqs, data, "set")
