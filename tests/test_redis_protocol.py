"""
RedisProtocol on a StringTransport: typed commands and their replies, arguments refused
before anything is written, replies that do not fit, lost connections, transactions,
publish and subscribe, and what giving a checked-out connection back undoes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.error import ConnectionDone
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure

from tests.helpers import assertNoResult, failureOf, resultOf
from txconnpool.errors import ConnectionLostError, ProtocolError
from txconnpool.redis import (
    InvalidArgumentError,
    InvalidRequestError,
    InvalidTypeError,
    Message,
    RedisProtocol,
    ResponseError,
    TransactionDiscardedError,
    UnsupportedCommandError,
    WatchError,
)


def connected(**kwargs: Any) -> tuple[RedisProtocol, StringTransport]:
    protocol = RedisProtocol(**kwargs)
    transport = StringTransport()
    protocol.makeConnection(transport)
    return protocol, transport


def sent(transport: StringTransport) -> list[list[bytes]]:
    """
    Parse the commands written to C{transport} (RESP arrays of bulk strings), and clear it.
    """
    data = transport.value()
    transport.clear()
    commands: list[list[bytes]] = []
    pos = 0
    while pos < len(data):
        eol = data.index(b"\r\n", pos)
        assert data[pos : pos + 1] == b"*"
        count = int(data[pos + 1 : eol])
        pos = eol + 2
        args = []
        for _ in range(count):
            eol = data.index(b"\r\n", pos)
            assert data[pos : pos + 1] == b"$"
            length = int(data[pos + 1 : eol])
            args.append(data[eol + 2 : eol + 2 + length])
            pos = eol + 4 + length
        commands.append(args)
    return commands


COMMANDS: list[tuple[Callable[[RedisProtocol], Deferred[Any]], list[bytes], bytes, Any]] = [
    (lambda p: p.get("k"), [b"GET", b"k"], b"$1\r\nv\r\n", b"v"),
    (lambda p: p.get(b"k"), [b"GET", b"k"], b"$-1\r\n", None),
    (lambda p: p.set(b"k", 12, ex=5, nx=True), [b"SET", b"k", b"12", b"EX", b"5", b"NX"],
     b"$-1\r\n", False),
    (lambda p: p.set(b"k", 1.5), [b"SET", b"k", b"1.5"], b"+OK\r\n", True),
    (lambda p: p.mget(b"a", b"b"), [b"MGET", b"a", b"b"], b"*2\r\n$1\r\n1\r\n$-1\r\n",
     [b"1", None]),
    (lambda p: p.mset({b"a": 1}), [b"MSET", b"a", b"1"], b"+OK\r\n", None),
    (lambda p: p.incrbyfloat(b"f", 0.5), [b"INCRBYFLOAT", b"f", b"0.5"], b"$3\r\n2.5\r\n",
     2.5),
    (lambda p: p.delete(b"a", "é"), [b"DEL", b"a", "é".encode()], b":1\r\n", 1),
    (lambda p: p.expire(b"a", 10), [b"EXPIRE", b"a", b"10"], b":0\r\n", False),
    (lambda p: p.type(b"a"), [b"TYPE", b"a"], b"+zset\r\n", "zset"),
    (lambda p: p.ping(), [b"PING"], b"+PONG\r\n", "PONG"),
    (lambda p: p.info("server"), [b"INFO", b"server"],
     b"$39\r\n# Server\r\nredis_version:7.0.15\r\nx:a:b\r\n\r\n",
     {"redis_version": "7.0.15", "x": "a:b"}),
    (lambda p: p.hset(b"h", {b"a": 1, b"b": 2}), [b"HSET", b"h", b"a", b"1", b"b", b"2"],
     b":2\r\n", 2),
    (lambda p: p.hgetall(b"h"), [b"HGETALL", b"h"], b"*2\r\n$1\r\na\r\n$1\r\n1\r\n",
     {b"a": b"1"}),
    (lambda p: p.smembers(b"s"), [b"SMEMBERS", b"s"], b"*2\r\n$1\r\na\r\n$1\r\nb\r\n",
     {b"a", b"b"}),
    (lambda p: p.zadd(b"z", {b"m": 1.25}, xx=True), [b"ZADD", b"z", b"XX", b"1.25", b"m"],
     b":0\r\n", 0),
    (lambda p: p.zrangeWithScores(b"z", 0, -1), [b"ZRANGE", b"z", b"0", b"-1", b"WITHSCORES"],
     b"*2\r\n$1\r\nm\r\n$4\r\n1.25\r\n", [(b"m", 1.25)]),
    (lambda p: p.zscore(b"z", b"m"), [b"ZSCORE", b"z", b"m"], b"$3\r\ninf\r\n",
     float("inf")),
    (lambda p: p.zrangebyscore(b"z", "-inf", "(2", count=3),
     [b"ZRANGEBYSCORE", b"z", b"-inf", b"(2", b"LIMIT", b"0", b"3"], b"*0\r\n", []),
    (lambda p: p.zrank(b"z", b"x"), [b"ZRANK", b"z", b"x"], b"$-1\r\n", None),
    (lambda p: p.lpush(b"l", b"a", b"b"), [b"LPUSH", b"l", b"a", b"b"], b":2\r\n", 2),
    (lambda p: p.blpop(b"l", b"m", timeout=0.5), [b"BLPOP", b"l", b"m", b"0.5"],
     b"*2\r\n$1\r\nl\r\n$1\r\na\r\n", (b"l", b"a")),
    (lambda p: p.brpop(b"l", timeout=1), [b"BRPOP", b"l", b"1"], b"*-1\r\n", None),
    (lambda p: p.execute("object", "encoding", b"k"), [b"object", b"encoding", b"k"],
     b"$6\r\nembstr\r\n", b"embstr"),
]


@pytest.mark.parametrize("call, command, reply, result", COMMANDS)
def test_commands(
    call: Callable[[RedisProtocol], Deferred[Any]], command: list[bytes], reply: bytes,
    result: Any,
) -> None:
    """
    Each method sends its command and fires with the reply in the type it promises.
    """
    protocol, transport = connected()
    d = call(protocol)
    assert sent(transport) == [command]
    assertNoResult(d)
    protocol.dataReceived(reply)
    assert resultOf(d) == result


@pytest.mark.parametrize(
    "call, error",
    [
        (lambda p: p.set(b"k", True), InvalidTypeError),
        (lambda p: p.get(None), InvalidTypeError),
        (lambda p: p.set(b"k", object()), InvalidTypeError),
        (lambda p: p.incrbyfloat(b"k", float("nan")), InvalidArgumentError),
        (lambda p: p.set(b"k", "\ud800"), InvalidArgumentError),
        (lambda p: p.set(b"k", b"v", ex=1, px=1), InvalidArgumentError),
        (lambda p: p.set(b"k", b"v", nx=True, xx=True), InvalidArgumentError),
        (lambda p: p.mget(), InvalidArgumentError),
        (lambda p: p.hset(b"h", {}), InvalidArgumentError),
        (lambda p: p.blpop(b"l", timeout=-1), InvalidArgumentError),
        (lambda p: p.execute(""), InvalidArgumentError),
        (lambda p: p.execute(3), InvalidTypeError),
        (lambda p: p.execute("MONITOR"), UnsupportedCommandError),
        (lambda p: p.execute("client", "reply", "off"), UnsupportedCommandError),
        (lambda p: p.execute("HELLO", 3), UnsupportedCommandError),
        (lambda p: p.subscribe(), InvalidArgumentError),
    ],
)
def test_refusedBeforeSending(
    call: Callable[[RedisProtocol], Deferred[Any]], error: type[Exception]
) -> None:
    """
    A command with an argument that cannot be sent fails with a typed InvalidRequestError
    and writes nothing; the connection stays usable.
    """
    protocol, transport = connected()
    failure = failureOf(call(protocol), error)
    assert isinstance(failure.value, InvalidRequestError)
    assert transport.value() == b""
    d = protocol.get(b"k")
    protocol.dataReceived(b"$1\r\nv\r\n")
    assert resultOf(d) == b"v"


def test_errorReply() -> None:
    """
    An error reply fails its command with ResponseError, and the next reply goes to the
    next command.
    """
    protocol, _ = connected()
    first, second = protocol.incr(b"k"), protocol.get(b"k")
    protocol.dataReceived(b"-ERR value is not an integer or out of range\r\n$1\r\nx\r\n")
    error = failureOf(first, ResponseError).value
    assert (error.code, str(error)) == ("ERR", "ERR value is not an integer or out of range")
    assert resultOf(second) == b"x"


@pytest.mark.parametrize("reply", [b":1\r\n", b"+OK\r\n", b"*1\r\n:1\r\n"])
def test_replyThatDoesNotFit(reply: bytes) -> None:
    """
    A reply of the wrong type for its command fails it and every command in flight with
    ProtocolError, and drops the connection; later commands fail without being sent.
    """
    protocol, transport = connected()
    first, second = protocol.get(b"k"), protocol.get(b"j")
    protocol.dataReceived(reply)
    assert "does not fit its command" in str(failureOf(first, ProtocolError).value)
    failureOf(second, ProtocolError)
    assert transport.disconnecting and protocol.closed
    transport.clear()
    failureOf(protocol.get(b"k"), ProtocolError)
    assert transport.value() == b""


def test_unsolicitedReply() -> None:
    """
    A reply with no command waiting for it is a ProtocolError that drops the connection.
    """
    protocol, transport = connected()
    protocol.dataReceived(b"+OK\r\n")
    assert protocol.closed and transport.disconnecting
    failureOf(protocol.ping(), ProtocolError)


def test_unreadableReplyFailsEverything() -> None:
    """
    A stream that cannot be read fails every command in flight with ProtocolError.
    """
    protocol, transport = connected()
    pending = [protocol.get(b"k"), protocol.blpop(b"l")]
    protocol.dataReceived(b"%1\r\n")
    for d in pending:
        failureOf(d, ProtocolError)
    assert transport.disconnecting


def test_connectionLost() -> None:
    """
    A lost connection fails the commands in flight, the queued commands of a transaction and
    the readers of messages with ConnectionLostError, whose cause is the reason.
    """
    protocol, _ = connected()
    get = protocol.get(b"k")
    protocol.multi()
    queued = protocol.incr(b"n")
    protocol.dataReceived(b"$1\r\nv\r\n+OK\r\n")
    assert resultOf(get) == b"v"
    protocol.connectionLost(Failure(ConnectionDone()))
    error = failureOf(queued, ConnectionLostError).value
    assert isinstance(error.__cause__, ConnectionDone)
    failureOf(protocol.get(b"k"), ConnectionLostError)


def test_transaction() -> None:
    """
    Commands sent between MULTI and EXEC fire with their own typed results once EXEC has
    run them; an error of one fails only that one.
    """
    protocol, transport = connected()
    protocol.multi()
    incr, get, bad = protocol.incr(b"n"), protocol.get(b"k"), protocol.lpush(b"k", b"x")
    done = protocol.exec()
    assert [c[0] for c in sent(transport)] == [b"MULTI", b"INCR", b"GET", b"LPUSH", b"EXEC"]
    protocol.dataReceived(b"+OK\r\n+QUEUED\r\n+QUEUED\r\n+QUEUED\r\n")
    assertNoResult(incr)
    protocol.dataReceived(b"*3\r\n:3\r\n$1\r\nv\r\n-WRONGTYPE Operation\r\n")
    assert resultOf(incr) == 3
    assert resultOf(get) == b"v"
    assert failureOf(bad, ResponseError).value.code == "WRONGTYPE"
    results = resultOf(done)
    assert results[:2] == [3, b"v"] and isinstance(results[2], ResponseError)
    assert protocol.restore(0) and transport.value() == b""


def test_transactionAbortedByWatch() -> None:
    """
    An EXEC answered with null (a watched key changed) fails with WatchError, and so do the
    queued commands.
    """
    protocol, _ = connected()
    protocol.watch(b"k")
    protocol.multi()
    queued = protocol.set(b"k", b"v")
    done = protocol.exec()
    protocol.dataReceived(b"+OK\r\n+OK\r\n+QUEUED\r\n*-1\r\n")
    failureOf(done, WatchError)
    failureOf(queued, WatchError)


def test_commandRefusedWhileQueued() -> None:
    """
    A command the server refuses while queueing fails at once, and EXECABORT fails EXEC and
    the other queued commands.
    """
    protocol, _ = connected()
    protocol.multi()
    good, refused = protocol.get(b"k"), protocol.execute("NOSUCH")
    done = protocol.exec()
    protocol.dataReceived(b"+OK\r\n+QUEUED\r\n-ERR unknown command 'NOSUCH'\r\n")
    failureOf(refused, ResponseError)
    protocol.dataReceived(b"-EXECABORT Transaction discarded because of previous errors.\r\n")
    assert failureOf(done, ResponseError).value.code == "EXECABORT"
    assert failureOf(good, ResponseError).value.code == "EXECABORT"


def test_discard() -> None:
    """
    DISCARD fails the queued commands with TransactionDiscardedError.
    """
    protocol, _ = connected()
    protocol.multi()
    queued = protocol.get(b"k")
    done = protocol.discard()
    protocol.dataReceived(b"+OK\r\n+QUEUED\r\n+OK\r\n")
    assert resultOf(done) is None
    failureOf(queued, TransactionDiscardedError)


def test_multiRefused() -> None:
    """
    When the server refuses MULTI, the commands after it get their ordinary replies.
    """
    protocol, _ = connected()
    multi = protocol.multi()
    get = protocol.get(b"k")
    protocol.dataReceived(b"-ERR MULTI calls can not be nested\r\n$1\r\nv\r\n")
    failureOf(multi, ResponseError)
    assert resultOf(get) == b"v"


def test_subscribe() -> None:
    """
    SUBSCRIBE fires once every channel is confirmed; messages and pattern messages that
    come between replies are read in order with nextMessage, and PING still answers.
    """
    protocol, transport = connected()
    reader = protocol.nextMessage()
    failureOf(reader, InvalidRequestError)
    subscribed = protocol.subscribe(b"a", b"b")
    early = protocol.nextMessage()
    protocol.dataReceived(b"*3\r\n$9\r\nsubscribe\r\n$1\r\na\r\n:1\r\n")
    assertNoResult(subscribed)
    protocol.dataReceived(b"*3\r\n$9\r\nsubscribe\r\n$1\r\nb\r\n:2\r\n")
    assert resultOf(subscribed) == 2
    psubscribed = protocol.psubscribe(b"c*")
    pong = protocol.ping()
    protocol.dataReceived(
        b"*3\r\n$7\r\nmessage\r\n$1\r\na\r\n$2\r\nhi\r\n"
        b"*3\r\n$10\r\npsubscribe\r\n$2\r\nc*\r\n:3\r\n"
        b"*4\r\n$8\r\npmessage\r\n$2\r\nc*\r\n$2\r\ncd\r\n$1\r\nx\r\n"
        b"*2\r\n$4\r\npong\r\n$0\r\n\r\n"
    )
    assert resultOf(early) == Message(b"a", b"hi")
    assert resultOf(psubscribed) == 3
    assert resultOf(protocol.nextMessage()) == Message(b"cd", b"x", b"c*")
    assert resultOf(pong) == "PONG"
    assert not protocol.restore(0)
    assert [c[0] for c in sent(transport)] == [b"SUBSCRIBE", b"PSUBSCRIBE", b"PING"]


def test_unsubscribeFromEverything() -> None:
    """
    UNSUBSCRIBE with no channel waits for one confirmation per channel subscribed, and the
    connection is then no longer subscribed.
    """
    protocol, _ = connected()
    protocol.subscribe(b"a", b"b")
    protocol.dataReceived(
        b"*3\r\n$9\r\nsubscribe\r\n$1\r\na\r\n:1\r\n*3\r\n$9\r\nsubscribe\r\n$1\r\nb\r\n:2\r\n"
    )
    left = protocol.unsubscribe()
    protocol.dataReceived(b"*3\r\n$11\r\nunsubscribe\r\n$1\r\na\r\n:1\r\n")
    assertNoResult(left)
    protocol.dataReceived(b"*3\r\n$11\r\nunsubscribe\r\n$1\r\nb\r\n:0\r\n")
    assert resultOf(left) == 0
    failureOf(protocol.nextMessage(), InvalidRequestError)
    none = protocol.unsubscribe()
    protocol.dataReceived(b"*3\r\n$11\r\nunsubscribe\r\n$-1\r\n:0\r\n")
    assert resultOf(none) == 0
    lrange = protocol.lrange(b"l", 0, -1)
    protocol.dataReceived(b"*3\r\n$7\r\nmessage\r\n$1\r\na\r\n$1\r\nb\r\n")
    assert resultOf(lrange) == [b"message", b"a", b"b"]


def test_unreadMessagesAreBounded() -> None:
    """
    Past maxMessages unread messages the connection stops reading, and reads again once
    half of them are read; a waiting reader can be cancelled.
    """
    protocol, transport = connected(maxMessages=4)
    protocol.subscribe(b"a")
    protocol.dataReceived(b"*3\r\n$9\r\nsubscribe\r\n$1\r\na\r\n:1\r\n")
    waiting = protocol.nextMessage()
    waiting.cancel()
    failureOf(waiting, CancelledError)
    message = b"*3\r\n$7\r\nmessage\r\n$1\r\na\r\n$1\r\nm\r\n"
    protocol.dataReceived(message * 4)
    assert transport.producerState == "paused"
    for _ in range(2):
        resultOf(protocol.nextMessage())
    assert transport.producerState == "producing"


def test_restoreUndoesTheCheckout() -> None:
    """
    Giving a connection back discards an open transaction, forgets watched keys and selects
    the pool's database again.
    """
    protocol, transport = connected()
    protocol.select(2)
    protocol.watch(b"k")
    assert protocol.restore(5)
    assert [c for c in sent(transport)][-2:] == [[b"UNWATCH"], [b"SELECT", b"5"]]
    protocol.multi()
    queued = protocol.get(b"k")
    assert protocol.restore(5)
    assert sent(transport)[-1] == [b"DISCARD"]
    protocol.dataReceived(b"+OK\r\n+OK\r\n+OK\r\n+OK\r\n+OK\r\n+QUEUED\r\n+OK\r\n")
    failureOf(queued, TransactionDiscardedError)
    assert protocol.restore(5) and transport.value() == b""


@pytest.mark.parametrize(
    "call",
    [
        lambda p: p.blpop(b"l"),
        lambda p: p.execute("XREAD", "BLOCK", 0, "STREAMS", "s", "$"),
        lambda p: p.execute("AUTH", "x"),
        lambda p: p.execute("CLIENT", "SETNAME", "x"),
        lambda p: p.execute("RESET"),
    ],
)
def test_restoreRefusesWhatCannotBeUndone(
    call: Callable[[RedisProtocol], Deferred[Any]],
) -> None:
    """
    A connection blocked in a blocking command, or changed for good, must be closed rather
    than given back.
    """
    protocol, _ = connected()
    call(protocol).addErrback(lambda f: None)
    assert not protocol.restore(0)
