"""
The requests a L{MetaMemCacheProtocol<txconnpool.memcache.meta.MetaMemCacheProtocol>} waits
on, and how each reads the reply lines that answer it.

The wire hands each reply line to the request at the head of its queue with
L{MetaRequest.feedLine}, which returns L{DONE} (answered), L{MORE} (more lines to come) or the
length of the data block that follows (handed over with L{MetaRequest.feedData}), and raises
L{Mismatch} for a line that does not answer it. Every meta command is sent with its opaque
token first among its flags, and every meta reply must carry that token back.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs
from twisted.internet.defer import Deferred
from twisted.python.failure import Failure

from txconnpool.memcache import _validate as _v
from txconnpool.memcache.errors import MemCacheError

DONE = -1
"""The request has its whole reply."""

MORE = -2
"""The request expects more reply lines."""

MAX_STATS = 100_000
"""Most C{STAT} lines accepted in one reply to C{stats}."""

_WON = 1
_STALE = 2
_LEASED = 4

_NO_REPLY = object()


class Mismatch(Exception):
    """
    A reply line does not answer the request at the head of the queue; the message says why,
    to follow C{reply <line> to <command>}.
    """


@attrs.frozen
class LeaseReply:
    """
    What memcached answered to a lease-taking get
    (L{MetaMemCacheProtocol.leaseGet<txconnpool.memcache.meta.MetaMemCacheProtocol.leaseGet>}).

    @ivar value: The value stored under the key; C{None} when there is none, or only the empty
        placeholder memcached creates to hold a lease on a missing key.
    @ivar cas: The item's CAS token (decimal digits); C{b""} when the server has no item
        at all, which happens only when it could not create the placeholder.
    @ivar won: This caller holds the lease: it is the one to compute the value (W).
    @ivar stale: The value was marked stale by an invalidation (X).
    @ivar leased: Another caller holds the lease (Z).
    """

    value: bytes | None
    cas: bytes
    won: bool
    stale: bool
    leased: bool


def _readFlags(tokens: list[bytes]) -> tuple[bytes | None, bytes | None, bytes | None, int]:
    """
    Read the return flags of a meta reply, in any order: C{(opaque token, client flags, CAS
    token, marks)}, where marks combines C{_WON}, C{_STALE} and C{_LEASED}.

    @raise Mismatch: A flag the client did not ask for, or a repeated opaque token.
    """
    opaque = flags = cas = None
    marks = 0
    for token in tokens:
        first = token[:1]
        if first == b"O" and opaque is None:
            opaque = token
        elif first == b"f" and flags is None:
            flags = token[1:]
        elif first == b"c" and cas is None:
            cas = token[1:]
        elif token == b"W":
            marks |= _WON
        elif token == b"X":
            marks |= _STALE
        elif token == b"Z":
            marks |= _LEASED
        else:
            raise Mismatch(f"has an unexpected flag {_v.show(token)}")
    return opaque, flags, cas, marks


def _checkOpaque(found: bytes | None, expected: bytes) -> None:
    if found != expected:
        what = "no opaque token" if found is None else f"opaque token {found.decode('latin-1')}"
        raise Mismatch(f"carries {what} where {expected.decode()} was expected")


def _size(token: bytes) -> int:
    if not token.isdigit():
        raise Mismatch("announces no valid length")
    return int(token)


def _clientFlags(token: bytes | None) -> int:
    if token is None or not token.isdigit() or int(token) > _v.MAX_FLAGS:
        raise Mismatch("carries no valid client flags")
    return int(token)


def _casToken(token: bytes | None) -> bytes:
    if token is None or not token.isdigit() or len(token) > 20 or int(token) > _v.MAX_UINT64:
        raise Mismatch("carries no valid CAS token")
    return token


def _isPlaceholder(marks: int, data: bytes) -> bool:
    """
    Whether an item read back is the empty placeholder that holds a lease on a missing key
    (or is being recomputed by the lease's holder while empty).
    """
    return not data and marks & (_WON | _LEASED) != 0 and not marks & _STALE


class MetaRequest:
    """
    A request waiting for its reply.

    @ivar command: The command's name, for messages (C{"get"}, C{"set"}, ...).
    @ivar hasData: A data block followed the command line: after C{CLIENT_ERROR} or C{ERROR}
        the server may read it as a command, so the connection must be dropped.
    @ivar result: What the request's L{Deferred} fires with, once answered.
    @ivar failure: The error it fails with instead, if the server answered with one.
    @ivar wins: Keys of plain reads that were handed a lease they do not want (a read of a
        stale item takes its lease); the protocol gives each back.
    """

    __slots__ = ("command", "deferred", "failure", "hasData", "result", "wins")

    deferred: Deferred[Any]

    def __init__(self, command: str, hasData: bool = False) -> None:
        self.command = command
        self.hasData = hasData
        self.result: object = None
        self.failure: MemCacheError | None = None
        self.wins: list[bytes] | None = None

    def feedLine(self, line: bytes) -> int:
        """
        Read one reply line.

        @return: L{DONE}, L{MORE}, or the length of the data block that follows.
        @raise Mismatch: The line does not answer this request.
        """
        raise Mismatch("is not a reply to it")

    def feedData(self, data: bytes) -> int:
        """
        Read the data block announced by the last line.

        @return: L{DONE} or L{MORE}.
        """
        raise AssertionError("no data block was announced")

    def feedError(self, error: MemCacheError, line: bytes) -> int:
        """
        Take an error reply (C{ERROR}, C{CLIENT_ERROR}, C{SERVER_ERROR}), which carries no
        opaque token and so answers the request at the head of the queue.

        @return: L{DONE} or L{MORE}.
        """
        self.failure = error
        return DONE

    def fire(self) -> None:
        """
        Fire the request's L{Deferred} with its result or its error.
        """
        if self.failure is not None:
            self.deferred.errback(self.failure)
        else:
            self.deferred.callback(self.result)

    def fail(self, reason: BaseException | Failure) -> None:
        """
        Fail the request, whose reply will not come.
        """
        if not self.deferred.called:
            self.deferred.errback(reason)


class StatusRequest(MetaRequest):
    """
    A meta command answered by a status line (C{HD}, C{NS}, C{EX}, C{NF}, C{EN}) carrying its
    opaque token, each status mapped to a result by C{replies}.

    @ivar bareMiss: Accept C{EN} without the opaque token, from servers (before 1.6.18) that
        do not copy it onto a miss.
    @ivar key: The key of a read (C{touch}), which may be handed a stale item's lease (W) to
        give back; C{None} for commands that take no lease.
    """

    __slots__ = ("bareMiss", "key", "opaque", "replies")

    def __init__(
        self,
        command: str,
        opaque: bytes,
        replies: Mapping[bytes, object],
        hasData: bool = False,
        bareMiss: bool = False,
        key: bytes | None = None,
    ) -> None:
        self.command = command
        self.hasData = hasData
        self.result = None
        self.failure = None
        self.wins = None
        self.opaque = opaque
        self.replies = replies
        self.bareMiss = bareMiss
        self.key = key

    def feedLine(self, line: bytes) -> int:
        # The usual reply: the status and the opaque token, nothing else.
        if line[2:3] == b" " and line[3:] == self.opaque:
            result = self.replies.get(line[:2], _NO_REPLY)
            if result is not _NO_REPLY:
                self.result = result
                return DONE
        parts = line.split(b" ")
        code = parts[0]
        replies = self.replies
        if code not in replies:
            raise Mismatch("is not a reply to it")
        if len(parts) == 1 and code == b"EN" and self.bareMiss:
            self.result = replies[code]
            return DONE
        opaque, flags, cas, marks = _readFlags(parts[1:])
        _checkOpaque(opaque, self.opaque)
        if flags is not None or cas is not None or (marks and self.key is None):
            raise Mismatch("has flags that were not asked for")
        if marks & _WON and self.key is not None:
            self.wins = [self.key]
        self.result = replies[code]
        return DONE


class GetRequest(MetaRequest):
    """
    An C{mg} of one key, with its value and client flags, and its CAS token if C{withCas}.
    """

    __slots__ = ("_cas", "_flags", "_marks", "bareMiss", "key", "opaque", "withCas")

    def __init__(self, opaque: bytes, key: bytes, withCas: bool, bareMiss: bool) -> None:
        self.command = "gets" if withCas else "get"
        self.hasData = False
        self.result = None
        self.failure = None
        self.wins = None
        self.opaque = opaque
        self.key = key
        self.withCas = withCas
        self.bareMiss = bareMiss
        self._flags = 0
        self._cas = b""
        self._marks = 0

    def feedLine(self, line: bytes) -> int:
        parts = line.split(b" ")
        code = parts[0]
        withCas = self.withCas
        # The usual hit: VA <size> O<opaque> f<flags>[ c<cas>], in the order asked for.
        if code == b"VA" and len(parts) == 4 + withCas and parts[2] == self.opaque:
            length, flagsToken = parts[1], parts[3]
            if length.isdigit() and flagsToken[:1] == b"f" and flagsToken[1:].isdigit():
                if withCas:
                    self._cas = _casToken(parts[4][1:] if parts[4][:1] == b"c" else None)
                self._flags = _clientFlags(flagsToken[1:])
                self._marks = 0
                return int(length)
        if code == b"VA" and len(parts) > 2:
            size = _size(parts[1])
            opaque, flags, cas, self._marks = _readFlags(parts[2:])
            _checkOpaque(opaque, self.opaque)
            self._flags = _clientFlags(flags)
            if self.withCas:
                self._cas = _casToken(cas)
            elif cas is not None:
                raise Mismatch("has a CAS token that was not asked for")
            return size
        if code == b"EN":
            if len(parts) > 1 or not self.bareMiss:
                opaque, flags, cas, marks = _readFlags(parts[1:])
                _checkOpaque(opaque, self.opaque)
                if flags is not None or cas is not None or marks:
                    raise Mismatch("has flags a miss does not carry")
            self.result = (0, b"", None) if self.withCas else (0, None)
            return DONE
        raise Mismatch("is not a reply to it")

    def feedData(self, data: bytes) -> int:
        marks = self._marks
        if _isPlaceholder(marks, data):
            self.result = (0, b"", None) if self.withCas else (0, None)
        elif self.withCas:
            self.result = (self._flags, self._cas, data)
        else:
            self.result = (self._flags, data)
        if marks & _WON:
            self.wins = [self.key]
        return DONE


class QuietGets(MetaRequest):
    """
    Several C{mg}s in quiet mode (a miss sends nothing) closed by C{mn}: the hits come back in
    the order the keys were sent, each with its own opaque token, and C{MN} ends the batch.

    An error reply (which quiet mode does not hide) carries no opaque token: it answers one of
    the keys sent after the last hit and before the next one, so each of those keys fails with
    it (none of them gets a wrong answer).

    @ivar keys: The key of each member, in the order sent.
    @ivar withCas: Whether each member asked for the CAS token.
    @ivar results: Each member's result (a C{get}-style tuple or an error) once known.
    """

    __slots__ = ("_current", "_error", "_index", "_pos", "keys", "results", "withCas")

    def __init__(self, command: str = "get") -> None:
        MetaRequest.__init__(self, command)
        self.keys: list[bytes] = []
        self.withCas: list[bool] = []
        self.results: list[object] = []
        self._index: dict[bytes, int] = {}
        self._pos = 0
        self._error: MemCacheError | None = None
        self._current: tuple[int, int, bytes, int] = (0, 0, b"", 0)

    def add(self, key: bytes, withCas: bool) -> int:
        """
        Add a key; return its position.
        """
        self.keys.append(key)
        self.withCas.append(withCas)
        return len(self.keys) - 1

    def lines(self, firstOpaque: int, keyFlag: bytes) -> bytes:
        """
        Write the batch: one quiet C{mg} per key, with the opaque tokens C{firstOpaque}
        onwards, then C{mn}.

        @param keyFlag: C{b" b"} when the keys are base64-encoded, else C{b""}.
        """
        index = self._index = {}
        out = []
        for i, (key, withCas) in enumerate(zip(self.keys, self.withCas)):
            opaque = b"O%d" % (firstOpaque + i,)
            index[opaque] = i
            out.append(
                b"mg %s %s%s q v f%s\r\n" % (key, opaque, keyFlag, b" c" if withCas else b"")
            )
        self.results = [None] * len(self.keys)
        out.append(b"mn\r\n")
        return b"".join(out)

    def _skipTo(self, stop: int) -> None:
        """
        Settle the members from the current position up to C{stop}: they were misses, or one
        of them drew the pending error reply.
        """
        error = self._error
        results = self.results
        withCas = self.withCas
        for i in range(self._pos, stop):
            if error is not None:
                results[i] = error
            else:
                results[i] = (0, b"", None) if withCas[i] else (0, None)
        self._error = None
        self._pos = stop

    def feedLine(self, line: bytes) -> int:
        if line == b"MN":
            self._skipTo(len(self.keys))
            return DONE
        parts = line.split(b" ")
        if parts[0] != b"VA" or len(parts) < 3:
            raise Mismatch("is not a reply to a quiet get")
        size = _size(parts[1])
        # The usual hit: O<opaque> f<flags>[ c<cas>], in the order asked for.
        i = self._index.get(parts[2], -1)
        if i >= self._pos and len(parts) == 4 + self.withCas[i]:
            flagsToken = parts[3]
            if flagsToken[:1] == b"f" and (len(parts) == 4 or parts[4][:1] == b"c"):
                casToken = _casToken(parts[4][1:]) if len(parts) == 5 else b""
                self._skipTo(i)
                self._pos = i + 1
                self._current = (i, _clientFlags(flagsToken[1:]), casToken, 0)
                return size
        opaque, flags, cas, marks = _readFlags(parts[2:])
        i = self._index.get(opaque or b"", -1)
        if i < self._pos:
            shown = "no opaque token" if opaque is None else opaque.decode("latin-1")
            raise Mismatch(f"carries {shown}, which no key still waiting in the batch has")
        clientFlags = _clientFlags(flags)
        if self.withCas[i]:
            casToken = _casToken(cas)
        elif cas is not None:
            raise Mismatch("has a CAS token that was not asked for")
        else:
            casToken = b""
        self._skipTo(i)
        self._pos = i + 1
        self._current = (i, clientFlags, casToken, marks)
        return size

    def feedData(self, data: bytes) -> int:
        i, flags, cas, marks = self._current
        withCas = self.withCas[i]
        if _isPlaceholder(marks, data):
            self.results[i] = (0, b"", None) if withCas else (0, None)
        else:
            self.results[i] = (flags, cas, data) if withCas else (flags, data)
        if marks & _WON:
            if self.wins is None:
                self.wins = []
            self.wins.append(self.keys[i])
        return MORE

    def feedError(self, error: MemCacheError, line: bytes) -> int:
        if self._error is None:
            self._error = error
        return MORE


class GetBatch(QuietGets):
    """
    Single-key gets made while other requests were in flight, sent together as one
    L{QuietGets}; each member keeps its own L{Deferred}.
    """

    __slots__ = ("members",)

    def __init__(self) -> None:
        QuietGets.__init__(self)
        self.members: list[Deferred[Any]] = []

    def addMember(self, key: bytes, withCas: bool, d: Deferred[Any]) -> None:
        """
        Add one get, answered through C{d}.
        """
        self.add(key, withCas)
        self.members.append(d)

    def remove(self, d: Deferred[Any]) -> None:
        """
        Leave out a member cancelled before the batch was sent.
        """
        for i, member in enumerate(self.members):
            if member is d:
                del self.members[i], self.keys[i], self.withCas[i]
                return

    def fire(self) -> None:
        for d, result in zip(self.members, self.results):
            if d.called:
                continue
            if isinstance(result, MemCacheError):
                d.errback(result)
            else:
                d.callback(result)

    def fail(self, reason: BaseException | Failure) -> None:
        for d in self.members:
            if not d.called:
                d.errback(reason)


class MultiGet(QuietGets):
    """
    L{getMultiple<txconnpool.memcache.meta.MetaMemCacheProtocol.getMultiple>}: one
    L{QuietGets} of distinct keys, answered as one C{dict} keyed by the caller's keys. An error
    reply for any of its keys fails it.
    """

    __slots__ = ("callerKeys",)

    def __init__(self, callerKeys: list[tuple[Any, bytes]], withCas: bool) -> None:
        QuietGets.__init__(self, "gets" if withCas else "get")
        self.callerKeys = callerKeys
        for key in dict.fromkeys(key for _, key in callerKeys):
            self.add(key, withCas)

    def fire(self) -> None:
        byKey = dict(zip(self.keys, self.results))
        for result in self.results:
            if isinstance(result, MemCacheError):
                self.deferred.errback(result)
                return
        self.deferred.callback({caller: byKey[key] for caller, key in self.callerKeys})


class IncrRequest(MetaRequest):
    """
    An C{ma} asking for the new value (C{v}): C{VA} and the number, or C{NF} for a missing key.
    """

    __slots__ = ("opaque",)

    def __init__(self, command: str, opaque: bytes) -> None:
        MetaRequest.__init__(self, command)
        self.opaque = opaque

    def feedLine(self, line: bytes) -> int:
        parts = line.split(b" ")
        code = parts[0]
        if code == b"VA" and len(parts) > 2:
            size = _size(parts[1])
        elif code == b"NF":
            size = DONE
            self.result = False
        else:
            raise Mismatch("is not a reply to it")
        opaque, flags, cas, marks = _readFlags(parts[2:] if size >= 0 else parts[1:])
        _checkOpaque(opaque, self.opaque)
        if flags is not None or cas is not None or marks:
            raise Mismatch("has flags that were not asked for")
        if size > 20:
            raise Mismatch("announces a number longer than 20 digits")
        return size

    def feedData(self, data: bytes) -> int:
        if not data.isdigit():
            raise Mismatch(f"is followed by {_v.show(data)}, which is not a number")
        self.result = int(data)
        return DONE


class LeaseRequest(MetaRequest):
    """
    An C{mg} that takes the lease on a missing key (C{N}), or on a value due for recaching
    (C{R}); answered with a L{LeaseReply}.
    """

    __slots__ = ("_cas", "_marks", "bareMiss", "opaque")

    def __init__(self, opaque: bytes, bareMiss: bool) -> None:
        MetaRequest.__init__(self, "getOrCompute")
        self.opaque = opaque
        self.bareMiss = bareMiss
        self._cas = b""
        self._marks = 0

    def feedLine(self, line: bytes) -> int:
        parts = line.split(b" ")
        code = parts[0]
        if code == b"VA" and len(parts) > 2:
            size = _size(parts[1])
            opaque, flags, cas, self._marks = _readFlags(parts[2:])
            _checkOpaque(opaque, self.opaque)
            if flags is not None:
                raise Mismatch("has client flags that were not asked for")
            self._cas = _casToken(cas)
            return size
        if code == b"EN":
            if len(parts) > 1 or not self.bareMiss:
                opaque, flags, cas, marks = _readFlags(parts[1:])
                _checkOpaque(opaque, self.opaque)
                if flags is not None or cas is not None or marks:
                    raise Mismatch("has flags a miss does not carry")
            self.result = LeaseReply(None, b"", False, False, False)
            return DONE
        raise Mismatch("is not a reply to it")

    def feedData(self, data: bytes) -> int:
        marks = self._marks
        value = None if _isPlaceholder(marks, data) else data
        self.result = LeaseReply(
            value,
            self._cas,
            won=bool(marks & _WON),
            stale=bool(marks & _STALE),
            leased=bool(marks & _LEASED),
        )
        return DONE


class ItemInfoRequest(MetaRequest):
    """
    An C{me} (meta debug), which takes no opaque token: its C{ME} reply names the key instead,
    which must be the one asked for.
    """

    __slots__ = ("key",)

    def __init__(self, key: bytes) -> None:
        MetaRequest.__init__(self, "itemInfo")
        self.key = key

    def feedLine(self, line: bytes) -> int:
        if line == b"EN":
            self.result = None
            return DONE
        parts = line.split(b" ")
        if parts[0] != b"ME" or len(parts) < 2:
            raise Mismatch("is not a reply to it")
        if parts[1] != self.key:
            raise Mismatch(f"names key {_v.show(parts[1])}, not the one asked for")
        info = {}
        for token in parts[2:]:
            name, sep, value = token.partition(b"=")
            if not sep or not name:
                raise Mismatch(f"has a malformed field {_v.show(token)}")
            info[name] = value
        self.result = info
        return DONE


class TextRequest(MetaRequest):
    """
    A text-protocol command, which has no meta form (C{version}, C{flush_all}, C{mn}): its
    reply is one line starting with C{prefix}, and carries no opaque token.
    """

    __slots__ = ("prefix", "whole")

    def __init__(self, command: str, prefix: bytes, whole: bool) -> None:
        """
        @param whole: The line must be exactly C{prefix} (C{OK}, C{MN}), and the result is
            C{True}; otherwise the result is what follows C{prefix}.
        """
        MetaRequest.__init__(self, command)
        self.prefix = prefix
        self.whole = whole

    def feedLine(self, line: bytes) -> int:
        if self.whole:
            if line != self.prefix:
                raise Mismatch("is not a reply to it")
            self.result = True
        else:
            if not line.startswith(self.prefix):
                raise Mismatch("is not a reply to it")
            self.result = line[len(self.prefix) :]
        return DONE


class StatsRequest(MetaRequest):
    """
    C{stats}: C{STAT <name> <value>} lines ended by C{END} (or C{RESET}, C{OK} for the
    subcommands that answer so).
    """

    __slots__ = ("values",)

    def __init__(self) -> None:
        MetaRequest.__init__(self, "stats")
        self.values: dict[bytes, bytes] = {}

    def feedLine(self, line: bytes) -> int:
        if line[:5] == b"STAT ":
            name, _, value = line[5:].partition(b" ")
            if name:
                if len(self.values) >= MAX_STATS:
                    raise Mismatch(f"comes after {MAX_STATS} others, more than accepted")
                self.values[name] = value
                return MORE
        elif line in (b"END", b"RESET", b"OK"):
            self.result = self.values
            return DONE
        raise Mismatch("is not a reply to it")


class ProbeRequest(MetaRequest):
    """
    The first request on a connection, C{version}, C{mn} and a quiet-less C{mg} of a key
    nobody uses: it takes any three reply lines, error lines included, for the protocol to
    judge what the server speaks.
    """

    __slots__ = ("lines",)

    def __init__(self) -> None:
        MetaRequest.__init__(self, "version, mn, mg")
        self.lines: list[bytes] = []

    def feedLine(self, line: bytes) -> int:
        self.lines.append(line)
        self.result = self.lines
        return DONE if len(self.lines) == 3 else MORE

    def feedError(self, error: MemCacheError, line: bytes) -> int:
        return self.feedLine(line)
