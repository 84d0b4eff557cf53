"""
However a stream of memcached replies is split into chunks, L{MemCacheProtocol} gives the same
results, in the same order, and fires each request as soon as the last byte of its reply
arrives.

Each test runs a pipeline of mixed commands (get hit and miss, gets, getMultiple, set, delete,
incr, stats, version, touch, and replies that fail one request but keep the connection) and
feeds the concatenated replies in pieces: at every single-byte boundary, one byte at a time,
and at split points chosen by hypothesis.
"""

from __future__ import annotations

from collections.abc import Callable
from itertools import pairwise
from typing import Any

import attrs
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure

from txconnpool.memcache.errors import ClientError, ServerError
from txconnpool.memcache.protocol import MemCacheProtocol

Call = Callable[[MemCacheProtocol], Any]


@attrs.frozen
class Exchange:
    """
    One request, the reply memcached sends to it, and the outcome it must have.
    """

    call: Call
    reply: bytes
    outcome: object


@attrs.frozen
class Run:
    """
    What a pipeline produced: the outcomes in the order they fired, the requests fired after
    each chunk, whether the connection was dropped, and the delayed calls left.
    """

    fired: list[tuple[int, object]]
    firedAfterChunk: list[int]
    dropped: bool
    delayedCalls: int


def outcomeOf(result: object) -> object:
    """
    Return a comparable form of a Deferred's result: the value, or the type and text of its
    exception.
    """
    if isinstance(result, Failure):
        result = result.value
    if isinstance(result, BaseException):
        return (type(result), str(result))
    return result


def run(exchanges: list[Exchange], chunks: list[bytes]) -> Run:
    """
    Send every request of C{exchanges} on a fresh protocol, feed it C{chunks}, and report.
    """
    clock = Clock()
    proto = MemCacheProtocol(clock=clock, timeOut=30)
    transport = StringTransport()
    proto.makeConnection(transport)  # type: ignore[no-untyped-call]
    fired: list[tuple[int, object]] = []
    for index, exchange in enumerate(exchanges):
        d = exchange.call(proto)
        d.addBoth(lambda result, index=index: fired.append((index, outcomeOf(result))))
    assert fired == []
    firedAfterChunk = []
    for chunk in chunks:
        proto.dataReceived(chunk)
        firedAfterChunk.append(len(fired))
    return Run(fired, firedAfterChunk, transport.disconnecting, len(clock.getDelayedCalls()))


def stream(exchanges: list[Exchange]) -> bytes:
    """
    Return every reply of C{exchanges}, concatenated.
    """
    return b"".join(e.reply for e in exchanges)


def replyEnds(exchanges: list[Exchange]) -> list[int]:
    """
    Return the offset in the stream just past each exchange's reply.
    """
    ends = []
    offset = 0
    for e in exchanges:
        offset += len(e.reply)
        ends.append(offset)
    return ends


def splitAt(data: bytes, points: list[int]) -> list[bytes]:
    """
    Split C{data} at the given offsets (each strictly inside it), dropping nothing.
    """
    bounds = [0, *sorted(set(points)), len(data)]
    return [data[a:b] for a, b in pairwise(bounds)]


def expected(exchanges: list[Exchange]) -> list[tuple[int, object]]:
    """
    Return the outcomes C{exchanges} must fire with, in order.
    """
    return [(i, outcomeOf(e.outcome)) for i, e in enumerate(exchanges)]


def assertSameAsWhole(exchanges: list[Exchange], chunks: list[bytes]) -> None:
    """
    Assert that feeding C{chunks} gives the expected outcomes in order, fires each request
    exactly when the chunk completing its reply arrives, and leaves the connection up with no
    timer.
    """
    result = run(exchanges, chunks)
    assert result.fired == expected(exchanges)
    ends = replyEnds(exchanges)
    received = 0
    for chunk, firedCount in zip(chunks, result.firedAfterChunk):
        received += len(chunk)
        assert firedCount == sum(1 for end in ends if end <= received)
    assert not result.dropped
    assert result.delayedCalls == 0


def wire(key: bytes | str) -> bytes:
    """
    Return C{key} as the protocol sends it.
    """
    return key.encode() if isinstance(key, str) else key


