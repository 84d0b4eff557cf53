"""
The wire half of L{MetaMemCacheProtocol<txconnpool.memcache.meta.MetaMemCacheProtocol>}:
sending requests (and batches of gets), reading replies and handing each to the request it
answers, timing out, and dropping the connection when replies can no longer be trusted. The
commands themselves are in L{txconnpool.memcache.meta.protocol}.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from twisted.internet.defer import CancelledError, Deferred, TimeoutError, fail
from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import IDelayedCall, IHalfCloseableProtocol
from twisted.internet.protocol import Protocol, connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from txconnpool.errors import ConnectionLostError, ProtocolError
from txconnpool.memcache import _validate as _v
from txconnpool.memcache.errors import ServerError
from txconnpool.memcache.meta._batches import GetBatch
from txconnpool.memcache.meta._replies import DONE, MetaRequest, Mismatch
from txconnpool.memcache.meta._requests import StatusRequest

_log = Logger()

MAX_BATCH = 1024
"""Most gets gathered into one batch; a full batch is sent at once."""

_RELEASE_REPLIES = {b"HD": True, b"NF": False, b"EX": False}


@implementer(IHalfCloseableProtocol)
class MetaWire(Protocol):
    """
    Requests in flight and the replies that answer them, for a memcached connection speaking
    the meta protocol.

    It hears at once when the server closes its side of the connection (C{readConnectionLost}):
    the pending requests fail then, before the pool hears that the connection is gone, so that
    the probe of a new connection can say why a server closed it.

    @ivar _bareMisses: Whether the server sends C{EN} without the opaque token (memcached
        before 1.6.18), so that a miss can only be matched by its place in the queue.
    """

    maxLineLength: int
    maxValueSize: int
    timeOut: float | None
    _keyFlag: bytes

    def _initWire(self, batchGets: bool) -> None:
        self._pending: deque[MetaRequest] = deque()
        self._answerable = 0
        self._closed = False
        self._lostReason: Failure | None = None
        self._timeoutCall: IDelayedCall | None = None
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

    def callLater(self, delay: float, f: Any) -> IDelayedCall:
        raise NotImplementedError()

    def _reserve(self, count: int) -> int:
        """
        Reserve C{count} opaque numbers for the next request, and return the first. A batch
        of gets still gathering is sent first, so that the numbers grow in the order the
        requests are written.
        """
        if self._batch is not None:
            self._flush()
        first = self._nextOpaque
        self._nextOpaque = first + count
        return first

    def _opaque(self) -> bytes:
        """
        A new opaque token for the next request, unique on this connection (L{_reserve} of
        one number).
        """
        if self._batch is not None:
            self._flush()
        n = self._nextOpaque
        self._nextOpaque = n + 1
        return b"O%d" % (n,)

    # Receiving

    def dataReceived(self, data: bytes) -> None:
        """
        Parse replies and hand each to the request it answers, in order.
        """
        if self._closed:
            return
        pending = self._pending
        if not pending:
            self._protocolError(f"unsolicited data {_v.show(data)} with no request pending")
            return
        # Only the requests sent before these bytes arrived can be answered by them: a request
        # sent by a callback while they are parsed must wait for later bytes.
        self._answerable = len(pending)
        if self._valueLength >= 0:
            self._chunks.append(data)
            self._chunksLength += len(data)
            if self._chunksLength < self._valueLength + 2:
                self._resetTimeout()
                return
            data = b"".join(self._chunks)
            self._chunks = []
            self._chunksLength = 0
        elif self._buffer:
            data = self._buffer + data
            self._buffer = b""
        pos = 0
        end = len(data)
        maxLine = self.maxLineLength
        while pos < end:
            length = self._valueLength
            if length >= 0:
                stop = pos + length
                if end < stop + 2:
                    rest = data[pos:]
                    self._chunks = [rest]
                    self._chunksLength = len(rest)
                    break
                if data[stop : stop + 2] != b"\r\n":
                    self._protocolError(
                        f"data block of {length} bytes not followed by CRLF but by "
                        f"{_v.show(data[stop : stop + 20])}"
                    )
                    return
                self._valueLength = -1
                req = pending[0]
                try:
                    outcome = req.feedData(data[pos:stop])
                except Mismatch as e:
                    self._protocolError(f"data block in reply to {req.command} {e}")
                    return
                pos = stop + 2
                if outcome == DONE:
                    self._done(req)
                    if self._closed:
                        return
                continue
            eol = data.find(b"\r\n", pos)
            if eol < 0 or eol - pos > maxLine:
                if end - pos > maxLine + 1:  # + 1: the rest may end with the CR of CRLF
                    self._protocolError(
                        f"reply line longer than {maxLine} bytes: {_v.show(data[pos : pos + 60])}"
                    )
                    return
                self._buffer = data[pos:]
                break
            line = data[pos:eol]
            pos = eol + 2
            self._lineReceived(line)
            if self._closed:
                return
        self._resetTimeout()

    def _lineReceived(self, line: bytes) -> None:
        pending = self._pending
        if not pending or self._answerable <= 0:
            self._protocolError(f"unsolicited reply {_v.show(line)} with no request pending")
            return
        req = pending[0]
        try:
            outcome = req.feedLine(line)
        except Mismatch as e:
            error = _v.errorForReply(req.command, line)
            if error is None:
                self._protocolError(f"reply {_v.show(line)} to {req.command} {e}")
                return
            outcome = req.feedError(error, line)
            if outcome == DONE and req.hasData and not isinstance(error, ServerError):
                self._answered()
                lost = ConnectionLostError(
                    f"memcached connection dropped after {_v.show(line)} in reply to "
                    f"{req.command}: the server may read its data block as a command"
                )
                lost.__cause__ = error
                self._shutDown(lost, req, error)
                return
        if outcome >= 0:
            if outcome > self.maxValueSize:
                self._protocolError(
                    f"{_v.show(line)} announces {outcome} bytes, more than maxValueSize "
                    f"({self.maxValueSize})"
                )
                return
            self._valueLength = outcome
        elif outcome == DONE:
            self._done(req)

    def _answered(self) -> None:
        """
        Take the request just answered off the pending queue.
        """
        self._pending.popleft()
        self._answerable -= 1

    def _done(self, req: MetaRequest) -> None:
        """
        The request at the head of the queue has its whole reply: give back any lease a plain
        read was handed, then fire it (so that a request its callbacks send comes after the
        lease is given back).
        """
        self._pending.popleft()
        self._answerable -= 1
        if req.wins is not None:
            for key in req.wins:
                self._giveBack(key)
        req.fire()

    def _giveBack(self, key: bytes) -> None:
        """
        Give back the lease a plain read of a stale item was handed: mark the item stale again,
        which lets the next lease-taking read win it.
        """
        opaque = self._opaque()
        req = StatusRequest("release", opaque, _RELEASE_REPLIES)
        line = b"md %s %s%s I\r\n" % (key, opaque, self._keyFlag)
        self._send(req, line).addErrback(
            lambda f: _log.info(
                "could not give back the lease on {key}: {error}",
                key=key,
                error=f.value,
            )
        )

    # Ending

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        """
        Fail every pending request with C{reason}.
        """
        self._closed = True
        if self._lostReason is None:
            self._lostReason = reason
        self._cancelTimeout()
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
        call, self._flushCall = self._flushCall, None
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

    # Timeout

    def _resetTimeout(self) -> None:
        call = self._timeoutCall
        if call is not None:
            if self._pending and self.timeOut is not None:
                call.reset(self.timeOut)
            else:
                self._cancelTimeout()

    def _cancelTimeout(self) -> None:
        call = self._timeoutCall
        if call is not None:
            self._timeoutCall = None
            if call.active():
                call.cancel()

    def _timedOut(self) -> None:
        self._timeoutCall = None
        if self._pending and not self._closed:
            self._shutDown(
                TimeoutError(
                    f"memcached sent nothing for {self.timeOut} seconds while "
                    f"{len(self._pending)} requests were pending; connection dropped"
                )
            )

    # Sending

    def _writable(self) -> bool:
        transport = self.transport
        return not (
            self._closed or transport is None or getattr(transport, "disconnecting", False)
        )

    def _send(self, req: MetaRequest, data: bytes) -> Deferred[Any]:
        transport = self.transport
        if self._closed or transport is None or getattr(transport, "disconnecting", False):
            return self._notConnected(req.command)
        if self._batch is not None:
            self._flush()
        d: Deferred[Any] = Deferred(self._cancel)
        req.deferred = d
        self._pending.append(req)
        if self._timeoutCall is None and self.timeOut is not None:
            self._timeoutCall = self.callLater(self.timeOut, self._timedOut)
        transport.write(data)
        return d

    def _batched(self, key: bytes, withCas: bool) -> Deferred[Any]:
        """
        Add a get to the batch of this reactor turn, opening one if needed.
        """
        transport = self.transport
        if self._closed or transport is None or getattr(transport, "disconnecting", False):
            return self._notConnected("gets" if withCas else "get")
        batch = self._batch
        if batch is None:
            batch = self._batch = GetBatch()
            batch.deferred = Deferred()
            self._pending.append(batch)
            if self._timeoutCall is None and self.timeOut is not None:
                self._timeoutCall = self.callLater(self.timeOut, self._timedOut)
            self._flushCall = self.callLater(0, self._flush)
        d: Deferred[Any] = Deferred(lambda d: self._cancelBatched(batch, d))
        keys = batch.keys
        keys.append(key)
        batch.withCas.append(withCas)
        batch.members.append(d)
        if len(keys) >= MAX_BATCH:
            self._flush()
        return d

    def _flush(self) -> None:
        """
        Send the batch of gets gathered so far, as quiet C{mg}s closed by C{mn}.
        """
        batch, self._batch = self._batch, None
        call, self._flushCall = self._flushCall, None
        if call is not None and call.active():
            call.cancel()
        if batch is None or self._closed:
            return
        if batch.keys:
            assert self.transport is not None
            first = self._reserve(len(batch.keys))
            self.transport.write(batch.lines(first, self._keyFlag))
        else:
            self._pending.remove(batch)

    def _cancelBatched(self, batch: GetBatch, d: Deferred[Any]) -> None:
        """
        Cancel one get of a batch: before the batch is sent, it is simply left out; after,
        the connection is dropped like for any request cancelled while pending.
        """
        if batch is self._batch:
            batch.remove(d)
            return
        if batch not in self._pending:
            return
        cause = CancelledError("memcached get request cancelled; the connection was dropped")
        lost = ConnectionLostError(
            "memcached connection dropped because a pending get was cancelled"
        )
        lost.__cause__ = cause
        d.errback(cause)
        self._shutDown(lost)

    def _notConnected(self, command: str) -> Deferred[Any]:
        exc = ConnectionLostError(f"memcached connection is not open; {command} not sent")
        if self._lostReason is not None:
            exc.__cause__ = self._lostReason.value
        return fail(exc)
