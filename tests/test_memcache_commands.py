"""
Unit tests of the newer commands and options of L{MemCacheProtocol}: noreply, keyPrefix,
getAndTouch, setMultiple, deleteMultiple, flushAll with a delay, every kind of stats reply,
the reply size limits and Unicode key checks; driven with a L{StringTransport} and a
L{Clock}.
"""

from __future__ import annotations

from typing import Any

import pytest
from twisted.internet.defer import CancelledError
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from txconnpool.errors import ConnectionLostError, ProtocolError, RequestTimeoutError
from txconnpool.memcache.errors import (
    InvalidArgumentError,
    InvalidKeyError,
    InvalidTypeError,
    ReplyTooLargeError,
    ServerError,
)
from txconnpool.memcache.protocol import (
    DEFAULT_MAX_REPLY_SIZE,
    DEFAULT_MAX_STATS_SIZE,
    MemCacheProtocol,
)

from .helpers import assertNoResult, failureOf, resultOf


def connect(**kwargs: Any) -> tuple[MemCacheProtocol, StringTransport, Clock]:
    """
    Return a protocol connected to a fresh L{StringTransport}, with a L{Clock}.
    """
    clock = Clock()
    proto = MemCacheProtocol(clock=clock, **kwargs)
    transport = StringTransport()
    proto.makeConnection(transport)  # type: ignore[no-untyped-call]
    return proto, transport, clock


def sent(transport: StringTransport) -> bytes:
    """
    Return what was written since the last call, and forget it.
    """
    value = transport.value()
    transport.clear()
    return value


# A reply may only answer a request already written


def test_batchedGetIsNotAnsweredBeforeItIsWritten() -> None:
    """
    A reply chunk that answers a set and then ends a get reply, received while the batched
    get is not written yet, is a protocol error: the get fails instead of firing with a miss,
    and it is never written.
    """
    proto, transport, clock = connect(batchGets=True)
    stored = proto.set(b"k", b"v")
    batched = proto.get(b"k")
    assert sent(transport) == b"set k 0 0 1\r\nv\r\n"
    proto.dataReceived(b"STORED\r\nEND\r\n")
    assert resultOf(stored) is True
    failureOf(batched, ProtocolError)
    assert transport.disconnecting
    clock.advance(0)
    assert sent(transport) == b""
    assert clock.getDelayedCalls() == []


def test_batchedGetIsAnsweredOnceWritten() -> None:
    """
    The same bytes received after the batch was written answer it.
    """
    proto, transport, clock = connect(batchGets=True)
    stored = proto.set(b"k", b"v")
    batched = proto.get(b"k")
    clock.advance(0)
    assert sent(transport) == b"set k 0 0 1\r\nv\r\nget k\r\n"
    proto.dataReceived(b"STORED\r\nEND\r\n")
    assert resultOf(stored) is True
    assert resultOf(batched) == (0, None)


def test_onlyTheBatchWaitsForLaterBytes() -> None:
    """
    A chunk that answers the requests written and stops there leaves the unwritten batch
    waiting; it is written at the end of the turn and answered by the next chunk.
    """
    proto, transport, clock = connect(batchGets=True)
    version = proto.version()
    batched = proto.get(b"k")
    proto.dataReceived(b"VERSION 1.6.18\r\n")
    assert resultOf(version) == b"1.6.18"
    assertNoResult(batched)
    clock.advance(0)
    assert sent(transport) == b"version\r\nget k\r\n"
    proto.dataReceived(b"VALUE k 0 1\r\nx\r\nEND\r\n")
    assert resultOf(batched) == (0, b"x")


# Unicode keys


@pytest.mark.parametrize(
    "key", ["a\x85b", "a\xa0b", "a\u3000b", "a\u2028b", "a\u2029b", "a\x9fb", "\u1680", "a\u200ab"]
)
def test_unicodeWhitespaceAndControlCharactersRefused(key: str) -> None:
    """
    A str key with any Unicode whitespace or control character is refused and writes
    nothing.
    """
    proto, transport, _ = connect()
    for d in (proto.get(key), proto.set(key, b"v"), proto.delete(key), proto.getMultiple([key])):
        error = failureOf(d, InvalidKeyError).value
        assert "whitespace or control characters" in str(error)
    assert transport.value() == b""


