"""
The Redis wire format (RESP2), over txredisapi: txredisapi's protocol class encodes the
commands and assembles the arrays of a reply, and L{RedisWire} reads the stream into them.

L{RedisWire} replaces txredisapi's own reading of the stream, which a pool must not inherit:
it decodes every line as strict UTF-8 (an error reply echoing bytes that are not raises in
the middle of C{dataReceived}), defers the rest of the data after each bulk string to a later
turn of the global reactor while pausing the transport (so a pipelined batch of replies takes
one reactor turn per reply, and a test clock never sees them), silently skips the reply types
it does not know (RESP3), reports a bad length as a reply value and reads on out of step, and
bounds nothing but lines. L{RedisWire} reads every reply of a chunk at once, checks each
header, and bounds lines and whole replies; on anything else it stops and reports a
L{ProtocolError}.

L{RedisWire} is never connected to a transport: L{RedisProtocol
<txconnpool.redis.protocol.RedisProtocol>} feeds it bytes and is handed the replies.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import txredisapi  # type: ignore[import-untyped]

from ..errors import ProtocolError
from ._replies import Reply
from .errors import ResponseError

MAX_LINE_LENGTH = 1024 * 1024
"""
The longest simple string, error or header line read (1 MiB).
"""

MAX_REPLY_LENGTH = 512 * 1024 * 1024 + 1024
"""
The most bytes one reply may take on the wire: Redis's largest string (512 MiB) and a little.
"""


def _count(data: bytes, start: int, end: int) -> int | None:
    """
    Read the decimal integer of a header line, or L{None} if it is not one.
    """
    digits = data[start:end]
    if digits[:1] == b"-":
        body = digits[1:]
    else:
        body = digits
    if not body.isdigit() or len(body) > 20:
        return None
    return int(digits)


class RedisWire(txredisapi.BaseRedisProtocol):  # type: ignore[misc]
    """
    Reads replies from the bytes it is fed and encodes commands.

    @ivar broken: Whether the stream could not be read; nothing more is read then.
    """

    multi_bulk: Any

    def __init__(
        self,
        deliver: Callable[[Reply], None],
        failed: Callable[[ProtocolError], None],
        maxLineLength: int = MAX_LINE_LENGTH,
        maxReplyLength: int = MAX_REPLY_LENGTH,
    ) -> None:
        """
        @param deliver: Called with each complete reply, in order.
        @param failed: Called once, with the reason, when the stream cannot be read.
        @param maxLineLength: The longest line accepted, in bytes.
        @param maxReplyLength: The most bytes a reply may take.
        """
        txredisapi.BaseRedisProtocol.__init__(self, charset=None, convertNumbers=False)
        self._deliver = deliver
        self._failed = failed
        self._maxLine = maxLineLength
        self._maxReply = maxReplyLength
        self._rest: list[bytes] = []
        self._restLength = 0
        self._bulk = 0
        self._size = 0
        self.broken = False

    def encode(self, args: Sequence[bytes]) -> bytes:
        """
        @return: The command made of C{args}, as sent on the wire.
        """
        command: bytes = self._build_command(*args)
        return command

    def feed(self, data: bytes) -> None:
        """
        Read the replies in C{data}, after those in the bytes fed before.
        """
        if self.broken:
            return
        if self._rest:
            self._rest.append(data)
            self._restLength += len(data)
            if self._bulk:
                if self._restLength < self._bulk:
                    return
            elif b"\n" not in data:
                if self._restLength > self._maxLine:
                    self._error(f"a reply line is longer than {self._maxLine} bytes")
                return
            data = b"".join(self._rest)
            self._rest = []
            self._restLength = 0
        pos = 0
        end = len(data)
        while pos < end:
            if self._bulk:
                need = self._bulk
                if end - pos < need:
                    break
                stop = pos + need - 2
                if data[stop : stop + 2] != b"\r\n":
                    self._error("a bulk string does not end with CRLF")
                    return
                body = data[pos:stop]
                pos = stop + 2
                self._bulk = 0
                self.bulkDataReceived(body)
            else:
                eol = data.find(b"\r\n", pos)
                if eol < 0:
                    if end - pos > self._maxLine:
                        self._error(f"a reply line is longer than {self._maxLine} bytes")
                        return
                    break
                self._size += eol + 2 - pos
                self._header(data, pos, eol)
                pos = eol + 2
            if self.broken:
                return
        if pos < end:
            self._rest = [data[pos:]]
            self._restLength = end - pos

    def _header(self, data: bytes, pos: int, eol: int) -> None:
        """
        Read one line: a whole simple string, error or integer, or the header of a bulk
        string or an array.
        """
        token = data[pos]
        if token == 36:  # $ bulk string
            length = _count(data, pos + 1, eol)
            if length is None or length < -1:
                self._error(f"bad bulk string length {data[pos:eol]!r:.60}")
            elif length == -1:
                self.bulkDataReceived(None)
            elif self._size + length + 2 > self._maxReply:
                self._error(f"a reply is longer than {self._maxReply} bytes")
            else:
                self._bulk = length + 2
                self._size += length + 2
        elif token == 43:  # + simple string
            self._element(data[pos + 1 : eol].decode("utf-8", "backslashreplace"))
        elif token == 58:  # : integer
            value = _count(data, pos + 1, eol)
            if value is None:
                self._error(f"bad integer {data[pos:eol]!r:.60}")
            else:
                self._element(value)
        elif token == 45:  # - error
            self._element(ResponseError(data[pos + 1 : eol].decode("utf-8", "backslashreplace")))
        elif token == 42:  # * array
            count = _count(data, pos + 1, eol)
            if count is None or count < -1:
                self._error(f"bad array length {data[pos:eol]!r:.60}")
            elif self._size + 3 * count > self._maxReply:
                self._error(f"a reply is longer than {self._maxReply} bytes")
            else:
                self.multi_bulk = self.multi_bulk.set_pending(count)
                if count in (0, -1):
                    self.multiBulkDataReceived()
        else:
            self._error(f"unknown reply type {data[pos : pos + 1]!r} in {data[pos:eol]!r:.60}")

    def _element(self, value: Any) -> None:
        """
        A value read: an element of the array being read, or a reply of its own.
        """
        if self.multi_bulk.pending:
            self.handleMultiBulkElement(value)
        else:
            self.replyReceived(value)

    def replyReceived(self, reply: Any) -> None:
        """
        Hand a complete reply on (called by txredisapi's array assembly too).
        """
        self._size = 0
        self._deliver(reply)

    def _error(self, message: str) -> None:
        self.broken = True
        self._rest = []
        self._failed(ProtocolError(f"cannot read the reply of Redis: {message}"))
