"""
Unit tests for L{txconnpool.memcache.protocol.MemCacheProtocol}, driven synchronously with a
L{StringTransport} and a L{Clock}.
"""

from __future__ import annotations

from typing import Any, TypeVar

import pytest
from twisted.internet.defer import CancelledError, Deferred, TimeoutError
from twisted.internet.error import ConnectionDone, ConnectionLost
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.protocols import memcache as twistedMemcache
from twisted.python.failure import Failure

from txconnpool.errors import ConnectionLostError, PoolError, ProtocolError
from txconnpool.memcache.errors import (
    ClientError,
    InvalidArgumentError,
    InvalidKeyError,
    InvalidRequestError,
    InvalidTypeError,
    InvalidValueError,
    MemCacheError,
    ReplyTooLargeError,
    ServerError,
    UnknownCommandError,
)
from txconnpool.memcache.protocol import DEFAULT_MAX_VALUE_SIZE, MemCacheProtocol

from .helpers import assertNoResult, failureOf, resultOf


def connect(**kwargs: Any) -> tuple[MemCacheProtocol, StringTransport, Clock]:
    """
    Return a protocol connected to a fresh L{StringTransport}, with a L{Clock} for timeouts.
    """
    clock = Clock()
    proto = MemCacheProtocol(clock=clock, **kwargs)
    transport = StringTransport()
    proto.makeConnection(transport)  # type: ignore[no-untyped-call]
    return proto, transport, clock


_E = TypeVar("_E", bound=BaseException)


def errorOf(d: Deferred[Any], errorType: type[_E]) -> _E:
    """
    Return the exception C{d} failed with, checking that it is an C{errorType}.
    """
    error = failureOf(d, errorType).value
    assert isinstance(error, errorType)
    return error


def exchange(d: Deferred[Any], proto: MemCacheProtocol, reply: bytes) -> Any:
    """
    Feed C{reply} to C{proto} and return what C{d} fired with.
    """
    proto.dataReceived(reply)
    return resultOf(d)


def assertDropped(transport: StringTransport) -> None:
    """
    Assert that the protocol dropped its connection.
    """
    assert transport.disconnecting


# Wire formats and results


@pytest.mark.parametrize(
    "method, command",
    [("set", b"set"), ("add", b"add"), ("replace", b"replace")],
)
def test_storageCommandWireFormat(method: str, command: bytes) -> None:
    """
    set, add and replace send one command line with flags, expiry and length, then the data.
    """
    proto, transport, _ = connect()
    d = getattr(proto, method)(b"key", b"hello", 7, 300)
    assert transport.value() == command + b" key 7 300 5\r\nhello\r\n"
    assert exchange(d, proto, b"STORED\r\n") is True


@pytest.mark.parametrize("method", ["set", "add", "replace", "append", "prepend"])
def test_storageNotStored(method: str) -> None:
    """
    A NOT_STORED reply to a storage command fires with False.
    """
    proto, _, _ = connect()
    d = getattr(proto, method)(b"key", b"v")
    assert exchange(d, proto, b"NOT_STORED\r\n") is False


def test_storageDefaults() -> None:
    """
    set sends flags 0 and expiry 0 by default.
    """
    proto, transport, _ = connect()
    proto.set(b"k", b"")
    assert transport.value() == b"set k 0 0 0\r\n\r\n"


@pytest.mark.parametrize("method", ["append", "prepend"])
def test_appendPrependWireFormat(method: str) -> None:
    """
    append and prepend send zero flags and expiry, as Twisted's client does.
    """
    proto, transport, _ = connect()
    d = getattr(proto, method)(b"key", b"xy")
    assert transport.value() == method.encode() + b" key 0 0 2\r\nxy\r\n"
    assert exchange(d, proto, b"STORED\r\n") is True


def test_valueWithCRLFInside() -> None:
    """
    A value containing CRLF is sent and received intact, framed by its length.
    """
    proto, transport, _ = connect()
    proto.set(b"k", b"a\r\nb")
    assert transport.value() == b"set k 0 0 4\r\na\r\nb\r\n"
    proto.dataReceived(b"STORED\r\n")
    d = proto.get(b"k")
    assert exchange(d, proto, b"VALUE k 0 4\r\na\r\nb\r\nEND\r\n") == (0, b"a\r\nb")


@pytest.mark.parametrize(
    "reply, expected",
    [(b"STORED\r\n", True), (b"EXISTS\r\n", False), (b"NOT_FOUND\r\n", False)],
)
def test_checkAndSet(reply: bytes, expected: bool) -> None:
    """
    checkAndSet sends cas with the token last and fires True on STORED, else False.
    """
    proto, transport, _ = connect()
    d = proto.checkAndSet(b"key", b"val", b"12345", 3, 60)
    assert transport.value() == b"cas key 3 60 3 12345\r\nval\r\n"
    assert exchange(d, proto, reply) is expected


def test_checkAndSetIntToken() -> None:
    """
    checkAndSet also takes the CAS token as an int.
    """
    proto, transport, _ = connect()
    proto.checkAndSet(b"key", b"v", 2**64 - 1)
    assert transport.value() == b"cas key 0 0 1 18446744073709551615\r\nv\r\n"


def test_getHit() -> None:
    """
    get sends "get key" and fires with (flags, value).
    """
    proto, transport, _ = connect()
    d = proto.get(b"key")
    assert transport.value() == b"get key\r\n"
    assert exchange(d, proto, b"VALUE key 42 5\r\nhello\r\nEND\r\n") == (42, b"hello")


def test_getMiss() -> None:
    """
    get of a missing key fires with (0, None), as Twisted's client does.
    """
    proto, _, _ = connect()
    assert exchange(proto.get(b"key"), proto, b"END\r\n") == (0, None)


def test_getsHit() -> None:
    """
    get with withIdentifier sends gets and fires with (flags, cas bytes, value).
    """
    proto, transport, _ = connect()
    d = proto.get(b"key", withIdentifier=True)
    assert transport.value() == b"gets key\r\n"
    reply = b"VALUE key 1 3 987\r\nabc\r\nEND\r\n"
    assert exchange(d, proto, reply) == (1, b"987", b"abc")


