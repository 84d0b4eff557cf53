"""
Batches of quiet C{mg}s closed by C{mn}: the concurrent gets of one reactor turn
(L{GetBatch}), and C{getMultiple} (L{MultiGet}).
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred
from twisted.python.failure import Failure

from txconnpool.memcache.errors import MemCacheError
from txconnpool.memcache.meta._replies import (
    DONE,
    MORE,
    WON,
    MetaRequest,
    Mismatch,
    isPlaceholder,
    readCasToken,
    readClientFlags,
    readFlags,
    readSize,
)


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
    @ivar size: The length of the values received so far, for C{maxReplySize}.
    """

    __slots__ = ("_current", "_error", "_index", "_pos", "keys", "results", "size", "withCas")

    def __init__(self, command: str = "get") -> None:
        MetaRequest.__init__(self, command)
        self.keys: list[bytes] = []
        self.withCas: list[bool] = []
        self.results: list[object] = []
        self.size = 0
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
        keys = self.keys
        opaques = [b"O%d" % (n,) for n in range(firstOpaque, firstOpaque + len(keys))]
        self._index = dict(zip(opaques, range(len(opaques))))
        self.results = [None] * len(keys)
        # Each key's line ends with the start of the next one: "... q v f\r\nmg ".
        plain = keyFlag + b" q v f\r\nmg "
        cas = keyFlag + b" q v f c\r\nmg "
        parts = [b"mg "]
        append = parts.append
        for key, opaque, withCas in zip(keys, opaques, self.withCas):
            append(key)
            append(b" ")
            append(opaque)
            append(cas if withCas else plain)
        parts[-1] = parts[-1][:-3] + b"mn\r\n"
        return b"".join(parts)

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
        size = readSize(parts[1])
        # The usual hit: O<opaque> f<flags>[ c<cas>], in the order asked for, for the next
        # key waiting (or a later one, the keys between having missed).
        i = self._index.get(parts[2], -1)
        pos = self._pos
        if i >= pos and len(parts) == 4 + self.withCas[i]:
            flagsToken = parts[3]
            if flagsToken[:1] == b"f" and (len(parts) == 4 or parts[4][:1] == b"c"):
                casToken = readCasToken(parts[4][1:]) if len(parts) == 5 else b""
                clientFlags = 0 if flagsToken == b"f0" else readClientFlags(flagsToken[1:])
                if i > pos or self._error is not None:
                    self._skipTo(i)
                self._pos = i + 1
                self._current = (i, clientFlags, casToken, 0)
                return size
        opaque, flags, cas, marks = readFlags(parts[2:])
        i = self._index.get(opaque or b"", -1)
        if i < self._pos:
            shown = "no opaque token" if opaque is None else opaque.decode("latin-1")
            raise Mismatch(f"carries {shown}, which no key still waiting in the batch has")
        clientFlags = readClientFlags(flags)
        if self.withCas[i]:
            casToken = readCasToken(cas)
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
        if not marks:
            self.results[i] = (flags, cas, data) if withCas else (flags, data)
            return MORE
        if isPlaceholder(marks, data):
            self.results[i] = (0, b"", None) if withCas else (0, None)
        else:
            self.results[i] = (flags, cas, data) if withCas else (flags, data)
        if marks & WON:
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

    @ivar members: The L{Deferred} of each get, in step with C{keys} and C{withCas}: the wire
        appends to the three lists together.
    """

    __slots__ = ("members",)

    def __init__(self) -> None:
        QuietGets.__init__(self)
        self.members: list[Deferred[Any]] = []

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
