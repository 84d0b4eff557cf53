"""
Unit tests of what MetaMemCacheProtocol shares with the text protocol's options and commands:
noreply as quiet mode closed by mn, getAndTouch, setMultiple, deleteMultiple, flushAll with
a delay, key prefixes, every kind of stats reply, the reply size limits and requestTimeout;
driven synchronously with a StringTransport and a Clock.
"""

from __future__ import annotations

from base64 import b64encode
from typing import Any

import pytest
from twisted.internet.defer import Deferred
from twisted.logger import LogEvent, globalLogPublisher

from txconnpool.errors import ConnectionLostError, ProtocolError, RequestTimeoutError
from txconnpool.memcache.errors import (
    ClientError,
    InvalidArgumentError,
    InvalidKeyError,
    InvalidTypeError,
    ReplyTooLargeError,
    ServerError,
)
from txconnpool.memcache.meta import MetaMemCacheProtocol
from txconnpool.memcache.meta._quiet import MAX_QUIET

from .helpers import assertNoResult, failureOf, resultOf
from .test_memcache_meta_protocol import connect, exchange, sent

# noreply: quiet mode, closed by mn


@pytest.mark.parametrize(
    "call, wire, result",
    [
        (lambda p: p.set(b"k", b"v", 3, 10, True), b"ms k 1 O1 F3 T10 q\r\nv\r\n", True),
        (lambda p: p.add(b"k", b"v", noreply=True), b"ms k 1 O1 F0 T0 ME q\r\nv\r\n", True),
        (lambda p: p.replace(b"k", b"v", noreply=True), b"ms k 1 O1 F0 T0 MR q\r\nv\r\n", True),
        (lambda p: p.append(b"k", b"v", True), b"ms k 1 O1 MA q\r\nv\r\n", True),
        (lambda p: p.prepend(b"k", b"v", True), b"ms k 1 O1 MP q\r\nv\r\n", True),
        (
            lambda p: p.checkAndSet(b"k", b"v", 7, noreply=True),
            b"ms k 1 O1 F0 T0 C7 q\r\nv\r\n",
            True,
        ),
        (lambda p: p.increment(b"n", 2, True), b"ma n O1 D2 q\r\n", None),
        (lambda p: p.decrement(b"n", noreply=True), b"ma n O1 D1 MD q\r\n", None),
        (lambda p: p.delete(b"k", True), b"md k O1 q\r\n", True),
        (lambda p: p.touch(b"k", 5, True), b"mg k O1 T5 q\r\n", True),
        (
            lambda p: p.setMultiple({b"a": b"1", b"b": (4, b"2")}, noreply=True),
            b"ms a 1 O1 F0 T0 q\r\n1\r\nms b 1 O2 F4 T0 q\r\n2\r\n",
            {b"a": True, b"b": True},
        ),
        (
            lambda p: p.deleteMultiple([b"a", "b", b"a"], noreply=True),
            b"md a O1 q\r\nmd b O2 q\r\n",
            {b"a": True, "b": True},
        ),
    ],
)
def test_noreplyIsQuietModeClosedByMn(call: Any, wire: bytes, result: object) -> None:
    """
    With noreply, a command is sent with the q flag and fires at once with the text
    protocol's noreply result; at the end of the turn one mn closes the quiet commands, and
    its MN leaves nothing pending.
    """
    proto, transport, clock = connect()
    d = call(proto)
    assert resultOf(d) == result
    assert sent(transport) == wire
    clock.advance(0)
    assert sent(transport) == b"mn\r\n"
    proto.dataReceived(b"MN\r\n")
    assert not proto._pending and not transport.disconnecting
    assert clock.getDelayedCalls() == []