def test_getsMiss() -> None:
    """
    gets of a missing key fires with (0, b"", None), as Twisted's client does.
    """
    proto, _, _ = connect()
    assert exchange(proto.get(b"key", True), proto, b"END\r\n") == (0, b"", None)


def test_strKeyEncodedAsUTF8() -> None:
    """
    A str key is sent encoded as UTF-8 and its reply is matched to it.
    """
    proto, transport, _ = connect()
    d = proto.get("clé")
    assert transport.value() == "get clé\r\n".encode()
    reply = "VALUE clé 0 1\r\nx\r\nEND\r\n".encode()
    assert exchange(d, proto, reply) == (0, b"x")


def test_getMultiple() -> None:
    """
    getMultiple sends one get and fires with every asked key, misses as (0, None).
    """
    proto, transport, _ = connect()
    d = proto.getMultiple([b"a", b"b", b"c"])
    assert transport.value() == b"get a b c\r\n"
    reply = b"VALUE c 2 1\r\nC\r\nVALUE a 1 1\r\nA\r\nEND\r\n"
    assert exchange(d, proto, reply) == {b"a": (1, b"A"), b"b": (0, None), b"c": (2, b"C")}


def test_getMultipleWithIdentifier() -> None:
    """
    getMultiple with withIdentifier sends gets and fires with (flags, cas, value) tuples.
    """
    proto, transport, _ = connect()
    d = proto.getMultiple([b"a", b"b"], withIdentifier=True)
    assert transport.value() == b"gets a b\r\n"
    reply = b"VALUE a 1 1 55\r\nA\r\nEND\r\n"
    assert exchange(d, proto, reply) == {b"a": (1, b"55", b"A"), b"b": (0, b"", None)}


def test_getMultipleKeysAsGiven() -> None:
    """
    getMultiple keys its result by the caller's own key objects and sends each key once.
    """
    proto, transport, _ = connect()
    keys: list[bytes | str] = ["a", b"a", "é", b"b"]
    d = proto.getMultiple(keys)
    assert transport.value() == "get a é b\r\n".encode()
    reply = "VALUE a 0 1\r\nA\r\nVALUE é 0 1\r\nE\r\nEND\r\n".encode()
    assert exchange(d, proto, reply) == {
        "a": (0, b"A"),
        b"a": (0, b"A"),
        "é": (0, b"E"),
        b"b": (0, None),
    }


def test_getMultipleAcceptsAnyIterable() -> None:
    """
    getMultiple accepts a generator of keys.
    """
    proto, transport, _ = connect()
    proto.getMultiple(k for k in [b"x", b"y"])
    assert transport.value() == b"get x y\r\n"


def test_getMultipleEmpty() -> None:
    """
    getMultiple with no keys fires with an empty dict at once and sends nothing.
    """
    proto, transport, _ = connect()
    noKeys: list[bytes] = []
    assert resultOf(proto.getMultiple(noKeys)) == {}
    assert transport.value() == b""


@pytest.mark.parametrize("keys", [b"ab", "ab"])
def test_getMultipleRejectsSingleKey(keys: Any) -> None:
    """
    getMultiple refuses a single bytes or str instead of iterating over its characters.
    """
    proto, transport, _ = connect()
    failureOf(proto.getMultiple(keys), InvalidTypeError)
    assert transport.value() == b""


@pytest.mark.parametrize("method, command", [("increment", b"incr"), ("decrement", b"decr")])
def test_incrDecr(method: str, command: bytes) -> None:
    """
    increment and decrement send the delta (1 by default) and fire with the new int value.
    """
    proto, transport, _ = connect()
    d = getattr(proto, method)(b"n")
    assert transport.value() == command + b" n 1\r\n"
    assert exchange(d, proto, b"41\r\n") == 41
    transport.clear()
    d = getattr(proto, method)(b"n", 2**64 - 1)
    assert transport.value() == command + b" n 18446744073709551615\r\n"
    assert exchange(d, proto, b"18446744073709551615\r\n") == 2**64 - 1


def test_incrNotFound() -> None:
    """
    increment of a missing key fires with False, as Twisted's client does.
    """
    proto, _, _ = connect()
    assert exchange(proto.increment(b"n"), proto, b"NOT_FOUND\r\n") is False


@pytest.mark.parametrize("reply, expected", [(b"DELETED\r\n", True), (b"NOT_FOUND\r\n", False)])
def test_delete(reply: bytes, expected: bool) -> None:
    """
    delete sends "delete key" and fires True on DELETED, False on NOT_FOUND.
    """
    proto, transport, _ = connect()
    d = proto.delete(b"key")
    assert transport.value() == b"delete key\r\n"
    assert exchange(d, proto, reply) is expected


@pytest.mark.parametrize("reply, expected", [(b"TOUCHED\r\n", True), (b"NOT_FOUND\r\n", False)])
def test_touch(reply: bytes, expected: bool) -> None:
    """
    touch sends the new expiry and fires True on TOUCHED, False on NOT_FOUND.
    """
    proto, transport, _ = connect()
    d = proto.touch(b"key", 3600)
    assert transport.value() == b"touch key 3600\r\n"
    assert exchange(d, proto, reply) is expected


def test_flushAll() -> None:
    """
    flushAll sends flush_all and fires with True on OK.
    """
    proto, transport, _ = connect()
    d = proto.flushAll()
    assert transport.value() == b"flush_all\r\n"
    assert exchange(d, proto, b"OK\r\n") is True


def test_stats() -> None:
    """
    stats fires with a dict of the STAT names and values as bytes.
    """
    proto, transport, _ = connect()
    d = proto.stats()
    assert transport.value() == b"stats\r\n"
    reply = b"STAT pid 12\r\nSTAT version 1.6.18\r\nSTAT empty\r\nSTAT a b c\r\nEND\r\n"
    expected = {b"pid": b"12", b"version": b"1.6.18", b"empty": b"", b"a": b"b c"}
    assert exchange(d, proto, reply) == expected


@pytest.mark.parametrize("arg", [b"settings", "settings"])
def test_statsWithArgument(arg: bytes | str) -> None:
    """
    stats sends its argument after the command.
    """
    proto, transport, _ = connect()
    d = proto.stats(arg)
    assert transport.value() == b"stats settings\r\n"
    assert exchange(d, proto, b"STAT maxconns 1024\r\nEND\r\n") == {b"maxconns": b"1024"}


