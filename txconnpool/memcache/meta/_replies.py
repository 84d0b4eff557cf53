"""
How a request waiting on a meta connection reads the reply lines that answer it: the
L{MetaRequest} interface the wire drives, and the readers of reply flags that requests share.

The wire hands each reply line to the request at the head of its queue with
L{MetaRequest.feedLine}, which returns L{DONE} (answered), L{MORE} (more lines to come) or the
length of the data block that follows (handed over with L{MetaRequest.feedData}), and raises
L{Mismatch} for a line that does not answer it. Every meta command is sent with its opaque
token first among its flags, and every meta reply must carry that token back.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred
from twisted.python.failure import Failure

from txconnpool.memcache import _validate as _v
from txconnpool.memcache.errors import MemCacheError

DONE = -1
"""The request has its whole reply."""

MORE = -2
"""The request expects more reply lines."""

WON = 1
"""Return flag W: this reader holds the lease."""

STALE = 2
"""Return flag X: the item is stale."""

LEASED = 4
"""Return flag Z: another reader holds the lease."""


NO_REPLY = object()
"""Marks a status that is not among a request's replies."""


class Mismatch(Exception):
    """
    A reply line does not answer the request at the head of the queue; the message says why,
    to follow C{reply <line> to <command>}.
    """


class TooLarge(Exception):
    """
    A reply is larger than the protocol's limits allow; the message says which.
    """


def readFlags(tokens: list[bytes]) -> tuple[bytes | None, bytes | None, bytes | None, int]:
    """
    Read the return flags of a meta reply, in any order: C{(opaque token, client flags, CAS
    token, marks)}, where marks combines C{WON}, C{STALE} and C{LEASED}.

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
            marks |= WON
        elif token == b"X":
            marks |= STALE
        elif token == b"Z":
            marks |= LEASED
        else:
            raise Mismatch(f"has an unexpected flag {_v.show(token)}")
    return opaque, flags, cas, marks


def checkOpaque(found: bytes | None, expected: bytes) -> None:
    if found != expected:
        what = "no opaque token" if found is None else f"opaque token {found.decode('latin-1')}"
        raise Mismatch(f"carries {what} where {expected.decode()} was expected")


def readSize(token: bytes) -> int:
    if not token.isdigit():
        raise Mismatch("announces no valid length")
    return int(token)


def readClientFlags(token: bytes | None) -> int:
    if token is None or not token.isdigit() or int(token) > _v.MAX_FLAGS:
        raise Mismatch("carries no valid client flags")
    return int(token)


def readCasToken(token: bytes | None) -> bytes:
    if token is None or not token.isdigit() or len(token) > 20 or int(token) > _v.MAX_UINT64:
        raise Mismatch("carries no valid CAS token")
    return token


def isPlaceholder(marks: int, data: bytes) -> bool:
    """
    Whether an item read back is the empty placeholder that holds a lease on a missing key
    (or is being recomputed by the lease's holder while empty).
    """
    return not data and marks & (WON | LEASED) != 0 and not marks & STALE


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
    @ivar sentAt: When it was sent, for C{requestTimeout}.
    """

    __slots__ = ("command", "deferred", "failure", "hasData", "result", "sentAt", "wins")

    deferred: Deferred[Any]
    sentAt: float

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
        @raise TooLarge: The reply is growing past a limit.
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
