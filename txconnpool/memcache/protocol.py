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
  - Replies can only answer requests already written: bytes received before a request was
    written (a batched C{get} is written at the end of the reactor turn) never answer it.
  - Commands that change a key take C{noreply=True}: the server then sends no reply, so
    nothing waits for one and the L{Deferred} fires once the command is written, with
    C{True} (C{None} for L{increment<MemCacheProtocol.increment>} and
    L{decrement<MemCacheProtocol.decrement>}), whether or not the server carried it out.
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
from typing import Any, Literal, TypeVar, overload

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.python.failure import Failure
from zope.interface import implementer

from txconnpool.interfaces import ICancellableRequests
from txconnpool.memcache import _validate as _v
from txconnpool.memcache._requests import (
    DELETE_REPLIES,
    FLUSH_REPLIES,
    TOUCH_REPLIES,
    GetBatch,
    GetRequest,
    IncrRequest,
    Request,
    StatsRequest,
)
from txconnpool.memcache._storage import StorageCommands
from txconnpool.memcache._wire import LONELY_BATCHES, UNBATCHED_GETS
from txconnpool.memcache.errors import (
    InvalidRequestError,
    InvalidTypeError,
)

__all__ = [
    "DEFAULT_MAX_REPLY_SIZE",
    "DEFAULT_MAX_STATS_SIZE",
    "DEFAULT_MAX_VALUE_SIZE",
    "DEFAULT_PORT",
    "MemCacheProtocol",
]

DEFAULT_PORT = 11211

DEFAULT_MAX_VALUE_SIZE = 1024 * 1024 - 512
"""
Largest value stored or accepted by default: memcached's default item size limit (1 MiB)
less 512 bytes for its item header and a 250-byte key. memcached 1.6 started with default
settings stores a value of this size under a 250-byte key.
"""

DEFAULT_MAX_REPLY_SIZE = 64 * 1024 * 1024
"""
Largest total of the values of one reply to a multi-key C{get} (or a batch of gets) accepted
by default: 64 MiB.
"""

DEFAULT_MAX_STATS_SIZE = 4 * 1024 * 1024
"""
Largest C{stats} reply accepted by default, counting every line: 4 MiB. memcached 1.6 caps
its C{stats cachedump} reply at 2 MiB; the other subcommands stay well below that, except
C{stats conns} on a server with tens of thousands of connections.
"""

GetResult = tuple[int, bytes | None]
"""C{(flags, value)}; C{(0, None)} when the key is missing."""

GetsResult = tuple[int, bytes, bytes | None]
"""C{(flags, casIdentifier, value)}; C{(0, b"", None)} when the key is missing."""

Key = bytes | str
"""A key: C{bytes}, or C{str} sent encoded as UTF-8."""

_K = TypeVar("_K", bound=Key)