@pytest.mark.parametrize("reply", [b"RESET\r\n", b"OK\r\n"])
def test_statsResetOrOk(reply: bytes) -> None:
    """
    A stats subcommand answered with RESET or OK fires with an empty dict.
    """
    proto, transport, _ = connect()
    d = proto.stats(b"reset")
    assert transport.value() == b"stats reset\r\n"
    assert exchange(d, proto, reply) == {}


def test_version() -> None:
    """
    version fires with the version string as bytes.
    """
    proto, transport, _ = connect()
    d = proto.version()
    assert transport.value() == b"version\r\n"
    assert exchange(d, proto, b"VERSION 1.6.18\r\n") == b"1.6.18"


def test_pipelinedRepliesInOrder() -> None:
    """
    Several pending requests each receive their own reply, in order.
    """
    proto, _, _ = connect()
    ds: list[Deferred[Any]] = [
        proto.set(b"a", b"1"),
        proto.get(b"a"),
        proto.delete(b"a"),
        proto.increment(b"n"),
    ]
    proto.dataReceived(b"STORED\r\nVALUE a 0 1\r\n1\r\nEND\r\nNOT_FOUND\r\n5\r\n")
    assert [resultOf(d) for d in ds] == [True, (0, b"1"), False, 5]


def test_repliesSplitAtEveryByte() -> None:
    """
    Replies fed one byte at a time give the same results as in one piece.
    """
    proto, _, _ = connect()
    ds: list[Deferred[Any]] = [
        proto.get(b"a"),
        proto.getMultiple([b"a", b"b"], True),
        proto.stats(),
        proto.set(b"a", b"1"),
        proto.version(),
    ]
    reply = (
        b"VALUE a 0 4\r\n\r\n\r\n\r\nEND\r\n"
        b"VALUE b 3 2 9\r\nxy\r\nEND\r\n"
        b"STAT x y\r\nEND\r\n"
        b"STORED\r\n"
        b"VERSION 1\r\n"
    )
    for i in range(len(reply)):
        proto.dataReceived(reply[i : i + 1])
    assert [resultOf(d) for d in ds] == [
        (0, b"\r\n\r\n"),
        {b"a": (0, b"", None), b"b": (3, b"9", b"xy")},
        {b"x": b"y"},
        True,
        b"1",
    ]


def test_largeValueInChunks() -> None:
    """
    A value arriving in many chunks is delivered whole.
    """
    proto, _, _ = connect()
    d = proto.get(b"k")
    value = bytes(range(256)) * 4000
    reply = b"VALUE k 0 %d\r\n%s\r\nEND\r\n" % (len(value), value)
    for i in range(0, len(reply), 4096):
        proto.dataReceived(reply[i : i + 4096])
    assert resultOf(d) == (0, value)


def test_requestFromCallback() -> None:
    """
    A request made from a callback while replies are parsed gets its own reply, from bytes
    that arrive later; more reply bytes in the chunk being parsed cannot be its reply, since
    the server sent them before the request was written.
    """
    proto, transport, _ = connect()
    inner: list[Deferred[Any]] = []
    d = proto.get(b"a")
    d.addCallback(lambda _: inner.append(proto.get(b"b")))
    proto.dataReceived(b"END\r\n")
    assert transport.value() == b"get a\r\nget b\r\n"
    proto.dataReceived(b"VALUE b 0 1\r\nB\r\nEND\r\n")
    assert resultOf(inner[0]) == (0, b"B")

    proto, transport, _ = connect()
    inner = []
    d = proto.set(b"a", b"1")
    d.addCallback(lambda _: inner.append(proto.increment(b"n")))
    proto.dataReceived(b"STORED\r\n42\r\n")
    failureOf(inner[0], ProtocolError)
    assert transport.disconnecting


def test_repr() -> None:
    """
    repr shows whether the connection is open and how many requests are pending.
    """
    proto, _, _ = connect()
    proto.get(b"a")
    assert repr(proto) == "<MemCacheProtocol open, 1 pending>"


# Validation: rejected requests write nothing and fail, never raise


def assertRejected(
    proto: MemCacheProtocol,
    transport: StringTransport,
    d: Deferred[Any],
    errorType: type[BaseException],
    message: str,
) -> None:
    """
    Assert that C{d} failed with C{errorType} whose message contains C{message}, and that
    nothing was written and the connection is unaffected.
    """
    f = failureOf(d, errorType)
    assert message in str(f.value)
    assert transport.value() == b""
    assert not transport.disconnecting
    assert repr(proto) == "<MemCacheProtocol open, 0 pending>"


BAD_KEYS = [
    (b"k" * 251, InvalidKeyError, "at most 250 bytes, got 251"),
    ("é" * 126, InvalidKeyError, "at most 250 bytes, got 252"),
    (b"", InvalidKeyError, "must not be empty"),
    ("", InvalidKeyError, "must not be empty"),
    (b"a b", InvalidKeyError, "whitespace or control"),
    (b"a\r\nflush_all", InvalidKeyError, "whitespace or control"),
    (b"a\n", InvalidKeyError, "whitespace or control"),
    (b"a\tb", InvalidKeyError, "whitespace or control"),
    (b"a\x00", InvalidKeyError, "whitespace or control"),
    (b"\x7f", InvalidKeyError, "whitespace or control"),
    ("a\u0085".encode("latin-1")[:-1] + b"\x1f", InvalidKeyError, "whitespace or control"),
    ("\ud800", InvalidKeyError, "UTF-8"),
    (12, InvalidTypeError, "bytes or str, not int"),
    (None, InvalidTypeError, "not NoneType"),
    (bytearray(b"k"), InvalidTypeError, "not bytearray"),
]

