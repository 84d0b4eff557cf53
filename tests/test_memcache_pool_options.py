"""
Unit tests of MemCachePool's memcached options (serializer, keyPrefix, noreply,
ignoreErrors, the reply limits, silenceTimeout, the default requestTimeout) and of
getValue, getAndTouch, setMultiple and deleteMultiple through the pool, over a fake
endpoint and a clock.
"""

from __future__ import annotations

import inspect
import pickle
import zlib
from typing import Any

import pytest
from twisted.internet.defer import CancelledError
from twisted.internet.testing import StringTransport
from twisted.logger import LogEvent, globalLogPublisher

from txconnpool import ConnectionLostError, Pool, ProtocolError, RequestTimeoutError
from txconnpool.memcache import MemCachePool
from txconnpool.memcache._pool import DEFAULT_REQUEST_TIMEOUT, MemCacheClientFactory
from txconnpool.memcache.errors import (
    InvalidArgumentError,
    InvalidKeyError,
    InvalidTypeError,
    InvalidValueError,
    SerializationError,
)
from txconnpool.memcache.protocol import MemCacheProtocol
from txconnpool.memcache.serializers import BytesSerializer, PythonMemcacheSerializer
from txconnpool.testing import FakeEndpoint

from .helpers import FakeReactor, assertNoResult, failureOf, resultOf


class Connected:
    """
    A MemCachePool of one connection over a fake endpoint, connected on its first request.
    """

    def __init__(self, **options: Any) -> None:
        self.clock = FakeReactor()
        self.endpoint = FakeEndpoint(self.clock)
        built: list[MemCacheProtocol] = []

        class Factory(MemCacheClientFactory):
            def buildProtocol(self, addr: object) -> MemCacheProtocol:
                protocol = super().buildProtocol(addr)
                built.append(protocol)
                return protocol

        class RecordingPool(MemCachePool[Any]):
            clientFactory = Factory

        self.built = built
        self.pool: MemCachePool[Any] = RecordingPool(
            self.endpoint, maxClients=1, reactor=self.clock, **options
        )
        self.protocol: MemCacheProtocol | None = None

    def request(self, d: Any) -> Any:
        """
        Connect on the first request, and return C{d}.
        """
        if self.protocol is None:
            self.endpoint.attempts[0].succeed()
            self.protocol = self.built[-1]
        return d

    @property
    def transport(self) -> StringTransport:
        assert self.protocol is not None
        transport = self.protocol.transport
        assert isinstance(transport, StringTransport)
        return transport

    def sent(self) -> bytes:
        """
        Return what was written since the last call, and forget it.
        """
        value = self.transport.value()
        self.transport.clear()
        return value

    def reply(self, data: bytes) -> None:
        """
        Feed C{data} to the connection.
        """
        assert self.protocol is not None
        self.protocol.dataReceived(data)


# The constructor


def test_everyPoolOptionIsRepeatedKeywordOnly() -> None:
    """
    MemCachePool's constructor names every option of Pool, with the same default except
    requestTimeout, keyword-only after serverAddress, maxClients and reactor.
    """
    poolParameters = inspect.signature(Pool.__init__).parameters
    ours = inspect.signature(MemCachePool.__init__).parameters
    assert not any(p.kind is p.VAR_KEYWORD or p.kind is p.VAR_POSITIONAL for p in ours.values())
    for name, parameter in poolParameters.items():
        assert name in ours, name
        assert ours[name].kind is parameter.kind, name
        if name != "requestTimeout":
            assert ours[name].default == parameter.default, name
    assert ours["requestTimeout"].default == DEFAULT_REQUEST_TIMEOUT == 5.0
    extra = set(ours) - set(poolParameters)
    assert extra == {
        "batchGets", "serializer", "keyPrefix", "noreply", "ignoreErrors", "maxValueSize",
        "maxReplySize", "maxStatsSize", "silenceTimeout", "proxy",
    }
    assert all(ours[name].kind is inspect.Parameter.KEYWORD_ONLY for name in extra)