def test_otherNonAsciiKeysAccepted() -> None:
    """
    Non-ASCII str keys without whitespace or control characters are sent as UTF-8.
    """
    proto, transport, _ = connect()
    proto.get("caf\u00e9\u200d\U0001f600")
    assert transport.value() == "get caf\u00e9\u200d\U0001f600\r\n".encode()


# noreply


@pytest.mark.parametrize(
    "call, wire, result",
    [
        (lambda p: p.set(b"k", b"v", 3, 9, noreply=True), b"set k 3 9 1 noreply\r\nv\r\n", True),
        (lambda p: p.add(b"k", b"v", noreply=True), b"add k 0 0 1 noreply\r\nv\r\n", True),
        (lambda p: p.replace(b"k", b"v", noreply=True), b"replace k 0 0 1 noreply\r\nv\r\n", True),
        (lambda p: p.append(b"k", b"v", noreply=True), b"append k 0 0 1 noreply\r\nv\r\n", True),
        (lambda p: p.prepend(b"k", b"v", noreply=True), b"prepend k 0 0 1 noreply\r\nv\r\n", True),
        (
            lambda p: p.checkAndSet(b"k", b"v", 12, noreply=True),
            b"cas k 0 0 1 12 noreply\r\nv\r\n",
            True,
        ),
        (lambda p: p.delete(b"k", noreply=True), b"delete k noreply\r\n", True),
        (lambda p: p.touch(b"k", 5, noreply=True), b"touch k 5 noreply\r\n", True),
        (lambda p: p.increment(b"k", 2, noreply=True), b"incr k 2 noreply\r\n", None),
        (lambda p: p.decrement(b"k", noreply=True), b"decr k 1 noreply\r\n", None),
    ],
)
def test_noreplyWritesTheCommandAndFiresAtOnce(call: Any, wire: bytes, result: object) -> None:
    """
    A command with noreply ends with "noreply", fires once written (True, or None for
    incr/decr), and leaves nothing waiting for a reply, so the next reply answers the next
    request.
    """
    proto, transport, clock = connect()
    d = call(proto)
    assert sent(transport) == wire
    assert resultOf(d) is result
    assert clock.getDelayedCalls() == []
    assert repr(proto) == "<MemCacheProtocol open, 0 pending>"
    get = proto.get(b"k")
    proto.dataReceived(b"VALUE k 0 1\r\nx\r\nEND\r\n")
    assert resultOf(get) == (0, b"x")


def test_noreplyBetweenPipelinedRequestsKeepsThemInStep() -> None:
    """
    noreply commands between pipelined requests take no reply, so each request gets its own.
    """
    proto, _, _ = connect()
    first = proto.get(b"a")
    proto.set(b"a", b"1", noreply=True)
    second = proto.increment(b"n")
    proto.delete(b"a", noreply=True)
    third = proto.version()
    proto.dataReceived(b"END\r\n5\r\nVERSION 1.6\r\n")
    assert (resultOf(first), resultOf(second), resultOf(third)) == ((0, None), 5, b"1.6")


def test_noreplyWritesTheBatchFirst() -> None:
    """
    A noreply command made while a batch of gets is open writes the batch first, so the
    gets run before it as they were asked.
    """
    proto, transport, clock = connect(batchGets=True)
    proto.version()
    proto.get(b"a")
    sent(transport)
    proto.set(b"a", b"1", noreply=True)
    assert sent(transport) == b"get a\r\nset a 0 0 1 noreply\r\n1\r\n"
    assert clock.getDelayedCalls() != []


def test_noreplyWhenNotConnected() -> None:
    """
    A noreply command on a lost connection fails with ConnectionLostError and writes nothing.
    """
    proto, transport, _ = connect()
    proto.connectionLost()
    failureOf(proto.set(b"k", b"v", noreply=True), ConnectionLostError)
    assert transport.value() == b""