@implementer(ICancellableRequests)
class MemCacheProtocol(StorageCommands):
    """
    A memcached text-protocol client; see the module docstring for how it differs from
    Twisted's.

    Every method returns a L{Deferred}. Besides the results each method documents, any of
    them may fail with: L{InvalidRequestError} (nothing was sent); L{ConnectionLostError}
    (not connected: nothing was sent); the C{connectionLost} reason, L{ProtocolError} or
    L{ConnectionLostError} (the connection ended or was dropped while the request was
    pending); L{ReplyTooLargeError} (its reply was larger than C{maxValueSize},
    C{maxReplySize} or C{maxStatsSize} allow; the connection was dropped);
    L{twisted.internet.defer.TimeoutError} (no data arrived for C{timeOut} seconds while
    requests were pending; the connection was dropped); C{CancelledError} (cancelled; the
    connection was dropped); and L{UnknownCommandError}, L{ClientError} or L{ServerError}
    for an C{ERROR}, C{CLIENT_ERROR} or C{SERVER_ERROR} reply.

    @ivar timeOut: seconds without any data from the server, while requests are pending,
        after which they all fail and the connection is dropped; C{None} never times out.
    @ivar requestTimeout: seconds a request may wait for its reply once written, after which
        it fails with L{RequestTimeoutError<txconnpool.errors.RequestTimeoutError>}, the
        connection is dropped and the other pending requests fail with
        L{ConnectionLostError}; C{None} (the default) for no limit. One timer per connection
        serves every request.
    @ivar maxValueSize: largest value, in bytes, that may be stored or received.
    @ivar maxReplySize: largest total, in bytes, of the values of one reply to a multi-key
        C{get} (L{getMultiple}, or a batch of gets).
    @ivar maxStatsSize: largest C{stats} reply, in bytes, counting every line.
    @ivar keyPrefix: the bytes put in front of every key sent (C{b""} for none).
    @ivar maxLineLength: longest reply line accepted, in bytes, without its CRLF.
    """

    MAX_KEY_LENGTH = _v.MAX_KEY_LENGTH
    maxLineLength = 2048

    def __init__(
        self,
        timeOut: float | None = 60,
        *,
        maxValueSize: int = DEFAULT_MAX_VALUE_SIZE,
        maxReplySize: int | None = None,
        maxStatsSize: int = DEFAULT_MAX_STATS_SIZE,
        keyPrefix: bytes | str = b"",
        requestTimeout: float | None = None,
        clock: IReactorTime | None = None,
        batchGets: bool = False,
    ) -> None:
        """
        @param timeOut: see C{timeOut} above.
        @param maxValueSize: see C{maxValueSize} above; raise it to match a memcached
            started with a larger C{-I}.
        @param maxReplySize: see C{maxReplySize} above; L{None} for
            L{DEFAULT_MAX_REPLY_SIZE}, or C{maxValueSize} if that is larger. It may not be
            less than C{maxValueSize}.
        @param maxStatsSize: see C{maxStatsSize} above.
        @param keyPrefix: put in front of every key (a C{str} is encoded as UTF-8); the
            250-byte limit applies to the prefixed key. Results keyed by key, such as those
            of L{getMultiple}, use the keys given, without the prefix.
        @param requestTimeout: see C{requestTimeout} above.
        @param clock: the source of timeouts; the global reactor when C{None}. (Assigning
            the instance's C{callLater}, as with Twisted's C{TimeoutMixin}, also works.)
        @param batchGets: gather the single-key L{get}s made while other requests are
            pending into one multi-key C{get}, sent at the end of the reactor turn (or before
            the next other command); each get still fires with its own result. This saves
            the server and the client work under load, and changes nothing for a lone get.
        @raise TypeError: an argument has the wrong type.
        @raise ValueError: an argument is out of range.
        """
        self.timeOut = _v.checkTimeout("timeOut", timeOut)
        self.requestTimeout = _v.checkTimeout("requestTimeout", requestTimeout)
        self._deadlineCall: IDelayedCall | None = None
        self.maxValueSize, self.maxReplySize, self.maxStatsSize = _v.checkReplyLimits(
            maxValueSize, maxReplySize, maxStatsSize, DEFAULT_MAX_REPLY_SIZE
        )
        self.keyPrefix = _v.checkKeyPrefix(keyPrefix)
        self._checkKey: Callable[[object], bytes] = (
            _v.PrefixedKeys(self.keyPrefix) if self.keyPrefix else _v.checkKey
        )
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
        self._lonely = 0

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

    # Keys

    def _keyCommand(
        self,
        command: bytes,
        key: object,
        req: Request,
        arg: tuple[str, object, int] | None = None,
        noreply: bool = False,
        quietResult: object = True,
    ) -> Deferred[Any]:
        """
        Send C{command key} or, with C{arg} = C{(name, value, maximum)}, C{command key value}.
        """
        try:
            wireKey = self._checkKey(key)
            if arg is None:
                line = b"%s %s" % (command, wireKey)
            else:
                line = b"%s %s %d" % (command, wireKey, _v.checkInt(*arg))
        except InvalidRequestError as e:
            return fail(e)
        if noreply:
            return self._sendQuiet(req.command, line + b" noreply\r\n", quietResult)
        return self._send(req, line + b"\r\n")

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
        arg = ("val", val, _v.MAX_UINT64)
        return self._keyCommand(b"incr", key, IncrRequest("incr"), arg, noreply, None)

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
        arg = ("val", val, _v.MAX_UINT64)
        return self._keyCommand(b"decr", key, IncrRequest("decr"), arg, noreply, None)

    def delete(self, key: Key, noreply: bool = False) -> Deferred[bool]:
        """
        Delete C{key}; fires with C{True}, or C{False} if it is missing.
        """
        return self._keyCommand(b"delete", key, Request("delete", DELETE_REPLIES), None, noreply)

    def deleteMultiple(
        self, keys: Iterable[_K], noreply: bool = False
    ) -> Deferred[dict[_K, bool]]:
        """
        Delete several keys, with one C{delete} each (each key once), all written at once.

        @return: fires with a C{dict} from each key given to C{True} (deleted) or C{False}
            (missing).
        """
        if isinstance(keys, (bytes, str)):
            name = type(keys).__name__
            return fail(InvalidTypeError(f"keys must be an iterable of keys, not one {name}"))
        try:
            callerKeys = [(key, self._checkKey(key)) for key in keys]
        except InvalidRequestError as e:
            return fail(e)
        wanted = list(dict.fromkeys(wire for _, wire in callerKeys))
        suffix = b" noreply\r\n" if noreply else b"\r\n"
        data = b"".join(b"delete %s%s" % (wire, suffix) for wire in wanted)
        d = self._sendAll("delete", wanted, data, DELETE_REPLIES, False, noreply)
        return d.addCallback(lambda byWire: {key: byWire[wire] for key, wire in callerKeys})

    def touch(self, key: Key, expireTime: int, noreply: bool = False) -> Deferred[bool]:
        """
        Give C{key} a new C{expireTime} (as for L{set}) without fetching it.

        @return: fires with C{True} (C{TOUCHED}), or C{False} if the key is missing.
        """
        arg = ("expireTime", expireTime, _v.MAX_EXPIRE_TIME)
        return self._keyCommand(b"touch", key, Request("touch", TOUCH_REPLIES), arg, noreply)

    # Retrieval

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
            casIdentifier, value)} where C{casIdentifier} is C{bytes} for C{checkAndSet}; a
            missing key gives C{(0, None)} or C{(0, b"", None)}.
        """
        try:
            wireKey = self._checkKey(key)
        except InvalidRequestError as e:
            return fail(e)
        if self._batchGets and self._pending:
            lonely = self._lonely
            if lonely < LONELY_BATCHES:
                return self._batched(wireKey, bool(withIdentifier))
            # Gets alternate with other commands: batching them gains nothing for now.
            self._lonely = 0 if lonely >= LONELY_BATCHES + UNBATCHED_GETS else lonely + 1
        if withIdentifier:
            return self._send(GetRequest(True, wireKey), b"gets %s\r\n" % (wireKey,))
        return self._send(GetRequest(False, wireKey), b"get %s\r\n" % (wireKey,))

    @overload
    def getAndTouch(
        self, key: Key, expireTime: int, withIdentifier: Literal[False] = False
    ) -> Deferred[GetResult]: ...
    @overload
    def getAndTouch(
        self, key: Key, expireTime: int, withIdentifier: Literal[True]
    ) -> Deferred[GetsResult]: ...
    @overload
    def getAndTouch(
        self, key: Key, expireTime: int, withIdentifier: bool
    ) -> Deferred[GetResult | GetsResult]: ...

    def getAndTouch(
        self, key: Key, expireTime: int, withIdentifier: bool = False
    ) -> Deferred[Any]:
        """
        Fetch C{key} and give it a new C{expireTime} (as for L{set}), with C{gat} (or
        C{gats}, which fetches the CAS identifier too, with C{withIdentifier}).

        @return: as for L{get}.
        """
        command = "gats" if withIdentifier else "gat"
        try:
            wireKey = self._checkKey(key)
            exp = _v.checkInt("expireTime", expireTime, _v.MAX_EXPIRE_TIME)
        except InvalidRequestError as e:
            return fail(e)
        req = GetRequest(bool(withIdentifier), wireKey, None, command)
        return self._send(req, b"%s %d %s\r\n" % (command.encode(), exp, wireKey))

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
            stays a C{str}, and the C{keyPrefix} is left out), whose values are as for
            L{get}, the miss tuple for the keys the server does not have.
        """
        if isinstance(keys, (bytes, str)):
            name = type(keys).__name__
            return fail(InvalidTypeError(f"keys must be an iterable of keys, not one {name}"))
        try:
            callerKeys = [(key, self._checkKey(key)) for key in keys]
        except InvalidRequestError as e:
            return fail(e)
        if not callerKeys:
            return self._notConnected("get") if self._closed else succeed({})
        req = GetRequest(bool(withIdentifier), None, callerKeys)
        wire = b" ".join(req.wanted or ())
        return self._send(req, b"%s %s\r\n" % (req.command.encode(), wire))

    # Server

    def stats(self, arg: bytes | str | None = None) -> Deferred[dict[bytes, bytes]]:
        """
        Fetch the server's statistics, or group C{arg} of them (e.g. C{b"settings"},
        C{b"items"}, C{b"slabs"}, C{b"conns"}, C{b"detail dump"}, C{b"cachedump 1 100"}).

        @return: fires with a C{dict} of the names and values of the reply's lines, as
            C{bytes}: C{STAT <name> <value>} lines, the C{ITEM <key> [<size> b; <time> s]}
            lines of C{stats cachedump} (the key maps to C{b"[<size> b; <time> s]"}), or
            the C{PREFIX <prefix> get ...} lines of C{stats detail dump} (the prefix maps to
            the rest of the line); C{{}} for a subcommand answered with C{RESET}
            (C{b"reset"}) or C{OK} (C{b"detail on"}). Fails with L{ReplyTooLargeError}
            past C{maxStatsSize}.
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

    def flushAll(self, delay: int = 0) -> Deferred[bool]:
        """
        Invalidate every item on the server, now or in C{delay} seconds (as for the
        C{expireTime} of L{set}); fires with C{True}.
        """
        try:
            seconds = _v.checkInt("delay", delay, _v.MAX_EXPIRE_TIME)
        except InvalidRequestError as e:
            return fail(e)
        line = b"flush_all %d\r\n" % (seconds,) if seconds else b"flush_all\r\n"
        return self._send(Request("flush_all", FLUSH_REPLIES), line)