def test_quietRunIsClosedBeforeTheNextCommand() -> None:
    """
    A command sent after quiet ones in the same turn is written after an mn closing them, so
    that what the server answers to the quiet commands never answers it.
    """
    proto, transport, clock = connect()
    assert resultOf(proto.add(b"k", b"v", noreply=True)) is True
    assert resultOf(proto.delete(b"gone", noreply=True)) is True
    d = proto.get(b"k")
    assert sent(transport) == (
        b"ms k 1 O1 F0 T0 ME q\r\nv\r\nmd gone O2 q\r\nmn\r\nmg k O3 v f\r\n"
    )
    proto.dataReceived(b"NS O1\r\nNF O2\r\nMN\r\nVA 1 O3 f0\r\nx\r\n")
    assert resultOf(d) == (0, b"x")
    clock.advance(0)
    assert sent(transport) == b""
    assert not proto._pending


def test_quietRepliesAreLogged() -> None:
    """
    What the server still answers to quiet commands (a failed add, a missing key) is read
    and logged at debug level, and an error line at warning level; the connection stays up.
    """
    events: list[LogEvent] = []
    globalLogPublisher.addObserver(events.append)
    try:
        proto, transport, clock = connect()
        proto.add(b"k", b"v", noreply=True)
        proto.increment(b"n", noreply=True)
        proto.set(b"big", b"x", noreply=True)
        clock.advance(0)
        proto.dataReceived(b"NS O1\r\nNF O2\r\nSERVER_ERROR object too large for cache\r\nMN\r\n")
    finally:
        globalLogPublisher.removeObserver(events.append)
    statuses = [
        (e["status"], e["command"]) for e in events if "status" in e and "command" in e
    ]
    assert statuses == [("NS", "add"), ("NF", "increment")]
    [error] = [e for e in events if "reply" in e and "count" in e]
    assert "object too large" in error["reply"] and error["log_level"].name == "warn"
    assert not transport.disconnecting and not proto._pending
    assert exchange(proto.version(), proto, b"VERSION 1.6.18\r\n") == b"1.6.18"


@pytest.mark.parametrize(
    "reply",
    [
        b"NS O9\r\n",
        b"HD O1 c5\r\n",
        b"MN\r\n",
        b"VA 1 O1\r\nx\r\n",
        b"EX O1\r\n",
    ],
)
def test_quietReplyThatFitsNoQuietCommandIsAProtocolError(reply: bytes) -> None:
    """
    A reply to the quiet commands with another token, flags or status than they may get, or
    an MN before their mn was written, fails the pending requests and drops the connection.
    """
    proto, transport, _ = connect()
    proto.set(b"k", b"v", noreply=True)
    assert sent(transport) == b"ms k 1 O1 F0 T0 q\r\nv\r\n"
    proto.dataReceived(reply)
    assert transport.disconnecting
    failureOf(proto.get(b"k"), ConnectionLostError)


def test_repliesBeforeTheMnAreAccepted() -> None:
    """
    A reply to a quiet command that arrives before the mn closing them was written is read
    as theirs.
    """
    proto, transport, clock = connect()
    proto.add(b"k", b"v", noreply=True)
    proto.dataReceived(b"NS O1\r\n")
    assert not transport.disconnecting
    clock.advance(0)
    assert sent(transport).endswith(b"mn\r\n")
    proto.dataReceived(b"MN\r\n")
    assert not proto._pending


@pytest.mark.parametrize("reply", [b"CLIENT_ERROR bad data chunk\r\n", b"ERROR\r\n"])
def test_clientErrorAfterAQuietStoreDropsTheConnection(reply: bytes) -> None:
    """
    A CLIENT_ERROR or ERROR while a quiet ms may be the command it answers drops the
    connection (its data block may be read as a command); the other requests fail with
    ConnectionLostError.
    """
    proto, transport, _ = connect()
    proto.set(b"k", b"v", noreply=True)
    d = proto.get(b"k")
    proto.dataReceived(reply)
    failureOf(d, ConnectionLostError)
    assert transport.disconnecting