# keyPrefix


def test_keyPrefixOnEveryKeyCommand() -> None:
    """
    keyPrefix goes in front of the key of every command.
    """
    proto, transport, _ = connect(keyPrefix="app:")
    proto.get(b"k")
    proto.get("k", withIdentifier=True)
    proto.set(b"k", b"v")
    proto.checkAndSet(b"k", b"v", 1)
    proto.append(b"k", b"v")
    proto.increment(b"k")
    proto.delete(b"k")
    proto.touch(b"k", 1)
    proto.getAndTouch(b"k", 1)
    proto.setMultiple({b"k": b"v"})
    proto.deleteMultiple([b"k"])
    assert sent(transport) == (
        b"get app:k\r\ngets app:k\r\nset app:k 0 0 1\r\nv\r\ncas app:k 0 0 1 1\r\nv\r\n"
        b"append app:k 0 0 1\r\nv\r\nincr app:k 1\r\ndelete app:k\r\ntouch app:k 1\r\n"
        b"gat 1 app:k\r\nset app:k 0 0 1\r\nv\r\ndelete app:k\r\n"
    )
    assert proto.keyPrefix == b"app:"


def test_getMultipleWithPrefixIsKeyedWithoutIt() -> None:
    """
    getMultiple sends the prefixed keys and fires with a dict keyed by the keys given.
    """
    proto, transport, _ = connect(keyPrefix=b"p-")
    d = proto.getMultiple(["a", b"b"])
    assert sent(transport) == b"get p-a p-b\r\n"
    proto.dataReceived(b"VALUE p-a 1 1\r\nx\r\nEND\r\n")
    assert resultOf(d) == {"a": (1, b"x"), b"b": (0, None)}


def test_batchedGetsWithPrefix() -> None:
    """
    Batched gets send prefixed keys and each fires with its own value.
    """
    proto, transport, clock = connect(keyPrefix=b"p-", batchGets=True)
    proto.version()
    a, b = proto.get(b"a"), proto.get(b"b")
    clock.advance(0)
    assert sent(transport) == b"version\r\nget p-a p-b\r\n"
    proto.dataReceived(b"VERSION 1\r\nVALUE p-b 0 1\r\ny\r\nEND\r\n")
    assert (resultOf(a), resultOf(b)) == ((0, None), (0, b"y"))


def test_prefixedKeyLengthCountsThePrefix() -> None:
    """
    The 250-byte limit applies to the prefixed key; an empty or bad key is still refused.
    """
    proto, transport, _ = connect(keyPrefix=b"12345")
    proto.get(b"k" * 245)
    assert sent(transport) == b"get 12345" + b"k" * 245 + b"\r\n"
    for key in (b"k" * 246, b"", "", "a b", 7):
        failureOf(proto.get(key))  # type: ignore[arg-type]
    assert transport.value() == b""


@pytest.mark.parametrize(
    "prefix, error",
    [(b"a b", InvalidKeyError), ("\u3000", InvalidKeyError), (b"p" * 250, InvalidKeyError),
     (3, InvalidTypeError)],
)
def test_badKeyPrefixRefused(prefix: Any, error: type[Exception]) -> None:
    """
    A key prefix with whitespace, too long or not bytes/str raises at construction.
    """
    with pytest.raises(error):
        MemCacheProtocol(keyPrefix=prefix)


# getAndTouch


def test_getAndTouch() -> None:
    """
    getAndTouch sends gat with the expiry first and fires as get does.
    """
    proto, transport, _ = connect()
    d = proto.getAndTouch("k", 300)
    assert sent(transport) == b"gat 300 k\r\n"
    proto.dataReceived(b"VALUE k 4 2\r\nhi\r\nEND\r\n")
    assert resultOf(d) == (4, b"hi")
    miss = proto.getAndTouch(b"k", 0)
    proto.dataReceived(b"END\r\n")
    assert resultOf(miss) == (0, None)


