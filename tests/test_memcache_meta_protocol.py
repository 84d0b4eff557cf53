"""
Unit tests for L{txconnpool.memcache.meta.MetaMemCacheProtocol}: wire formats, the reply
parser and its opaque checks, batches of quiet gets, validation, and how the connection is
dropped; driven synchronously with a L{StringTransport} and a L{Clock}.
"""

from __future__ import annotations

from base64 import b64encode
from typing import Any

import pytest
from twisted.internet.defer import CancelledError, Deferred, TimeoutError
from twisted.internet.error import ConnectionDone
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure

from txconnpool.errors import ConnectionLostError, ProtocolError
from txconnpool.memcache.errors import (
    ClientError,
    InvalidArgumentError,
    InvalidKeyError,
    InvalidTypeError,
    InvalidValueError,
    ServerError,
    UnknownCommandError,
)
from txconnpool.memcache.meta import LeaseReply, MetaMemCacheProtocol

from .helpers import assertNoResult, failureOf, resultOf


def connect(**kwargs: Any) -> tuple[MetaMemCacheProtocol, StringTransport, Clock]:
    """
    Return a protocol connected to a fresh L{StringTransport}, with a L{Clock} for timeouts.
    """
    clock = Clock()
    proto = MetaMemCacheProtocol(clock=clock, **kwargs)
    transport = StringTransport()
    proto.makeConnection(transport)  # type: ignore[no-untyped-call]
    return proto, transport, clock


def sent(transport: StringTransport) -> bytes:
    """
    Return what was written since the last call, and forget it.
    """
    data = transport.value()
    transport.clear()
    return data


def exchange(d: Deferred[Any], proto: MetaMemCacheProtocol, reply: bytes) -> Any:
    """
    Feed C{reply} to C{proto} and return what C{d} fired with.
    """
    proto.dataReceived(reply)
    return resultOf(d)


def taggingMisses(proto: MetaMemCacheProtocol, transport: StringTransport) -> None:
    """
    Run the connection probe as against memcached 1.6.18, which copies the opaque token onto
    misses.
    """
    d = proto.probe()
    opaque = sent(transport).split(b" ")[-1].strip()
    proto.dataReceived(b"VERSION 1.6.18\r\nMN\r\nEN " + opaque + b"\r\n")
    assert resultOf(d).tagsMisses


# Wire formats and results


def test_getWireFormatAndHit() -> None:
    """
    get sends an mg with its opaque token first, asking for the value and client flags, and
    fires with (flags, value) from a VA reply carrying that token.
    """
    proto, transport, _ = connect()
    d = proto.get(b"key")
    assert sent(transport) == b"mg key O1 v f\r\n"
    assert exchange(d, proto, b"VA 5 O1 f7\r\nhello\r\n") == (7, b"hello")


def test_getsWireFormatAndHit() -> None:
    """
    get with withIdentifier asks for the CAS token too, and fires with (flags, cas, value).
    """
    proto, transport, _ = connect()
    d = proto.get("key", withIdentifier=True)
    assert sent(transport) == b"mg key O1 v f c\r\n"
    assert exchange(d, proto, b"VA 2 O1 f0 c42\r\nhi\r\n") == (0, b"42", b"hi")


@pytest.mark.parametrize("withIdentifier, miss", [(False, (0, None)), (True, (0, b"", None))])
def test_getMiss(withIdentifier: bool, miss: tuple[Any, ...]) -> None:
    """
    A miss, EN with the request's opaque token, gives Twisted's miss tuple.
    """
    proto, _, _ = connect()
    d = proto.get(b"key", withIdentifier)
    assert exchange(d, proto, b"EN O1\r\n") == miss


def test_returnFlagsInAnyOrder() -> None:
    """
    The return flags of a reply are read whatever their order.
    """
    proto, _, _ = connect()
    d = proto.get(b"key", withIdentifier=True)
    assert exchange(d, proto, b"VA 1 c9 f3 O1\r\nx\r\n") == (3, b"9", b"x")