def test_clientErrorAfterQuietArithmeticKeepsTheConnection() -> None:
    """
    The CLIENT_ERROR memcached gives a quiet ma on a value that is not a number is logged,
    even with a quiet ms before it; the connection and the requests after it go on.
    """
    proto, transport, _ = connect()
    proto.set(b"text", b"abc", noreply=True)
    proto.increment(b"text", noreply=True)
    d = proto.get(b"k")
    proto.dataReceived(
        b"CLIENT_ERROR cannot increment or decrement non-numeric value\r\nMN\r\nEN O3\r\n"
    )
    assert resultOf(d) == (0, None)
    assert not transport.disconnecting


def test_arithmeticClientErrorWithoutQuietArithmeticDropsTheConnection() -> None:
    """
    That CLIENT_ERROR while only quiet ms commands wait cannot be theirs alone to explain:
    the connection is dropped.
    """
    proto, transport, _ = connect()
    proto.set(b"text", b"abc", noreply=True)
    d = proto.get(b"k")
    proto.dataReceived(b"CLIENT_ERROR cannot increment or decrement non-numeric value\r\n")
    failureOf(d, ConnectionLostError)
    assert transport.disconnecting


def test_errorAfterEveryQuietCommandWasAnsweredIsAProtocolError() -> None:
    """
    An error line once every quiet command has been answered answers none of them: the
    connection is dropped.
    """
    proto, transport, _ = connect()
    proto.add(b"k", b"v", noreply=True)
    d = proto.get(b"k")
    proto.dataReceived(b"NS O1\r\nSERVER_ERROR out of memory\r\n")
    failureOf(d, ConnectionLostError, ProtocolError)
    assert transport.disconnecting


def test_quietTouchGivesBackTheLeaseOfAStaleItem() -> None:
    """
    A quiet touch of a stale item, which memcached answers HD with the win flag, gives the
    lease back once the quiet commands are done.
    """
    proto, transport, clock = connect()
    assert resultOf(proto.touch(b"k", 9, noreply=True)) is True
    clock.advance(0)
    sent(transport)
    proto.dataReceived(b"HD O1 X W\r\nMN\r\n")
    assert sent(transport) == b"md k O2 I\r\n"


def test_quietRunsAreBounded() -> None:
    """
    A run of quiet commands is closed once it holds MAX_QUIET of them, without waiting for
    the end of the turn.
    """
    proto, transport, clock = connect()
    for i in range(MAX_QUIET + 5):
        proto.delete(b"k%d" % i, noreply=True)
    assert sent(transport).count(b"mn\r\n") == 1
    clock.advance(0)
    assert sent(transport) == b"mn\r\n"
    proto.dataReceived(b"MN\r\nMN\r\n")
    assert not proto._pending


def test_noreplyWhenNotConnected() -> None:
    """
    A noreply command on a lost connection fails with ConnectionLostError and writes nothing.
    """
    proto, transport, _ = connect()
    proto.connectionLost()
    transport.clear()
    failureOf(proto.set(b"k", b"v", noreply=True), ConnectionLostError)
    failureOf(proto.deleteMultiple([b"k"], noreply=True), ConnectionLostError)
    assert transport.value() == b""


def test_quietCommandsWriteTheBatchFirst() -> None:
    """
    A quiet command sends the batch of gets gathered in the turn first, and a get made after
    quiet commands closes them before opening a batch.
    """
    proto, transport, clock = connect(batchGets=True)
    first = proto.get(b"a")
    batched = proto.get(b"b")
    proto.set(b"c", b"1", noreply=True)
    later = proto.get(b"d")
    clock.advance(0)
    assert sent(transport) == (
        b"mg a O1 v f\r\nmg b O2 q v f\r\nmn\r\nms c 1 O3 F0 T0 q\r\n1\r\nmn\r\n"
        b"mg d O4 q v f\r\nmn\r\n"
    )
    proto.dataReceived(b"EN O1\r\nVA 1 O2 f0\r\nB\r\nMN\r\nMN\r\nVA 1 O4 f0\r\nD\r\nMN\r\n")
    assert [resultOf(d) for d in (first, batched, later)] == [(0, None), (0, b"B"), (0, b"D")]