def test_getAndTouchWithIdentifier() -> None:
    """
    getAndTouch with withIdentifier sends gats and fires with the CAS identifier too.
    """
    proto, transport, _ = connect()
    d = proto.getAndTouch(b"k", 1, withIdentifier=True)
    assert sent(transport) == b"gats 1 k\r\n"
    proto.dataReceived(b"VALUE k 0 2 77\r\nhi\r\nEND\r\n")
    assert resultOf(d) == (0, b"77", b"hi")


def test_getAndTouchBadExpiry() -> None:
    """
    getAndTouch refuses a negative expiry and writes nothing.
    """
    proto, transport, _ = connect()
    failureOf(proto.getAndTouch(b"k", -1), InvalidArgumentError)
    assert transport.value() == b""


# setMultiple and deleteMultiple


def test_setMultiple() -> None:
    """
    setMultiple writes one set per key at once, with flags from a (flags, value) tuple, and
    fires with each key's result.
    """
    proto, transport, _ = connect()
    d = proto.setMultiple({b"a": b"1", "b": (5, b"22")}, flags=2, expireTime=10)
    assert sent(transport) == b"set a 2 10 1\r\n1\r\nset b 5 10 2\r\n22\r\n"
    proto.dataReceived(b"STORED\r\n")
    assertNoResult(d)
    proto.dataReceived(b"NOT_STORED\r\n")
    assert resultOf(d) == {b"a": True, "b": False}


def test_setMultipleNoreply() -> None:
    """
    setMultiple with noreply fires at once with True for every key.
    """
    proto, transport, _ = connect()
    d = proto.setMultiple({b"a": b"1", b"b": b"2"}, noreply=True)
    assert sent(transport) == b"set a 0 0 1 noreply\r\n1\r\nset b 0 0 1 noreply\r\n2\r\n"
    assert resultOf(d) == {b"a": True, b"b": True}


@pytest.mark.parametrize(
    "values, error",
    [
        ({b"a": b"1", b"b c": b"2"}, InvalidKeyError),
        ({b"a": b"1", b"b": "text"}, InvalidTypeError),
        ({b"a": (1, b"x", 2)}, InvalidTypeError),
        ({b"a": (-1, b"x")}, InvalidArgumentError),
        ([(b"a", b"1")], InvalidTypeError),
    ],
)
def test_setMultipleRefusesWithoutWriting(values: Any, error: type[Exception]) -> None:
    """
    One bad key or value refuses the whole setMultiple, and nothing is written.
    """
    proto, transport, _ = connect()
    failureOf(proto.setMultiple(values), error)
    assert transport.value() == b""


def test_setMultipleEmpty() -> None:
    """
    setMultiple of nothing fires with {} and writes nothing.
    """
    proto, transport, _ = connect()
    assert resultOf(proto.setMultiple({})) == {}
    assert transport.value() == b""


def test_setMultipleFailsWithFirstErrorAfterAllReplies() -> None:
    """
    A SERVER_ERROR for one key fails setMultiple once every reply is in; the connection stays.
    """
    proto, transport, _ = connect()
    d = proto.setMultiple({b"a": b"1", b"b": b"2"})
    proto.dataReceived(b"SERVER_ERROR object too large for cache\r\n")
    assertNoResult(d)
    proto.dataReceived(b"STORED\r\n")
    failureOf(d, ServerError)
    assert not transport.disconnecting


def test_setMultipleCancelDropsTheConnection() -> None:
    """
    Cancelling a pending setMultiple fails it with CancelledError and drops the connection.
    """
    proto, transport, _ = connect()
    d = proto.setMultiple({b"a": b"1", b"b": b"2"})
    other = proto.version()
    d.cancel()
    failureOf(d, CancelledError)
    failureOf(other, ConnectionLostError)
    assert transport.disconnecting


def test_deleteMultiple() -> None:
    """
    deleteMultiple deletes each key once and fires with each key given.
    """
    proto, transport, _ = connect()
    d = proto.deleteMultiple([b"a", "b", b"a"])
    assert sent(transport) == b"delete a\r\ndelete b\r\n"
    proto.dataReceived(b"DELETED\r\nNOT_FOUND\r\n")
    assert resultOf(d) == {b"a": True, "b": False}