def test_requestTimeoutByDefault() -> None:
    """
    A request without a reply fails with RequestTimeoutError after 5 seconds by default.
    """
    c = Connected()
    d = c.request(c.pool.get(b"k"))
    c.clock.advance(4.9)
    assertNoResult(d)
    c.clock.advance(0.1)
    failureOf(d, RequestTimeoutError)


@pytest.mark.parametrize(
    "options, error",
    [
        ({"maxValueSize": -1}, ValueError),
        ({"maxValueSize": "1"}, TypeError),
        ({"maxReplySize": 10, "maxValueSize": 11}, ValueError),
        ({"maxStatsSize": 1.5}, TypeError),
        ({"silenceTimeout": 0}, ValueError),
        ({"keyPrefix": b"a b"}, ValueError),
        ({"keyPrefix": 1}, TypeError),
        ({"serializer": "pickle"}, TypeError),
    ],
)
def test_badOptionsRaiseAtConstruction(options: dict[str, Any], error: type[Exception]) -> None:
    """
    A bad memcached option raises at construction, before any connection is attempted.
    """
    clock = FakeReactor()
    endpoint = FakeEndpoint(clock)
    with pytest.raises(error):
        MemCachePool(endpoint, reactor=clock, **options)
    assert endpoint.attempts == []


def test_protocolOptionsReachTheProtocol() -> None:
    """
    maxValueSize, maxReplySize, maxStatsSize, keyPrefix and silenceTimeout configure each
    connection's protocol.
    """
    c = Connected(
        maxValueSize=4 * 1024 * 1024,
        maxReplySize=10**8,
        maxStatsSize=1000,
        keyPrefix="ns:",
        silenceTimeout=7,
        batchGets=False,
    )
    c.request(c.pool.get(b"k"))
    proto = c.protocol
    assert proto is not None
    assert (proto.maxValueSize, proto.maxReplySize, proto.maxStatsSize) == (
        4 * 1024 * 1024, 10**8, 1000
    )
    assert (proto.keyPrefix, proto.timeOut, proto._batchGets) == (b"ns:", 7, False)
    assert c.sent() == b"get ns:k\r\n"


def test_largeValueReadWithMaxValueSize() -> None:
    """
    With maxValueSize raised, a 2 MB value reads back.
    """
    c = Connected(maxValueSize=4 * 1024 * 1024)
    d = c.request(c.pool.get(b"big"))
    value = b"x" * (2 * 1024 * 1024)
    c.reply(b"VALUE big 0 %d\r\n%s\r\nEND\r\n" % (len(value), value))
    assert resultOf(d) == (0, value)


def test_protocolSubclassWithFewerArgumentsStillBuilt() -> None:
    """
    A protocol subclass that takes only some of the protocol's arguments still works with a
    pool left at its defaults.
    """

    class Short(MemCacheProtocol):
        def __init__(self, **kwargs: Any) -> None:
            super().__init__(0.5, **kwargs)

    class Factory(MemCacheClientFactory):
        protocol = Short

    class ShortPool(MemCachePool):
        clientFactory = Factory

    clock = FakeReactor()
    endpoint = FakeEndpoint(clock)
    pool = ShortPool(endpoint, reactor=clock)
    d = pool.version()
    proto = endpoint.attempts[0].succeed()
    proto.dataReceived(b"VERSION 1\r\n")
    assert resultOf(d) == b"1"
    checkedOut = resultOf(pool.acquire())
    assert isinstance(checkedOut, Short) and checkedOut.timeOut == 0.5


# Serializers


