"""
The wire half of L{MemCacheProtocol<txconnpool.memcache.protocol.MemCacheProtocol>}: sending
requests, reading replies and matching each to its request, timing out, and dropping the
connection when replies can no longer be trusted. The commands themselves are in
L{txconnpool.memcache.protocol}.
"""

from __future__ import annotations

from collections import deque
from typing import Any, cast

from twisted.internet.defer import CancelledError, Deferred, fail, succeed
from twisted.internet.interfaces import IDelayedCall
from twisted.internet.protocol import Protocol, connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure

from txconnpool.errors import ConnectionLostError, ProtocolError
from txconnpool.memcache import _validate as _v
from txconnpool.memcache._requests import (
    STATS_END,
    STATS_LINES,
    GetBatch,
    GetRequest,
    IncrRequest,
    Request,
    StatsRequest,
)
from txconnpool.memcache._timers import WireTimers
from txconnpool.memcache.errors import ReplyTooLargeError, ServerError

_log = Logger()


LONELY_BATCHES = 8
"""
After this many batches of gets in a row that held one get each, gets are sent at once
instead of batched, for L{UNBATCHED_GETS} gets, before batching is tried again.
"""

UNBATCHED_GETS = 32


class MemCacheWire(WireTimers[Request], Protocol):
    """
    Requests in flight and the replies that answer them, for a memcached connection.
    """

    maxLineLength: int
    maxValueSize: int
    maxReplySize: int
    maxStatsSize: int
    timeOut: float | None
    requestTimeout: float | None
    _deadlineCall: IDelayedCall | None
    _pending: deque[Request]
    _answerable: int
    _closed: bool
    _lostReason: Failure | None
    _timeoutCall: IDelayedCall | None
    _buffer: bytes
    _valueLength: int
    _valueKey: bytes
    _valueFlags: int
    _valueCas: bytes
    _chunks: list[bytes]
    _chunksLength: int
    _batchGets: bool
    _batch: GetBatch | None
    _flushCall: IDelayedCall | None
    _lonely: int

    # Receiving

    def dataReceived(self, data: bytes) -> None:
        """
        Parse replies and fire the pending requests' Deferreds in order.
        """
        if self._closed:
            return
        pending = self._pending
        if not pending:
            self._protocolError(f"unsolicited data {_v.show(data)} with no request pending")
            return
        # Only the requests written before these bytes arrived can be answered by them: a
        # request sent by a callback while they are parsed must wait for later bytes, and so
        # must the batch of gets not written yet (always the last pending request).
        self._answerable = len(pending) - (self._batch is not None)
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
                self._valueReceived(data[pos:stop])
                pos = stop + 2
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
        replies = req.replies
        if replies is not None:
            result = replies.get(line)
            if result is not None:
                self._answered()
                req.deferred.callback(result)
                return
        elif isinstance(req, GetRequest):
            if line == b"END":
                self._answered()
                req.deferred.callback(req.result())
                return
            if line[:6] == b"VALUE ":
                self._valueHeader(req, line)
                return
        elif isinstance(req, IncrRequest):
            if line.isdigit():
                self._answered()
                req.deferred.callback(int(line))
                return
            if line == b"NOT_FOUND":
                self._answered()
                req.deferred.callback(False)
                return
        elif isinstance(req, StatsRequest):
            keyword, _, rest = line.partition(b" ")
            if keyword + b" " in STATS_LINES:
                name, _, value = rest.partition(b" ")
                if name:
                    req.size += len(line) + 2
                    if req.size > self.maxStatsSize:
                        self._tooLarge(
                            f"stats reply longer than maxStatsSize ({self.maxStatsSize} bytes)"
                        )
                        return
                    req.values[name] = value
                    return
            elif line in STATS_END:
                self._answered()
                req.deferred.callback(req.values)
                return
        elif line[:8] == b"VERSION ":
            self._answered()
            req.deferred.callback(line[8:])
            return
        self._errorReply(req, line)

    def _answered(self) -> None:
        """
        Take the request just answered off the pending queue.
        """
        self._pending.popleft()
        self._answerable -= 1

    def _valueHeader(self, req: GetRequest, line: bytes) -> None:
        fields = _v.parseValueHeader(line, req.withCas)
        if fields is None:
            self._protocolError(f"malformed line {_v.show(line)} in reply to {req.command}")
            return
        key, flags, size, cas = fields
        if req.wanted is None:
            unexpected = key != req.key or req.found is not None
        else:
            unexpected = key not in req.wanted or key in req.values
        if unexpected:
            self._protocolError(
                f"{_v.show(line)} for a key not requested (or repeated) in reply to {req.command}"
            )
        elif size > self.maxValueSize:
            self._tooLarge(
                f"{_v.show(line)} announces {size} bytes, more than maxValueSize "
                f"({self.maxValueSize})"
            )
        elif req.wanted is not None and req.size + size > self.maxReplySize:
            self._tooLarge(
                f"{_v.show(line)} takes the values of one {req.command} reply past "
                f"maxReplySize ({self.maxReplySize} bytes)"
            )
        else:
            req.size += size
            self._valueLength = size
            self._valueKey = key
            self._valueFlags = flags
            self._valueCas = cas

    def _valueReceived(self, value: bytes) -> None:
        req = cast(GetRequest, self._pending[0])
        self._valueLength = -1
        if req.withCas:
            item: tuple[Any, ...] = (self._valueFlags, self._valueCas, value)
        else:
            item = (self._valueFlags, value)
        if req.wanted is None:
            req.found = item
        else:
            req.values[self._valueKey] = item

    def _errorReply(self, req: Request, line: bytes) -> None:
        exc = _v.errorForReply(req.command, line)
        if exc is None:
            self._protocolError(f"unexpected reply {_v.show(line)} to {req.command}")
            return
        self._answered()
        if req.hasData and not isinstance(exc, ServerError):
            lost = ConnectionLostError(
                f"memcached connection dropped after {_v.show(line)} in reply to "
                f"{req.command}: the server may read its data block as a command"
            )
            lost.__cause__ = exc
            self._shutDown(lost, req, exc)
        else:
            req.deferred.errback(exc)

    # Ending

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
            pending.popleft().deferred.errback(reason)

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
        first: Request | None = None,
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
        if first is not None:
            first.deferred.errback(firstReason)
        while pending:
            pending.popleft().deferred.errback(reason)

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

    # Sending

    def _send(self, req: Request, data: bytes) -> Deferred[Any]:
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
        if self.requestTimeout is not None:
            self._startDeadline(req)
        transport.write(data)
        return d

    def _sendMany(self, reqs: list[Request], data: bytes) -> list[Deferred[Any]] | None:
        """
        Send several requests written as one C{data}, each answered in turn.

        @return: their L{Deferred}s, or L{None} when the connection is not open.
        """
        transport = self.transport
        if self._closed or transport is None or getattr(transport, "disconnecting", False):
            return None
        if self._batch is not None:
            self._flush()
        ds: list[Deferred[Any]] = []
        for req in reqs:
            d: Deferred[Any] = Deferred(self._cancel)
            req.deferred = d
            ds.append(d)
        self._pending.extend(reqs)
        if self._timeoutCall is None and self.timeOut is not None:
            self._timeoutCall = self.callLater(self.timeOut, self._timedOut)
        if self.requestTimeout is not None:
            for req in reqs:
                self._startDeadline(req)
        transport.write(data)
        return ds

    def _sendQuiet(self, command: str, data: bytes, result: object) -> Deferred[Any]:
        """
        Send a command with C{noreply}: the server answers nothing, so nothing waits for a
        reply, and the L{Deferred} fires with C{result} once it is written.
        """
        transport = self.transport
        if self._closed or transport is None or getattr(transport, "disconnecting", False):
            return self._notConnected(command)
        if self._batch is not None:
            self._flush()
        transport.write(data)
        return succeed(result)

    def _batched(self, wireKey: bytes, withCas: bool) -> Deferred[Any]:
        """
        Add a get to the batch of this reactor turn, opening one if needed.
        """
        transport = self.transport
        if self._closed or transport is None or getattr(transport, "disconnecting", False):
            return self._notConnected("gets" if withCas else "get")
        batch = self._batch
        if batch is None or batch.withCas != withCas:
            if batch is not None:
                self._flush()
            batch = self._batch = GetBatch(withCas)
            self._pending.append(batch)
            if self._timeoutCall is None and self.timeOut is not None:
                self._timeoutCall = self.callLater(self.timeOut, self._timedOut)
            if self.requestTimeout is not None:
                self._startDeadline(batch)
            if self._flushCall is None:
                # One call per reactor turn serves every batch of the turn.
                self._flushCall = self.callLater(0, self._endOfTurn)
        d: Deferred[Any] = Deferred(lambda d: self._cancelBatched(batch, d))
        batch.add(wireKey, d)
        return d

    def _endOfTurn(self) -> None:
        self._flushCall = None
        self._flush()

    def _flush(self) -> None:
        """
        Send the batch of gets gathered so far. Batches of one get, one after the other,
        mean that gets alternate with other commands: after L{LONELY_BATCHES} of them, gets
        are sent at once for a while (see C{MemCacheProtocol.get}).
        """
        batch, self._batch = self._batch, None
        if batch is None or self._closed:
            return
        members = batch.members
        if members:
            assert self.transport is not None
            self.transport.write(batch.line())
            self._lonely = self._lonely + 1 if len(members) == 1 else 0
        else:
            self._pending.remove(batch)

    def _cancelBatched(self, batch: GetBatch, d: Deferred[Any]) -> None:
        """
        Cancel one get of a batch: before the batch is sent, it is simply left out; after,
        the connection is dropped like for any request cancelled while pending.
        """
        batch.members = [(key, member) for key, member in batch.members if member is not d]
        if batch is self._batch or batch not in self._pending:
            return
        cause = CancelledError("memcached get request cancelled; the connection was dropped")
        lost = ConnectionLostError(
            "memcached connection dropped because a pending get was cancelled"
        )
        lost.__cause__ = cause
        self._shutDown(lost)

    def _notConnected(self, command: str) -> Deferred[Any]:
        exc = ConnectionLostError(f"memcached connection is not open; {command} not sent")
        if self._lostReason is not None:
            exc.__cause__ = self._lostReason.value
        return fail(exc)
