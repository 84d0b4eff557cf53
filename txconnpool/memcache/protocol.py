"""
A memcached text-protocol client with the API of L{twisted.protocols.memcache}, hardened.

L{MemCacheProtocol} keeps the method names, arguments and results of Twisted's
C{MemCacheProtocol}, and differs from it on purpose:

  - Keys may be C{bytes} or C{str} (encoded as UTF-8). Every key and argument is checked
    before anything is written: a rejected request writes zero bytes and returns a Deferred
    that has already failed with an L{InvalidRequestError} (a C{ValueError} or C{TypeError});
    no method raises.
  - Each pending request accepts only the replies that fit its command. Anything else (a
    garbage line, an unsolicited reply, a malformed or unrequested C{VALUE}, a C{VALUE} longer
    than C{maxValueSize}, a data block not followed by CRLF, a line longer than
    C{maxLineLength}) fails every pending request with L{ProtocolError} and drops the
    connection. No request ever receives another request's reply.
  - Every Deferred fires exactly once. When the connection is lost, every pending request
    fails with the C{connectionLost} reason; a request made after the connection was lost or
    dropped, or while it is disconnecting, fails at once with L{ConnectionLostError} and
    writes nothing.
  - Cancelling a pending request fails it with C{CancelledError} and drops the connection (its
    reply is already on the way and could not be told apart from the next one); the other
    pending requests fail with L{ConnectionLostError}.
  - A C{CLIENT_ERROR} or C{ERROR} reply to a command followed by a data block (set, add,
    replace, append, prepend, cas) fails that request and drops the connection, because
    memcached may then read the data block as a command; the other pending requests fail with
    L{ConnectionLostError}. C{SERVER_ERROR} (e.g. C{object too large for cache}) keeps it.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from typing import Any, Literal, TypeVar, cast, overload

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.python.failure import Failure
from zope.interface import implementer

from txconnpool.interfaces import ICancellableRequests
from txconnpool.memcache import _validate as _v
from txconnpool.memcache._requests import (
    CAS_REPLIES,
    DELETE_REPLIES,
    FLUSH_REPLIES,
    NO_CAS,
    STORE_REPLIES,
    TOUCH_REPLIES,
    GetBatch,
    GetRequest,
    IncrRequest,
    Request,
    StatsRequest,
)
from txconnpool.memcache._wire import MemCacheWire
from txconnpool.memcache.errors import (
    InvalidArgumentError,
    InvalidRequestError,
    InvalidTypeError,
)

__all__ = ["DEFAULT_MAX_VALUE_SIZE", "DEFAULT_PORT", "MemCacheProtocol"]

DEFAULT_PORT = 11211

DEFAULT_MAX_VALUE_SIZE = 1024 * 1024 - 512
"""
Largest value stored or accepted by default: memcached's default item size limit (1 MiB)
less 512 bytes for its item header and a 250-byte key. memcached 1.6 started with default
settings stores a value of this size under a 250-byte key.
"""

GetResult = tuple[int, bytes | None]
"""C{(flags, value)}; C{(0, None)} when the key is missing."""

GetsResult = tuple[int, bytes, bytes | None]
"""C{(flags, casIdentifier, value)}; C{(0, b"", None)} when the key is missing."""

Key = bytes | str
"""A key: C{bytes}, or C{str} sent encoded as UTF-8."""

_K = TypeVar("_K", bound=Key)


@implementer(ICancellableRequests)
class MemCacheProtocol(MemCacheWire):
    """
    A memcached text-protocol client; see the module docstring for how it differs from
    Twisted's.

    Every method returns a L{Deferred}. Besides the results each method documents, any of
    them may fail with: L{InvalidRequestError} (nothing was sent); L{ConnectionLostError}
    (not connected: nothing was sent); the C{connectionLost} reason, L{ProtocolError} or
    L{ConnectionLostError} (the connection ended or was dropped while the request was
    pending); L{twisted.internet.defer.TimeoutError} (no data arrived for C{timeOut}
    seconds while requests were pending; the connection was dropped); C{CancelledError}
    (cancelled; the connection was dropped); and L{UnknownCommandError}, L{ClientError} or
    L{ServerError} for an C{ERROR}, C{CLIENT_ERROR} or C{SERVER_ERROR} reply.

    @ivar timeOut: seconds without any data from the server, while requests are pending,
        after which they all fail and the connection is dropped; C{None} never times out.
    @ivar maxValueSize: largest value, in bytes, that may be stored or received.
    @ivar maxLineLength: longest reply line accepted, in bytes, without its CRLF.
    """

    MAX_KEY_LENGTH = _v.MAX_KEY_LENGTH
    maxLineLength = 2048

    def __init__(
        self,
        timeOut: float | None = 60,
        *,
        maxValueSize: int = DEFAULT_MAX_VALUE_SIZE,
        clock: IReactorTime | None = None,
        batchGets: bool = False,
    ) -> None:
        """
        @param timeOut: see C{timeOut} above.
        @param maxValueSize: see C{maxValueSize} above; raise it to match a memcached
            started with a larger C{-I}.
        @param clock: the source of timeouts; the global reactor when C{None}. (Assigning
            the instance's C{callLater}, as with Twisted's C{TimeoutMixin}, also works.)
        @param batchGets: gather the single-key L{get}s made while other requests are
            pending into one multi-key C{get}, sent at the end of the reactor turn (or before
            the next other command); each get still fires with its own result. This saves
            the server and the client work under load, and changes nothing for a lone get.
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
        self._pending: deque[Request] = deque()
        self._answerable = 0
        self._closed = False
        self._lostReason: Failure | None = None
        self._timeoutCall: IDelayedCall | None = None
        self._buffer = b""
        # Reading a data block: its length (-1 in line mode), the key, flags and CAS token
        # from its VALUE line, and the chunks received so far.
        self._valueLength = -1
        self._valueKey = b""
        self._valueFlags = 0
        self._valueCas = b""
        self._chunks: list[bytes] = []
        self._chunksLength = 0
        self._batchGets = bool(batchGets)
        self._batch: GetBatch | None = None
        self._flushCall: IDelayedCall | None = None

    @property
    def closed(self) -> bool:
        """
        Whether the connection was lost, or dropped by this protocol: no request can be sent
        on it any more.
        """
        return self._closed

    @property
    def persistentTimeOut(self) -> float | None:
        """
        The same as C{timeOut}, under the name Twisted's C{MemCacheProtocol} gives it.
        """
        return self.timeOut

    @persistentTimeOut.setter
    def persistentTimeOut(self, value: float | None) -> None:
        self.timeOut = value

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

    def _store(
        self,
        command: bytes,
        key: object,
        val: object,
        flags: object,
        expireTime: object,
        cas: object = NO_CAS,
    ) -> Deferred[bool]:
        try:
            wireKey = _v.checkKey(key)
            value = _v.checkValue(val, self.maxValueSize)
            line = b"%s %s %d %d %d%s\r\n%s\r\n" % (
                command,
                wireKey,
                _v.checkInt("flags", flags, _v.MAX_FLAGS),
                _v.checkInt("expireTime", expireTime, _v.MAX_EXPIRE_TIME),
                len(value),
                b"" if cas is NO_CAS else b" " + _v.checkCas(cas),
                value,
            )
        except InvalidRequestError as e:
            return fail(e)
        replies = STORE_REPLIES if cas is NO_CAS else CAS_REPLIES
        return self._send(Request(command.decode(), replies, True), line)

    def set(self, key: Key, val: bytes, flags: int = 0, expireTime: int = 0) -> Deferred[bool]:
        """
        Store C{val} under C{key}, with C{flags} (0 to 2**32-1, opaque to the server) and
        C{expireTime} (0 for never, seconds up to 30 days, or a Unix time; at most 2**31-1).

        @return: fires with C{True} (C{STORED}) or C{False} (C{NOT_STORED}).
        """
        return self._store(b"set", key, val, flags, expireTime)

    def add(self, key: Key, val: bytes, flags: int = 0, expireTime: int = 0) -> Deferred[bool]:
        """
        Like L{set}, only if C{key} is not stored yet; fires with C{True} or C{False}.
        """
        return self._store(b"add", key, val, flags, expireTime)

    def replace(self, key: Key, val: bytes, flags: int = 0, expireTime: int = 0) -> Deferred[bool]:
        """
        Like L{set}, only if C{key} is already stored; fires with C{True} or C{False}.
        """
        return self._store(b"replace", key, val, flags, expireTime)

    def append(self, key: Key, val: bytes) -> Deferred[bool]:
        """
        Append C{val} to the value of C{key}; fires with C{True}, or C{False} if missing.
        """
        return self._store(b"append", key, val, 0, 0)

    def prepend(self, key: Key, val: bytes) -> Deferred[bool]:
        """
        Prepend C{val} to the value of C{key}; fires with C{True}, or C{False} if missing.
        """
        return self._store(b"prepend", key, val, 0, 0)

    def checkAndSet(
        self, key: Key, val: bytes, cas: bytes | int, flags: int = 0, expireTime: int = 0
    ) -> Deferred[bool]:
        """
        Like L{set}, only if the CAS identifier of C{key} is still C{cas}: the C{bytes}
        from C{get(key, withIdentifier=True)}, or an C{int} from 0 to 2**64-1.

        @return: fires with C{True} if stored, C{False} if the key changed since
            (C{EXISTS}) or is missing (C{NOT_FOUND}).
        """
        return self._store(b"cas", key, val, flags, expireTime, cas)

    def _keyCommand(
        self,
        command: bytes,
        key: object,
        req: Request,
        arg: tuple[str, object, int] | None = None,
    ) -> Deferred[Any]:
        """
        Send C{command key} or, with C{arg} = C{(name, value, maximum)}, C{command key value}.
        """
        try:
            wireKey = _v.checkKey(key)
            if arg is None:
                line = b"%s %s\r\n" % (command, wireKey)
            else:
                line = b"%s %s %d\r\n" % (command, wireKey, _v.checkInt(*arg))
        except InvalidRequestError as e:
            return fail(e)
        return self._send(req, line)

    def increment(self, key: Key, val: int = 1) -> Deferred[int | Literal[False]]:
        """
        Add C{val} (0 to 2**64-1) to the decimal number stored under C{key}, modulo 2**64.

        @return: fires with the new value, or C{False} if the key is missing (as Twisted's
            client does); fails with L{ClientError} if the value is not a number.
        """
        return self._keyCommand(b"incr", key, IncrRequest("incr"), ("val", val, _v.MAX_UINT64))

    def decrement(self, key: Key, val: int = 1) -> Deferred[int | Literal[False]]:
        """
        Subtract C{val} (0 to 2**64-1) from the number stored under C{key}, down to 0.

        @return: as for L{increment}.
        """
        return self._keyCommand(b"decr", key, IncrRequest("decr"), ("val", val, _v.MAX_UINT64))

    def delete(self, key: Key) -> Deferred[bool]:
        """
        Delete C{key}; fires with C{True}, or C{False} if it is missing.
        """
        return self._keyCommand(b"delete", key, Request("delete", DELETE_REPLIES))

    def touch(self, key: Key, expireTime: int) -> Deferred[bool]:
        """
        Give C{key} a new C{expireTime} (as for L{set}) without fetching it.

        @return: fires with C{True} (C{TOUCHED}), or C{False} if the key is missing.
        """
        arg = ("expireTime", expireTime, _v.MAX_EXPIRE_TIME)
        return self._keyCommand(b"touch", key, Request("touch", TOUCH_REPLIES), arg)

    @overload
    def get(self, key: Key, withIdentifier: Literal[False] = False) -> Deferred[GetResult]: ...
    @overload
    def get(self, key: Key, withIdentifier: Literal[True]) -> Deferred[GetsResult]: ...
    @overload
    def get(self, key: Key, withIdentifier: bool) -> Deferred[GetResult | GetsResult]: ...

    def get(self, key: Key, withIdentifier: bool = False) -> Deferred[Any]:
        """
        Fetch C{key}; with C{withIdentifier}, send C{gets} to fetch its CAS identifier too.

        @return: fires with C{(flags, value)}, or with C{withIdentifier} C{(flags,
            casIdentifier, value)} where C{casIdentifier} is C{bytes} for L{checkAndSet}; a
            missing key gives C{(0, None)} or C{(0, b"", None)}.
        """
        try:
            wireKey = _v.checkKey(key)
        except InvalidRequestError as e:
            return fail(e)
        if self._batchGets and self._pending:
            return self._batched(wireKey, bool(withIdentifier))
        if withIdentifier:
            return self._send(GetRequest(True, wireKey), b"gets %s\r\n" % (wireKey,))
        return self._send(GetRequest(False, wireKey), b"get %s\r\n" % (wireKey,))

    @overload
    def getMultiple(
        self, keys: Iterable[_K], withIdentifier: Literal[False] = False
    ) -> Deferred[dict[_K, GetResult]]: ...
    @overload
    def getMultiple(
        self, keys: Iterable[_K], withIdentifier: Literal[True]
    ) -> Deferred[dict[_K, GetsResult]]: ...
    @overload
    def getMultiple(
        self, keys: Iterable[_K], withIdentifier: bool
    ) -> Deferred[dict[_K, GetResult]] | Deferred[dict[_K, GetsResult]]: ...

    def getMultiple(self, keys: Iterable[_K], withIdentifier: bool = False) -> Deferred[Any]:
        """
        Fetch several keys with one C{get} (or C{gets} with C{withIdentifier}). Each key is
        sent once however often it is given; no keys fire with C{{}} and send nothing.

        @return: fires with a C{dict} keyed by the objects given in C{keys} (a C{str} key
            stays a C{str}), whose values are as for L{get}, the miss tuple for the keys the
            server does not have.
        """
        if isinstance(keys, (bytes, str)):
            name = type(keys).__name__
            return fail(InvalidTypeError(f"keys must be an iterable of keys, not one {name}"))
        try:
            callerKeys = [(key, _v.checkKey(key)) for key in keys]
        except InvalidRequestError as e:
            return fail(e)
        if not callerKeys:
            return self._notConnected("get") if self._closed else succeed({})
        req = GetRequest(bool(withIdentifier), None, callerKeys)
        wire = b" ".join(req.wanted or ())
        return self._send(req, b"%s %s\r\n" % (req.command.encode(), wire))

    def stats(self, arg: bytes | str | None = None) -> Deferred[dict[bytes, bytes]]:
        """
        Fetch the server's statistics, or group C{arg} of them (e.g. C{b"settings"}).

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
        Fetch the server's version; fires with e.g. C{b"1.6.18"}.
        """
        return self._send(Request("version"), b"version\r\n")

    def flushAll(self) -> Deferred[bool]:
        """
        Invalidate every item on the server; fires with C{True}.
        """
        return self._send(Request("flush_all", FLUSH_REPLIES), b"flush_all\r\n")