# getAndTouch


@pytest.mark.parametrize(
    "withIdentifier, wire, reply, result",
    [
        (False, b"mg k O1 v f T10\r\n", b"VA 2 O1 f3\r\nhi\r\n", (3, b"hi")),
        (True, b"mg k O1 v f c T10\r\n", b"VA 2 O1 f3 c8\r\nhi\r\n", (3, b"8", b"hi")),
        (False, b"mg k O1 v f T10\r\n", b"EN O1\r\n", (0, None)),
        (True, b"mg k O1 v f c T10\r\n", b"EN O1\r\n", (0, b"", None)),
    ],
)
def test_getAndTouch(withIdentifier: bool, wire: bytes, reply: bytes, result: object) -> None:
    """
    getAndTouch is an mg with T, firing as get does.
    """
    proto, transport, _ = connect()
    d = proto.getAndTouch(b"k", 10, withIdentifier)
    assert sent(transport) == wire
    assert exchange(d, proto, reply) == result


@pytest.mark.parametrize(
    "expireTime, error", [(-1, InvalidArgumentError), ("1", InvalidTypeError)]
)
def test_getAndTouchBadExpiry(expireTime: Any, error: type[Exception]) -> None:
    """
    getAndTouch refuses an expiry time memcached would not read, writing nothing.
    """
    proto, transport, _ = connect()
    failureOf(proto.getAndTouch(b"k", expireTime), error)
    assert transport.value() == b""


# setMultiple and deleteMultiple


def test_setMultiple() -> None:
    """
    setMultiple writes one ms per key at once and fires with each key's result once every
    reply is in.
    """
    proto, transport, _ = connect()
    d = proto.setMultiple({b"a": b"1", "b": (5, b"22")}, flags=2, expireTime=9)
    assert sent(transport) == b"ms a 1 O1 F2 T9\r\n1\r\nms b 2 O2 F5 T9\r\n22\r\n"
    proto.dataReceived(b"HD O1\r\n")
    assertNoResult(d)
    proto.dataReceived(b"NS O2\r\n")
    assert resultOf(d) == {b"a": True, "b": False}


@pytest.mark.parametrize(
    "values, error",
    [
        ([b"a"], InvalidTypeError),
        ({b"a": (1, b"x", 2)}, InvalidTypeError),
        ({b"a": b"1", b"bad key": b"2"}, InvalidKeyError),
        ({b"a": "text"}, InvalidTypeError),
        ({b"a": (-1, b"x")}, InvalidArgumentError),
    ],
)
def test_setMultipleRefusesWithoutWriting(values: Any, error: type[Exception]) -> None:
    """
    setMultiple writes nothing unless every key, value and flags can be sent.
    """
    proto, transport, _ = connect()
    failureOf(proto.setMultiple(values), error)
    assert transport.value() == b""


def test_setMultipleFailsWithTheFirstErrorAfterEveryReply() -> None:
    """
    A SERVER_ERROR for one key fails setMultiple once every reply is in; the connection
    stays up.
    """
    proto, transport, _ = connect()
    d = proto.setMultiple({b"a": b"1", b"b": b"2"})
    proto.dataReceived(b"SERVER_ERROR out of memory storing object\r\n")
    assertNoResult(d)
    proto.dataReceived(b"HD O2\r\n")
    failureOf(d, ServerError)
    assert not transport.disconnecting


def test_deleteMultiple() -> None:
    """
    deleteMultiple writes one md per distinct key and fires with each given key's result.
    """
    proto, transport, _ = connect()
    d = proto.deleteMultiple([b"a", "b", b"a"])
    assert sent(transport) == b"md a O1\r\nmd b O2\r\n"
    proto.dataReceived(b"HD O1\r\nNF O2\r\n")
    assert resultOf(d) == {b"a": True, "b": False}