def valueBlock(key: bytes | str, flags: int, value: bytes, cas: int | None = None) -> bytes:
    """
    Return a VALUE line and its data block, with a CAS token when C{cas} is given.
    """
    casField = b"" if cas is None else b" %d" % (cas,)
    return b"VALUE %s %d %d%s\r\n%s\r\n" % (wire(key), flags, len(value), casField, value)


BIG = (b"0123456789\r\nEND\r\nVALUE big 0 3\r\n" * 100)[:3000]

PIPELINE = [
    Exchange(
        lambda p: p.get(b"hit"),
        valueBlock(b"hit", 5, b"ab\r\nEND\r\nc") + b"END\r\n",
        (5, b"ab\r\nEND\r\nc"),
    ),
    Exchange(lambda p: p.get(b"miss"), b"END\r\n", (0, None)),
    Exchange(
        lambda p: p.get("gets-\u00e9", True),
        valueBlock("gets-\u00e9", 2**32 - 1, b"", 2**64 - 1) + b"END\r\n",
        (4294967295, b"18446744073709551615", b""),
    ),
    Exchange(
        lambda p: p.getMultiple([b"a", b"missing", b"big", b"c"]),
        valueBlock(b"a", 1, b"\r\n")
        + valueBlock(b"big", 0, BIG)
        + valueBlock(b"c", 3, b"END")
        + b"END\r\n",
        {b"a": (1, b"\r\n"), b"missing": (0, None), b"big": (0, BIG), b"c": (3, b"END")},
    ),
    Exchange(lambda p: p.set(b"k", b"v\r\nSTORED"), b"STORED\r\n", True),
    Exchange(lambda p: p.add(b"k", b"v"), b"NOT_STORED\r\n", False),
    Exchange(lambda p: p.delete(b"k"), b"DELETED\r\n", True),
    Exchange(lambda p: p.delete(b"k"), b"NOT_FOUND\r\n", False),
    Exchange(lambda p: p.increment(b"n", 2), b"18446744073709551615\r\n", 2**64 - 1),
    Exchange(lambda p: p.increment(b"gone"), b"NOT_FOUND\r\n", False),
    Exchange(
        lambda p: p.increment(b"text"),
        b"CLIENT_ERROR cannot increment or decrement non-numeric value\r\n",
        ClientError("incr", "cannot increment or decrement non-numeric value"),
    ),
    Exchange(
        lambda p: p.stats(),
        b"STAT pid 42\r\nSTAT version 1.6.18\r\nSTAT empty \r\nEND\r\n",
        {b"pid": b"42", b"version": b"1.6.18", b"empty": b""},
    ),
    Exchange(lambda p: p.version(), b"VERSION 1.6.18\r\n", b"1.6.18"),
    Exchange(lambda p: p.touch(b"k", 10), b"TOUCHED\r\n", True),
    Exchange(lambda p: p.touch(b"gone", 10), b"NOT_FOUND\r\n", False),
    Exchange(
        lambda p: p.get(b"huge"),
        b"SERVER_ERROR out of memory writing get response\r\n",
        ServerError("get", "out of memory writing get response"),
    ),
    Exchange(lambda p: p.checkAndSet(b"k", b"v", 12), b"EXISTS\r\n", False),
    Exchange(lambda p: p.get(b"last"), valueBlock(b"last", 0, b"\r") + b"END\r\n", (0, b"\r")),
]
STREAM = stream(PIPELINE)


def test_pipelineInOnePiece() -> None:
    """
    The whole reply stream in one piece gives each request its own outcome, in order.
    """
    assertSameAsWhole(PIPELINE, [STREAM])


def test_everySingleByteBoundary() -> None:
    """
    Splitting the reply stream in two at any byte boundary gives the same outcomes, and the
    requests whose replies are complete in the first piece fire before the second arrives.
    """
    for point in range(1, len(STREAM)):
        assertSameAsWhole(PIPELINE, splitAt(STREAM, [point]))


def test_oneByteAtATime() -> None:
    """
    The reply stream fed one byte at a time gives the same outcomes, each as its last byte
    arrives.
    """
    assertSameAsWhole(PIPELINE, [STREAM[i : i + 1] for i in range(len(STREAM))])


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(1, len(STREAM) - 1), max_size=40))
def test_anySplitOfThePipeline(points: list[int]) -> None:
    """
    The reply stream split at any set of points gives the same outcomes, in the same order.
    """
    assertSameAsWhole(PIPELINE, splitAt(STREAM, points))


