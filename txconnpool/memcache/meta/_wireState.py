"""
The state of a meta connection's wire, and how the connection ends: lost, closed by the
server, or dropped by the client when its replies can no longer be trusted. The wire that
sends requests and reads replies over it is L{txconnpool.memcache.meta._wire}.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from twisted.internet.defer import CancelledError, Deferred, fail
from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import IDelayedCall, IHalfCloseableProtocol
from twisted.internet.protocol import Protocol, connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from txconnpool.errors import ConnectionLostError, ProtocolError
from txconnpool.memcache._timers import WireTimers
from txconnpool.memcache.errors import ReplyTooLargeError
from txconnpool.memcache.meta._batches import GetBatch
from txconnpool.memcache.meta._quiet import QuietRun
from txconnpool.memcache.meta._replies import MetaRequest

_log = Logger()


@implementer(IHalfCloseableProtocol)
class WireState(WireTimers[MetaRequest], Protocol):
    """
    The requests in flight on a meta connection, what is left of a reply being read, and the
    ending of the connection.

    It hears at once when the server closes its side of the connection (C{readConnectionLost}):
    the pending requests fail then, before the pool hears that the connection is gone, so that
    the probe of a new connection can say why a server closed it.

    @ivar _bareMisses: Whether the server sends C{EN} without the opaque token (memcached
        before 1.6.18), so that a miss can only be matched by its place in the queue.
    @ivar _batch: The batch of gets of this reactor turn, not written yet.
    @ivar _quiet: The run of quiet commands of this reactor turn, not closed yet.
    """

    maxLineLength: int
    maxValueSize: int
    maxReplySize: int
    _keyFlag: bytes

    def _initWire(self, batchGets: bool) -> None:
        self._pending: deque[MetaRequest] = deque()
        self._answerable = 0
        self._closed = False
        self._lostReason: Failure | None = None
        self._timeoutCall: IDelayedCall | None = None
        self._deadlineCall: IDelayedCall | None = None
        self._buffer = b""
        # Reading a data block: its length (-1 in line mode) and the chunks received so far.
        self._valueLength = -1
        self._chunks: list[bytes] = []
        self._chunksLength = 0
        self._nextOpaque = 1
        self._bareMisses = True
        self._batchGets = batchGets
        self._batch: GetBatch | None = None
        self._flushCall: IDelayedCall | None = None
        self._quiet: QuietRun | None = None
        self._fenceCall: IDelayedCall | None = None

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        """
        Fail every pending request with C{reason}.
        """
        self._closed = True
        if self._lostReason is None:
            self._lostReason = reason
        self._cancelTimeout()
        self._cancelDeadline()
        self._clearBuffers()
        pending = self._pending
        while pending:
            pending.popleft().fail(reason)

    def readConnectionLost(self) -> None:
        """
        The server closed its side of the connection and will send nothing more: fail the
        pending requests as C{connectionLost} does, and close this side too.
        """
        self.connectionLost(Failure(ConnectionDone("memcached closed the connection")))
        if self.transport is not None:
            self.transport.loseConnection()

    def writeConnectionLost(self) -> None:
        """
        Nothing to do: this protocol never closes only its own side.
        """

    def _protocolError(self, description: str) -> None:
        _log.warn("memcached protocol error: {description}", description=description)
        self._shutDown(ProtocolError(f"{description}; memcached connection dropped"))

    def _tooLarge(self, description: str) -> None:
        """
        Fail the request being answered with L{ReplyTooLargeError} and drop the connection,
        without reading the rest of the reply.
        """
        _log.warn("memcached reply too large: {description}", description=description)
        req = self._pending.popleft()
        exc = ReplyTooLargeError(f"{description}; memcached connection dropped")
        lost = ConnectionLostError(
            f"memcached connection dropped because a reply to {req.command} was too large"
        )
        lost.__cause__ = exc
        self._shutDown(lost, req, exc)

    def _shutDown(
        self,
        reason: Exception,
        first: MetaRequest | None = None,
        firstReason: BaseException | None = None,
    ) -> None:
        """
        Drop the connection, fail C{first} with C{firstReason}, then every other pending
        request with C{reason}.
        """
        wasClosed = self._closed
        self._closed = True
        self._cancelTimeout()
        self._cancelDeadline()
        self._clearBuffers()
        pending, self._pending = self._pending, deque()
        transport = self.transport
        if transport is not None and not wasClosed:
            abort = getattr(transport, "abortConnection", None)
            if abort is not None:
                abort()
            else:
                transport.loseConnection()
        if first is not None and firstReason is not None:
            first.fail(firstReason)
        while pending:
            pending.popleft().fail(reason)

    def _clearBuffers(self) -> None:
        self._buffer = b""
        self._chunks = []
        self._chunksLength = 0
        self._valueLength = -1
        self._batch = None
        self._quiet = None
        for name in ("_flushCall", "_fenceCall"):
            call = getattr(self, name)
            setattr(self, name, None)
            if call is not None and call.active():
                call.cancel()

    def _cancel(self, d: Deferred[Any]) -> None:
        for req in self._pending:
            if req.deferred is d:
                break
        else:
            return
        self._pending.remove(req)
        cause = CancelledError(
            f"memcached {req.command} request cancelled; the connection was dropped"
        )
        lost = ConnectionLostError(
            f"memcached connection dropped because a pending {req.command} was cancelled"
        )
        lost.__cause__ = cause
        self._shutDown(lost, req, cause)

    def _writable(self) -> bool:
        transport = self.transport
        return not (
            self._closed or transport is None or getattr(transport, "disconnecting", False)
        )

    def _notConnected(self, command: str) -> Deferred[Any]:
        exc = ConnectionLostError(f"memcached connection is not open; {command} not sent")
        if self._lostReason is not None:
            exc.__cause__ = self._lostReason.value
        return fail(exc)