def test_multipleOfNothing() -> None:
    """
    setMultiple and deleteMultiple of nothing fire with {} and write nothing; one key given
    as bytes is refused.
    """
    proto, transport, _ = connect()
    assert resultOf(proto.setMultiple({})) == {}
    assert resultOf(proto.deleteMultiple([], noreply=True)) == {}
    failureOf(proto.deleteMultiple(b"abc"), InvalidTypeError)
    assert transport.value() == b""


# flushAll


def test_flushAllWithDelay() -> None:
    """
    flushAll sends flush_all, with the delay when there is one; a bad delay is refused.
    """
    proto, transport, _ = connect()
    d = proto.flushAll(30)
    assert sent(transport) == b"flush_all 30\r\n"
    assert exchange(d, proto, b"OK\r\n") is True
    d = proto.flushAll()
    assert sent(transport) == b"flush_all\r\n"
    assert exchange(d, proto, b"OK\r\n") is True
    failureOf(proto.flushAll(-1), InvalidArgumentError)
    assert transport.value() == b""


# Key prefixes


def test_keyPrefixOnEveryKey() -> None:
    """
    keyPrefix is put in front of the key of every command, leases included; results keyed by
    key use the keys given.
    """
    proto, transport, clock = connect(keyPrefix="ns:")
    calls = [
        (lambda: proto.set(b"k", b"v"), b"ms ns:k 1 O1 F0 T0\r\nv\r\n", b"HD O1\r\n", True),
        (lambda: proto.get("k"), b"mg ns:k O2 v f\r\n", b"EN O2\r\n", (0, None)),
        (lambda: proto.touch(b"k", 1), b"mg ns:k O3 T1\r\n", b"HD O3\r\n", True),
        (lambda: proto.increment(b"n"), b"ma ns:n O4 v D1\r\n", b"NF O4\r\n", False),
        (lambda: proto.delete(b"k"), b"md ns:k O5\r\n", b"HD O5\r\n", True),
        (
            lambda: proto.getMultiple([b"a", "b"]),
            b"mg ns:a O6 q v f\r\nmg ns:b O7 q v f\r\nmn\r\n",
            b"VA 1 O7 f0\r\nB\r\nMN\r\n",
            {b"a": (0, None), "b": (0, b"B")},
        ),
        (lambda: proto.invalidate(b"k"), b"md ns:k O8 I\r\n", b"HD O8\r\n", True),
        (lambda: proto.itemInfo(b"k"), b"me ns:k\r\n", b"ME ns:k exp=-1\r\n", {b"exp": b"-1"}),
        (
            lambda: proto.leaseGet(b"k", 30),
            b"mg ns:k O9 v f c N30\r\n",
            b"VA 0 O9 f0 c1 W\r\n\r\n",
            None,
        ),
    ]
    for call, wire, reply, result in calls:
        d = call()
        assert sent(transport) == wire
        got = exchange(d, proto, reply)
        if result is not None:
            assert got == result
    assert clock.getDelayedCalls() == []


def test_keyPrefixWithBase64Keys() -> None:
    """
    With base64Keys, the prefix and the key are encoded together, and the 186-byte limit
    counts the prefix.
    """
    proto, transport, _ = connect(keyPrefix=b"ns:", base64Keys=True)
    d = proto.get(b"a b")
    assert sent(transport) == b"mg %s O1 b v f\r\n" % (b64encode(b"ns:a b"),)
    assert exchange(d, proto, b"EN O1\r\n") == (0, None)
    assert resultOf(proto.set(b"k" * 183, b"v", noreply=True)) is True
    failureOf(proto.set(b"k" * 184, b"v"), InvalidKeyError)
    failureOf(proto.get(b""), InvalidKeyError)