def test_defaultSerializerIsBytes() -> None:
    """
    Without a serializer, values are bytes stored as they are, with the flags given.
    """
    c = Connected()
    assert isinstance(c.pool.serializer, BytesSerializer)
    d = c.request(c.pool.set(b"k", b"v", flags=3))
    assert c.sent() == b"set k 3 0 1\r\nv\r\n"
    c.reply(b"STORED\r\n")
    assert resultOf(d) is True
    failureOf(c.pool.set(b"k", "text"), InvalidTypeError)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "value, flags, data",
    [
        (b"raw", 0, b"raw"),
        ("t\u00e9xt", 16, "t\u00e9xt".encode()),
        (42, 2, b"42"),
        (-7, 2, b"-7"),
        ({"a": [1, 2]}, 1, pickle.dumps({"a": [1, 2]}, pickle.HIGHEST_PROTOCOL)),
        (True, 1, pickle.dumps(True, pickle.HIGHEST_PROTOCOL)),
    ],
)
def test_pythonMemcacheSerializerStores(value: object, flags: int, data: bytes) -> None:
    """
    PythonMemcacheSerializer stores bytes, str, int and pickled objects with the flags of
    the python-memcached convention, and reads them back.
    """
    c = Connected(serializer=PythonMemcacheSerializer())
    d = c.request(c.pool.set(b"k", value))
    assert c.sent() == b"set k %d 0 %d\r\n%s\r\n" % (flags, len(data), data)
    c.reply(b"STORED\r\n")
    assert resultOf(d) is True
    got = c.pool.get(b"k")
    c.reply(b"VALUE k %d %d\r\n%s\r\nEND\r\n" % (flags, len(data), data))
    assert resultOf(got) == (flags, value)


def test_compressionAboveTheThreshold() -> None:
    """
    With minCompressLength, longer data is stored compressed with flag 8 added, and read
    back; shorter data is not compressed.
    """
    c = Connected(serializer=PythonMemcacheSerializer(minCompressLength=100))
    c.request(c.pool.set(b"k", "y" * 1000))
    line, _, rest = c.sent().partition(b"\r\n")
    _, _, flags, _, length = line.split()
    assert int(flags) == 16 | 8
    assert zlib.decompress(rest[: int(length)]) == b"y" * 1000
    c.pool.set(b"s", "short")
    assert c.sent().startswith(b"set s 16 0 5\r\n")
    d = c.pool.getValue(b"k")
    c.clock.advance(0)  # the get was batched: it is written at the end of the turn
    c.reply(b"STORED\r\nSTORED\r\n")
    compressed = zlib.compress(b"y" * 1000)
    c.reply(b"VALUE k 24 %d\r\n%s\r\nEND\r\n" % (len(compressed), compressed))
    assert resultOf(d) == "y" * 1000


@pytest.mark.parametrize(
    "flags, data, message",
    [
        (32, b"x", "name no format"),
        (1, b"not a pickle", "does not decode"),
        (2, b"12a", "does not decode"),
        (8, b"not zlib", "does not decompress"),
        (8, zlib.compress(b"x" * 100)[:-5], "truncated"),
    ],
)
def test_undecodableValueFailsTheGet(flags: int, data: bytes, message: str) -> None:
    """
    A stored value the serializer cannot decode fails the get with SerializationError; the
    connection stays in service.
    """
    c = Connected(serializer=PythonMemcacheSerializer())
    d = c.request(c.pool.get(b"k"))
    c.reply(b"VALUE k %d %d\r\n%s\r\nEND\r\n" % (flags, len(data), data))
    assert message in str(failureOf(d, SerializationError).value)
    assert not c.transport.disconnecting


def test_decompressionIsBounded() -> None:
    """
    A compressed value that inflates past maxDecompressedSize fails with SerializationError.
    """
    c = Connected(serializer=PythonMemcacheSerializer(maxDecompressedSize=1000))
    d = c.request(c.pool.get(b"k"))
    bomb = zlib.compress(b"\0" * 100_000)
    c.reply(b"VALUE k 8 %d\r\n%s\r\nEND\r\n" % (len(bomb), bomb))
    assert "maxDecompressedSize" in str(failureOf(d, SerializationError).value)


def test_unpicklableValueRefusedWithoutWriting() -> None:
    """
    A value that cannot be pickled fails with InvalidValueError and writes nothing.
    """
    c = Connected(serializer=PythonMemcacheSerializer())
    c.request(c.pool.version())
    c.sent()
    failureOf(c.pool.set(b"k", lambda: None), InvalidValueError)
    failureOf(c.pool.set(7, "x"), InvalidTypeError)  # type: ignore[arg-type]
    assert c.sent() == b""


def test_flagsAreAddedToTheSerializers() -> None:
    """
    Flags given to set are added to the serializer's.
    """
    c = Connected(serializer=PythonMemcacheSerializer())
    c.request(c.pool.set(b"k", "s", flags=256))
    assert c.sent() == b"set k 272 0 1\r\ns\r\n"
    failureOf(c.pool.set(b"k", "s", flags=-1), InvalidArgumentError)