def test_deleteMultipleNoreplyAndEmpty() -> None:
    """
    deleteMultiple with noreply fires at once; with no keys it writes nothing.
    """
    proto, transport, _ = connect()
    assert resultOf(proto.deleteMultiple([b"a"], noreply=True)) == {b"a": True}
    assert sent(transport) == b"delete a noreply\r\n"
    assert resultOf(proto.deleteMultiple([])) == {}
    failureOf(proto.deleteMultiple(b"ab"), InvalidTypeError)
    assert transport.value() == b""


# flushAll


def test_flushAllWithDelay() -> None:
    """
    flushAll(delay) sends the delay; a negative delay is refused.
    """
    proto, transport, _ = connect()
    d = proto.flushAll(30)
    assert sent(transport) == b"flush_all 30\r\n"
    proto.dataReceived(b"OK\r\n")
    assert resultOf(d) is True
    failureOf(proto.flushAll(-1), InvalidArgumentError)
    assert transport.value() == b""


# stats


@pytest.mark.parametrize(
    "arg, reply, expected",
    [
        (
            b"detail dump",
            b"PREFIX app get 3 hit 1 set 2 del 0\r\n"
            b"PREFIX other get 1 hit 0 set 0 del 1\r\nEND\r\n",
            {b"app": b"get 3 hit 1 set 2 del 0", b"other": b"get 1 hit 0 set 0 del 1"},
        ),
        (
            b"cachedump 1 10",
            b"ITEM k1 [5 b; 0 s]\r\nITEM k2 [1 b; 1700000000 s]\r\nEND\r\n",
            {b"k1": b"[5 b; 0 s]", b"k2": b"[1 b; 1700000000 s]"},
        ),
        (b"detail dump", b"END\r\n", {}),
        (b"items", b"STAT items:1:number 5\r\nSTAT items:1:age 9\r\nEND\r\n",
         {b"items:1:number": b"5", b"items:1:age": b"9"}),
        (b"conns", b"STAT 23:addr tcp:127.0.0.1:40000\r\nSTAT 23:state conn_parse_cmd\r\nEND\r\n",
         {b"23:addr": b"tcp:127.0.0.1:40000", b"23:state": b"conn_parse_cmd"}),
        (b"sizes", b"STAT sizes_status disabled\r\nEND\r\n", {b"sizes_status": b"disabled"}),
        (b"detail on", b"OK\r\n", {}),
        (b"reset", b"RESET\r\n", {}),
    ],
)
def test_everyKindOfStatsReply(arg: bytes, reply: bytes, expected: dict[bytes, bytes]) -> None:
    """
    STAT, ITEM (cachedump) and PREFIX (detail dump) lines all parse into the dict, and the
    request behind the stats is answered normally.
    """
    proto, transport, _ = connect()
    d = proto.stats(arg)
    after = proto.version()
    assert sent(transport) == b"stats %s\r\nversion\r\n" % (arg,)
    proto.dataReceived(reply + b"VERSION 1.6.18\r\n")
    assert resultOf(d) == expected
    assert resultOf(after) == b"1.6.18"


def test_statsErrorReply() -> None:
    """
    A stats subcommand the server does not know fails with its error and keeps the
    connection.
    """
    proto, transport, _ = connect()
    d = proto.stats(b"nonsense")
    proto.dataReceived(b"ERROR\r\n")
    failureOf(d)
    assert not transport.disconnecting


def test_statsReplyLongerThanMaxStatsSize() -> None:
    """
    A stats reply growing past maxStatsSize fails with ReplyTooLargeError before its END and
    drops the connection; the request behind it fails with ConnectionLostError.
    """
    proto, transport, _ = connect(maxStatsSize=100)
    d = proto.stats()
    after = proto.version()
    proto.dataReceived(b"STAT name 0123456789012345678901234567890123456789\r\n")
    assertNoResult(d)
    proto.dataReceived(b"STAT more 0123456789012345678901234567890123456789\r\n")
    error = failureOf(d, ReplyTooLargeError).value
    assert "maxStatsSize (100 bytes)" in str(error)
    failureOf(after, ConnectionLostError)
    assert transport.disconnecting