@pytest.mark.parametrize(
    "call, line, replies",
    [
        (lambda p: p.set(b"k", b"val", 5, 60), b"ms k 3 O1 F5 T60\r\nval\r\n",
         {b"HD": True, b"NS": False}),
        (lambda p: p.add(b"k", b"val"), b"ms k 3 O1 F0 T0 ME\r\nval\r\n",
         {b"HD": True, b"NS": False}),
        (lambda p: p.replace(b"k", b"val", 1), b"ms k 3 O1 F1 T0 MR\r\nval\r\n",
         {b"HD": True, b"NS": False}),
        (lambda p: p.append(b"k", b"val"), b"ms k 3 O1 MA\r\nval\r\n",
         {b"HD": True, b"NS": False}),
        (lambda p: p.prepend(b"k", b"val"), b"ms k 3 O1 MP\r\nval\r\n",
         {b"HD": True, b"NS": False}),
        (lambda p: p.checkAndSet(b"k", b"val", b"77", 2, 9), b"ms k 3 O1 F2 T9 C77\r\nval\r\n",
         {b"HD": True, b"EX": False, b"NF": False}),
        (lambda p: p.checkAndSet(b"k", b"val", 78), b"ms k 3 O1 F0 T0 C78\r\nval\r\n",
         {b"HD": True, b"EX": False, b"NF": False}),
        (lambda p: p.delete(b"k"), b"md k O1\r\n", {b"HD": True, b"NF": False}),
        (lambda p: p.touch(b"k", 30), b"mg k O1 T30\r\n", {b"HD": True, b"EN": False}),
        (lambda p: p.invalidate(b"k"), b"md k O1 I\r\n", {b"HD": True, b"NF": False}),
        (lambda p: p.invalidate(b"k", 20), b"md k O1 I T20\r\n", {b"HD": True, b"NF": False}),
        (lambda p: p.leaseStore(b"k", b"val", 60, b"12"), b"ms k 3 O1 T60 C12 I\r\nval\r\n",
         {b"HD": True, b"EX": False, b"NF": False}),
        (lambda p: p.leaseStore(b"k", b"val", 0, None), b"ms k 3 O1 T0\r\nval\r\n",
         {b"HD": True, b"EX": False, b"NF": False}),
        (lambda p: p.leaseRelease(b"k", b"12", False), b"md k O1 C12\r\n",
         {b"HD": True, b"EX": False, b"NF": False}),
        (lambda p: p.leaseRelease(b"k", 12, True), b"md k O1 C12 I\r\n",
         {b"HD": True, b"EX": False, b"NF": False}),
    ],
)
def test_statusCommands(call: Any, line: bytes, replies: dict[bytes, bool]) -> None:
    """
    Each storage, deletion and touch command sends its meta form, opaque token first, and
    maps each status it accepts to its result.
    """
    for status, result in replies.items():
        proto, transport, _ = connect()
        d = call(proto)
        assert sent(transport) == line
        assert exchange(d, proto, status + b" O1\r\n") is result


@pytest.mark.parametrize(
    "call, reply",
    [
        (lambda p: p.set(b"k", b"v"), b"EX O1\r\n"),
        (lambda p: p.delete(b"k"), b"NS O1\r\n"),
        (lambda p: p.touch(b"k", 1), b"NF O1\r\n"),
        (lambda p: p.set(b"k", b"v"), b"HD O1 f0\r\n"),
        (lambda p: p.set(b"k", b"v"), b"HD O1 W\r\n"),
        (lambda p: p.delete(b"k"), b"VA 1 O1\r\nx\r\n"),
        (lambda p: p.get(b"k"), b"HD O1\r\n"),
        (lambda p: p.get(b"k"), b"VA 1 O1\r\nx\r\n"),
        (lambda p: p.get(b"k"), b"VA x O1 f0\r\n"),
        (lambda p: p.get(b"k"), b"VA 1 O1 f0 c5\r\nx\r\n"),
        (lambda p: p.get(b"k"), b"VA 1 O1 f99999999999\r\nx\r\n"),
        (lambda p: p.get(b"k"), b"VA 1 O1 f0 k\r\nx\r\n"),
        (lambda p: p.get(b"k", True), b"VA 1 O1 f0\r\nx\r\n"),
        (lambda p: p.get(b"k"), b"EN O1 f0\r\n"),
        (lambda p: p.get(b"k"), b"STORED\r\n"),
        (lambda p: p.increment(b"k"), b"HD O1\r\n"),
        (lambda p: p.version(), b"HD O1\r\n"),
        (lambda p: p.noop(), b"EN\r\n"),
    ],
)
def test_replyThatDoesNotFitIsAProtocolError(call: Any, reply: bytes) -> None:
    """
    A reply of the wrong kind, or with flags that were not asked for, fails the request with
    ProtocolError and drops the connection.
    """
    proto, transport, _ = connect()
    d = call(proto)
    proto.dataReceived(reply)
    failureOf(d, ProtocolError)
    assert transport.disconnecting and proto.closed


# Opaque tokens


