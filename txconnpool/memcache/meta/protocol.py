"""
A memcached client protocol speaking the meta commands (C{mg}, C{ms}, C{md}, C{ma}, C{mn},
C{me}) of memcached 1.6, with the methods, arguments and results of
L{MemCacheProtocol<txconnpool.memcache.protocol.MemCacheProtocol>}.

What it adds to the text-protocol client:

  - Every meta command carries an opaque token (C{O}) that the server copies onto its reply,
    and every reply is checked against the token of the request it is read for. A reply with
    another token (an extra reply, a reply to a request sent behind the protocol's back) fails
    every pending request with L{ProtocolError} and drops the connection, where the text
    protocol could only notice a reply of the wrong shape. (Servers before 1.6.18 copy the
    token onto every reply but a miss, C{EN}; on such a server a miss is matched by its place
    in the queue alone. L{probe} finds out which kind of server it is.)
  - Gets made while other requests are in flight are sent as quiet C{mg}s (a miss sends
    nothing back) closed by C{mn}; a batch may mix gets with and without the CAS token.
  - With C{base64Keys}, keys are sent base64-encoded (the C{b} flag), so that any bytes, up to
    186 of them, make a key.
  - Leases against cache stampedes: C{leaseGet}, C{leaseStore}, C{leaseRelease} and
    C{invalidate} (from L{LeaseCommands<txconnpool.memcache.meta._leases.LeaseCommands>});
    and L{MetaMemCacheProtocol.itemInfo} (C{me}), L{MetaMemCacheProtocol.noop} (C{mn}).

C{stats}, C{version} and C{flush_all} have no meta form and are sent as text commands; their
replies carry no token and are matched by their place in the queue and their shape, as the
text client does.

As with the text client, every key and argument is checked before anything is written, as
strictly as the server would check it, since the server's C{CLIENT_ERROR} carries no opaque
token: a refused request writes nothing and returns a failed L{Deferred}; no method raises.
A C{CLIENT_ERROR} or C{ERROR} in reply to a command followed by a data block (C{ms}) drops the
connection, because the server may then read the block as a command.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from typing import Any, Literal, TypeVar, cast

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime

from txconnpool.memcache import _validate as _v
from txconnpool.memcache.errors import (
    InvalidArgumentError,
    InvalidRequestError,
    InvalidTypeError,
)
from txconnpool.memcache.meta._batches import MultiGet
from txconnpool.memcache.meta._checks import checkBinaryKey, checkKey
from txconnpool.memcache.meta._leases import LeaseCommands
from txconnpool.memcache.meta._probe import ServerInfo, judgeProbe
from txconnpool.memcache.meta._requests import (
    GetRequest,
    IncrRequest,
    ItemInfoRequest,
    LeaseReply,
    StatusRequest,
)
from txconnpool.memcache.meta._textRequests import ProbeRequest, StatsRequest, TextRequest
from txconnpool.memcache.meta._wire import MetaWire
from txconnpool.memcache.protocol import DEFAULT_MAX_VALUE_SIZE

__all__ = ["LeaseReply", "MetaMemCacheProtocol", "ServerInfo"]

Key = bytes | str
"""A key: C{bytes}, or C{str} sent encoded as UTF-8."""

_K = TypeVar("_K", bound=Key)

_STORED = {b"HD": True, b"NS": False}
_CAS_STORED = {b"HD": True, b"EX": False, b"NF": False}
_DELETED = {b"HD": True, b"NF": False}
_TOUCHED = {b"HD": True, b"EN": False}


class MetaMemCacheProtocol(MetaWire, LeaseCommands):
    """
    A memcached client speaking the meta protocol; see the module docstring.

    Every method returns a L{Deferred}. Besides the results each method documents, any of
    them may fail like those of
    L{MemCacheProtocol<txconnpool.memcache.protocol.MemCacheProtocol>}: with
    L{InvalidRequestError} (nothing was sent); L{ConnectionLostError} (not connected: nothing
    was sent); the C{connectionLost} reason, L{ProtocolError} or L{ConnectionLostError} (the
    connection ended or was dropped while the request was pending, for instance because a
    reply carried another request's opaque token); L{twisted.internet.defer.TimeoutError} (no
    data for C{timeOut} seconds while requests were pending); C{CancelledError} (cancelled;
    the connection was dropped); and L{UnknownCommandError}, L{ClientError} or L{ServerError}
    for an C{ERROR}, C{CLIENT_ERROR} or C{SERVER_ERROR} reply.

    @ivar timeOut: seconds without any data from the server, while requests are pending,
        after which they all fail and the connection is dropped; C{None} never times out.
    @ivar maxValueSize: largest value, in bytes, that may be stored or received.
    @ivar maxLineLength: longest reply line accepted, in bytes, without its CRLF.
    @ivar base64Keys: whether keys are sent base64-encoded.
    @ivar serverInfo: what L{probe} found out about the server, once it has run.
    """

    maxLineLength = 2048

    def __init__(
        self,
        timeOut: float | None = 60,
        *,
        maxValueSize: int = DEFAULT_MAX_VALUE_SIZE,
        clock: IReactorTime | None = None,
        batchGets: bool = False,
        base64Keys: bool = False,
    ) -> None:
        """
        @param timeOut: see C{timeOut} above.
        @param maxValueSize: see C{maxValueSize} above; raise it to match a memcached
            started with a larger C{-I}.
        @param clock: the source of timeouts; the global reactor when C{None}.
        @param batchGets: gather the single-key L{get}s made while other requests are
            pending into one batch of quiet C{mg}s closed by C{mn}, sent at the end of the
            reactor turn (or before the next other command); each get still fires with its
            own result.
        @param base64Keys: send keys base64-encoded, so that a key may hold any bytes (up to
            186); keys stored this way are the same keys for every client.
        @raise TypeError: an argument has the wrong type.
        @raise ValueError: an argument is out of range.
        """
        if timeOut is not None and not (
            isinstance(timeOut, (int, float)) and not isinstance(timeOut, bool) and timeOut > 0
        ):
            raise InvalidArgumentError(
                f"timeOut must be a positive number or None, not {timeOut!r}"
            )
        self.timeOut = timeOut
        self.maxValueSize = _v.checkInt("maxValueSize", maxValueSize, 2**62)
        self._clock = clock
        self.base64Keys = bool(base64Keys)
        self._keyFlag = b" b" if self.base64Keys else b""
        self._key: Callable[[object], bytes] = (
            checkBinaryKey if self.base64Keys else _v.checkKey
        )
        self.serverInfo: ServerInfo | None = None
        self._initWire(bool(batchGets))

    @property
    def closed(self) -> bool:
        """
        Whether the connection was lost, or dropped by this protocol: no request can be sent
        on it any more.
        """
        return self._closed

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<{type(self).__name__} {state}, {len(self._pending)} pending>"

    def callLater(self, delay: float, f: Callable[[], None]) -> IDelayedCall:
        """
        Schedule C{f} after C{delay} seconds on the clock given to the constructor.
        """
        clock = self._clock
        if clock is None:
            from twisted.internet import reactor

            clock = cast(IReactorTime, reactor)
        return clock.callLater(delay, f)

    # The connection

    def probe(self) -> Deferred[ServerInfo]:
        """
        Find out whether the server speaks the meta protocol this client needs, as the pool
        does on every new connection: send C{version}, C{mn} and an C{mg} of a key nobody
        uses, and read the three replies.

        @return: fires with a L{ServerInfo}; fails with
            L{MetaProtocolUnsupportedError<txconnpool.memcache.meta.MetaProtocolUnsupportedError>}
            when the server has no meta commands, speaks the early variant of memcached 1.6.0
            to 1.6.9, refuses base64 keys while C{base64Keys} is on, or closes the connection.
        """
        nonce = os.urandom(8).hex().encode()
        key = checkKey(b"txconnpool:probe:" + nonce, self.base64Keys)
        opaque = self._opaque()
        line = b"version\r\nmn\r\nmg %s %s%s\r\n" % (key, opaque, self._keyFlag)
        d = self._send(ProbeRequest(), line)

        def judged(lines: list[bytes]) -> ServerInfo:
            info = judgeProbe(lines, opaque, self.base64Keys)
            self.serverInfo = info
            self._bareMisses = not info.tagsMisses
            return info

        return d.addCallbacks(judged, lambda f: judgeProbe(None, opaque, self.base64Keys, f))

    def noop(self) -> Deferred[bool]:
        """
        Send C{mn}, which the server answers at once: the cheapest way to check a connection.

        @return: fires with C{True}.
        """
        return self._send(TextRequest("mn", b"MN", True), b"mn\r\n")

    # Storing

    def _store(
        self,
        command: str,
        key: object,
        val: object,
        flags: object,
        expireTime: object,
        mode: bytes,
        cas: object = None,
    ) -> Deferred[bool]:
        try:
            wireKey = self._key(key)
            value = _v.checkValue(val, self.maxValueSize)
            clientFlags = _v.checkInt("flags", flags, _v.MAX_FLAGS)
            ttl = _v.checkInt("expireTime", expireTime, _v.MAX_EXPIRE_TIME)
            compare = b"" if cas is None else b" C" + _v.checkCas(cas)
        except InvalidRequestError as e:
            return fail(e)
        opaque = self._opaque()
        line = b"ms %s %d %s%s F%d T%d%s%s\r\n%s\r\n" % (
            wireKey, len(value), opaque, self._keyFlag, clientFlags, ttl, compare, mode, value
        )
        replies = _STORED if cas is None else _CAS_STORED
        return self._send(StatusRequest(command, opaque, replies, hasData=True), line)

    def set(self, key: Key, val: bytes, flags: int = 0, expireTime: int = 0) -> Deferred[bool]:
        """
        Store C{val} under C{key}, with C{flags} (0 to 2**32-1, opaque to the server) and
        C{expireTime} (0 for never, seconds up to 30 days, or a Unix time; at most 2**31-1).

        @return: fires with C{True} (C{HD}) or C{False} (C{NS}).
        """
        return self._store("set", key, val, flags, expireTime, b"")

    def add(self, key: Key, val: bytes, flags: int = 0, expireTime: int = 0) -> Deferred[bool]:
        """
        Like L{set}, only if C{key} is not stored yet; fires with C{True} or C{False}.
        """
        return self._store("add", key, val, flags, expireTime, b" ME")

    def replace(self, key: Key, val: bytes, flags: int = 0, expireTime: int = 0) -> Deferred[bool]:
        """
        Like L{set}, only if C{key} is already stored; fires with C{True} or C{False}.
        """
        return self._store("replace", key, val, flags, expireTime, b" MR")

    def _concatenate(self, command: str, key: object, val: object, mode: bytes) -> Deferred[bool]:
        try:
            wireKey = self._key(key)
            value = _v.checkValue(val, self.maxValueSize)
        except InvalidRequestError as e:
            return fail(e)
        opaque = self._opaque()
        line = b"ms %s %d %s%s%s\r\n%s\r\n" % (
            wireKey, len(value), opaque, self._keyFlag, mode, value
        )
        return self._send(StatusRequest(command, opaque, _STORED, hasData=True), line)

    def append(self, key: Key, val: bytes) -> Deferred[bool]:
        """
        Append C{val} to the value of C{key}; fires with C{True}, or C{False} if missing.
        """
        return self._concatenate("append", key, val, b" MA")

    def prepend(self, key: Key, val: bytes) -> Deferred[bool]:
        """
        Prepend C{val} to the value of C{key}; fires with C{True}, or C{False} if missing.
        """
        return self._concatenate("prepend", key, val, b" MP")

    def checkAndSet(
        self, key: Key, val: bytes, cas: bytes | int, flags: int = 0, expireTime: int = 0
    ) -> Deferred[bool]:
        """
        Like L{set}, only if the CAS identifier of C{key} is still C{cas}: the C{bytes}
        from C{get(key, withIdentifier=True)}, or an C{int} from 0 to 2**64-1.

        @return: fires with C{True} if stored, C{False} if the key changed since (C{EX}) or
            is missing (C{NF}).
        """
        if cas is None:
            return fail(InvalidTypeError("cas must be an int or bytes, not NoneType"))
        return self._store("checkAndSet", key, val, flags, expireTime, b"", cas)

    # Key commands

    def increment(self, key: Key, val: int = 1) -> Deferred[int | Literal[False]]:
        """
        Add C{val} (0 to 2**64-1) to the decimal number stored under C{key}, modulo 2**64.

        @return: fires with the new value, or C{False} if the key is missing (as Twisted's
            client does); fails with L{ClientError} if the value is not a number.
        """
        return self._arithmetic("increment", key, val, b"")

    def decrement(self, key: Key, val: int = 1) -> Deferred[int | Literal[False]]:
        """
        Subtract C{val} (0 to 2**64-1) from the number stored under C{key}, down to 0.

        @return: as for L{increment}.
        """
        return self._arithmetic("decrement", key, val, b" MD")

    def _arithmetic(self, command: str, key: object, val: object, mode: bytes) -> Deferred[Any]:
        try:
            wireKey = self._key(key)
            delta = _v.checkInt("val", val, _v.MAX_UINT64)
        except InvalidRequestError as e:
            return fail(e)
        opaque = self._opaque()
        line = b"ma %s %s%s v D%d%s\r\n" % (wireKey, opaque, self._keyFlag, delta, mode)
        return self._send(IncrRequest(command, opaque), line)

    def delete(self, key: Key) -> Deferred[bool]:
        """
        Delete C{key}; fires with C{True}, or C{False} if it is missing.
        """
        try:
            wireKey = self._key(key)
        except InvalidRequestError as e:
            return fail(e)
        opaque = self._opaque()
        line = b"md %s %s%s\r\n" % (wireKey, opaque, self._keyFlag)
        return self._send(StatusRequest("delete", opaque, _DELETED), line)

    def touch(self, key: Key, expireTime: int) -> Deferred[bool]:
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
        line = b"mg %s %s%s T%d\r\n" % (wireKey, opaque, self._keyFlag, ttl)
        req = StatusRequest("touch", opaque, _TOUCHED, bareMiss=self._bareMisses, key=wireKey)
        return self._send(req, line)

    def get(self, key: Key, withIdentifier: bool = False) -> Deferred[Any]:
        """
        Fetch C{key}; with C{withIdentifier}, fetch its CAS identifier too.

        A key that holds only a lease's placeholder (see C{leaseGet}) reads as missing, and a
        stale value (see C{invalidate}) reads as its value; if the read is handed the stale
        value's lease, the protocol gives the lease back at once, so that a caller of
        C{getOrCompute} gets it.

        @return: fires with C{(flags, value)}, or with C{withIdentifier} C{(flags,
            casIdentifier, value)} where C{casIdentifier} is C{bytes} for L{checkAndSet}; a
            missing key gives C{(0, None)} or C{(0, b"", None)}.
        """
        try:
            wireKey = self._key(key)
        except InvalidRequestError as e:
            return fail(e)
        withCas = bool(withIdentifier)
        if self._batchGets and self._pending:
            return self._batched(wireKey, withCas)
        opaque = self._opaque()
        cas = b" c" if withCas else b""
        line = b"mg %s %s%s v f%s\r\n" % (wireKey, opaque, self._keyFlag, cas)
        return self._send(GetRequest(opaque, wireKey, withCas, self._bareMisses), line)

    def getMultiple(self, keys: Iterable[_K], withIdentifier: bool = False) -> Deferred[Any]:
        """
        Fetch several keys with quiet C{mg}s closed by C{mn}. Each key is sent once however
        often it is given; no keys fire with C{{}} and send nothing.

        @return: fires with a C{dict} keyed by the objects given in C{keys} (a C{str} key
            stays a C{str}), whose values are as for L{get}, the miss tuple for the keys the
            server does not have.
        """
        if isinstance(keys, (bytes, str)):
            name = type(keys).__name__
            return fail(InvalidTypeError(f"keys must be an iterable of keys, not one {name}"))
        try:
            callerKeys = [(key, self._key(key)) for key in keys]
        except InvalidRequestError as e:
            return fail(e)
        if not callerKeys:
            return self._notConnected("get") if self._closed else succeed({})
        req = MultiGet(callerKeys, bool(withIdentifier))
        if not self._writable():
            return self._notConnected(req.command)
        first = self._reserve(len(req.keys))
        return self._send(req, req.lines(first, self._keyFlag))

    def stats(self, arg: bytes | str | None = None) -> Deferred[dict[bytes, bytes]]:
        """
        Fetch the server's statistics, or group C{arg} of them (e.g. C{b"settings"}), with
        the text command C{stats}.

        @return: fires with a C{dict} of the C{STAT} lines' names and values, as C{bytes};
            C{{}} for a subcommand answered with C{RESET} or C{OK} (C{b"reset"}).
        """
        try:
            wireArg = _v.checkStatsArg(arg)
        except InvalidRequestError as e:
            return fail(e)
        line = b"stats\r\n" if wireArg is None else b"stats %s\r\n" % (wireArg,)
        return self._send(StatsRequest(), line)

    def version(self) -> Deferred[bytes]:
        """
        Fetch the server's version with the text command C{version}; fires with e.g.
        C{b"1.6.18"}.
        """
        return self._send(TextRequest("version", b"VERSION ", False), b"version\r\n")

    def flushAll(self) -> Deferred[bool]:
        """
        Invalidate every item on the server with the text command C{flush_all}; fires with
        C{True}.
        """
        return self._send(TextRequest("flush_all", b"OK", True), b"flush_all\r\n")

    def itemInfo(self, key: Key) -> Deferred[dict[bytes, bytes] | None]:
        """
        Read what the server knows about an item, without its value (C{me}).

        @return: fires with a C{dict} of the fields the server gives (C{b"exp"}, C{b"la"},
            C{b"cas"}, C{b"fetch"}, C{b"cls"}, C{b"size"}, all C{bytes}), or C{None} if the
            key is missing.
        """
        try:
            wireKey = self._key(key)
        except InvalidRequestError as e:
            return fail(e)
        return self._send(ItemInfoRequest(wireKey), b"me %s%s\r\n" % (wireKey, self._keyFlag))