KEY_METHODS = [
    lambda p, k: p.get(k),
    lambda p, k: p.get(k, True),
    lambda p, k: p.getMultiple([b"ok", k]),
    lambda p, k: p.set(k, b"v"),
    lambda p, k: p.add(k, b"v"),
    lambda p, k: p.replace(k, b"v"),
    lambda p, k: p.append(k, b"v"),
    lambda p, k: p.prepend(k, b"v"),
    lambda p, k: p.checkAndSet(k, b"v", 1),
    lambda p, k: p.increment(k),
    lambda p, k: p.decrement(k),
    lambda p, k: p.delete(k),
    lambda p, k: p.touch(k, 1),
]


@pytest.mark.parametrize("key, errorType, message", BAD_KEYS)
@pytest.mark.parametrize("call", KEY_METHODS)
def test_badKeyRejected(call: Any, key: Any, errorType: type[Exception], message: str) -> None:
    """
    Every command refuses a bad key without writing anything.
    """
    proto, transport, _ = connect()
    assertRejected(proto, transport, call(proto, key), errorType, message)


def test_longestKeyAccepted() -> None:
    """
    A 250-byte key, and a key with non-ASCII UTF-8 bytes, are accepted.
    """
    proto, transport, _ = connect()
    proto.delete(b"k" * 250)
    proto.delete("ü€")
    assert transport.value() == b"delete " + b"k" * 250 + "\r\ndelete ü€\r\n".encode()


def test_errorHierarchy() -> None:
    """
    Validation errors are PoolErrors and ValueErrors or TypeErrors; reply errors subclass
    Twisted's memcache errors.
    """
    for cls in (InvalidKeyError, InvalidValueError, InvalidArgumentError):
        assert issubclass(cls, InvalidRequestError)
        assert issubclass(cls, ValueError)
    assert issubclass(InvalidTypeError, TypeError)
    assert issubclass(InvalidRequestError, MemCacheError)
    assert issubclass(MemCacheError, PoolError)
    assert issubclass(UnknownCommandError, twistedMemcache.NoSuchCommand)
    assert issubclass(ClientError, twistedMemcache.ClientError)
    assert issubclass(ServerError, twistedMemcache.ServerError)
    for replyError in (UnknownCommandError, ClientError, ServerError):
        assert issubclass(replyError, MemCacheError)


@pytest.mark.parametrize("method", ["set", "add", "replace", "append", "prepend"])
@pytest.mark.parametrize(
    "value, errorType, message",
    [
        ("text", InvalidTypeError, "value must be bytes, not str"),
        (bytearray(b"x"), InvalidTypeError, "not bytearray"),
        (None, InvalidTypeError, "not NoneType"),
        (b"x" * (DEFAULT_MAX_VALUE_SIZE + 1), InvalidValueError, "at most 1048064 bytes"),
    ],
)
def test_badValueRejected(
    method: str, value: Any, errorType: type[Exception], message: str
) -> None:
    """
    Storage commands refuse a value that is not bytes or is too large, writing nothing.
    """
    proto, transport, _ = connect()
    assertRejected(proto, transport, getattr(proto, method)(b"k", value), errorType, message)


def test_maxValueSize() -> None:
    """
    A value of exactly maxValueSize bytes is sent; one byte more is refused.
    """
    proto, transport, _ = connect(maxValueSize=10)
    proto.set(b"k", b"x" * 10)
    assert transport.value() == b"set k 0 0 10\r\nxxxxxxxxxx\r\n"
    transport.clear()
    d = proto.checkAndSet(b"k", b"x" * 11, 1)
    f = failureOf(d, InvalidValueError)
    assert "at most 10 bytes (maxValueSize), got 11" in str(f.value)
    assert transport.value() == b""


@pytest.mark.parametrize(
    "flags, errorType, message",
    [
        (-1, InvalidArgumentError, "flags must be from 0 to 4294967295, got -1"),
        (2**32, InvalidArgumentError, "got 4294967296"),
        (True, InvalidTypeError, "flags must be an int, not bool"),
        (1.0, InvalidTypeError, "not float"),
        ("1", InvalidTypeError, "not str"),
    ],
)
def test_badFlagsRejected(flags: Any, errorType: type[Exception], message: str) -> None:
    """
    Flags outside 0..2**32-1 or not an int are refused for set and checkAndSet.
    """
    proto, transport, _ = connect()
    assertRejected(proto, transport, proto.set(b"k", b"v", flags), errorType, message)
    assertRejected(proto, transport, proto.checkAndSet(b"k", b"v", 1, flags), errorType, message)


def test_largestFlagsAccepted() -> None:
    """
    Flags of 2**32-1 are sent.
    """
    proto, transport, _ = connect()
    proto.set(b"k", b"v", 2**32 - 1)
    assert transport.value() == b"set k 4294967295 0 1\r\nv\r\n"


@pytest.mark.parametrize(
    "expireTime, errorType, message",
    [
        (-1, InvalidArgumentError, "expireTime must be from 0 to 2147483647, got -1"),
        (2**31, InvalidArgumentError, "got 2147483648"),
        (True, InvalidTypeError, "expireTime must be an int, not bool"),
        (1.5, InvalidTypeError, "not float"),
        ("10", InvalidTypeError, "not str"),
    ],
)
def test_badExpireTimeRejected(expireTime: Any, errorType: type[Exception], message: str) -> None:
    """
    An expiry time that is negative, too large or not an int is refused by storage commands
    and touch.
    """
    proto, transport, _ = connect()
    for d in [
        proto.set(b"k", b"v", 0, expireTime),
        proto.add(b"k", b"v", 0, expireTime),
        proto.replace(b"k", b"v", 0, expireTime),
        proto.checkAndSet(b"k", b"v", 1, 0, expireTime),
        proto.touch(b"k", expireTime),
    ]:
        assertRejected(proto, transport, d, errorType, message)


@pytest.mark.parametrize(
    "cas, errorType, message",
    [
        (-1, InvalidArgumentError, "cas must be from 0 to"),
        (2**64, InvalidArgumentError, "cas must be from 0 to"),
        (b"12a", InvalidArgumentError, "decimal digits"),
        (b"", InvalidArgumentError, "decimal digits"),
        (b"-1", InvalidArgumentError, "decimal digits"),
        (b"18446744073709551616", InvalidArgumentError, "decimal digits"),
        (b"1" * 21, InvalidArgumentError, "decimal digits"),
        (b"1 2", InvalidArgumentError, "decimal digits"),
        ("123", InvalidTypeError, "cas must be an int or bytes, not str"),
        (True, InvalidTypeError, "not bool"),
        (None, InvalidTypeError, "not NoneType"),
    ],
)
def test_badCasRejected(cas: Any, errorType: type[Exception], message: str) -> None:
    """
    checkAndSet refuses a CAS token that is not a 64-bit number or its digits.
    """
    proto, transport, _ = connect()
    assertRejected(proto, transport, proto.checkAndSet(b"k", b"v", cas), errorType, message)