@pytest.mark.parametrize(
    "reply", [b"VA 5 O3 f0\r\nhello\r\n", b"EN O7\r\n", b"EN\r\n", b"VA 5 f0\r\nhello\r\n"]
)
def test_mismatchedOpaqueFailsEveryPendingRequest(reply: bytes) -> None:
    """
    A reply carrying another request's opaque token (or none, where the server sends one)
    fails every pending request with ProtocolError, names the tokens, and drops the
    connection.
    """
    proto, transport, _ = connect()
    taggingMisses(proto, transport)
    first = proto.get(b"a")
    second = proto.set(b"b", b"1")
    proto.dataReceived(reply)
    error = failureOf(first, ProtocolError).value
    assert "O2 was expected" in str(error)
    failureOf(second, ProtocolError)
    assert transport.disconnecting


def test_extraReplyThatFitsTheCommandIsCaught() -> None:
    """
    An extra status reply of the right shape (the text protocol's blind spot: an extra
    STORED for a pending set) is caught by its opaque token.
    """
    proto, transport, _ = connect()
    first = proto.set(b"a", b"1")
    second = proto.set(b"b", b"2")
    proto.dataReceived(b"HD O1\r\nHD O1\r\n")
    assert resultOf(first) is True
    failureOf(second, ProtocolError)
    assert transport.disconnecting


def test_bareMissAcceptedFromServersThatDoNotTagMisses() -> None:
    """
    Before the probe, or against a server that sends misses without the token (before
    1.6.18), a bare EN answers the request at the head of the queue.
    """
    proto, transport, _ = connect()
    assert exchange(proto.get(b"a"), proto, b"EN\r\n") == (0, None)
    d = proto.probe()
    sent(transport)
    proto.dataReceived(b"VERSION 1.6.14\r\nMN\r\nEN\r\n")
    assert resultOf(d).tagsMisses is False
    assert exchange(proto.touch(b"a", 5), proto, b"EN\r\n") is False
    assert exchange(proto.get(b"a", True), proto, b"EN\r\n") == (0, b"", None)


def test_opaqueTokensAreUniquePerConnection() -> None:
    """
    Every request on a connection gets a token of its own, batches included.
    """
    proto, transport, clock = connect(batchGets=True)
    proto.set(b"a", b"1")
    proto.get(b"a")
    proto.get(b"b")
    clock.advance(0)
    proto.delete(b"a")
    proto.getMultiple([b"x", b"y"])
    tokens = [t for t in sent(transport).split() if t.startswith(b"O")]
    assert tokens == [b"O1", b"O2", b"O3", b"O4", b"O5", b"O6"]


# Batches of quiet gets


def test_concurrentGetsAreBatchedAsQuietMetaGetsClosedByNoop() -> None:
    """
    Gets made while a request is pending are sent at the end of the reactor turn as quiet
    mgs closed by mn; hits come back by opaque token, misses send nothing, and each get fires
    with its own result.
    """
    proto, transport, clock = connect(batchGets=True)
    first = proto.get(b"a")
    assert sent(transport) == b"mg a O1 v f\r\n"
    gets = [proto.get(b"b"), proto.get(b"c", True), proto.get(b"d"), proto.get(b"b")]
    assert sent(transport) == b""
    clock.advance(0)
    assert sent(transport) == (
        b"mg b O2 q v f\r\nmg c O3 q v f c\r\nmg d O4 q v f\r\nmg b O5 q v f\r\nmn\r\n"
    )
    proto.dataReceived(b"EN O1\r\nVA 1 O3 f4 c8\r\nC\r\nVA 1 O5 f0\r\nB\r\n")
    assert resultOf(first) == (0, None)
    for d in gets:
        assertNoResult(d)
    proto.dataReceived(b"MN\r\n")
    assert [resultOf(d) for d in gets] == [(0, None), (4, b"8", b"C"), (0, None), (0, b"B")]
    assert not transport.disconnecting


def test_batchIsSentBeforeTheNextOtherCommand() -> None:
    """
    Another command sent before the end of the turn sends the batch first, keeping the
    order of the replies.
    """
    proto, transport, clock = connect(batchGets=True)
    proto.get(b"a")
    proto.get(b"b")
    proto.set(b"c", b"1")
    assert sent(transport) == b"mg a O1 v f\r\nmg b O2 q v f\r\nmn\r\nms c 1 O3 F0 T0\r\n1\r\n"
    assert clock.getDelayedCalls() == [proto._timeoutCall]


def test_batchHitOutOfOrderIsAProtocolError() -> None:
    """
    Hits come back in the order sent: a hit for a key before one already answered fails the
    batch with ProtocolError.
    """
    proto, transport, clock = connect(batchGets=True)
    head = proto.get(b"a")
    gets = [proto.get(b"b"), proto.get(b"c")]
    clock.advance(0)
    proto.dataReceived(b"EN O1\r\nVA 1 O3 f0\r\nc\r\nVA 1 O2 f0\r\nb\r\n")
    assert resultOf(head) == (0, None)
    for d in gets:
        failureOf(d, ProtocolError)
    assert transport.disconnecting


