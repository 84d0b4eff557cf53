"""
A memcached client protocol speaking the meta commands (C{mg}, C{ms}, C{md}, C{ma}, C{mn},
C{me}) of memcached 1.6, with the methods, arguments, options and results of
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
    186 of them (C{keyPrefix} included), make a key.
  - Leases against cache stampedes: C{leaseGet}, C{leaseStore}, C{leaseRelease} and
    C{invalidate} (from L{LeaseCommands<txconnpool.memcache.meta._leases.LeaseCommands>});
    and L{MetaMemCacheProtocol.itemInfo} (C{me}), L{MetaMemCacheProtocol.noop} (C{mn}).

C{noreply=True} sends a command in quiet mode (the C{q} flag), and its L{Deferred} fires once
the command is written, with C{True} (C{None} for C{increment} and C{decrement}), as with the
text client. Unlike the text protocol's C{noreply}, quiet mode still has the server answer
what did not succeed (C{NS}, C{NF}, C{EX}, error lines) and a C{touch} that found its key
(C{HD}); the quiet commands written one after another are closed by one C{mn}, at the end of
the reactor turn or before the next other command, so that those replies are read and logged
and never taken for the replies of later requests (see L{txconnpool.memcache.meta._quiet}).

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
from typing import Any, Literal, TypeVar, overload

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import IReactorTime
from zope.interface import implementer

from txconnpool.interfaces import ICancellableRequests
from txconnpool.memcache import _validate as _v
from txconnpool.memcache.errors import InvalidRequestError, InvalidTypeError
from txconnpool.memcache.meta._batches import MultiGet
from txconnpool.memcache.meta._checks import checkKey, keyChecker
from txconnpool.memcache.meta._keyCommands import MetaKeyCommands
from txconnpool.memcache.meta._leases import LeaseCommands
from txconnpool.memcache.meta._probe import ServerInfo, judgeProbe
from txconnpool.memcache.meta._requests import (
    GetRequest,
    ItemInfoRequest,
    LeaseReply,
)
from txconnpool.memcache.meta._storage import MetaStorage
from txconnpool.memcache.meta._textRequests import ProbeRequest, StatsRequest, TextRequest
from txconnpool.memcache.protocol import (
    DEFAULT_MAX_REPLY_SIZE,
    DEFAULT_MAX_STATS_SIZE,
    DEFAULT_MAX_VALUE_SIZE,
    GetResult,
    GetsResult,
)

__all__ = ["LeaseReply", "MetaMemCacheProtocol", "ServerInfo"]

Key = bytes | str
"""A key: C{bytes}, or C{str} sent encoded as UTF-8."""

_K = TypeVar("_K", bound=Key)

@implementer(ICancellableRequests)
class MetaMemCacheProtocol(MetaKeyCommands, MetaStorage, LeaseCommands):
    """
    A memcached client speaking the meta protocol; see the module docstring.

    Every method returns a L{Deferred}. Besides the results each method documents, any of
    them may fail like those of
    L{MemCacheProtocol<txconnpool.memcache.protocol.MemCacheProtocol>}: with
    L{InvalidRequestError} (nothing was sent); L{ConnectionLostError} (not connected: nothing
    was sent); the C{connectionLost} reason, L{ProtocolError} or L{ConnectionLostError} (the
    connection ended or was dropped while the request was pending, for instance because a
    reply carried another request's opaque token); L{ReplyTooLargeError} (its reply was
    larger than C{maxValueSize}, C{maxReplySize} or C{maxStatsSize} allow; the connection
    was dropped); L{RequestTimeoutError<txconnpool.errors.RequestTimeoutError>} (no reply
    within C{requestTimeout}; the connection was dropped);
    L{twisted.internet.defer.TimeoutError} (no data for C{timeOut} seconds while requests were
    pending); C{CancelledError} (cancelled; the connection was dropped); and
    L{UnknownCommandError}, L{ClientError} or L{ServerError} for an C{ERROR}, C{CLIENT_ERROR}
    or C{SERVER_ERROR} reply.

    @ivar timeOut: seconds without any data from the server, while requests are pending,
        after which they all fail and the connection is dropped; C{None} never times out.
    @ivar requestTimeout: seconds a request may wait for its reply once written, as for
        L{MemCacheProtocol<txconnpool.memcache.protocol.MemCacheProtocol>}; C{None} (the
        default) for no limit.
    @ivar maxValueSize: largest value, in bytes, that may be stored or received.
    @ivar maxReplySize: largest total, in bytes, of the values of one reply to a batch of
        gets (L{getMultiple}, or the gets gathered in one reactor turn).
    @ivar maxStatsSize: largest C{stats} reply, in bytes, counting every line.
    @ivar keyPrefix: the bytes put in front of every key sent (C{b""} for none).
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
        maxReplySize: int | None = None,
        maxStatsSize: int = DEFAULT_MAX_STATS_SIZE,
        keyPrefix: bytes | str = b"",
        requestTimeout: float | None = None,
        clock: IReactorTime | None = None,
        batchGets: bool = False,
        base64Keys: bool = False,
    ) -> None:
        """
        @param timeOut: see C{timeOut} above.
        @param maxValueSize: see C{maxValueSize} above; raise it to match a memcached
            started with a larger C{-I}.
        @param maxReplySize: see C{maxReplySize} above; L{None} for
            L{DEFAULT_MAX_REPLY_SIZE<txconnpool.memcache.protocol.DEFAULT_MAX_REPLY_SIZE>}, or
            C{maxValueSize} if that is larger. It may not be less than C{maxValueSize}.
        @param maxStatsSize: see C{maxStatsSize} above.
        @param keyPrefix: put in front of every key (a C{str} is encoded as UTF-8), base64
            keys included (the prefix and the key are encoded together); the length limit
            applies to the prefixed key. Results keyed by key, such as those of
            L{getMultiple}, use the keys given, without the prefix.
        @param requestTimeout: see C{requestTimeout} above.
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
        self.timeOut = _v.checkTimeout("timeOut", timeOut)
        self.requestTimeout = _v.checkTimeout("requestTimeout", requestTimeout)
        self.maxValueSize, self.maxReplySize, self.maxStatsSize = _v.checkReplyLimits(
            maxValueSize, maxReplySize, maxStatsSize, DEFAULT_MAX_REPLY_SIZE
        )
        self.keyPrefix = _v.checkKeyPrefix(keyPrefix)
        self._clock = clock
        self.base64Keys = bool(base64Keys)
        self._keyFlag = b" b" if self.base64Keys else b""
        self._key: Callable[[object], bytes] = keyChecker(self.keyPrefix, self.base64Keys)
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

    # Retrieval

    @overload
    def get(self, key: Key, withIdentifier: Literal[False] = False) -> Deferred[GetResult]: ...
    @overload
    def get(self, key: Key, withIdentifier: Literal[True]) -> Deferred[GetsResult]: ...
    @overload
    def get(self, key: Key, withIdentifier: bool) -> Deferred[GetResult | GetsResult]: ...

    def get(self, key: Key, withIdentifier: bool = False) -> Deferred[Any]:
        """
        Fetch C{key}; with C{withIdentifier}, fetch its CAS identifier too.

        A key that holds only a lease's placeholder (see C{leaseGet}) reads as missing, and a
        stale value (see C{invalidate}) reads as its value; if the read is handed the stale
        value's lease, the protocol gives the lease back at once, so that a caller of
        C{getOrCompute} gets it.

        @return: fires with C{(flags, value)}, or with C{withIdentifier} C{(flags,
            casIdentifier, value)} where C{casIdentifier} is C{bytes} for C{checkAndSet}; a
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
        Fetch C{key} and give it a new C{expireTime} (as for C{set}): an C{mg} with C{T}, as
        the text protocol's C{gat} (or C{gats}, which fetches the CAS identifier too, with
        C{withIdentifier}).

        @return: as for L{get}.
        """
        try:
            wireKey = self._key(key)
            ttl = _v.checkInt("expireTime", expireTime, _v.MAX_EXPIRE_TIME)
        except InvalidRequestError as e:
            return fail(e)
        withCas = bool(withIdentifier)
        opaque = self._opaque()
        cas = b" c" if withCas else b""
        line = b"mg %s %s%s v f%s T%d\r\n" % (wireKey, opaque, self._keyFlag, cas, ttl)
        command = "gats" if withCas else "gat"
        req = GetRequest(opaque, wireKey, withCas, self._bareMisses, command)
        return self._send(req, line)

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
        Fetch several keys with quiet C{mg}s closed by C{mn}. Each key is sent once however
        often it is given; no keys fire with C{{}} and send nothing.

        @return: fires with a C{dict} keyed by the objects given in C{keys} (a C{str} key
            stays a C{str}, and the C{keyPrefix} is left out), whose values are as for
            L{get}, the miss tuple for the keys the server does not have.
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

    # The server

    def stats(self, arg: bytes | str | None = None) -> Deferred[dict[bytes, bytes]]:
        """
        Fetch the server's statistics, or group C{arg} of them (e.g. C{b"settings"},
        C{b"items"}, C{b"slabs"}, C{b"conns"}, C{b"detail dump"}, C{b"cachedump 1 100"}),
        with the text command C{stats}.

        @return: fires with a C{dict} of the names and values of the reply's lines, as
            C{bytes}, as L{MemCacheProtocol.stats
            <txconnpool.memcache.protocol.MemCacheProtocol.stats>} gives it; fails with
            L{ReplyTooLargeError} past C{maxStatsSize}.
        """
        try:
            wireArg = _v.checkStatsArg(arg)
        except InvalidRequestError as e:
            return fail(e)
        line = b"stats\r\n" if wireArg is None else b"stats %s\r\n" % (wireArg,)
        return self._send(StatsRequest(self.maxStatsSize), line)

    def version(self) -> Deferred[bytes]:
        """
        Fetch the server's version with the text command C{version}; fires with e.g.
        C{b"1.6.18"}.
        """
        return self._send(TextRequest("version", b"VERSION ", False), b"version\r\n")

    def flushAll(self, delay: int = 0) -> Deferred[bool]:
        """
        Invalidate every item on the server, now or in C{delay} seconds (as for the
        C{expireTime} of C{set}), with the text command C{flush_all}; fires with C{True}.
        """
        try:
            seconds = _v.checkInt("delay", delay, _v.MAX_EXPIRE_TIME)
        except InvalidRequestError as e:
            return fail(e)
        line = b"flush_all %d\r\n" % (seconds,) if seconds else b"flush_all\r\n"
        return self._send(TextRequest("flush_all", b"OK", True), line)

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
