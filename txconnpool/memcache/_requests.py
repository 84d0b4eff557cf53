"""
The requests a L{MemCacheProtocol<txconnpool.memcache.protocol.MemCacheProtocol>} waits on,
and the replies each accepts.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred
from twisted.python.failure import Failure

STORE_REPLIES = {b"STORED": True, b"NOT_STORED": False}
CAS_REPLIES = {b"STORED": True, b"EXISTS": False, b"NOT_FOUND": False}
DELETE_REPLIES = {b"DELETED": True, b"NOT_FOUND": False}
TOUCH_REPLIES = {b"TOUCHED": True, b"NOT_FOUND": False}
FLUSH_REPLIES = {b"OK": True}
STATS_END = (b"END", b"RESET", b"OK")
STATS_LINES = (b"STAT ", b"ITEM ", b"PREFIX ")
"""
The lines of a C{stats} reply that carry a name and a value: C{STAT} (most subcommands),
C{ITEM} (C{stats cachedump}) and C{PREFIX} (C{stats detail dump}).
"""
NO_CAS = object()


class Request:
    """
    A request waiting for its reply. C{replies}, when set, maps every reply line the command
    accepts to its result; C{hasData} tells that a data block followed the command line.
    """

    __slots__ = ("command", "deferred", "hasData", "replies", "sentAt")

    deferred: Deferred[Any]
    sentAt: float

    def __init__(
        self, command: str, replies: dict[bytes, bool] | None = None, hasData: bool = False
    ) -> None:
        self.command = command
        self.replies = replies
        self.hasData = hasData


class GetRequest(Request):
    """
    A C{get} or C{gets} of one C{key}, or of several (C{wanted} and C{callerKeys} set).
    """

    __slots__ = ("callerKeys", "found", "key", "size", "values", "wanted", "withCas")

    def __init__(
        self,
        withCas: bool,
        key: bytes | None,
        callerKeys: list[tuple[Any, bytes]] | None = None,
        command: str | None = None,
    ) -> None:
        self.command = command or ("gets" if withCas else "get")
        self.size = 0
        self.replies = None
        self.hasData = False
        self.withCas = withCas
        self.key = key
        self.callerKeys = callerKeys
        self.wanted = None if callerKeys is None else dict.fromkeys(k for _, k in callerKeys)
        self.found: tuple[Any, ...] | None = None
        self.values: dict[bytes, tuple[Any, ...]] = {}

    def result(self) -> object:
        miss = (0, b"", None) if self.withCas else (0, None)
        if self.callerKeys is None:
            return miss if self.found is None else self.found
        values = self.values
        return {caller: values.get(key, miss) for caller, key in self.callerKeys}


class IncrRequest(Request):
    __slots__ = ()


class StatsRequest(Request):
    """
    A C{stats} request: the names and values of its reply lines so far, and their size.
    """

    __slots__ = ("size", "values")

    def __init__(self) -> None:
        Request.__init__(self, "stats")
        self.values: dict[bytes, bytes] = {}
        self.size = 0


class GetBatch(GetRequest):
    """
    Single-key C{get}s made while other requests are pending, gathered into one multi-key
    C{get} sent at the end of the reactor turn. Each member keeps its own L{Deferred}.

    @ivar members: The C{(wire key, Deferred)} of each get still interested in the reply.
    """

    __slots__ = ("members",)

    def __init__(self, withCas: bool) -> None:
        GetRequest.__init__(self, withCas, None, [])
        self.wanted = {}
        self.members: list[tuple[bytes, Deferred[Any]]] = []
        self.deferred = Deferred()
        self.deferred.addCallbacks(self._answered, self._failed)

    def add(self, wireKey: bytes, d: Deferred[Any]) -> None:
        assert self.wanted is not None
        self.wanted[wireKey] = None
        self.members.append((wireKey, d))

    def line(self) -> bytes:
        """
        @return: The command to send, naming each key of the members still interested once.
        """
        self.wanted = dict.fromkeys(key for key, _ in self.members)
        return b"%s %s\r\n" % (self.command.encode(), b" ".join(self.wanted))

    def _answered(self, result: object) -> None:
        miss = (0, b"", None) if self.withCas else (0, None)
        values = self.values
        for key, d in self.members:
            d.callback(values.get(key, miss))

    def _failed(self, reason: Failure) -> None:
        for _, d in self.members:
            d.errback(reason)


class KeyedGather:
    """
    The L{Deferred} of several requests sent together: it fires with a C{dict} from each
    key to its request's result once every one of them has fired, or fails with the first
    failure among them. Cancelling it cancels the requests still pending.
    """

    __slots__ = ("deferred", "failure", "members", "remaining", "result")

    def __init__(self, keys: list[Any], members: list[Deferred[Any]]) -> None:
        self.result: dict[Any, Any] = {}
        self.failure: Failure | None = None
        self.members = members
        self.remaining = len(members)
        self.deferred: Deferred[dict[Any, Any]] = Deferred(self._cancel)
        for key, d in zip(keys, members):
            d.addCallbacks(self._answered, self._failed, callbackArgs=(key,))

    def _answered(self, value: object, key: object) -> None:
        self.result[key] = value
        self._settle()

    def _failed(self, reason: Failure) -> None:
        if self.failure is None:
            self.failure = reason
        self._settle()

    def _settle(self) -> None:
        self.remaining -= 1
        if self.remaining == 0:
            if self.failure is not None:
                self.deferred.errback(self.failure)
            else:
                self.deferred.callback(self.result)

    def _cancel(self, d: Deferred[dict[Any, Any]]) -> None:
        for member in self.members:
            if not member.called:
                member.cancel()