def test_serializedGetMultipleAndSetMultiple() -> None:
    """
    getMultiple decodes every value; setMultiple encodes every value with its own flags.
    """
    c = Connected(serializer=PythonMemcacheSerializer())
    d = c.request(c.pool.setMultiple({b"a": 1, "b": "x"}))
    assert c.sent() == b"set a 2 0 1\r\n1\r\nset b 16 0 1\r\nx\r\n"
    c.reply(b"STORED\r\nSTORED\r\n")
    assert resultOf(d) == {b"a": True, "b": True}
    got = c.pool.getMultiple([b"a", "b", b"c"])
    c.reply(b"VALUE a 2 1\r\n1\r\nVALUE b 16 1\r\nx\r\nEND\r\n")
    assert resultOf(got) == {b"a": (2, 1), "b": (16, "x"), b"c": (0, None)}


def test_checkAndSetAndGetsWithSerializer() -> None:
    """
    gets decodes the value and keeps the CAS identifier; checkAndSet encodes the value.
    """
    c = Connected(serializer=PythonMemcacheSerializer())
    d = c.request(c.pool.get(b"k", withIdentifier=True))
    c.reply(b"VALUE k 2 2 99\r\n10\r\nEND\r\n")
    assert resultOf(d) == (2, b"99", 10)
    c.sent()
    c.pool.checkAndSet(b"k", 11, b"99")
    assert c.sent() == b"cas k 2 0 2 99\r\n11\r\n"


# getValue and getAndTouch


def test_getValue() -> None:
    """
    getValue fires with the value alone, or the default for a miss.
    """
    c = Connected()
    hit = c.request(c.pool.getValue(b"k"))
    c.reply(b"VALUE k 0 1\r\nv\r\nEND\r\n")
    assert resultOf(hit) == b"v"
    miss, other = c.pool.getValue(b"m"), c.pool.getValue(b"m", b"default")
    c.clock.advance(0)
    c.reply(b"END\r\nEND\r\n")
    assert (resultOf(miss), resultOf(other)) == (None, b"default")


def test_getAndTouchThroughThePool() -> None:
    """
    getAndTouch sends gat through the pool, with the key prefix.
    """
    c = Connected(keyPrefix=b"p:")
    d = c.request(c.pool.getAndTouch(b"k", 60))
    assert c.sent() == b"gat 60 p:k\r\n"
    c.reply(b"VALUE p:k 0 1\r\nv\r\nEND\r\n")
    assert resultOf(d) == (0, b"v")


def test_getMultipleWithPrefixThroughThePool() -> None:
    """
    getMultiple through a prefixed pool is keyed without the prefix.
    """
    c = Connected(keyPrefix=b"p:")
    d = c.request(c.pool.getMultiple([b"a", "b"]))
    assert c.sent() == b"get p:a p:b\r\n"
    c.reply(b"VALUE p:b 0 1\r\nv\r\nEND\r\n")
    assert resultOf(d) == {b"a": (0, None), "b": (0, b"v")}


# noreply


def test_poolNoreplyIsTheDefault() -> None:
    """
    With noreply=True on the pool, writes ask for no reply and fire at once, unless a call
    says noreply=False.
    """
    c = Connected(noreply=True)
    d = c.request(c.pool.set(b"k", b"v"))
    assert resultOf(d) is True
    assert resultOf(c.pool.delete(b"k")) is True
    assert resultOf(c.pool.increment(b"n")) is None
    assert resultOf(c.pool.touch(b"k", 1)) is True
    assert resultOf(c.pool.deleteMultiple([b"a"])) == {b"a": True}
    assert resultOf(c.pool.setMultiple({b"a": b"1"})) == {b"a": True}
    assert c.sent() == (
        b"set k 0 0 1 noreply\r\nv\r\ndelete k noreply\r\nincr n 1 noreply\r\n"
        b"touch k 1 noreply\r\ndelete a noreply\r\nset a 0 0 1 noreply\r\n1\r\n"
    )
    answered = c.pool.add(b"k", b"v", noreply=False)
    assert c.sent() == b"add k 0 0 1\r\nv\r\n"
    c.reply(b"NOT_STORED\r\n")
    assert resultOf(answered) is False
    stats = c.pool.poolStats()
    assert (stats.busy, stats.idle, stats.failedRequests) == (0, 1, 0)


