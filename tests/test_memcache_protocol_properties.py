"""
Property tests for L{txconnpool.memcache.protocol.MemCacheProtocol}: replies reach the right
request however the bytes are split, every Deferred fires exactly once whatever the server
sends, and only keys memcached can carry are ever written.
"""

from __future__ import annotations

import unicodedata
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionDone
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure

from txconnpool.errors import ConnectionLostError, ProtocolError
from txconnpool.memcache.errors import (
    ClientError,
    InvalidRequestError,
    ServerError,
    UnknownCommandError,
)
from txconnpool.memcache.protocol import MemCacheProtocol

KEYS: st.SearchStrategy[bytes | str] = st.sampled_from([b"a", b"bb", "c\u00e9", b"d" * 250])
VALUES = st.binary(max_size=40) | st.sampled_from([b"\r\n", b"END\r\n", b"VALUE a 0 1\r\n"])
SERVER_ERRORS = st.sampled_from([b"SERVER_ERROR out of memory", b"SERVER_ERROR"])


def wire(key: bytes | str) -> bytes:
    """
    Return C{key} as sent on the wire.
    """
    return key.encode() if isinstance(key, str) else key


def valueBlock(key: bytes | str, flags: int, value: bytes, cas: int | None) -> bytes:
    """
    Return a C{VALUE} line and data block as memcached sends them.
    """
    casPart = b"" if cas is None else b" %d" % (cas,)
    return b"VALUE %s %d %d%s\r\n%s\r\n" % (wire(key), flags, len(value), casPart, value)


@st.composite
def exchanges(draw: st.DrawFn) -> tuple[Any, bytes, Any]:
    """
    Draw one request (a function of the protocol), a legal server reply to it, and the
    outcome the request must have: a result, or an exception type.
    """
    outcome: Any
    kind = draw(st.sampled_from(["store", "cas", "get", "gets", "multi", "incr", "misc"]))
    key = draw(KEYS)
    if kind == "store":
        method = draw(st.sampled_from(["set", "add", "replace", "append", "prepend"]))
        value = draw(VALUES)
        reply, outcome = draw(
            st.sampled_from(
                [(b"STORED", True), (b"NOT_STORED", False), (b"SERVER_ERROR x", ServerError)]
            )
        )
        return (lambda p: getattr(p, method)(key, value)), reply + b"\r\n", outcome
    if kind == "cas":
        reply, outcome = draw(
            st.sampled_from([(b"STORED", True), (b"EXISTS", False), (b"NOT_FOUND", False)])
        )
        token = draw(st.integers(0, 2**64 - 1))
        return (lambda p: p.checkAndSet(key, b"v", token)), reply + b"\r\n", outcome
    if kind in ("get", "gets"):
        withCas = kind == "gets"
        if draw(st.booleans()):
            flags = draw(st.integers(0, 2**32 - 1))
            value = draw(VALUES)
            cas = draw(st.integers(0, 2**64 - 1))
            reply = valueBlock(key, flags, value, cas if withCas else None) + b"END\r\n"
            outcome = (flags, b"%d" % (cas,), value) if withCas else (flags, value)
        elif draw(st.booleans()):
            reply = b"END\r\n"
            outcome = (0, b"", None) if withCas else (0, None)
        else:
            reply = draw(SERVER_ERRORS) + b"\r\n"
            outcome = ServerError
        return (lambda p: p.get(key, withCas)), reply, outcome
    if kind == "multi":
        keys = draw(st.lists(KEYS, min_size=1, max_size=4))
        unique = list(dict.fromkeys(wire(k) for k in keys))
        present = draw(st.lists(st.sampled_from(unique), unique=True))
        blocks = {k: (draw(st.integers(0, 9)), draw(VALUES)) for k in present}
        reply = b"".join(valueBlock(k, f, v, None) for k, (f, v) in blocks.items()) + b"END\r\n"
        outcome = {k: (blocks[wire(k)] if wire(k) in blocks else (0, None)) for k in keys}
        return (lambda p: p.getMultiple(keys)), reply, outcome
    if kind == "incr":
        reply, outcome = draw(
            st.sampled_from(
                [
                    (b"7", 7),
                    (b"18446744073709551615", 2**64 - 1),
                    (b"NOT_FOUND", False),
                    (b"CLIENT_ERROR non-numeric", ClientError),
                    (b"ERROR", UnknownCommandError),
                ]
            )
        )
        return (lambda p: p.increment(key, 3)), reply + b"\r\n", outcome
    choice = draw(st.integers(0, 4))
    if choice == 0:
        return (lambda p: p.delete(key)), b"DELETED\r\n", True
    if choice == 1:
        return (lambda p: p.touch(key, 5)), b"NOT_FOUND\r\n", False
    if choice == 2:
        return (lambda p: p.version()), b"VERSION 1.6.x\r\n", b"1.6.x"
    if choice == 3:
        return (lambda p: p.stats()), b"STAT a 1\r\nSTAT b\r\nEND\r\n", {b"a": b"1", b"b": b""}
    return (lambda p: p.flushAll()), b"OK\r\n", True


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    """
    Split C{data} at the given offsets.
    """
    points = sorted({c % (len(data) + 1) for c in cuts})
    pieces = []
    start = 0
    for point in [*points, len(data)]:
        pieces.append(data[start:point])
        start = point
    return [p for p in pieces if p]


def connect() -> tuple[MemCacheProtocol, StringTransport, Clock]:
    """
    Return a protocol connected to a L{StringTransport}, with a L{Clock}.
    """
    clock = Clock()
    proto = MemCacheProtocol(clock=clock, timeOut=10)
    transport = StringTransport()
    proto.makeConnection(transport)  # type: ignore[no-untyped-call]
    return proto, transport, clock


