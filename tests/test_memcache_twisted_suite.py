"""
Twisted's own memcache client tests (C{twisted.test.test_memcache}), ported to
L{txconnpool.memcache.protocol.MemCacheProtocol}.

Each test keeps the name of the Twisted test it ports and drives the protocol as Twisted's
suite does: constructed without arguments, its C{callLater} replaced by a L{Clock}'s, over a
L{StringTransportWithDisconnection} (whose C{loseConnection} calls C{connectionLost} at once).
Where txconnpool deliberately behaves differently, the test asserts txconnpool's behaviour and
its docstring says what Twisted does and why txconnpool differs; docs/memcache-differences.rst
lists the same differences.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from twisted.internet.defer import Deferred, TimeoutError
from twisted.internet.error import ConnectionDone
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransportWithDisconnection
from twisted.protocols import memcache as twistedMemcache
from twisted.python.failure import Failure

from txconnpool.errors import ConnectionLostError, ProtocolError
from txconnpool.memcache.errors import (
    ClientError,
    InvalidKeyError,
    InvalidRequestError,
    InvalidTypeError,
    ServerError,
    UnknownCommandError,
)
from txconnpool.memcache.protocol import MemCacheProtocol

from .helpers import assertNoResult, failureOf, resultOf


def connected() -> tuple[MemCacheProtocol, StringTransportWithDisconnection, Clock]:
    """
    Return a protocol set up as in the C{setUp} of Twisted's C{MemCacheTests}.
    """
    proto = MemCacheProtocol()
    clock = Clock()
    proto.callLater = clock.callLater  # type: ignore[method-assign,assignment]
    transport = StringTransportWithDisconnection()
    transport.protocol = proto
    proto.makeConnection(transport)  # type: ignore[no-untyped-call]
    return proto, transport, clock


def disconnected() -> tuple[MemCacheProtocol, StringTransportWithDisconnection, Clock]:
    """
    Return a protocol set up as in the C{setUp} of Twisted's C{CommandFailureTests}: connected,
    then disconnected.
    """
    proto, transport, clock = connected()
    transport.loseConnection()
    transport.clear()
    return proto, transport, clock


def check(
    proto: MemCacheProtocol,
    transport: StringTransportWithDisconnection,
    d: Deferred[Any],
    send: bytes,
    recv: bytes,
    result: object,
) -> None:
    """
    Assert that the request C{d} sent C{send} and, once C{recv} is received, fires with
    C{result} (of the same type), as Twisted's C{MemCacheTests._test} does.
    """
    assert transport.value() == send
    assertNoResult(d)
    proto.dataReceived(recv)
    actual = resultOf(d)
    assert actual == result
    assert type(actual) is type(result)


def trackLost(proto: MemCacheProtocol) -> list[Failure]:
    """
    Replace C{proto.connectionLost} by a recorder, as Twisted's timeout tests do, and return the
    list it records the reasons in.
    """
    reasons: list[Failure] = []
    proto.connectionLost = reasons.append  # type: ignore[assignment,method-assign]
    return reasons


def errorOf(d: Deferred[Any], *errorTypes: type[BaseException]) -> BaseException:
    """
    Return the exception C{d} failed with, checking its type.
    """
    error = failureOf(d, *errorTypes).value
    assert isinstance(error, BaseException)
    return error


# CommandMixin: each command's wire format and result, on a connected protocol.


def test_get() -> None:
    """
    get sends "get key" and fires with (flags, value) from the server's VALUE block.
    """
    proto, transport, _ = connected()
    check(
        proto,
        transport,
        proto.get(b"foo"),
        b"get foo\r\n",
        b"VALUE foo 0 3\r\nbar\r\nEND\r\n",
        (0, b"bar"),
    )


def test_emptyGet() -> None:
    """
    get of a key the server does not have fires with (0, None).
    """
    proto, transport, _ = connected()
    check(proto, transport, proto.get(b"foo"), b"get foo\r\n", b"END\r\n", (0, None))


def test_getMultiple() -> None:
    """
    getMultiple sends one get for all keys and fires with a dict of (flags, value) per key.
    """
    proto, transport, _ = connected()
    check(
        proto,
        transport,
        proto.getMultiple([b"foo", b"cow"]),
        b"get foo cow\r\n",
        b"VALUE foo 0 3\r\nbar\r\nVALUE cow 0 7\r\nchicken\r\nEND\r\n",
        {b"cow": (0, b"chicken"), b"foo": (0, b"bar")},
    )


def test_getMultipleWithEmpty() -> None:
    """
    getMultiple gives (0, None) for the keys the server does not return.
    """
    proto, transport, _ = connected()
    check(
        proto,
        transport,
        proto.getMultiple([b"foo", b"cow"]),
        b"get foo cow\r\n",
        b"VALUE cow 1 3\r\nbar\r\nEND\r\n",
        {b"cow": (1, b"bar"), b"foo": (0, None)},
    )


def test_set() -> None:
    """
    set sends the command line and the data block, and fires with True on STORED.
    """
    proto, transport, _ = connected()
    check(
        proto,
        transport,
        proto.set(b"foo", b"bar"),
        b"set foo 0 0 3\r\nbar\r\n",
        b"STORED\r\n",
        True,
    )


def test_add() -> None:
    """
    add sends the command line and the data block, and fires with True on STORED.
    """
    proto, transport, _ = connected()
    check(
        proto,
        transport,
        proto.add(b"foo", b"bar"),
        b"add foo 0 0 3\r\nbar\r\n",
        b"STORED\r\n",
        True,
    )


def test_replace() -> None:
    """
    replace sends the command line and the data block, and fires with True on STORED.
    """
    proto, transport, _ = connected()
    check(
        proto,
        transport,
        proto.replace(b"foo", b"bar"),
        b"replace foo 0 0 3\r\nbar\r\n",
        b"STORED\r\n",
        True,
    )


def test_errorAdd() -> None:
    """
    An add the server refuses with NOT_STORED (the key exists) fires with False.
    """
    proto, transport, _ = connected()
    check(
        proto,
        transport,
        proto.add(b"foo", b"bar"),
        b"add foo 0 0 3\r\nbar\r\n",
        b"NOT_STORED\r\n",
        False,
    )


def test_errorReplace() -> None:
    """
    A replace the server refuses with NOT_STORED (the key is missing) fires with False.
    """
    proto, transport, _ = connected()
    check(
        proto,
        transport,
        proto.replace(b"foo", b"bar"),
        b"replace foo 0 0 3\r\nbar\r\n",
        b"NOT_STORED\r\n",
        False,
    )


def test_delete() -> None:
    """
    delete sends "delete key" and fires with True on DELETED.
    """
    proto, transport, _ = connected()
    check(proto, transport, proto.delete(b"bar"), b"delete bar\r\n", b"DELETED\r\n", True)


def test_errorDelete() -> None:
    """
    A delete of a missing key, answered NOT_FOUND, fires with False.
    """
    proto, transport, _ = connected()
    check(proto, transport, proto.delete(b"bar"), b"delete bar\r\n", b"NOT_FOUND\r\n", False)


@pytest.mark.parametrize(
    "call, send, reply",
    [
        (lambda p: p.add(b"foo", b"bar"), b"add foo 0 0 3\r\nbar\r\n", b"NOT STORED\r\n"),
        (
            lambda p: p.replace(b"foo", b"bar"),
            b"replace foo 0 0 3\r\nbar\r\n",
            b"NOT STORED\r\n",
        ),
        (lambda p: p.delete(b"bar"), b"delete bar\r\n", b"NOT FOUND\r\n"),
    ],
    ids=["errorAdd", "errorReplace", "errorDelete"],
)
def test_spacedNegativeReplyIsProtocolError(
    call: Callable[[MemCacheProtocol], Deferred[Any]], send: bytes, reply: bytes
) -> None:
    """
    A "NOT STORED" or "NOT FOUND" reply (a space instead of memcached's underscore) fails the
    request with ProtocolError and drops the connection.

    Twisted's test_errorAdd, test_errorReplace and test_errorDelete feed these spaced forms and
    expect False: Twisted's parser turns spaces into underscores when looking a reply up.
    memcached never sends them, so txconnpool accepts only the replies memcached sends for
    each command and treats anything else as a connection out of step.
    """
    proto, transport, _ = connected()
    d = call(proto)
    assert transport.value() == send
    later = proto.get(b"later")
    proto.dataReceived(reply)
    failureOf(d, ProtocolError)
    failureOf(later, ProtocolError)
    assert not transport.connected


def test_increment() -> None:
    """
    increment sends "incr key 1" and fires with the new value as an int.
    """
    proto, transport, _ = connected()
    check(proto, transport, proto.increment(b"foo"), b"incr foo 1\r\n", b"4\r\n", 4)


def test_decrement() -> None:
    """
    decrement sends "decr key 1" and fires with the new value as an int.
    """
    proto, transport, _ = connected()
    check(proto, transport, proto.decrement(b"foo"), b"decr foo 1\r\n", b"5\r\n", 5)


def test_incrementVal() -> None:
    """
    increment sends the amount it is given instead of 1.
    """
    proto, transport, _ = connected()
    check(proto, transport, proto.increment(b"foo", 8), b"incr foo 8\r\n", b"4\r\n", 4)


def test_decrementVal() -> None:
    """
    decrement sends the amount it is given instead of 1.
    """
    proto, transport, _ = connected()
    check(proto, transport, proto.decrement(b"foo", 3), b"decr foo 3\r\n", b"5\r\n", 5)


def test_stats() -> None:
    """
    stats sends "stats" and fires with a dict of the STAT lines' names and values.
    """
    proto, transport, _ = connected()
    check(
        proto,
        transport,
        proto.stats(),
        b"stats\r\n",
        b"STAT foo bar\r\nSTAT egg spam\r\nEND\r\n",
        {b"foo": b"bar", b"egg": b"spam"},
    )


def test_statsWithArgument() -> None:
    """
    stats sends its argument after the command and parses the STAT lines the same way.
    """
    proto, transport, _ = connected()
    check(
        proto,
        transport,
        proto.stats(b"blah"),
        b"stats blah\r\n",
        b"STAT foo bar\r\nSTAT egg spam\r\nEND\r\n",
        {b"foo": b"bar", b"egg": b"spam"},
    )


def test_version() -> None:
    """
    version sends "version" and fires with the version the server reports, as bytes.
    """
    proto, transport, _ = connected()
    check(proto, transport, proto.version(), b"version\r\n", b"VERSION 1.1\r\n", b"1.1")


def test_flushAll() -> None:
    """
    flushAll sends "flush_all" and fires with True on OK.
    """
    proto, transport, _ = connected()
    check(proto, transport, proto.flushAll(), b"flush_all\r\n", b"OK\r\n", True)


def test_append() -> None:
    """
    append sends zero flags and expiry with the data block and fires with True on STORED.
    """
    proto, transport, _ = connected()
    check(
        proto,
        transport,
        proto.append(b"foo", b"bar"),
        b"append foo 0 0 3\r\nbar\r\n",
        b"STORED\r\n",
        True,
    )


def test_prepend() -> None:
    """
    prepend sends zero flags and expiry with the data block and fires with True on STORED.
    """
    proto, transport, _ = connected()
    check(
        proto,
        transport,
        proto.prepend(b"foo", b"bar"),
        b"prepend foo 0 0 3\r\nbar\r\n",
        b"STORED\r\n",
        True,
    )


def test_gets() -> None:
    """
    get with withIdentifier sends gets and fires with (flags, CAS identifier, value).
    """
    proto, transport, _ = connected()
    check(
        proto,
        transport,
        proto.get(b"foo", True),
        b"gets foo\r\n",
        b"VALUE foo 0 3 1234\r\nbar\r\nEND\r\n",
        (0, b"1234", b"bar"),
    )


def test_emptyGets() -> None:
    """
    gets of a key the server does not have fires with (0, b"", None).
    """
    proto, transport, _ = connected()
    check(proto, transport, proto.get(b"foo", True), b"gets foo\r\n", b"END\r\n", (0, b"", None))


def test_getsMultiple() -> None:
    """
    getMultiple with withIdentifier sends gets and fires with (flags, CAS, value) per key.
    """
    proto, transport, _ = connected()
    check(
        proto,
        transport,
        proto.getMultiple([b"foo", b"bar"], True),
        b"gets foo bar\r\n",
        b"VALUE foo 0 3 1234\r\negg\r\nVALUE bar 0 4 2345\r\nspam\r\nEND\r\n",
        {b"bar": (0, b"2345", b"spam"), b"foo": (0, b"1234", b"egg")},
    )


def test_getsMultipleIterableKeys() -> None:
    """
    getMultiple accepts any iterable of keys, such as an iterator.
    """
    proto, transport, _ = connected()
    check(
        proto,
        transport,
        proto.getMultiple(iter([b"foo", b"bar"]), True),
        b"gets foo bar\r\n",
        b"VALUE foo 0 3 1234\r\negg\r\nVALUE bar 0 4 2345\r\nspam\r\nEND\r\n",
        {b"bar": (0, b"2345", b"spam"), b"foo": (0, b"1234", b"egg")},
    )


def test_getsMultipleWithEmpty() -> None:
    """
    getMultiple with withIdentifier gives (0, b"", None) for the keys the server does not
    return.
    """
    proto, transport, _ = connected()
    check(
        proto,
        transport,
        proto.getMultiple([b"foo", b"bar"], True),
        b"gets foo bar\r\n",
        b"VALUE foo 0 3 1234\r\negg\r\nEND\r\n",
        {b"bar": (0, b"", None), b"foo": (0, b"1234", b"egg")},
    )


def test_checkAndSet() -> None:
    """
    checkAndSet sends cas with the identifier last and fires with True on STORED.
    """
    proto, transport, _ = connected()
    check(
        proto,
        transport,
        proto.checkAndSet(b"foo", b"bar", cas=b"1234"),
        b"cas foo 0 0 3 1234\r\nbar\r\n",
        b"STORED\r\n",
        True,
    )


def test_casUnknowKey() -> None:
    """
    checkAndSet fires with False when the server answers EXISTS.
    """
    proto, transport, _ = connected()
    check(
        proto,
        transport,
        proto.checkAndSet(b"foo", b"bar", cas=b"1234"),
        b"cas foo 0 0 3 1234\r\nbar\r\n",
        b"EXISTS\r\n",
        False,
    )


# MemCacheTests: replies that do not fit, timeouts, connection loss, bad arguments.


def test_invalidGetResponse() -> None:
    """
    A VALUE for another key than the one a get asked for fails the get with ProtocolError and
    drops the connection, and nothing is raised out of dataReceived.

    Twisted raises RuntimeError out of dataReceived and leaves the get's Deferred unfired;
    txconnpool fires every Deferred, and a connection that is out of step must not be used
    again.
    """
    proto, transport, _ = connected()
    d = proto.get(b"foo")
    proto.dataReceived(b"VALUE bar 0 7\r\nspamegg\r\nEND\r\n")
    assert "not requested" in str(errorOf(d, ProtocolError))
    assert not transport.connected


def test_invalidMultipleGetResponse() -> None:
    """
    A VALUE for a key getMultiple did not ask for fails it with ProtocolError and drops the
    connection, and nothing is raised out of dataReceived.

    Twisted raises RuntimeError out of dataReceived and leaves the Deferred unfired; txconnpool
    fires every Deferred and stops using a connection that is out of step.
    """
    proto, transport, _ = connected()
    d = proto.getMultiple([b"foo", b"bar"])
    proto.dataReceived(b"VALUE egg 0 7\r\nspamegg\r\nEND\r\n")
    assert "not requested" in str(errorOf(d, ProtocolError))
    assert not transport.connected


def test_invalidEndResponse() -> None:
    """
    An END in reply to set fails the set with ProtocolError and drops the connection, and
    nothing is raised out of dataReceived.

    Twisted raises RuntimeError out of dataReceived and leaves the set's Deferred unfired
    forever; txconnpool fires it, and the requests pipelined behind it, and stops using a
    connection that is out of step.
    """
    proto, transport, _ = connected()
    d = proto.set(b"key", b"value")
    later = proto.get(b"later")
    proto.dataReceived(b"END\r\n")
    assert "to set" in str(errorOf(d, ProtocolError))
    failureOf(later, ProtocolError)
    assert not transport.connected


def test_timeOut() -> None:
    """
    When no reply arrives for timeOut seconds, every pending request fails with TimeoutError
    whose message names the delay, and the connection is aborted.

    Twisted's message is "Connection timeout" and Twisted closes with loseConnection;
    txconnpool says how long it waited and for how many requests, and aborts the connection,
    since nothing more should be written to a server that stopped answering.
    """
    proto, transport, clock = connected()
    d1 = proto.get(b"foo")
    d2 = proto.get(b"bar")
    lost = trackLost(proto)
    clock.advance(proto.timeOut)  # type: ignore[arg-type]
    message = str(errorOf(d1, TimeoutError))
    assert "60 seconds" in message and "2 requests" in message
    failureOf(d2, TimeoutError)
    assert len(lost) == 1 and lost[0].check(ConnectionDone)
    assert transport.disconnected


def test_timeoutRemoved() -> None:
    """
    Once the pending request has its reply, no delayed call is left.
    """
    proto, _, clock = connected()
    d = proto.get(b"foo")
    clock.advance(proto.timeOut - 1)  # type: ignore[operator]
    proto.dataReceived(b"VALUE foo 0 3\r\nbar\r\nEND\r\n")
    assert resultOf(d) == (0, b"bar")
    assert clock.getDelayedCalls() == []


def test_timeOutRaw() -> None:
    """
    A get whose data block stops arriving part way times out, timeOut seconds after the last
    data, and the connection is closed.
    """
    proto, _, clock = connected()
    d1 = proto.get(b"foo")
    lost = trackLost(proto)
    proto.dataReceived(b"VALUE foo 0 10\r\n12345")
    clock.advance(proto.timeOut)  # type: ignore[arg-type]
    failureOf(d1, TimeoutError)
    assert len(lost) == 1 and lost[0].check(ConnectionDone)


def test_timeOutStat() -> None:
    """
    A stats whose END never arrives times out, timeOut seconds after its last STAT line, and
    the connection is closed.
    """
    proto, _, clock = connected()
    d1 = proto.stats()
    lost = trackLost(proto)
    proto.dataReceived(b"STAT foo bar\r\n")
    clock.advance(proto.timeOut)  # type: ignore[arg-type]
    failureOf(d1, TimeoutError)
    assert len(lost) == 1 and lost[0].check(ConnectionDone)


def test_timeoutPipelining() -> None:
    """
    With two requests pending, the first reply leaves one delayed call, and the second
    request times out timeOut seconds after that reply.
    """
    proto, _, clock = connected()
    timeOut = int(proto.timeOut)  # type: ignore[arg-type]
    d1 = proto.get(b"foo")
    d2 = proto.get(b"bar")
    lost = trackLost(proto)
    clock.advance(timeOut - 1)
    proto.dataReceived(b"VALUE foo 0 3\r\nbar\r\nEND\r\n")
    assert resultOf(d1) == (0, b"bar")
    assert len(clock.getDelayedCalls()) == 1
    for _ in range(timeOut - 1):
        clock.advance(1)
    assertNoResult(d2)
    clock.advance(1)
    failureOf(d2, TimeoutError)
    assert clock.seconds() == 2 * timeOut - 1
    assert len(lost) == 1 and lost[0].check(ConnectionDone)


def test_timeoutNotReset() -> None:
    """
    Sending another request does not restart the timeout of the requests already pending.
    """
    proto, _, clock = connected()
    d1 = proto.get(b"foo")
    lost = trackLost(proto)
    clock.advance(proto.timeOut - 1)  # type: ignore[operator]
    d2 = proto.get(b"bar")
    clock.advance(1)
    failureOf(d1, TimeoutError)
    failureOf(d2, TimeoutError)
    assert len(lost) == 1 and lost[0].check(ConnectionDone)


def test_timeoutCleanDeferreds() -> None:
    """
    After a timeout, the timed-out request fails with TimeoutError (the connectionLost that
    follows does not fire it again) and a new request fails at once with ConnectionLostError,
    writing nothing.

    Twisted fails the new request with RuntimeError("not connected"); txconnpool uses
    ConnectionLostError, the error a pool and its callers expect for a connection that is gone.
    """
    proto, transport, clock = connected()
    d1 = proto.get(b"foo")
    clock.advance(proto.timeOut)  # type: ignore[arg-type]
    failureOf(d1, TimeoutError)
    transport.clear()
    d2 = proto.get(b"bar")
    failureOf(d2, ConnectionLostError)
    assert transport.value() == b""


def test_connectionLost() -> None:
    """
    When the connection is lost with requests pending, they all fail with its reason.
    """
    proto, transport, _ = connected()
    d1 = proto.get(b"foo")
    d2 = proto.get(b"bar")
    transport.loseConnection()
    failureOf(d1, ConnectionDone)
    failureOf(d2, ConnectionDone)


def test_tooLongKey() -> None:
    """
    Every command refuses a key longer than 250 bytes with InvalidKeyError, a ValueError, and
    writes nothing.

    Twisted fails with its ClientError, the exception it also uses for the server's
    CLIENT_ERROR reply, and does not check the key of delete at all; txconnpool raises a
    ValueError naming the problem, so that a request that was never sent is told apart from
    one the server refused, and checks every command's key.
    """
    proto, transport, _ = connected()
    long = b"a" * 500
    requests: list[Deferred[Any]] = [
        proto.set(long, b"bar"),
        proto.increment(long),
        proto.get(long),
        proto.append(long, b"bar"),
        proto.prepend(long, b"bar"),
        proto.getMultiple([b"foo", long]),
        proto.delete(long),
        proto.touch(long, 0),
    ]
    for d in requests:
        error = errorOf(d, InvalidKeyError)
        assert isinstance(error, ValueError)
        assert not isinstance(error, twistedMemcache.ClientError)
        assert "at most 250 bytes" in str(error)
    assert transport.value() == b""
    assert transport.connected


def test_invalidCommand() -> None:
    """
    An ERROR reply to a storage command fails it with UnknownCommandError, which is Twisted's
    NoSuchCommand, and drops the connection; the requests behind it fail with
    ConnectionLostError.

    Twisted's test sends an unknown command with a data block through the private _set and
    keeps the connection after ERROR; txconnpool has no way to send an unknown command, and
    drops the connection because memcached, not knowing the command line, reads the data
    block that follows as a command of its own.
    """
    proto, transport, _ = connected()
    d = proto.set(b"foo", b"bar")
    later = proto.get(b"later")
    proto.dataReceived(b"ERROR\r\n")
    error = errorOf(d, UnknownCommandError)
    assert isinstance(error, twistedMemcache.NoSuchCommand)
    failureOf(later, ConnectionLostError)
    assert not transport.connected


def test_invalidCommandWithoutDataBlock() -> None:
    """
    An ERROR reply to a command without a data block fails it with NoSuchCommand and keeps
    the connection, as Twisted does.
    """
    proto, transport, _ = connected()
    d = proto.touch(b"foo", 10)
    later = proto.get(b"later")
    proto.dataReceived(b"ERROR\r\n")
    assert isinstance(errorOf(d, UnknownCommandError), twistedMemcache.NoSuchCommand)
    proto.dataReceived(b"END\r\n")
    assert resultOf(later) == (0, None)
    assert transport.connected


def test_clientError() -> None:
    """
    A CLIENT_ERROR reply to set fails it with ClientError (Twisted's ClientError) carrying
    the server's text in serverMessage, and drops the connection.

    Twisted makes the message repr(text) and keeps the connection; txconnpool's message also
    names the command, and it drops the connection because after a CLIENT_ERROR to a command
    line memcached may read the data block that follows as a command.
    """
    proto, transport, _ = connected()
    d = proto.set(b"foo", b"eggspamm")
    assert transport.value() == b"set foo 0 0 8\r\neggspamm\r\n"
    proto.dataReceived(b"CLIENT_ERROR We don't like egg and spam\r\n")
    error = errorOf(d, ClientError)
    assert isinstance(error, ClientError)
    assert isinstance(error, twistedMemcache.ClientError)
    assert error.serverMessage == "We don't like egg and spam"
    assert error.command == "set"
    assert "We don't like egg and spam" in str(error)
    assert not transport.connected


def test_clientErrorWithoutDataBlock() -> None:
    """
    A CLIENT_ERROR reply to a command without a data block fails it with ClientError and
    keeps the connection, as Twisted does.
    """
    proto, transport, _ = connected()
    d = proto.increment(b"foo")
    proto.dataReceived(b"CLIENT_ERROR cannot increment or decrement non-numeric value\r\n")
    error = errorOf(d, ClientError)
    assert isinstance(error, twistedMemcache.ClientError)
    assert transport.connected
    transport.clear()
    check(proto, transport, proto.version(), b"version\r\n", b"VERSION 1.1\r\n", b"1.1")


def test_serverError() -> None:
    """
    A SERVER_ERROR reply fails the request with ServerError (Twisted's ServerError) carrying
    the server's text in serverMessage, and keeps the connection.

    Twisted makes the message repr(text); txconnpool keeps the text as serverMessage, and its
    message says which command the server answered.
    """
    proto, transport, _ = connected()
    d = proto.set(b"foo", b"eggspamm")
    assert transport.value() == b"set foo 0 0 8\r\neggspamm\r\n"
    proto.dataReceived(b"SERVER_ERROR zomg\r\n")
    error = errorOf(d, ServerError)
    assert isinstance(error, ServerError)
    assert isinstance(error, twistedMemcache.ServerError)
    assert error.serverMessage == "zomg"
    assert "zomg" in str(error) and "set" in str(error)
    assert transport.connected


def test_unicodeKey() -> None:
    """
    A str key is sent encoded as UTF-8, and a key that is neither bytes nor str fails with
    InvalidTypeError, a TypeError, writing nothing.

    Twisted refuses str keys with ClientError; txconnpool accepts them as the text of the key
    (Python 3 code naturally has str keys), and refuses other types with a TypeError, which a
    bad argument type is in Python.
    """
    proto, transport, _ = connected()
    proto.set("foo", b"bar")
    proto.increment("egg")
    proto.delete("bar")
    proto.append("foo", b"bar")
    proto.prepend("foo", b"bar")
    assert transport.value() == (
        b"set foo 0 0 3\r\nbar\r\n"
        b"incr egg 1\r\n"
        b"delete bar\r\n"
        b"append foo 0 0 3\r\nbar\r\n"
        b"prepend foo 0 0 3\r\nbar\r\n"
    )
    transport.clear()
    badKey = proto.get(1)  # type: ignore[call-overload]
    badKeyAmongOthers = proto.getMultiple([b"egg", 1])  # type: ignore[type-var]
    for d in [badKey, badKeyAmongOthers]:
        error = errorOf(d, InvalidTypeError)
        assert isinstance(error, TypeError)
        assert not isinstance(error, twistedMemcache.ClientError)
    assert transport.value() == b""


def test_unicodeValue() -> None:
    """
    A str value fails with InvalidTypeError, a TypeError, and writes nothing.

    Twisted fails with its ClientError, also used for the server's CLIENT_ERROR reply;
    txconnpool raises the TypeError a bad argument type is in Python, and which says nothing
    was sent.
    """
    proto, transport, _ = connected()
    error = errorOf(proto.set(b"foo", "bar"), InvalidTypeError)  # type: ignore[arg-type]
    assert isinstance(error, TypeError)
    assert isinstance(error, InvalidRequestError)
    assert not isinstance(error, twistedMemcache.ClientError)
    assert transport.value() == b""


def test_pipelining() -> None:
    """
    Requests sent one after another each receive their own reply, in order.
    """
    proto, transport, _ = connected()
    d1 = proto.get(b"foo")
    d2 = proto.set(b"bar", b"spamspamspam")
    d3 = proto.get(b"egg")
    assert transport.value() == b"get foo\r\nset bar 0 0 12\r\nspamspamspam\r\nget egg\r\n"
    proto.dataReceived(
        b"VALUE foo 0 3\r\nbar\r\nEND\r\nSTORED\r\nVALUE egg 0 4\r\nspam\r\nEND\r\n"
    )
    assert resultOf(d1) == (0, b"bar")
    assert resultOf(d2) is True
    assert resultOf(d3) == (0, b"spam")


def test_getInChunks() -> None:
    """
    A get reply arriving in several chunks, split inside the data block and before the final
    LF, gives the whole value.
    """
    proto, transport, _ = connected()
    d = proto.get(b"foo")
    assert transport.value() == b"get foo\r\n"
    proto.dataReceived(b"VALUE foo 0 10\r\n0123456")
    proto.dataReceived(b"789")
    proto.dataReceived(b"\r\nEND")
    assertNoResult(d)
    proto.dataReceived(b"\r\n")
    assert resultOf(d) == (0, b"0123456789")


# CommandFailureTests: every command on a disconnected protocol.

COMMANDS: list[tuple[str, Callable[[MemCacheProtocol], Deferred[Any]]]] = [
    ("get", lambda p: p.get(b"foo")),
    ("getMultiple", lambda p: p.getMultiple([b"foo", b"cow"])),
    ("set", lambda p: p.set(b"foo", b"bar")),
    ("add", lambda p: p.add(b"foo", b"bar")),
    ("replace", lambda p: p.replace(b"foo", b"bar")),
    ("delete", lambda p: p.delete(b"bar")),
    ("increment", lambda p: p.increment(b"foo")),
    ("decrement", lambda p: p.decrement(b"foo")),
    ("incrementVal", lambda p: p.increment(b"foo", 8)),
    ("decrementVal", lambda p: p.decrement(b"foo", 3)),
    ("stats", lambda p: p.stats()),
    ("statsWithArgument", lambda p: p.stats(b"blah")),
    ("version", lambda p: p.version()),
    ("flushAll", lambda p: p.flushAll()),
    ("append", lambda p: p.append(b"foo", b"bar")),
    ("prepend", lambda p: p.prepend(b"foo", b"bar")),
    ("gets", lambda p: p.get(b"foo", True)),
    ("getsMultiple", lambda p: p.getMultiple([b"foo", b"bar"], True)),
    ("getsMultipleIterableKeys", lambda p: p.getMultiple(iter([b"foo", b"bar"]), True)),
    ("checkAndSet", lambda p: p.checkAndSet(b"foo", b"bar", cas=b"1234")),
    ("touch", lambda p: p.touch(b"foo", 10)),
]


@pytest.mark.parametrize("call", [c for _, c in COMMANDS], ids=[n for n, _ in COMMANDS])
def test_commandFailure(call: Callable[[MemCacheProtocol], Deferred[Any]]) -> None:
    """
    Every command on a protocol whose connection was lost fails at once with
    ConnectionLostError, caused by the loss reason, and writes nothing.

    Twisted's CommandFailureTests expect RuntimeError("not connected"); txconnpool uses
    ConnectionLostError, the error a pool and its callers expect for a connection that is
    gone, and keeps the reason the connection ended as its cause.
    """
    proto, transport, _ = disconnected()
    error = errorOf(call(proto), ConnectionLostError)
    assert isinstance(error.__cause__, ConnectionDone)
    assert transport.value() == b""
