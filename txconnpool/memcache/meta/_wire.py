"""
The wire half of L{MetaMemCacheProtocol<txconnpool.memcache.meta.MetaMemCacheProtocol>}:
sending requests (and batches of gets, and runs of quiet commands), reading replies and
handing each to the request it answers, timing out, and dropping the connection when replies
can no longer be trusted. The commands themselves are in L{txconnpool.memcache.meta.protocol}
and L{txconnpool.memcache.meta._storage}.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from twisted.internet.defer import CancelledError, Deferred, succeed
from twisted.logger import Logger
from twisted.python.failure import Failure

from txconnpool.errors import ConnectionLostError
from txconnpool.memcache import _validate as _v
from txconnpool.memcache._requests import KeyedGather
from txconnpool.memcache.errors import ServerError
from txconnpool.memcache.meta._batches import GetBatch, QuietGets
from txconnpool.memcache.meta._quiet import MAX_QUIET, QuietRun
from txconnpool.memcache.meta._replies import DONE, MetaRequest, Mismatch, TooLarge
from txconnpool.memcache.meta._requests import StatusRequest
from txconnpool.memcache.meta._wireState import WireState

_log = Logger()

MAX_BATCH = 1024
"""Most gets gathered into one batch; a full batch is sent at once."""

_RELEASE_REPLIES = {b"HD": True, b"NF": False, b"EX": False}


class MetaWire(WireState):
    """
    Requests in flight and the replies that answer them, for a memcached connection speaking
    the meta protocol: each reply is handed to the request at the head of the queue.
    """

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
        except TooLarge as e:
            self._tooLarge(str(e))
            return
        except Mismatch as e:
            error = _v.errorForReply(req.command, line)
            if error is None:
                self._protocolError(f"reply {_v.show(line)} to {req.command} {e}")
                return
            try:
                outcome = req.feedError(error, line)
            except Mismatch as e:
                self._protocolError(f"reply {_v.show(line)} to {req.command} {e}")
                return
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
                self._tooLarge(
                    f"{_v.show(line)} announces {outcome} bytes, more than maxValueSize "
                    f"({self.maxValueSize})"
                )
                return
            if isinstance(req, QuietGets):
                req.size += outcome
                if req.size > self.maxReplySize:
                    self._tooLarge(
                        f"{_v.show(line)} takes the values of one {req.command} reply past "
                        f"maxReplySize ({self.maxReplySize} bytes)"
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

    # Sending

    def _queue(self, req: MetaRequest) -> None:
        """
        Put a request about to be written at the end of the pending queue, and have the
        timers run.
        """
        self._pending.append(req)
        if self._timeoutCall is None and self.timeOut is not None:
            self._timeoutCall = self.callLater(self.timeOut, self._timedOut)
        if self.requestTimeout is not None:
            self._startDeadline(req)

    def _send(self, req: MetaRequest, data: bytes) -> Deferred[Any]:
        transport = self.transport
        if self._closed or transport is None or getattr(transport, "disconnecting", False):
            return self._notConnected(req.command)
        if self._batch is not None:
            self._flush()
        if self._quiet is not None:
            self._fence()
        d: Deferred[Any] = Deferred(self._cancel)
        req.deferred = d
        self._queue(req)
        transport.write(data)
        return d

    def _sendMany(self, reqs: list[MetaRequest], data: bytes) -> list[Deferred[Any]] | None:
        """
        Send several requests written as one C{data}, each answered in turn.

        @return: their L{Deferred}s, or L{None} when the connection is not open.
        """
        transport = self.transport
        if not self._writable() or transport is None:
            return None
        if self._batch is not None:
            self._flush()
        if self._quiet is not None:
            self._fence()
        ds: list[Deferred[Any]] = []
        for req in reqs:
            d: Deferred[Any] = Deferred(self._cancel)
            req.deferred = d
            ds.append(d)
            self._queue(req)
        transport.write(data)
        return ds

    def _gather(
        self, keys: list[Any], reqs: list[MetaRequest], data: bytes, command: str
    ) -> Deferred[Any]:
        """
        Send several requests written as one C{data}, and gather their results by key.
        """
        ds = self._sendMany(reqs, data)
        if ds is None:
            return self._notConnected(command)
        return KeyedGather(keys, ds).deferred

    def _sendQuiet(
        self,
        commands: Sequence[tuple[str, bytes, Mapping[bytes, object], bytes | None]],
        hasData: bool,
        data: bytes,
        result: object,
    ) -> Deferred[Any]:
        """
        Send commands in quiet mode, written as one C{data}, and fire with C{result} once
        written: nothing waits for their replies. They join the run of quiet commands of
        this reactor turn (see L{txconnpool.memcache.meta._quiet}), which one C{mn} closes at
        the end of the turn, or before anything else is written.

        @param commands: Each command's name, opaque token, possible replies and key (for a
            C{touch}, else L{None}), in the order written.
        @param hasData: Whether a data block follows each command.
        """
        transport = self.transport
        if not self._writable() or transport is None:
            return self._notConnected(commands[0][0] if commands else "noreply command")
        if self._batch is not None:
            self._flush()
        run = self._quiet
        if run is None:
            run = self._quiet = QuietRun()
            run.deferred = Deferred()
            run.deferred.addErrback(_quietRepliesLost)
            self._queue(run)
            self._fenceCall = self.callLater(0, self._fence)
        for command, opaque, replies, key in commands:
            run.add(command, opaque, replies, hasData, key)
        transport.write(data)
        if len(run) >= MAX_QUIET:
            self._fence()
        return succeed(result)

    def _fence(self) -> None:
        """
        Close the run of quiet commands gathered so far with C{mn}.
        """
        run, self._quiet = self._quiet, None
        call, self._fenceCall = self._fenceCall, None
        if call is not None and call.active():
            call.cancel()
        if run is None or not self._writable():
            return
        assert self.transport is not None
        run.fenced = True
        self.transport.write(b"mn\r\n")

    def _batched(self, key: bytes, withCas: bool) -> Deferred[Any]:
        """
        Add a get to the batch of this reactor turn, opening one if needed.
        """
        transport = self.transport
        if self._closed or transport is None or getattr(transport, "disconnecting", False):
            return self._notConnected("gets" if withCas else "get")
        batch = self._batch
        if batch is None:
            if self._quiet is not None:
                self._fence()
            batch = self._batch = GetBatch()
            batch.deferred = Deferred()
            self._queue(batch)
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

def _quietRepliesLost(reason: Failure) -> None:
    """
    The connection ended before the replies to its noreply commands were read: nothing waits
    for them.
    """
    _log.debug(
        "the replies to noreply memcached commands were not read: {error}",
        error=reason.getErrorMessage(),
    )