def test_multiGetReplyLongerThanMaxReplySize() -> None:
    """
    The values of one multi-key get reply together past maxReplySize fail it with
    ReplyTooLargeError, announced by the VALUE line, and drop the connection.
    """
    proto, transport, _ = connect(maxValueSize=10, maxReplySize=15)
    d = proto.getMultiple([b"a", b"b"])
    proto.dataReceived(b"VALUE a 0 10\r\n0123456789\r\n")
    assertNoResult(d)
    proto.dataReceived(b"VALUE b 0 6\r\n")
    error = failureOf(d, ReplyTooLargeError).value
    assert "maxReplySize (15 bytes)" in str(error)
    assert transport.disconnecting


def test_multiGetReplyOfMaxReplySizeAccepted() -> None:
    """
    Values adding up to exactly maxReplySize are accepted.
    """
    proto, _, _ = connect(maxValueSize=10, maxReplySize=15)
    d = proto.getMultiple([b"a", b"b"])
    proto.dataReceived(b"VALUE a 0 10\r\n0123456789\r\nVALUE b 0 5\r\n01234\r\nEND\r\n")
    assert resultOf(d) == {b"a": (0, b"0123456789"), b"b": (0, b"01234")}


def test_replySizeDefaults() -> None:
    """
    The reply limits default to 64 MiB (or maxValueSize, if larger) and 4 MiB; a
    maxReplySize below maxValueSize is refused.
    """
    proto = MemCacheProtocol()
    assert proto.maxReplySize == DEFAULT_MAX_REPLY_SIZE
    assert proto.maxStatsSize == DEFAULT_MAX_STATS_SIZE
    assert MemCacheProtocol(maxValueSize=2**27).maxReplySize == 2**27
    with pytest.raises(ValueError, match="must not be less than maxValueSize"):
        MemCacheProtocol(maxValueSize=100, maxReplySize=99)


# requestTimeout


def test_requestTimeoutFailsTheOldestRequestAndDrops() -> None:
    """
    A request without a reply requestTimeout seconds after it was written fails with
    RequestTimeoutError; the connection is dropped and the others fail with
    ConnectionLostError.
    """
    proto, transport, clock = connect(requestTimeout=2)
    first = proto.get(b"a")
    clock.advance(1)
    second = proto.get(b"b")
    clock.advance(0.9)
    assertNoResult(first)
    clock.advance(0.1)
    error = failureOf(first, RequestTimeoutError).value
    assert "no reply to memcached get within 2s" in str(error)
    failureOf(second, ConnectionLostError)
    assert transport.disconnecting
    assert clock.getDelayedCalls() == []


def test_requestTimeoutFollowsEachRequest() -> None:
    """
    Each request gets requestTimeout seconds from its own sending: one answered in time
    moves the deadline to the next.
    """
    proto, _, clock = connect(requestTimeout=2)
    first = proto.get(b"a")
    clock.advance(1.5)
    second = proto.get(b"b")
    proto.dataReceived(b"END\r\n")
    assert resultOf(first) == (0, None)
    clock.advance(1.9)
    assertNoResult(second)
    clock.advance(0.1)
    failureOf(second, RequestTimeoutError)


def test_requestTimeoutTimerRunsOutWhenIdle() -> None:
    """
    Once nothing is pending, the deadline timer runs out by itself and is not set again.
    """
    proto, _, clock = connect(requestTimeout=2, timeOut=None)
    d = proto.get(b"a")
    proto.dataReceived(b"END\r\n")
    resultOf(d)
    assert len(clock.getDelayedCalls()) == 1
    clock.advance(2)
    assert clock.getDelayedCalls() == []
    assert not proto.closed


@pytest.mark.parametrize("value", [0, -1, "1", True])
def test_badRequestTimeout(value: Any) -> None:
    """
    requestTimeout must be a positive number or None.
    """
    with pytest.raises(InvalidArgumentError, match="requestTimeout must be a positive number"):
        MemCacheProtocol(requestTimeout=value)
