"""
Unit tests of the gathering of concurrent gets into one multi-key get (batchGets).
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import CancelledError
from twisted.internet.error import ConnectionDone
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure

from txconnpool.errors import ConnectionLostError
from txconnpool.memcache.protocol import MemCacheProtocol

from .helpers import assertNoResult, failureOf, resultOf


def connect(**kwargs: Any) -> tuple[MemCacheProtocol, StringTransport, Clock]:
    """
    Return a batching protocol connected to a L{StringTransport}, with its L{Clock}.
    """
    clock = Clock()
    proto = MemCacheProtocol(clock=clock, batchGets=True, **kwargs)
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


def test_loneGetIsSentAtOnce() -> None:
    """
    A get made with nothing pending is sent at once, on its own.
    """
    proto, transport, clock = connect()
    d = proto.get(b"a")
    assert sent(transport) == b"get a\r\n"
    proto.dataReceived(b"VALUE a 1 1\r\nx\r\nEND\r\n")
    assert resultOf(d) == (1, b"x")
    assert clock.getDelayedCalls() == []


def test_getsMadeWhileBusyAreSentAsOneMultiGet() -> None:
    """
    Gets made while another request is pending are sent together at the end of the turn,
    each key once, and each get fires with its own result.
    """
    proto, transport, clock = connect()
    first = proto.get(b"a")
    sent(transport)
    ds = [proto.get(k) for k in (b"b", b"c", b"b", "d")]
    assert sent(transport) == b""
    clock.advance(0)
    assert sent(transport) == b"get b c d\r\n"
    proto.dataReceived(b"VALUE a 0 1\r\n1\r\nEND\r\n")
    assertNoResult(ds[0])
    proto.dataReceived(b"VALUE b 5 2\r\nbb\r\nVALUE d 0 1\r\nd\r\nEND\r\n")
    assert resultOf(first) == (0, b"1")
    assert [resultOf(d) for d in ds] == [(5, b"bb"), (0, None), (5, b"bb"), (0, b"d")]


def test_otherCommandFlushesTheBatchFirst() -> None:
    """
    Another command made while a batch is open sends the batch first, so replies stay in
    order.
    """
    proto, transport, clock = connect()
    proto.get(b"a")
    sent(transport)
    g = proto.get(b"b")
    s = proto.set(b"c", b"v")
    assert sent(transport) == b"get b\r\nset c 0 0 1\r\nv\r\n"
    # The end-of-turn call stays for other batches of the turn, and then sends nothing.
    clock.advance(0)
    assert sent(transport) == b""
    assert [call.getTime() for call in clock.getDelayedCalls()] == [60.0]
    proto.dataReceived(b"END\r\nVALUE b 0 1\r\nB\r\nEND\r\nSTORED\r\n")
    assert resultOf(g) == (0, b"B")
    assert resultOf(s) is True


def test_getsWithIdentifierBatchSeparately() -> None:
    """
    Gets with and without identifiers go in separate batches (gets and get).
    """
    proto, transport, clock = connect()
    proto.get(b"a")
    sent(transport)
    plain = proto.get(b"b")
    withCas = proto.get(b"b", withIdentifier=True)
    clock.advance(0)
    assert sent(transport) == b"get b\r\ngets b\r\n"
    proto.dataReceived(b"END\r\nVALUE b 0 1\r\nB\r\nEND\r\nVALUE b 0 1 77\r\nB\r\nEND\r\n")
    assert resultOf(plain) == (0, b"B")
    assert resultOf(withCas) == (0, b"77", b"B")


def test_cancelBeforeSendingLeavesTheKeyOut() -> None:
    """
    A batched get cancelled before the batch is sent fails with CancelledError and is left
    out; a batch whose gets were all cancelled sends nothing.
    """
    proto, transport, clock = connect()
    proto.get(b"a")
    sent(transport)
    b, c = proto.get(b"b"), proto.get(b"c")
    b.cancel()
    failureOf(b, CancelledError)
    clock.advance(0)
    assert sent(transport) == b"get c\r\n"
    proto.dataReceived(b"END\r\nVALUE c 0 1\r\nC\r\nEND\r\n")
    assert resultOf(c) == (0, b"C")
    proto2, transport2, clock2 = connect()
    proto2.get(b"a")
    sent(transport2)
    only = proto2.get(b"z")
    only.cancel()
    clock2.advance(0)
    assert sent(transport2) == b""
    proto2.dataReceived(b"END\r\n")
    assert not transport2.disconnecting
    assert clock2.getDelayedCalls() == []


def test_cancelAfterSendingDropsTheConnection() -> None:
    """
    A batched get cancelled after the batch was sent fails with CancelledError and drops the
    connection; the other gets of the batch fail with ConnectionLostError.
    """
    proto, transport, clock = connect()
    proto.get(b"a")
    b, c = proto.get(b"b"), proto.get(b"c")
    clock.advance(0)
    b.cancel()
    failureOf(b, CancelledError)
    failureOf(c, ConnectionLostError)
    assert transport.disconnecting


def test_connectionLostFailsTheBatch() -> None:
    """
    A connection lost with a batch open or sent fails every get in it, exactly once, and
    leaves no timer behind.
    """
    proto, _, clock = connect(timeOut=None)
    first = proto.get(b"a")
    ds = [proto.get(b"b"), proto.get(b"c")]
    proto.connectionLost(Failure(ConnectionDone()))
    failureOf(first, ConnectionDone)
    for d in ds:
        failureOf(d, ConnectionDone)
    assert clock.getDelayedCalls() == []
    failureOf(proto.get(b"d"), ConnectionLostError)


def test_getsAlternatingWithOtherCommandsAreSentAtOnce() -> None:
    """
    After several batches of one get each (gets alternating with other commands), gets are
    sent at once, unbatched, for a while; then batching is tried again.
    """
    from txconnpool.memcache._wire import LONELY_BATCHES, UNBATCHED_GETS

    proto, transport, clock = connect()
    proto.set(b"first", b"v")
    sent(transport)
    for i in range(LONELY_BATCHES):
        proto.get(b"g%d" % i)
        proto.set(b"s%d" % i, b"v")
    sent(transport)
    assert clock.getDelayedCalls()[0].getTime() == 0.0
    clock.advance(0)
    proto.get(b"direct")
    assert sent(transport) == b"get direct\r\n"
    for i in range(UNBATCHED_GETS):
        proto.get(b"d%d" % i)
    sent(transport)
    proto.get(b"batched")
    proto.get(b"again")
    assert sent(transport) == b""
    clock.advance(0)
    assert sent(transport) == b"get batched again\r\n"