@pytest.mark.parametrize("method", ["increment", "decrement"])
@pytest.mark.parametrize(
    "val, errorType, message",
    [
        (-1, InvalidArgumentError, "val must be from 0 to 18446744073709551615, got -1"),
        (2**64, InvalidArgumentError, "got 18446744073709551616"),
        (1.5, InvalidTypeError, "val must be an int, not float"),
        (b"1", InvalidTypeError, "not bytes"),
        (False, InvalidTypeError, "not bool"),
    ],
)
def test_badDeltaRejected(method: str, val: Any, errorType: type[Exception], message: str) -> None:
    """
    increment and decrement refuse a delta outside 0..2**64-1 or not an int.
    """
    proto, transport, _ = connect()
    assertRejected(proto, transport, getattr(proto, method)(b"k", val), errorType, message)


@pytest.mark.parametrize(
    "arg, errorType, message",
    [
        (b"items\r\nflush_all", InvalidArgumentError, "control characters"),
        (b"\x00", InvalidArgumentError, "control characters"),
        (b"x" * 1025, InvalidArgumentError, "at most 1024 bytes"),
        ("\udc80", InvalidArgumentError, "UTF-8"),
        (5, InvalidTypeError, "stats argument must be bytes or str, not int"),
    ],
)
def test_badStatsArgumentRejected(arg: Any, errorType: type[Exception], message: str) -> None:
    """
    stats refuses an argument with control characters, too long, or of the wrong type.
    """
    proto, transport, _ = connect()
    assertRejected(proto, transport, proto.stats(arg), errorType, message)


def test_emptyStatsArgument() -> None:
    """
    An empty stats argument sends plain stats, as Twisted's client does.
    """
    proto, transport, _ = connect()
    proto.stats(b"")
    assert transport.value() == b"stats\r\n"


def test_rejectionDoesNotRaise() -> None:
    """
    A rejected request returns a failed Deferred rather than raising.
    """
    proto, _, _ = connect()
    d = proto.set(b"bad key", "not bytes")  # type: ignore[arg-type]
    assert isinstance(d, Deferred)
    failureOf(d, InvalidRequestError)


@pytest.mark.parametrize(
    "kwargs, errorType",
    [
        ({"timeOut": 0}, ValueError),
        ({"timeOut": -1}, ValueError),
        ({"timeOut": "60"}, ValueError),
        ({"maxValueSize": -1}, ValueError),
        ({"maxValueSize": 1.5}, TypeError),
    ],
)
def test_badConstructorArguments(kwargs: dict[str, Any], errorType: type[Exception]) -> None:
    """
    The constructor raises for a non-positive timeOut or a bad maxValueSize.
    """
    with pytest.raises(errorType):
        MemCacheProtocol(**kwargs)


# Replies that do not fit: every pending request fails with ProtocolError, connection dropped


def assertDesync(
    proto: MemCacheProtocol,
    transport: StringTransport,
    ds: list[Deferred[Any]],
    reply: bytes,
    message: str,
) -> None:
    """
    Feed C{reply}; assert every request in C{ds} failed with a L{ProtocolError} whose message
    contains C{message}, that the connection was dropped, and that later requests fail at
    once without writing.
    """
    proto.dataReceived(reply)
    for d in ds:
        f = failureOf(d, ProtocolError)
        assert message in str(f.value)
    assertDropped(transport)
    transport.clear()
    failureOf(proto.get(b"x"), ConnectionLostError)
    assert transport.value() == b""


@pytest.mark.parametrize(
    "request_, reply, message",
    [
        (lambda p: p.set(b"k", b"v"), b"garbage\r\n", "unexpected reply b'garbage' to set"),
        (lambda p: p.set(b"k", b"v"), b"END\r\n", "unexpected reply b'END' to set"),
        (lambda p: p.set(b"k", b"v"), b"DELETED\r\n", "to set"),
        (lambda p: p.set(b"k", b"v"), b"STORED \r\n", "unexpected reply"),
        (lambda p: p.checkAndSet(b"k", b"v", 1), b"NOT_STORED\r\n", "to cas"),
        (lambda p: p.get(b"k"), b"STORED\r\n", "unexpected reply b'STORED' to get"),
        (lambda p: p.get(b"k"), b"\r\n", "unexpected reply b'' to get"),
        (lambda p: p.getMultiple([b"k"]), b"NOT_FOUND\r\n", "to get"),
        (lambda p: p.increment(b"k"), b"-5\r\n", "unexpected reply b'-5' to incr"),
        (lambda p: p.increment(b"k"), b"12a\r\n", "to incr"),
        (lambda p: p.increment(b"k"), b"STORED\r\n", "to incr"),
        (lambda p: p.delete(b"k"), b"OK\r\n", "to delete"),
        (lambda p: p.touch(b"k", 1), b"DELETED\r\n", "to touch"),
        (lambda p: p.flushAll(), b"STORED\r\n", "to flush_all"),
        (lambda p: p.stats(), b"VALUE k 0 1\r\n", "to stats"),
        (lambda p: p.stats(), b"STAT\r\n", "to stats"),
        (lambda p: p.version(), b"END\r\n", "to version"),
        (lambda p: p.version(), b"VERSION\r\n", "to version"),
        (lambda p: p.get(b"k"), b"CLIENT_ERRORX\r\n", "unexpected reply"),
        (lambda p: p.get(b"k"), b"SERVER_ERROR_\r\n", "unexpected reply"),
    ],
)
def test_replyDoesNotFitCommand(request_: Any, reply: bytes, message: str) -> None:
    """
    A reply that is not legal for the pending command fails it and every later request
    with ProtocolError and drops the connection.
    """
    proto, transport, _ = connect()
    ds: list[Deferred[Any]] = [request_(proto), proto.get(b"other")]
    assertDesync(proto, transport, ds, reply, message)