def test_errorInsideABatchFailsOnlyTheKeysItMayAnswer() -> None:
    """
    An error reply inside a batch carries no token: the keys between the hit before it and
    the hit after it fail with it, and the other keys keep their results.
    """
    proto, transport, clock = connect(batchGets=True)
    proto.get(b"head")
    gets = [proto.get(k) for k in (b"a", b"b", b"c", b"d", b"e")]
    clock.advance(0)
    proto.dataReceived(
        b"EN O1\r\nVA 1 O2 f0\r\nA\r\nSERVER_ERROR refcount overflow during fetch\r\n"
        b"VA 1 O5 f0\r\nD\r\nMN\r\n"
    )
    assert resultOf(gets[0]) == (0, b"A")
    failureOf(gets[1], ServerError)
    failureOf(gets[2], ServerError)
    assert resultOf(gets[3]) == (0, b"D")
    assert resultOf(gets[4]) == (0, None)
    assert not transport.disconnecting


def test_errorAtTheEndOfABatchFailsTheUnansweredKeys() -> None:
    """
    An error reply after the last hit fails the keys sent after that hit.
    """
    proto, _, clock = connect(batchGets=True)
    proto.get(b"head")
    gets = [proto.get(k) for k in (b"a", b"b", b"c")]
    clock.advance(0)
    proto.dataReceived(b"EN O1\r\nVA 1 O2 f0\r\nA\r\nCLIENT_ERROR bad\r\nMN\r\n")
    assert resultOf(gets[0]) == (0, b"A")
    failureOf(gets[1], ClientError)
    failureOf(gets[2], ClientError)


def test_cancelledBatchMemberIsLeftOut() -> None:
    """
    A get cancelled before its batch is sent is left out of it; one cancelled after drops
    the connection.
    """
    proto, transport, clock = connect(batchGets=True)
    proto.get(b"a")
    kept = proto.get(b"b")
    dropped = proto.get(b"c")
    dropped.cancel()
    failureOf(dropped, CancelledError)
    clock.advance(0)
    assert sent(transport) == b"mg a O1 v f\r\nmg b O2 q v f\r\nmn\r\n"
    kept.cancel()
    failureOf(kept, CancelledError)
    assert transport.disconnecting


def test_getMultipleSendsEachKeyOnce() -> None:
    """
    getMultiple sends each distinct key once as a quiet mg, closed by mn, and fires with a
    dict keyed by the keys given, misses included.
    """
    proto, transport, _ = connect()
    d = proto.getMultiple([b"a", "b", b"a", b"c"])
    assert sent(transport) == b"mg a O1 q v f\r\nmg b O2 q v f\r\nmg c O3 q v f\r\nmn\r\n"
    result = exchange(d, proto, b"VA 1 O1 f2\r\nA\r\nVA 0 O3 f0\r\n\r\nMN\r\n")
    assert result == {b"a": (2, b"A"), "b": (0, None), b"c": (0, b"")}


def test_getMultipleFailsOnAnErrorForAnyKey() -> None:
    """
    An error reply to one of getMultiple's keys fails the whole request, and keeps the
    connection.
    """
    proto, transport, _ = connect()
    d = proto.getMultiple([b"a", b"b"], withIdentifier=True)
    assert sent(transport) == b"mg a O1 q v f c\r\nmg b O2 q v f c\r\nmn\r\n"
    proto.dataReceived(b"SERVER_ERROR out of memory\r\nMN\r\n")
    failureOf(d, ServerError)
    assert not transport.disconnecting


def test_getMultipleOfNothing() -> None:
    """
    getMultiple of no keys fires with an empty dict and sends nothing.
    """
    proto, transport, _ = connect()
    assert resultOf(proto.getMultiple([])) == {}
    assert transport.value() == b""


# Arithmetic


@pytest.mark.parametrize(
    "method, line", [("increment", b"ma n O1 v D5\r\n"), ("decrement", b"ma n O1 v D5 MD\r\n")]
)
def test_arithmetic(method: str, line: bytes) -> None:
    """
    increment and decrement send ma asking for the new value, and fire with it, or False for
    a missing key.
    """
    proto, transport, _ = connect()
    d = getattr(proto, method)(b"n", 5)
    assert sent(transport) == line
    assert exchange(d, proto, b"VA 2 O1\r\n15\r\n") == 15
    d = getattr(proto, method)(b"n", 5)
    assert exchange(d, proto, b"NF O2\r\n") is False


def test_arithmeticOnANonNumber() -> None:
    """
    memcached's CLIENT_ERROR for a value that is not a number fails the request and keeps the
    connection.
    """
    proto, transport, _ = connect()
    d = proto.increment(b"n")
    proto.dataReceived(b"CLIENT_ERROR cannot increment or decrement non-numeric value\r\n")
    assert "non-numeric" in str(failureOf(d, ClientError).value)
    assert not transport.disconnecting


