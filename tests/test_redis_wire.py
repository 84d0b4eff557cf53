"""
The reading of the RESP2 stream (txconnpool.redis._wire): every reply type, replies split
anywhere across chunks, and a clear ProtocolError, once, for anything a reader cannot trust.
"""

from __future__ import annotations

from typing import Any

import pytest

from txconnpool.errors import ProtocolError
from txconnpool.redis import ResponseError
from txconnpool.redis._wire import RedisWire

STREAM = (
    b"+OK\r\n$3\r\nabc\r\n:-12\r\n*3\r\n$1\r\na\r\n$-1\r\n*2\r\n:1\r\n*0\r\n"
    b"-WRONGTYPE Operation against a key\r\n*-1\r\n$0\r\n\r\n$4\r\n\r\n\r\n\r\n"
)
EXPECTED: list[Any] = [
    "OK", b"abc", -12, [b"a", None, [1, []]], "error", None, b"", b"\r\n\r\n"
]


def wire(**kwargs: Any) -> tuple[RedisWire, list[Any], list[ProtocolError]]:
    replies: list[Any] = []
    errors: list[ProtocolError] = []
    return RedisWire(replies.append, errors.append, **kwargs), replies, errors


def check(replies: list[Any]) -> None:
    assert len(replies) == len(EXPECTED)
    for got, expected in zip(replies, EXPECTED):
        if expected == "error":
            assert isinstance(got, ResponseError)
            assert (got.code, got.serverMessage) == (
                "WRONGTYPE", "WRONGTYPE Operation against a key"
            )
        else:
            assert got == expected


def test_everyReplyTypeInOneChunk() -> None:
    """
    Simple strings, bulk strings (empty, null, holding CRLF), integers, errors and nested,
    empty and null arrays in one chunk are read in order, with their Python types.
    """
    reader, replies, errors = wire()
    reader.feed(STREAM)
    check(replies)
    assert errors == []


@pytest.mark.parametrize("size", [1, 2, 3, 7])
def test_repliesSplitAcrossChunks(size: int) -> None:
    """
    The same stream fed in chunks of any size gives the same replies.
    """
    reader, replies, errors = wire()
    for i in range(0, len(STREAM), size):
        reader.feed(STREAM[i : i + size])
    check(replies)
    assert errors == []


def test_errorTextThatIsNotUtf8() -> None:
    """
    An error reply echoing bytes that are not UTF-8 is read, with the bytes escaped.
    """
    reader, replies, _errors = wire()
    reader.feed(b"-ERR unknown command '\xff\xfe'\r\n")
    assert replies[0].serverMessage == "ERR unknown command '\\xff\\xfe'"
    assert replies[0].code == "ERR"


@pytest.mark.parametrize(
    "data, message",
    [
        (b"%2\r\n", "unknown reply type b'%'"),
        (b"\r\n", "unknown reply type"),
        (b"$abc\r\n", "bad bulk string length"),
        (b"$-2\r\n", "bad bulk string length"),
        (b"*x\r\n", "bad array length"),
        (b":1.5\r\n", "bad integer"),
        (b"$3\r\nabcd\r\n", "does not end with CRLF"),
    ],
)
def test_unreadableStream(data: bytes, message: str) -> None:
    """
    A reply that cannot be read reports one ProtocolError naming the problem, and nothing
    after it is read.
    """
    reader, replies, errors = wire()
    reader.feed(data + b"+OK\r\n")
    reader.feed(b"+OK\r\n")
    assert replies == []
    assert len(errors) == 1
    assert message in str(errors[0])
    assert reader.broken


def test_lineLongerThanTheBound() -> None:
    """
    A line growing past maxLineLength without its CRLF is refused before it is complete,
    even when it arrives a byte at a time.
    """
    reader, _replies, errors = wire(maxLineLength=100)
    reader.feed(b"+")
    for _ in range(100):
        reader.feed(b"x")
    assert len(errors) == 1
    assert "longer than 100 bytes" in str(errors[0])


def test_replyLongerThanTheBound() -> None:
    """
    A bulk string or an array announcing more than maxReplyLength bytes is refused at its
    header, before its body arrives.
    """
    reader, _, errors = wire(maxReplyLength=1000)
    reader.feed(b"$2000\r\n")
    assert "longer than 1000 bytes" in str(errors[0])
    reader, _, errors = wire(maxReplyLength=1000)
    reader.feed(b"*2\r\n$500\r\n" + b"x" * 500 + b"\r\n$500\r\n")
    assert "longer than 1000 bytes" in str(errors[0])


def test_largeBulkStringInManyChunks() -> None:
    """
    A bulk string of a megabyte fed in 1 KiB chunks is read once complete.
    """
    reader, replies, _ = wire()
    body = bytes(range(256)) * 4096
    data = b"$%d\r\n" % (len(body),) + body + b"\r\n:7\r\n"
    for i in range(0, len(data), 1024):
        reader.feed(data[i : i + 1024])
    assert replies == [body, 7]


def test_encode() -> None:
    """
    A command is encoded as a RESP array of bulk strings.
    """
    reader, _, _ = wire()
    assert reader.encode([b"SET", b"k", b""]) == b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$0\r\n\r\n"