def test_extraStoredDoesNotReachGet() -> None:
    """
    An extra STORED after a set's reply fails the following get instead of firing it True.
    """
    proto, transport, _ = connect()
    d1 = proto.set(b"k", b"v")
    d2 = proto.get(b"k")
    proto.dataReceived(b"STORED\r\n")
    assert resultOf(d1) is True
    assertDesync(proto, transport, [d2], b"STORED\r\n", "to get")


def test_unsolicitedReply() -> None:
    """
    A reply with nothing pending is a protocol error that drops the connection.
    """
    proto, transport, _ = connect()
    d = proto.set(b"k", b"v")
    proto.dataReceived(b"STORED\r\nSTORED\r\n")
    assert resultOf(d) is True
    assertDropped(transport)


def test_unsolicitedDataWhenIdle() -> None:
    """
    Any data arriving while no request is pending drops the connection.
    """
    proto, transport, _ = connect()
    proto.dataReceived(b"ERROR Too many open connections\r\n")
    assertDropped(transport)
    failureOf(proto.version(), ConnectionLostError)


@pytest.mark.parametrize(
    "withCas, header, message",
    [
        (False, b"VALUE k 0 -5\r\n", "malformed line"),
        (False, b"VALUE k 0\r\n", "malformed line"),
        (False, b"VALUE k 0 1 99\r\n", "malformed line"),
        (True, b"VALUE k 0 1\r\n", "malformed line"),
        (True, b"VALUE k 0 1 -1\r\n", "malformed line"),
        (True, b"VALUE k 0 1 x\r\n", "malformed line"),
        (True, b"VALUE k 0 1 18446744073709551616\r\n", "malformed line"),
        (False, b"VALUE k -1 1\r\n", "malformed line"),
        (False, b"VALUE k x 1\r\n", "malformed line"),
        (False, b"VALUE k 4294967296 1\r\n", "malformed line"),
        (False, b"VALUE k 0 1x\r\n", "malformed line"),
        (False, b"VALUE k 0  1\r\n", "malformed line"),
        (False, b"VALUE  k 0 1\r\n", "malformed line"),
        (False, b"VALUE other 0 1\r\n", "for a key not requested"),
        (False, b"VALUE K 0 1\r\n", "for a key not requested"),
    ],
)
def test_malformedValueHeader(withCas: bool, header: bytes, message: str) -> None:
    """
    A VALUE line with a wrong field count, a non-numeric or out-of-range number, or an
    unrequested key fails every pending request with ProtocolError.
    """
    proto, transport, _ = connect()
    ds: list[Deferred[Any]] = [proto.get(b"k", withCas), proto.get(b"other")]
    assertDesync(proto, transport, ds, header, message)


def test_valueForUnrequestedKeyInMultiple() -> None:
    """
    getMultiple fails with ProtocolError on a VALUE for a key it did not ask for.
    """
    proto, transport, _ = connect()
    ds: list[Deferred[Any]] = [proto.getMultiple([b"a", b"b"])]
    assertDesync(proto, transport, ds, b"VALUE c 0 1\r\nc\r\nEND\r\n", "not requested")


def test_repeatedValue() -> None:
    """
    A second VALUE for the same key, in get or getMultiple, is a protocol error.
    """
    proto, transport, _ = connect()
    reply = b"VALUE a 0 1\r\n1\r\nVALUE a 0 1\r\n1\r\nEND\r\n"
    assertDesync(proto, transport, [proto.get(b"a")], reply, "(or repeated)")
    proto, transport, _ = connect()
    ds: list[Deferred[Any]] = [proto.getMultiple([b"a", b"a", b"b"])]
    assertDesync(proto, transport, ds, reply, "(or repeated)")


def test_valueLongerThanMaxValueSize() -> None:
    """
    A VALUE announcing more than maxValueSize bytes fails its get at once with
    ReplyTooLargeError, before its data arrives, and drops the connection; the request behind
    it fails with ConnectionLostError.
    """
    proto, transport, _ = connect(maxValueSize=100)
    get, version = proto.get(b"k"), proto.version()
    proto.dataReceived(b"VALUE k 0 101\r\n")
    error = errorOf(get, ReplyTooLargeError)
    assert "more than maxValueSize (100)" in str(error)
    assert isinstance(error, ProtocolError)
    lost = errorOf(version, ConnectionLostError)
    assert lost.__cause__ is error
    assertDropped(transport)


def test_valueOfMaxValueSizeAccepted() -> None:
    """
    A VALUE of exactly maxValueSize bytes is accepted.
    """
    proto, _, _ = connect(maxValueSize=3)
    d = proto.get(b"k")
    assert exchange(d, proto, b"VALUE k 0 3\r\nabc\r\nEND\r\n") == (0, b"abc")


@pytest.mark.parametrize(
    "reply", [b"VALUE k 0 3\r\nabcd\r\nEND\r\n", b"VALUE k 0 3\r\nab\r\n\r\nEND\r\n"]
)
def test_dataBlockWithoutCRLF(reply: bytes) -> None:
    """
    A data block not followed by CRLF is a protocol error.
    """
    proto, transport, _ = connect()
    ds: list[Deferred[Any]] = [proto.get(b"k"), proto.get(b"j")]
    assertDesync(proto, transport, ds, reply, "not followed by CRLF")


def test_overlongLineWithoutCRLF() -> None:
    """
    More than maxLineLength bytes without CRLF fail every pending request at once.
    """
    proto, transport, _ = connect()
    ds: list[Deferred[Any]] = [proto.get(b"k"), proto.get(b"j")]
    proto.dataReceived(b"x" * 2000)
    assertNoResult(ds[0])
    ds.append(proto.get(b"k2"))
    assertDesync(proto, transport, ds, b"x" * 100, "reply line longer than 2048 bytes")


def test_overlongCompleteLine() -> None:
    """
    A complete line longer than maxLineLength is a protocol error too.
    """
    proto, transport, _ = connect()
    ds: list[Deferred[Any]] = [proto.get(b"k")]
    assertDesync(proto, transport, ds, b"x" * 2049 + b"\r\n", "longer than 2048")