@pytest.mark.parametrize(
    "options",
    [
        {"keyPrefix": b"a b"},
        {"keyPrefix": b"p" * 186, "base64Keys": True},
        {"maxReplySize": 10, "maxValueSize": 11},
        {"requestTimeout": 0},
        {"timeOut": "1"},
    ],
)
def test_badOptionsRaise(options: dict[str, Any]) -> None:
    """
    A key prefix that leaves no room for a key, reply limits that contradict each other and
    timeouts that are not positive numbers raise at construction.
    """
    with pytest.raises(ValueError):
        MetaMemCacheProtocol(**options)


def test_prefixedKeyLengthCountsThePrefix() -> None:
    """
    The 250-byte limit of a text key counts the prefix.
    """
    proto, transport, _ = connect(keyPrefix=b"ns:")
    failureOf(proto.get(b"k" * 248), InvalidKeyError)
    failureOf(proto.getMultiple([b"ok", b"k" * 248]), InvalidKeyError)
    assert transport.value() == b""


# stats


@pytest.mark.parametrize(
    "arg, reply, expected",
    [
        (
            None,
            b"STAT pid 7\r\nSTAT version 1.6.18\r\nEND\r\n",
            {b"pid": b"7", b"version": b"1.6.18"},
        ),
        (
            b"cachedump 1 10",
            b"ITEM k1 [5 b; 0 s]\r\nITEM k2 [1 b; 0 s]\r\nEND\r\n",
            {b"k1": b"[5 b; 0 s]", b"k2": b"[1 b; 0 s]"},
        ),
        (
            b"detail dump",
            b"PREFIX ns get 1 hit 0 set 2 del 0\r\nEND\r\n",
            {b"ns": b"get 1 hit 0 set 2 del 0"},
        ),
        (b"reset", b"RESET\r\n", {}),
        (b"detail on", b"OK\r\n", {}),
    ],
)
def test_everyKindOfStatsReply(
    arg: bytes | None, reply: bytes, expected: dict[bytes, bytes]
) -> None:
    """
    stats reads the STAT, ITEM and PREFIX lines memcached sends, and the RESET and OK ends.
    """
    proto, _, _ = connect()
    assert exchange(proto.stats(arg), proto, reply) == expected


def test_statsReplyLongerThanMaxStatsSize() -> None:
    """
    A stats reply past maxStatsSize fails with ReplyTooLargeError and drops the connection.
    """
    proto, transport, _ = connect(maxStatsSize=30)
    d = proto.stats()
    other = proto.version()
    proto.dataReceived(b"STAT a 1234567890\r\nSTAT b 1234567890\r\n")
    failureOf(d, ReplyTooLargeError)
    failureOf(other, ConnectionLostError)
    assert transport.disconnecting


# Reply size limits


def test_valueLongerThanMaxValueSizeIsTooLarge() -> None:
    """
    A value announced longer than maxValueSize fails its get with ReplyTooLargeError, a
    ProtocolError, and drops the connection.
    """
    proto, transport, _ = connect(maxValueSize=10)
    d = proto.get(b"k")
    proto.dataReceived(b"VA 11 O1 f0\r\n")
    failure = failureOf(d, ReplyTooLargeError)
    assert failure.check(ProtocolError)
    assert transport.disconnecting


@pytest.mark.parametrize("batched", [False, True])
def test_batchLongerThanMaxReplySize(batched: bool) -> None:
    """
    The values of one batch of gets (getMultiple, or gets gathered in a turn) together
    longer than maxReplySize fail it with ReplyTooLargeError; up to the limit they are read.
    """
    proto, transport, clock = connect(maxValueSize=4, maxReplySize=6, batchGets=True)
    if batched:
        head = proto.get(b"h")
        gets = [proto.get(b"a"), proto.get(b"b")]
        clock.advance(0)
        proto.dataReceived(b"EN O1\r\n")
        assert resultOf(head) == (0, None)
    else:
        gets = [proto.getMultiple([b"a", b"b"])]
    proto.dataReceived(b"VA 3 O2 f0\r\nabc\r\n" if batched else b"VA 3 O1 f0\r\nabc\r\n")
    assert not transport.disconnecting
    proto.dataReceived(b"VA 4 O3 f0\r\n" if batched else b"VA 4 O2 f0\r\n")
    for d in gets:
        failureOf(d, ReplyTooLargeError)
    assert transport.disconnecting