def test_noreplyPerCall() -> None:
    """
    noreply=True on one call asks for no reply; the pool's default stays False.
    """
    c = Connected()
    assert resultOf(c.request(c.pool.set(b"k", b"v", noreply=True))) is True
    d = c.pool.set(b"k", b"v")
    assert c.sent() == b"set k 0 0 1 noreply\r\nv\r\nset k 0 0 1\r\nv\r\n"
    assertNoResult(d)


# ignoreErrors


def test_ignoreErrorsTurnsFailuresIntoMissesAndFailedWrites() -> None:
    """
    With ignoreErrors, reads that fail give misses and writes False (None for increments),
    each counted and logged; invalid requests and cancellations still fail.
    """
    events: list[LogEvent] = []
    globalLogPublisher.addObserver(events.append)
    try:
        c = Connected(ignoreErrors=True)
        get = c.request(c.pool.get(b"k"))
        gets = c.pool.get(b"k", withIdentifier=True)
        multi = c.pool.getMultiple([b"a", "b"])
        value = c.pool.getValue(b"k", b"dflt")
        stored = c.pool.set(b"k", b"v")
        incremented = c.pool.increment(b"n")
        deleted = c.pool.deleteMultiple([b"a"])
        many = c.pool.setMultiple({b"a": b"1"})
        gat = c.pool.getAndTouch(b"k", 1)
        c.clock.advance(0)
        # A reply that fits no request fails them all (none is sent again: bytes arrived).
        c.reply(b"garbage\r\n")
    finally:
        globalLogPublisher.removeObserver(events.append)
    assert resultOf(get) == (0, None)
    assert resultOf(gets) == (0, b"", None)
    assert resultOf(multi) == {b"a": (0, None), "b": (0, None)}
    assert resultOf(value) == b"dflt"
    assert resultOf(stored) is False
    assert resultOf(incremented) is None
    assert resultOf(deleted) == {b"a": False}
    assert resultOf(many) == {b"a": False}
    assert resultOf(gat) == (0, None)
    assert c.pool.ignoredErrors == 9
    ignored = [e for e in events if e.get("txconnpoolEvent") == "errorIgnored"]
    assert len(ignored) == 9
    assert {e["outcome"] for e in ignored} == {"miss", "failed write"}
    # The connection broke before it proved usable: a failed attempt, so the pool backs off.
    c.clock.advance(1.0)
    bad = c.pool.get(b"bad key")
    assert len(c.endpoint.attempts) == 2
    c.endpoint.attempts[-1].succeed()
    failureOf(bad, InvalidKeyError)
    pending = c.pool.get(b"k")
    pending.cancel()
    failureOf(pending, CancelledError)
    assert c.pool.ignoredErrors == 9


def test_ignoreErrorsLeavesSuccessesAlone() -> None:
    """
    With ignoreErrors, answered requests fire with their replies and count nothing.
    """
    c = Connected(ignoreErrors=True)
    d = c.request(c.pool.getMultiple([b"a"]))
    c.reply(b"VALUE a 0 1\r\nx\r\nEND\r\n")
    assert resultOf(d) == {b"a": (0, b"x")}
    assert c.pool.ignoredErrors == 0


def test_withoutIgnoreErrorsFailuresReachTheCaller() -> None:
    """
    By default, a request on a lost connection fails with ConnectionLostError.
    """
    c = Connected()
    d = c.request(c.pool.set(b"k", b"v"))
    c.protocol.connectionLost()  # type: ignore[union-attr]
    failureOf(d, ConnectionLostError)
    other = c.pool.set(b"k", b"v")
    # The connection broke before it proved usable: a failed attempt, so the pool backs off.
    c.clock.advance(1.0)
    c.endpoint.attempts[1].succeed()
    c.built[-1].dataReceived(b"garbage\r\n")
    failureOf(other, ProtocolError)
    assert c.pool.ignoredErrors == 0