# Pipelines drawn by hypothesis, with values that look like replies.

VALUES = st.one_of(
    st.binary(max_size=30),
    st.sampled_from(
        [b"", b"\r\n", b"END", b"END\r\n", b"\r\nEND\r\n", b"STORED\r\n", b"VALUE k 0 1\r\n"]
    ),
    st.integers(2040, 2060).map(lambda n: (b"x\r\n" * n)[:n]),
)
KEYS: st.SearchStrategy[bytes | str] = st.sampled_from([b"a", b"bb", b"k" * 250, "cl\u00e9"])


@st.composite
def exchanges(draw: st.DrawFn) -> Exchange:
    """
    Draw one of the pipeline's kinds of request with a reply that keeps the connection.
    """
    kind = draw(
        st.sampled_from(
            ["get", "gets", "multi", "set", "delete", "incr", "stats", "version", "touch"]
        )
    )
    key = draw(KEYS)
    flags = draw(st.integers(0, 2**32 - 1))
    value = draw(VALUES)
    if kind in ("get", "gets"):
        cas = draw(st.integers(0, 2**64 - 1)) if kind == "gets" else None
        withCas = cas is not None
        if draw(st.booleans()):
            if cas is None:
                outcome: object = (flags, value)
            else:
                outcome = (flags, b"%d" % (cas,), value)
            return Exchange(
                lambda p: p.get(key, withCas),
                valueBlock(key, flags, value, cas) + b"END\r\n",
                outcome,
            )
        return Exchange(
            lambda p: p.get(key, withCas), b"END\r\n", (0, b"", None) if withCas else (0, None)
        )
    if kind == "multi":
        keys = draw(st.lists(KEYS, min_size=1, max_size=4, unique=True))
        present = draw(st.lists(st.sampled_from(keys), unique=True))
        values = {k: (draw(st.integers(0, 9)), draw(VALUES)) for k in present}
        reply = b"".join(valueBlock(k, f, v) for k, (f, v) in values.items()) + b"END\r\n"
        result = {k: values.get(k, (0, None)) for k in keys}
        return Exchange(lambda p: p.getMultiple(keys), reply, result)
    if kind == "set":
        stored = draw(st.booleans())
        reply = b"STORED\r\n" if stored else b"NOT_STORED\r\n"
        return Exchange(lambda p: p.set(key, value, flags), reply, stored)
    if kind == "delete":
        deleted = draw(st.booleans())
        reply = b"DELETED\r\n" if deleted else b"NOT_FOUND\r\n"
        return Exchange(lambda p: p.delete(key), reply, deleted)
    if kind == "incr":
        number = draw(st.integers(0, 2**64 - 1) | st.none())
        if number is None:
            return Exchange(lambda p: p.increment(key), b"NOT_FOUND\r\n", False)
        return Exchange(lambda p: p.increment(key), b"%d\r\n" % (number,), number)
    if kind == "stats":
        stats = draw(
            st.dictionaries(
                st.binary(min_size=1, max_size=8).filter(lambda b: not set(b) & set(b" \r\n")),
                st.binary(max_size=12).filter(lambda b: b"\r\n" not in b),
                max_size=4,
            )
        )
        reply = b"".join(b"STAT %s %s\r\n" % item for item in stats.items()) + b"END\r\n"
        return Exchange(lambda p: p.stats(), reply, stats)
    if kind == "version":
        return Exchange(lambda p: p.version(), b"VERSION 1.6.18\r\n", b"1.6.18")
    touched = draw(st.booleans())
    reply = b"TOUCHED\r\n" if touched else b"NOT_FOUND\r\n"
    return Exchange(lambda p: p.touch(key, 60), reply, touched)


@settings(max_examples=200, deadline=None)
@given(st.lists(exchanges(), min_size=1, max_size=10), st.data())
def test_anyPipelineAnySplit(pipeline: list[Exchange], data: st.DataObject) -> None:
    """
    Any pipeline of the mixed commands gives its expected outcomes, in order, whether its
    reply stream arrives whole or split at any points.
    """
    whole = stream(pipeline)
    assertSameAsWhole(pipeline, [whole])
    if len(whole) > 1:
        points = data.draw(st.lists(st.integers(1, len(whole) - 1), max_size=30))
        assertSameAsWhole(pipeline, splitAt(whole, points))
