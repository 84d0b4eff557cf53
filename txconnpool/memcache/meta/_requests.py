"""
The requests a L{MetaMemCacheProtocol<txconnpool.memcache.meta.MetaMemCacheProtocol>} sends
one at a time, each answered by one reply: status commands, gets, arithmetic, lease-taking
gets and C{me}. (Batches of quiet gets are in L{txconnpool.memcache.meta._batches}, text
commands in L{txconnpool.memcache.meta._textRequests}.)
"""

from __future__ import annotations

from collections.abc import Mapping

import attrs

from txconnpool.memcache import _validate as _v
from txconnpool.memcache.meta._replies import (
    DONE,
    LEASED,
    NO_REPLY,
    STALE,
    WON,
    MetaRequest,
    Mismatch,
    checkOpaque,
    isPlaceholder,
    readCasToken,
    readClientFlags,
    readFlags,
    readSize,
)


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
    @ivar flags: The client flags stored with the value; 0 when there is none.
    """

    value: bytes | None
    cas: bytes
    won: bool
    stale: bool
    leased: bool
    flags: int = 0


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
            result = self.replies.get(line[:2], NO_REPLY)
            if result is not NO_REPLY:
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
        opaque, flags, cas, marks = readFlags(parts[1:])
        checkOpaque(opaque, self.opaque)
        if flags is not None or cas is not None or (marks and self.key is None):
            raise Mismatch("has flags that were not asked for")
        if marks & WON and self.key is not None:
            self.wins = [self.key]
        self.result = replies[code]
        return DONE


class GetRequest(MetaRequest):
    """
    An C{mg} of one key, with its value and client flags, and its CAS token if C{withCas}
    (also the C{mg} with C{T} of C{getAndTouch}, whose C{command} is C{"gat"} or C{"gats"}).
    """

    __slots__ = ("_cas", "_flags", "_marks", "bareMiss", "key", "opaque", "withCas")

    def __init__(
        self, opaque: bytes, key: bytes, withCas: bool, bareMiss: bool, command: str | None = None
    ) -> None:
        self.command = command or ("gets" if withCas else "get")
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
                    self._cas = readCasToken(parts[4][1:] if parts[4][:1] == b"c" else None)
                self._flags = readClientFlags(flagsToken[1:])
                self._marks = 0
                return int(length)
        if code == b"VA" and len(parts) > 2:
            size = readSize(parts[1])
            opaque, flags, cas, self._marks = readFlags(parts[2:])
            checkOpaque(opaque, self.opaque)
            self._flags = readClientFlags(flags)
            if self.withCas:
                self._cas = readCasToken(cas)
            elif cas is not None:
                raise Mismatch("has a CAS token that was not asked for")
            return size
        if code == b"EN":
            if len(parts) > 1 or not self.bareMiss:
                opaque, flags, cas, marks = readFlags(parts[1:])
                checkOpaque(opaque, self.opaque)
                if flags is not None or cas is not None or marks:
                    raise Mismatch("has flags a miss does not carry")
            self.result = (0, b"", None) if self.withCas else (0, None)
            return DONE
        raise Mismatch("is not a reply to it")

    def feedData(self, data: bytes) -> int:
        marks = self._marks
        if isPlaceholder(marks, data):
            self.result = (0, b"", None) if self.withCas else (0, None)
        elif self.withCas:
            self.result = (self._flags, self._cas, data)
        else:
            self.result = (self._flags, data)
        if marks & WON:
            self.wins = [self.key]
        return DONE


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
            size = readSize(parts[1])
        elif code == b"NF":
            size = DONE
            self.result = False
        else:
            raise Mismatch("is not a reply to it")
        opaque, flags, cas, marks = readFlags(parts[2:] if size >= 0 else parts[1:])
        checkOpaque(opaque, self.opaque)
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
    (C{R}), asking for the value, its client flags and its CAS token; answered with a
    L{LeaseReply}.
    """

    __slots__ = ("_cas", "_flags", "_marks", "bareMiss", "opaque")

    def __init__(self, opaque: bytes, bareMiss: bool) -> None:
        MetaRequest.__init__(self, "getOrCompute")
        self.opaque = opaque
        self.bareMiss = bareMiss
        self._cas = b""
        self._flags = 0
        self._marks = 0

    def feedLine(self, line: bytes) -> int:
        parts = line.split(b" ")
        code = parts[0]
        if code == b"VA" and len(parts) > 2:
            size = readSize(parts[1])
            opaque, flags, cas, self._marks = readFlags(parts[2:])
            checkOpaque(opaque, self.opaque)
            self._flags = readClientFlags(flags)
            self._cas = readCasToken(cas)
            return size
        if code == b"EN":
            if len(parts) > 1 or not self.bareMiss:
                opaque, flags, cas, marks = readFlags(parts[1:])
                checkOpaque(opaque, self.opaque)
                if flags is not None or cas is not None or marks:
                    raise Mismatch("has flags a miss does not carry")
            self.result = LeaseReply(None, b"", False, False, False)
            return DONE
        raise Mismatch("is not a reply to it")

    def feedData(self, data: bytes) -> int:
        marks = self._marks
        value = None if isPlaceholder(marks, data) else data
        self.result = LeaseReply(
            value,
            self._cas,
            won=bool(marks & WON),
            stale=bool(marks & STALE),
            leased=bool(marks & LEASED),
            flags=0 if value is None else self._flags,
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