def test_arithmeticReplyThatIsNotANumber() -> None:
    """
    A VA reply to ma whose data is not a number is a ProtocolError.
    """
    proto, _, _ = connect()
    d = proto.increment(b"n")
    proto.dataReceived(b"VA 2 O1\r\nab\r\n")
    failureOf(d, ProtocolError)


# Other commands


def test_textCommands() -> None:
    """
    stats, version, flush_all and mn are sent as they are and read their replies.
    """
    proto, transport, _ = connect()
    d = proto.stats(b"items")
    assert sent(transport) == b"stats items\r\n"
    assert exchange(d, proto, b"STAT a 1\r\nSTAT b two\r\nEND\r\n") == {b"a": b"1", b"b": b"two"}
    d = proto.version()
    assert sent(transport) == b"version\r\n"
    assert exchange(d, proto, b"VERSION 1.6.18\r\n") == b"1.6.18"
    d = proto.flushAll()
    assert sent(transport) == b"flush_all\r\n"
    assert exchange(d, proto, b"OK\r\n") is True
    d = proto.noop()
    assert sent(transport) == b"mn\r\n"
    assert exchange(d, proto, b"MN\r\n") is True


def test_itemInfo() -> None:
    """
    itemInfo sends me and reads the fields of the ME reply naming the key; EN gives None,
    and a reply naming another key is a ProtocolError.
    """
    proto, transport, _ = connect()
    d = proto.itemInfo(b"k")
    assert sent(transport) == b"me k\r\n"
    reply = b"ME k exp=-1 la=3 cas=7 fetch=no cls=1 size=61\r\n"
    assert exchange(d, proto, reply) == {
        b"exp": b"-1", b"la": b"3", b"cas": b"7", b"fetch": b"no", b"cls": b"1", b"size": b"61"
    }
    assert exchange(proto.itemInfo(b"k"), proto, b"EN\r\n") is None
    d = proto.itemInfo(b"k")
    proto.dataReceived(b"ME other exp=-1\r\n")
    failureOf(d, ProtocolError)


# Leases


@pytest.mark.parametrize(
    "reply, expected",
    [
        (b"VA 0 O1 f0 c5 W\r\n\r\n", LeaseReply(None, b"5", True, False, False)),
        (b"VA 0 O1 f0 c5 Z\r\n\r\n", LeaseReply(None, b"5", False, False, True)),
        (b"VA 3 O1 f9 c6\r\nval\r\n", LeaseReply(b"val", b"6", False, False, False, 9)),
        (b"VA 3 O1 f0 c6 X W\r\nold\r\n", LeaseReply(b"old", b"6", True, True, False)),
        (b"VA 3 O1 f2 c6 Z X\r\nold\r\n", LeaseReply(b"old", b"6", False, True, True, 2)),
        (b"VA 3 O1 c6 f0 W\r\nval\r\n", LeaseReply(b"val", b"6", True, False, False)),
        (b"EN O1\r\n", LeaseReply(None, b"", False, False, False)),
    ],
)
def test_leaseGet(reply: bytes, expected: LeaseReply) -> None:
    """
    leaseGet sends an mg that creates a placeholder on a miss (N) and recaches early (R),
    and reads the client flags and the win (W), stale (X) and taken (Z) flags; an empty
    placeholder has no value.
    """
    proto, transport, _ = connect()
    d = proto.leaseGet(b"k", 30, 10)
    assert sent(transport) == b"mg k O1 v f c N30 R10\r\n"
    assert exchange(d, proto, reply) == expected


def test_plainReadGivesBackTheLeaseOfAStaleItem() -> None:
    """
    A get handed the lease of a stale item returns its value and gives the lease back (md I)
    before its Deferred fires, so that a request sent by its callback comes after.
    """
    proto, transport, _ = connect()
    d = proto.get(b"k")
    sent(transport)
    after: list[Deferred[Any]] = []
    d.addCallback(lambda result: after.append(proto.get(b"k")) or result)
    proto.dataReceived(b"VA 3 O1 f0 X W\r\nold\r\n")
    assert resultOf(d) == (0, b"old")
    assert sent(transport) == b"md k O2 I\r\nmg k O3 v f\r\n"
    proto.dataReceived(b"HD O2\r\nVA 3 O3 f0 X W\r\nold\r\n")
    assert resultOf(after[0]) == (0, b"old")
    assert sent(transport) == b"md k O4 I\r\n"
    proto.dataReceived(b"NF O4\r\n")
    assert not transport.disconnecting and not proto._pending