def test_lineOfMaxLineLengthAccepted() -> None:
    """
    A line of exactly maxLineLength bytes, even split before its LF, is accepted.
    """
    proto, transport, _ = connect()
    d = proto.stats()
    line = b"STAT a " + b"b" * (2048 - 7)
    proto.dataReceived(line + b"\r")
    proto.dataReceived(b"\nEND\r\n")
    assert resultOf(d) == {b"a": b"b" * 2041}
    assert not transport.disconnecting


# Error replies


def test_errorReply() -> None:
    """
    ERROR fails the request with UnknownCommandError and keeps the connection.
    """
    proto, transport, _ = connect()
    d1 = proto.touch(b"k", 1)
    d2 = proto.get(b"k")
    proto.dataReceived(b"ERROR\r\nEND\r\n")
    assert errorOf(d1, UnknownCommandError).command == "touch"
    assert resultOf(d2) == (0, None)
    assert not transport.disconnecting


def test_clientErrorReply() -> None:
    """
    CLIENT_ERROR to a command without data fails it with ClientError carrying the message
    and keeps the connection.
    """
    proto, transport, _ = connect()
    d1 = proto.increment(b"k")
    d2 = proto.version()
    proto.dataReceived(b"CLIENT_ERROR cannot increment non-numeric value\r\nVERSION 1\r\n")
    error = errorOf(d1, ClientError)
    assert isinstance(error, twistedMemcache.ClientError)
    assert error.serverMessage == "cannot increment non-numeric value"
    assert "cannot increment non-numeric value" in str(error)
    assert resultOf(d2) == b"1"
    assert not transport.disconnecting


def test_serverErrorReply() -> None:
    """
    SERVER_ERROR fails the request with ServerError and keeps the connection, also for a
    storage command (object too large).
    """
    proto, transport, _ = connect()
    d1 = proto.set(b"k", b"v")
    d2 = proto.get(b"k")
    d3 = proto.set(b"k", b"v")
    proto.dataReceived(b"SERVER_ERROR object too large for cache\r\nSERVER_ERROR\r\nSTORED\r\n")
    error = errorOf(d1, ServerError)
    assert isinstance(error, twistedMemcache.ServerError)
    assert error.serverMessage == "object too large for cache"
    assert errorOf(d2, ServerError).serverMessage == ""
    assert resultOf(d3) is True
    assert not transport.disconnecting


def test_serverErrorDuringGet() -> None:
    """
    SERVER_ERROR after some values of a getMultiple fails it; the next reply is parsed.
    """
    proto, _, _ = connect()
    d1 = proto.getMultiple([b"a", b"b"])
    d2 = proto.delete(b"a")
    proto.dataReceived(b"VALUE a 0 1\r\nA\r\nSERVER_ERROR out of memory\r\nDELETED\r\n")
    failureOf(d1, ServerError)
    assert resultOf(d2) is True


@pytest.mark.parametrize("reply", [b"CLIENT_ERROR bad data chunk\r\n", b"ERROR\r\n"])
@pytest.mark.parametrize(
    "request_",
    [
        lambda p: p.set(b"k", b"v"),
        lambda p: p.add(b"k", b"v"),
        lambda p: p.replace(b"k", b"v"),
        lambda p: p.append(b"k", b"v"),
        lambda p: p.prepend(b"k", b"v"),
        lambda p: p.checkAndSet(b"k", b"v", 1),
    ],
)
def test_clientErrorToStorageDrops(request_: Any, reply: bytes) -> None:
    """
    CLIENT_ERROR or ERROR to a storage command fails it, fails the rest with
    ConnectionLostError and drops the connection.
    """
    proto, transport, _ = connect()
    d1 = request_(proto)
    d2 = proto.get(b"k")
    proto.dataReceived(reply + b"ERROR\r\n")
    f1 = failureOf(d1, ClientError, UnknownCommandError)
    assert errorOf(d2, ConnectionLostError).__cause__ is f1.value
    assertDropped(transport)
    failureOf(proto.get(b"k"), ConnectionLostError)


# Connection loss


def test_connectionLostFailsPending() -> None:
    """
    Losing the connection fails every pending request, exactly once, with the reason.
    """
    proto, _, _ = connect()
    ds: list[Deferred[Any]] = [proto.get(b"a"), proto.set(b"b", b"v"), proto.stats()]
    proto.dataReceived(b"VALUE a 0 5\r\nhe")
    reason = Failure(ConnectionLost("gone"))
    proto.connectionLost(reason)
    for d in ds:
        assert failureOf(d, ConnectionLost) is reason
    proto.connectionLost(reason)


def test_connectionDoneFailsPending() -> None:
    """
    A clean close with requests pending fails them with ConnectionDone.
    """
    proto, _, _ = connect()
    d = proto.version()
    proto.connectionLost(Failure(ConnectionDone()))
    failureOf(d, ConnectionDone)


def test_requestAfterConnectionLost() -> None:
    """
    A request after the connection was lost fails at once with ConnectionLostError, caused
    by the loss reason, and writes nothing.
    """
    proto, transport, _ = connect()
    proto.connectionLost(Failure(ConnectionDone()))
    transport.clear()
    noKeys: list[bytes] = []
    ds: list[Deferred[Any]] = [
        proto.get(b"k"),
        proto.set(b"k", b"v"),
        proto.flushAll(),
        proto.getMultiple(noKeys),
    ]
    for d in ds:
        assert isinstance(errorOf(d, ConnectionLostError).__cause__, ConnectionDone)
    assert transport.value() == b""


def test_requestWhileDisconnecting() -> None:
    """
    A request while the transport is disconnecting fails at once and writes nothing.
    """
    proto, transport, _ = connect()
    transport.loseConnection()
    failureOf(proto.version(), ConnectionLostError)
    assert transport.value() == b""


def test_requestBeforeConnection() -> None:
    """
    A request before the connection is made fails with ConnectionLostError.
    """
    proto = MemCacheProtocol(clock=Clock())
    failureOf(proto.get(b"k"), ConnectionLostError)