def track(d: Deferred[Any]) -> list[Any]:
    """
    Return a list that receives every outcome of C{d} (result or Failure).
    """
    box: list[Any] = []

    def record(result: Any) -> None:
        box.append(result)

    d.addBoth(record)
    return box


@settings(max_examples=300, deadline=None)
@given(st.lists(exchanges(), min_size=1, max_size=12), st.lists(st.integers(0, 10**6)))
def test_repliesReachTheirRequests(exchangeList: list[Any], cuts: list[int]) -> None:
    """
    Pipelined requests each get the outcome of their own reply, exactly once, however the
    replies are split, and the connection stays up with no timer left.
    """
    proto, transport, clock = connect()
    boxes = [track(request(proto)) for request, _, _ in exchangeList]
    for piece in split(b"".join(reply for _, reply, _ in exchangeList), cuts):
        proto.dataReceived(piece)
    for box, (_, _, outcome) in zip(boxes, exchangeList):
        assert len(box) == 1
        if isinstance(outcome, type):
            assert isinstance(box[0], Failure) and box[0].check(outcome)
        else:
            assert box[0] == outcome
    assert not transport.disconnecting
    assert clock.getDelayedCalls() == []


GARBAGE_TOKENS = st.sampled_from(
    [
        b"STORED\r\n",
        b"END\r\n",
        b"VALUE a 0 1\r\nx\r\n",
        b"VALUE a 0 -5\r\n",
        b"VALUE bb 0 3 9\r\nabc\r\n",
        b"VALUE a 0 99999999999\r\n",
        b"ERROR\r\n",
        b"CLIENT_ERROR x\r\n",
        b"SERVER_ERROR y\r\n",
        b"12\r\n",
        b"STAT a b\r\n",
        b"VERSION 1\r\n",
        b"\r\n",
        b"\r",
        b"\n",
        b"x" * 3000,
    ]
)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(exchanges(), min_size=0, max_size=6),
    st.lists(GARBAGE_TOKENS | st.binary(max_size=20), max_size=20),
    st.lists(st.integers(0, 10**6)),
    st.booleans(),
)
def test_everyDeferredFiresOnceWhateverTheServerSends(
    exchangeList: list[Any], tokens: list[bytes], cuts: list[int], timeOut: bool
) -> None:
    """
    Whatever bytes arrive, no exception escapes, nothing fires twice, a dropped connection
    has no request left pending, and after the connection ends every request has fired.
    """
    proto, transport, clock = connect()
    boxes = [track(request(proto)) for request, _, _ in exchangeList]
    for piece in split(b"".join(tokens), cuts):
        proto.dataReceived(piece)
        assert all(len(box) <= 1 for box in boxes)
    if transport.disconnecting:
        assert all(len(box) == 1 for box in boxes)
        assert clock.getDelayedCalls() == []
    if timeOut:
        clock.advance(10)
    proto.connectionLost(Failure(ConnectionDone()))
    assert all(len(box) == 1 for box in boxes)
    assert clock.getDelayedCalls() == []
    for box in boxes:
        if isinstance(box[0], Failure) and box[0].check(ProtocolError):
            assert transport.disconnecting


BAD_BYTES = set(range(0x21)) | {0x7F}


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=260) | st.text(max_size=130).map(lambda t: t.encode()))
def test_onlyValidKeysAreWritten(key: bytes) -> None:
    """
    A key is sent iff it is 1 to 250 bytes without whitespace or control bytes, and then it
    is sent as a single token; otherwise nothing is written.
    """
    proto, transport, _ = connect()
    box = track(proto.set(key, b"v", 1, 2))
    valid = 1 <= len(key) <= 250 and not BAD_BYTES.intersection(key)
    if valid:
        assert transport.value() == b"set %s 1 2 1\r\nv\r\n" % (key,)
        assert box == []
    else:
        assert transport.value() == b""
        assert len(box) == 1 and box[0].check(InvalidRequestError)


@settings(max_examples=200, deadline=None)
@given(st.text(min_size=1, max_size=100) | st.just("\ud800x"))
def test_strKeysRoundTrip(key: str) -> None:
    """
    A valid str key is sent as UTF-8 and getMultiple returns it as the same str; one with
    Unicode whitespace or a control character is refused.
    """
    try:
        encoded: bytes | None = key.encode("utf-8")
    except UnicodeEncodeError:
        encoded = None
    proto, transport, _ = connect()
    box = track(proto.getMultiple([key]))
    unicodeSpaceOrControl = any(c.isspace() or unicodedata.category(c) == "Cc" for c in key)
    if (
        encoded is None
        or len(encoded) > 250
        or BAD_BYTES.intersection(encoded)
        or unicodeSpaceOrControl
    ):
        assert transport.value() == b""
        assert box[0].check(InvalidRequestError)
        return
    assert transport.value() == b"get %s\r\n" % (encoded,)
    proto.dataReceived(valueBlock(key, 0, b"v", None) + b"END\r\n")
    assert box == [{key: (0, b"v")}]


def test_requestsAfterDropFailImmediately() -> None:
    """
    After a desync, a new request fails at once with ConnectionLostError (sanity check of
    the property tests' assumptions).
    """
    proto, transport, _ = connect()
    box = track(proto.get(b"a"))
    proto.dataReceived(b"nonsense\r\n")
    assert box[0].check(ProtocolError)
    assert transport.disconnecting
    assert track(proto.get(b"a"))[0].check(ConnectionLostError)