def test_placeholderReadsAsAMiss() -> None:
    """
    A plain read of a lease's empty placeholder is a miss, in a batch too; a stale empty
    value is a value.
    """
    proto, _, clock = connect(batchGets=True)
    assert exchange(proto.get(b"k"), proto, b"VA 0 O1 f0 Z\r\n\r\n") == (0, None)
    head = proto.get(b"h")
    batched = [proto.get(b"k"), proto.get(b"j", True)]
    clock.advance(0)
    proto.dataReceived(b"EN O2\r\nVA 0 O3 f0 Z\r\n\r\nVA 0 O4 f0 c1 X Z\r\n\r\nMN\r\n")
    assert resultOf(head) == (0, None)
    assert [resultOf(d) for d in batched] == [(0, None), (0, b"1", b"")]


def test_touchGivesBackTheLeaseOfAStaleItem() -> None:
    """
    touch, being a read, gives back a stale item's lease it is handed.
    """
    proto, transport, _ = connect()
    d = proto.touch(b"k", 9)
    sent(transport)
    proto.dataReceived(b"HD O1 X W\r\n")
    assert resultOf(d) is True
    assert sent(transport) == b"md k O2 I\r\n"


# Validation: nothing the server would refuse is sent


@pytest.mark.parametrize(
    "call, error",
    [
        (lambda p: p.get(b"has space"), InvalidKeyError),
        (lambda p: p.get(b"k" * 251), InvalidKeyError),
        (lambda p: p.get(b""), InvalidKeyError),
        (lambda p: p.get(b"ctl\x01"), InvalidKeyError),
        (lambda p: p.get(3), InvalidTypeError),
        (lambda p: p.set(b"k", "text"), InvalidTypeError),
        (lambda p: p.set(b"k", b"v", flags=2**32), InvalidArgumentError),
        (lambda p: p.set(b"k", b"v", flags=-1), InvalidArgumentError),
        (lambda p: p.set(b"k", b"v", expireTime=2**31), InvalidArgumentError),
        (lambda p: p.set(b"k", b"v", expireTime=True), InvalidTypeError),
        (lambda p: p.set(b"k", b"v" * (2**20)), InvalidValueError),
        (lambda p: p.checkAndSet(b"k", b"v", b"12a"), InvalidArgumentError),
        (lambda p: p.checkAndSet(b"k", b"v", 2**64), InvalidArgumentError),
        (lambda p: p.checkAndSet(b"k", b"v", None), InvalidTypeError),
        (lambda p: p.increment(b"k", 2**64), InvalidArgumentError),
        (lambda p: p.decrement(b"k", -1), InvalidArgumentError),
        (lambda p: p.touch(b"k", 2**31), InvalidArgumentError),
        (lambda p: p.delete(b"a\r\nflush_all"), InvalidKeyError),
        (lambda p: p.getMultiple([b"ok", b"not ok"]), InvalidKeyError),
        (lambda p: p.getMultiple(b"abc"), InvalidTypeError),
        (lambda p: p.stats(b"a\r\nb"), InvalidArgumentError),
        (lambda p: p.itemInfo(b"a b"), InvalidKeyError),
        (lambda p: p.invalidate(b"k", 0), InvalidArgumentError),
        (lambda p: p.leaseGet(b"k", 0), InvalidArgumentError),
        (lambda p: p.leaseGet(b"k", 30, 60 * 60 * 24 * 31), InvalidArgumentError),
        (lambda p: p.leaseStore(b"k", b"v", -1, b"1"), InvalidArgumentError),
        (lambda p: p.leaseRelease(b"k", b"x", False), InvalidArgumentError),
    ],
)
def test_invalidRequestWritesNothing(call: Any, error: type[Exception]) -> None:
    """
    A key or argument the server would refuse fails the request with a typed error before
    anything is written, and the connection stays usable.
    """
    proto, transport, _ = connect()
    failureOf(call(proto), error)
    assert transport.value() == b""
    assert not proto.closed
    d = proto.noop()
    assert exchange(d, proto, b"MN\r\n") is True


def test_base64Keys() -> None:
    """
    With base64Keys, any bytes make a key, sent base64-encoded with the b flag; str keys are
    encoded as UTF-8 first.
    """
    proto, transport, clock = connect(base64Keys=True, batchGets=True)
    key = b"\x00 binary\r\nkey"
    token = b64encode(key)
    d = proto.get(key)
    assert sent(transport) == b"mg %s O1 b v f\r\n" % (token,)
    batched = proto.get("clé")
    clock.advance(0)
    assert sent(transport) == b"mg %s O2 b q v f\r\nmn\r\n" % (b64encode("clé".encode()),)
    proto.dataReceived(b"VA 1 O1 f0\r\nx\r\nMN\r\n")
    assert resultOf(d) == (0, b"x")
    assert resultOf(batched) == (0, None)
    proto.set(key, b"v")
    assert sent(transport) == b"ms %s 1 O3 b F0 T0\r\nv\r\n" % (token,)
    proto.itemInfo(key)
    assert sent(transport) == b"me %s b\r\n" % (token,)