def test_dataAfterDropIgnored() -> None:
    """
    Data arriving after the connection was dropped is ignored.
    """
    proto, transport, _ = connect()
    d = proto.get(b"k")
    proto.dataReceived(b"junk\r\nEND\r\n")
    assertDropped(transport)
    failureOf(d, ProtocolError)
    proto.dataReceived(b"END\r\n")
    proto.connectionLost(Failure(ConnectionDone()))


# Timeout


def test_timeout() -> None:
    """
    With requests pending and no data for timeOut seconds, all fail with TimeoutError and
    the connection is dropped.
    """
    proto, transport, clock = connect(timeOut=5)
    ds: list[Deferred[Any]] = [proto.get(b"a"), proto.get(b"b")]
    clock.advance(4.9)
    assertNoResult(ds[0])
    clock.advance(0.1)
    for d in ds:
        failureOf(d, TimeoutError)
    assertDropped(transport)
    assert clock.getDelayedCalls() == []
    failureOf(proto.get(b"c"), ConnectionLostError)


def test_timeoutResetByData() -> None:
    """
    Any data from the server, even a partial line, restarts the timeout.
    """
    proto, _, clock = connect(timeOut=5)
    d = proto.get(b"a")
    clock.advance(4)
    proto.dataReceived(b"VALUE a 0 3\r\nx")
    clock.advance(4)
    proto.dataReceived(b"y")
    clock.advance(4)
    proto.dataReceived(b"z\r\nEN")
    clock.advance(4)
    proto.dataReceived(b"D\r\n")
    assert resultOf(d) == (0, b"xyz")
    assert clock.getDelayedCalls() == []


def test_timeoutNotRestartedPerRequest() -> None:
    """
    Pipelining more requests does not extend the timeout of those already pending.
    """
    proto, _, clock = connect(timeOut=5)
    d1 = proto.get(b"a")
    clock.advance(3)
    d2 = proto.get(b"b")
    clock.advance(2)
    failureOf(d1, TimeoutError)
    failureOf(d2, TimeoutError)


def test_noTimerWhenIdle() -> None:
    """
    No delayed call remains once every pending request has its reply.
    """
    proto, _, clock = connect(timeOut=5)
    assert clock.getDelayedCalls() == []
    d = proto.get(b"a")
    assert len(clock.getDelayedCalls()) == 1
    proto.dataReceived(b"END\r\n")
    resultOf(d)
    assert clock.getDelayedCalls() == []
    clock.advance(100)


def test_timeoutNone() -> None:
    """
    timeOut=None never times out.
    """
    proto, _, clock = connect(timeOut=None)
    d = proto.get(b"a")
    assert clock.getDelayedCalls() == []
    assertNoResult(d)


def test_callLaterAssignment() -> None:
    """
    Assigning the instance's callLater, as Twisted's own tests do, drives the timeout.
    """
    clock = Clock()
    proto = MemCacheProtocol(timeOut=1)
    proto.callLater = clock.callLater  # type: ignore[assignment]
    proto.makeConnection(StringTransport())  # type: ignore[no-untyped-call]
    d = proto.version()
    clock.advance(1)
    failureOf(d, TimeoutError)


def test_connectionLostCancelsTimer() -> None:
    """
    Losing the connection removes the pending timeout.
    """
    proto, _, clock = connect()
    d = proto.get(b"a")
    proto.connectionLost(Failure(ConnectionDone()))
    failureOf(d, ConnectionDone)
    assert clock.getDelayedCalls() == []


# Cancellation


def test_cancelPending() -> None:
    """
    Cancelling a pending request fails it with CancelledError, fails the others with
    ConnectionLostError and drops the connection.
    """
    proto, transport, clock = connect()
    d1 = proto.get(b"a")
    d2 = proto.get(b"b")
    d3 = proto.get(b"c")
    d2.cancel()
    f2 = failureOf(d2, CancelledError)
    for d in (d1, d3):
        assert errorOf(d, ConnectionLostError).__cause__ is f2.value
    assertDropped(transport)
    assert clock.getDelayedCalls() == []
    proto.dataReceived(b"END\r\nEND\r\n")
    failureOf(proto.get(b"d"), ConnectionLostError)


def test_cancelMidValue() -> None:
    """
    Cancelling a request whose value is half received drops the partial data.
    """
    proto, transport, _ = connect()
    d = proto.get(b"a")
    proto.dataReceived(b"VALUE a 0 10\r\nabc")
    d.cancel()
    failureOf(d, CancelledError)
    assertDropped(transport)


def test_cancelAfterResult() -> None:
    """
    Cancelling a request that already has its result changes nothing.
    """
    proto, transport, _ = connect()
    d = proto.get(b"a")
    proto.dataReceived(b"END\r\n")
    d.cancel()
    assert resultOf(d) == (0, None)
    assert not transport.disconnecting


def test_cancelFromCallbackStopsParsing() -> None:
    """
    A callback that cancels a later request stops parsing; nothing fires twice.
    """
    proto, transport, _ = connect()
    d1 = proto.get(b"a")
    d2 = proto.get(b"b")
    d3 = proto.get(b"c")
    d1.addCallback(lambda _: d2.cancel())
    proto.dataReceived(b"END\r\nEND\r\nEND\r\n")
    failureOf(d2, CancelledError)
    failureOf(d3, ConnectionLostError)
    assertDropped(transport)


def test_requestFromErrbackAfterDrop() -> None:
    """
    A request made from an errback after a protocol error fails at once.
    """
    proto, transport, _ = connect()
    retried: list[Deferred[Any]] = []
    d = proto.get(b"a")
    d.addErrback(lambda _: retried.append(proto.get(b"a")))
    proto.dataReceived(b"bogus\r\n")
    failureOf(retried[0], ConnectionLostError)
    assert transport.value() == b"get a\r\n"


def test_persistentTimeOutIsTimeOut() -> None:
    """
    persistentTimeOut, Twisted's name for the request timeout, reads and sets timeOut.
    """
    proto, _, clock = connect(timeOut=7)
    assert proto.persistentTimeOut == 7
    proto.persistentTimeOut = 3
    assert proto.timeOut == 3
    d = proto.get(b"k")
    clock.advance(3)
    failureOf(d, TimeoutError)