def test_batchOfMaxReplySizeIsRead() -> None:
    """
    A getMultiple reply of exactly maxReplySize bytes of values is read.
    """
    proto, _, _ = connect(maxValueSize=4, maxReplySize=6)
    d = proto.getMultiple([b"a", b"b"])
    proto.dataReceived(b"VA 3 O1 f0\r\nabc\r\nVA 3 O2 f0\r\ndef\r\nMN\r\n")
    assert resultOf(d) == {b"a": (0, b"abc"), b"b": (0, b"def")}


def test_replySizeDefaults() -> None:
    """
    maxReplySize is 64 MiB by default, or maxValueSize if that is larger, as in the text
    protocol.
    """
    assert MetaMemCacheProtocol().maxReplySize == 64 * 1024 * 1024
    assert MetaMemCacheProtocol(maxValueSize=100 * 1024 * 1024).maxReplySize == 100 * 1024 * 1024


# requestTimeout


def test_requestTimeoutFailsTheOldestRequestAndDrops() -> None:
    """
    A request without its reply requestTimeout seconds after it was sent fails with
    RequestTimeoutError, the others with ConnectionLostError, and the connection is dropped.
    """
    proto, transport, clock = connect(requestTimeout=2)
    d = proto.get(b"k")
    clock.advance(1)
    other = proto.set(b"k", b"v")
    clock.advance(0.9)
    assertNoResult(d)
    clock.advance(0.1)
    failureOf(d, RequestTimeoutError)
    failureOf(other, ConnectionLostError)
    assert transport.disconnecting
    assert clock.getDelayedCalls() == []


def test_requestTimeoutFollowsEachRequest() -> None:
    """
    Each request gets its own requestTimeout from when it was sent: once the first is
    answered, the second may wait its full time.
    """
    proto, _, clock = connect(requestTimeout=2)
    first = proto.get(b"a")
    clock.advance(1.5)
    second = proto.get(b"b")
    proto.dataReceived(b"EN O1\r\n")
    assert resultOf(first) == (0, None)
    clock.advance(1.9)
    assertNoResult(second)
    clock.advance(0.1)
    failureOf(second, RequestTimeoutError)


def test_requestTimeoutCoversQuietCommands() -> None:
    """
    The mn closing quiet commands has requestTimeout too: a server that never answers it
    has its connection dropped; with an answer, no timer is left.
    """
    proto, transport, clock = connect(requestTimeout=2, timeOut=None)
    proto.set(b"k", b"v", noreply=True)
    clock.advance(0)
    proto.dataReceived(b"MN\r\n")
    clock.advance(2)
    assert clock.getDelayedCalls() == [] and not transport.disconnecting
    proto.set(b"k", b"v", noreply=True)
    clock.advance(0)
    clock.advance(2)
    assert transport.disconnecting


def test_batchedGetIsNotAnsweredBeforeItIsWritten() -> None:
    """
    Bytes received before a batch of gets is written cannot answer it: an MN among them is
    unsolicited.
    """
    proto, transport, _ = connect(batchGets=True)
    first = proto.get(b"a")
    batched = proto.get(b"b")
    proto.dataReceived(b"EN O1\r\nMN\r\n")
    assert resultOf(first) == (0, None)
    failureOf(batched, ProtocolError)
    assert transport.disconnecting


def test_clientErrorRepliesAreStillTyped() -> None:
    """
    A CLIENT_ERROR reply to an awaited arithmetic command fails it with ClientError.
    """
    proto, _, _ = connect()
    d: Deferred[Any] = proto.increment(b"text")
    proto.dataReceived(b"CLIENT_ERROR cannot increment or decrement non-numeric value\r\n")
    failureOf(d, ClientError)