@pytest.mark.parametrize("key", [b"", b"x" * 187, 7])
def test_base64KeysThatCannotBeSent(key: object) -> None:
    """
    With base64Keys, empty keys and keys longer than 186 bytes (250 once encoded) are
    refused before anything is written; 186 bytes pass.
    """
    proto, transport, _ = connect(base64Keys=True)
    failureOf(proto.get(key), InvalidKeyError, InvalidTypeError)  # type: ignore[arg-type]
    assert transport.value() == b""
    proto.get(b"\xff" * 186)
    assert len(transport.value().split(b" ")[1]) == 248


# Errors and dropping the connection


@pytest.mark.parametrize("reply", [b"CLIENT_ERROR bad data chunk\r\n", b"ERROR\r\n"])
def test_clientErrorToAStoreDropsTheConnection(reply: bytes) -> None:
    """
    CLIENT_ERROR or ERROR in reply to ms fails it and drops the connection, since the server
    may read the data block as a command; the other pending requests fail with
    ConnectionLostError.
    """
    proto, transport, _ = connect()
    d = proto.set(b"k", b"v")
    other = proto.get(b"k")
    proto.dataReceived(reply)
    failureOf(d, ClientError, UnknownCommandError)
    failureOf(other, ConnectionLostError)
    assert transport.disconnecting


def test_serverErrorToAStoreKeepsTheConnection() -> None:
    """
    SERVER_ERROR in reply to ms (e.g. object too large) fails it and keeps the connection,
    whose server swallowed the data block.
    """
    proto, transport, _ = connect()
    d = proto.set(b"k", b"v")
    other = proto.get(b"k")
    proto.dataReceived(b"SERVER_ERROR object too large for cache\r\nEN O2\r\n")
    assert "too large" in str(failureOf(d, ServerError).value)
    assert resultOf(other) == (0, None)
    assert not transport.disconnecting


def test_valueLongerThanMaxValueSize() -> None:
    """
    A VA announcing more than maxValueSize bytes is a ProtocolError, read no further.
    """
    proto, transport, _ = connect(maxValueSize=10)
    d = proto.get(b"k")
    proto.dataReceived(b"VA 11 O1 f0\r\n")
    assert "maxValueSize" in str(failureOf(d, ProtocolError).value)
    assert transport.disconnecting


def test_dataBlockNotEndedByCRLF() -> None:
    """
    A data block not followed by CRLF is a ProtocolError.
    """
    proto, _, _ = connect()
    d = proto.get(b"k")
    proto.dataReceived(b"VA 2 O1 f0\r\nabc\r\n")
    failureOf(d, ProtocolError)


def test_lineLongerThanMaxLineLength() -> None:
    """
    A reply line longer than maxLineLength without CRLF is a ProtocolError, so the buffer
    stays bounded.
    """
    proto, _, _ = connect()
    d = proto.get(b"k")
    proto.dataReceived(b"VA 1 O1 " + b"f" * 3000)
    failureOf(d, ProtocolError)


def test_unsolicitedData() -> None:
    """
    Data with no request pending is a ProtocolError that drops the connection.
    """
    proto, transport, _ = connect()
    proto.dataReceived(b"HD O1\r\n")
    assert transport.disconnecting
    failureOf(proto.get(b"k"), ConnectionLostError)


def test_replySplitAnywhere() -> None:
    """
    Replies split at every byte are read as a whole.
    """
    proto, _, clock = connect(batchGets=True)
    first = proto.get(b"a", True)
    rest = [proto.get(b"b"), proto.get(b"c")]
    clock.advance(0)
    for byte in b"VA 3 O1 f5 c9\r\nabc\r\nVA 2 O3 f1\r\nxy\r\nMN\r\n":
        proto.dataReceived(bytes([byte]))
    assert resultOf(first) == (5, b"9", b"abc")
    assert [resultOf(d) for d in rest] == [(0, None), (1, b"xy")]


def test_timeout() -> None:
    """
    Without data for timeOut seconds while requests are pending, they fail with TimeoutError
    and the connection is dropped; no timer is left behind.
    """
    proto, transport, clock = connect(timeOut=5)
    d = proto.get(b"k")
    clock.advance(4)
    assertNoResult(d)
    clock.advance(1)
    failureOf(d, TimeoutError)
    assert transport.disconnecting
    assert clock.getDelayedCalls() == []


def test_connectionLostFailsPendingAndLaterRequests() -> None:
    """
    Losing the connection fails the pending requests with its reason, and a later request
    at once with ConnectionLostError, writing nothing.
    """
    proto, transport, clock = connect(batchGets=True)
    d = proto.get(b"k")
    batched = proto.get(b"j")
    proto.connectionLost(Failure(ConnectionDone()))
    failureOf(d, ConnectionDone)
    failureOf(batched, ConnectionDone)
    transport.clear()
    failureOf(proto.set(b"k", b"v"), ConnectionLostError)
    failureOf(proto.getMultiple([b"a"]), ConnectionLostError)
    assert transport.value() == b""
    assert clock.getDelayedCalls() == []


def test_cancelPendingRequestDropsTheConnection() -> None:
    """
    Cancelling a pending request fails it with CancelledError, the others with
    ConnectionLostError, and drops the connection.
    """
    proto, transport, _ = connect()
    d = proto.get(b"k")
    other = proto.delete(b"k")
    d.cancel()
    failureOf(d, CancelledError)
    failureOf(other, ConnectionLostError)
    assert transport.disconnecting


def test_requestSentByACallbackWaitsForItsOwnReply() -> None:
    """
    A request sent by a callback while replies are being parsed is not answered by the rest
    of those bytes: an extra reply in them is unsolicited.
    """
    proto, transport, _ = connect()
    d = proto.get(b"k")
    later: list[Deferred[Any]] = []
    d.addCallback(lambda result: later.append(proto.get(b"k")))
    proto.dataReceived(b"EN O1\r\nEN O2\r\n")
    failureOf(later[0], ProtocolError)
    assert transport.disconnecting


# The probe


def test_probeOfACurrentServer() -> None:
    """
    The probe sends version, mn and an mg of a key nobody uses; a 1.6.18 server that copies
    the token onto the miss is a server whose misses are checked too.
    """
    proto, transport, _ = connect()
    d = proto.probe()
    line = sent(transport)
    assert line.startswith(b"version\r\nmn\r\nmg txconnpool:probe:")
    opaque = line.split(b" ")[-1].strip()
    proto.dataReceived(b"VERSION 1.6.18\r\nMN\r\nEN " + opaque + b"\r\n")
    info = resultOf(d)
    assert (info.version, info.tagsMisses) == (b"1.6.18", True)
    assert proto.serverInfo == info


@pytest.mark.parametrize(
    "replies, message",
    [
        (b"VERSION 1.5.22\r\nERROR\r\nERROR\r\n", "has no meta commands"),
        (b"VERSION 1.6.6\r\nMN\r\nEN\r\n", "early meta protocol"),
        (b"VERSION 1.6.9\r\nMN\r\nEN\r\n", "ElastiCache"),
        (b"VERSION 1.6.12\r\nMN\r\nCLIENT_ERROR invalid flag\r\n", "does not support"),
        (b"ERROR\r\nERROR\r\nERROR\r\n", "answered b'ERROR' to mn"),
    ],
)
def test_probeRefusesServersWithoutTheMetaProtocol(replies: bytes, message: str) -> None:
    """
    A server without meta commands, one speaking the early meta protocol of 1.6.0 to 1.6.9,
    or one refusing the probe's mg fails the probe with MetaProtocolUnsupportedError saying
    so.
    """
    from txconnpool.memcache.meta import MetaProtocolUnsupportedError

    proto, _, _ = connect()
    d = proto.probe()
    proto.dataReceived(replies)
    error = failureOf(d, MetaProtocolUnsupportedError).value
    assert message in str(error)


def test_probeOfAServerThatClosesTheConnection() -> None:
    """
    A server (or proxy) that closes the connection on the probe, as text-only ones do, fails
    it with MetaProtocolUnsupportedError; another failure is passed on as it is.
    """
    from txconnpool.memcache.meta import MetaProtocolUnsupportedError

    proto, _, _ = connect()
    d = proto.probe()
    proto.connectionLost(Failure(ConnectionDone()))
    assert "text protocol" in str(failureOf(d, MetaProtocolUnsupportedError).value)
    proto, _, clock = connect(timeOut=1)
    d = proto.probe()
    clock.advance(1)
    failureOf(d, TimeoutError)


def test_serverClosingItsSideFailsPendingRequests() -> None:
    """
    When the server closes its side of the connection, the pending requests fail with
    ConnectionDone at once and this side is closed too.
    """
    proto, transport, _ = connect()
    d = proto.get(b"k")
    proto.readConnectionLost()
    failureOf(d, ConnectionDone)
    assert transport.disconnecting and proto.closed
    proto.connectionLost(Failure(ConnectionDone()))
    failureOf(proto.get(b"k"), ConnectionLostError)
