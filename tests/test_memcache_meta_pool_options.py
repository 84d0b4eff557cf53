"""
Unit tests of MetaMemCachePool's options, the ones of MemCachePool (serializer, keyPrefix,
noreply, ignoreErrors, the reply limits, silenceTimeout, the default requestTimeout, proxy)
and what they do to getOrCompute, over a fake endpoint and a clock.
"""

from __future__ import annotations

import inspect
import pickle
from typing import Any

import pytest
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.testing import StringTransport
from twisted.logger import LogEvent, globalLogPublisher

from txconnpool import RequestTimeoutError
from txconnpool.memcache import MemCachePool, MetaMemCachePool
from txconnpool.memcache.errors import (
    InvalidKeyError,
    InvalidTypeError,
    SerializationError,
)
from txconnpool.memcache.meta import LeaseTimeoutError, MetaMemCacheProtocol
from txconnpool.memcache.meta._pool import MetaMemCacheClientFactory
from txconnpool.memcache.serializers import FLAG_INTEGER, FLAG_PICKLE, PythonMemcacheSerializer
from txconnpool.testing import FakeEndpoint

from .helpers import FakeReactor, assertNoResult, failureOf, resultOf


class Connected:
    """
    A MetaMemCachePool of one connection over a fake endpoint, connected and probed (as
    memcached 1.6.18 answers the probe) on its first request.
    """

    def __init__(self, **options: Any) -> None:
        self.clock = FakeReactor()
        self.endpoint = FakeEndpoint(self.clock)
        built: list[MetaMemCacheProtocol] = []

        class Factory(MetaMemCacheClientFactory):
            def buildProtocol(self, addr: object) -> MetaMemCacheProtocol:
                protocol = super().buildProtocol(addr)
                built.append(protocol)
                return protocol

        class RecordingPool(MetaMemCachePool[Any]):
            clientFactory = Factory

        self.built = built
        self.pool: MetaMemCachePool[Any] = RecordingPool(
            self.endpoint, maxClients=1, reactor=self.clock, **options
        )
        self.protocol: MetaMemCacheProtocol | None = None

    def request(self, d: Any) -> Any:
        """
        Connect and answer the probe on the first request, and return C{d}.
        """
        if self.protocol is None:
            self.connect()
        return d

    def connect(self) -> None:
        """
        Complete the latest connection attempt and answer its probe.
        """
        self.endpoint.attempts[-1].succeed()
        self.protocol = self.built[-1]
        probe = self.sent()
        [opaque] = [token for token in probe.split() if token[:1] == b"O"]
        self.reply(b"VERSION 1.6.18\r\nMN\r\nEN %s\r\n" % (opaque,))

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


def test_everyMemCachePoolOptionIsAccepted() -> None:
    """
    MetaMemCachePool's constructor has every parameter of MemCachePool's, of the same kind
    and default, and only base64Keys and leasePollPolicy more, keyword-only.
    """
    text = inspect.signature(MemCachePool.__init__).parameters
    meta = inspect.signature(MetaMemCachePool.__init__).parameters
    assert not any(p.kind is p.VAR_KEYWORD or p.kind is p.VAR_POSITIONAL for p in meta.values())
    for name, parameter in text.items():
        assert name in meta, name
        assert (meta[name].kind, meta[name].default) == (parameter.kind, parameter.default), name
    extra = set(meta) - set(text)
    assert extra == {"base64Keys", "leasePollPolicy"}
    assert all(meta[name].kind is inspect.Parameter.KEYWORD_ONLY for name in extra)


def test_twemproxyIsRefused() -> None:
    """
    proxy="twemproxy" raises a ValueError that says why and names MemCachePool; any other
    proxy is refused too; nothing is connected.
    """
    clock = FakeReactor()
    endpoint = FakeEndpoint(clock)
    with pytest.raises(ValueError, match=r"text protocol.*MemCachePool"):
        MetaMemCachePool(endpoint, reactor=clock, proxy="twemproxy")
    with pytest.raises(ValueError, match="proxy must be None"):
        MetaMemCachePool(endpoint, reactor=clock, proxy="mcrouter")
    assert endpoint.attempts == []


@pytest.mark.parametrize(
    "options, error",
    [
        ({"maxValueSize": -1}, ValueError),
        ({"maxValueSize": "1"}, TypeError),
        ({"maxReplySize": 10, "maxValueSize": 11}, ValueError),
        ({"maxStatsSize": 1.5}, TypeError),
        ({"silenceTimeout": 0}, ValueError),
        ({"requestTimeout": -1}, ValueError),
        ({"keyPrefix": b"a b"}, ValueError),
        ({"keyPrefix": 1}, TypeError),
        ({"keyPrefix": b"p" * 190, "base64Keys": True}, ValueError),
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
        MetaMemCachePool(endpoint, reactor=clock, **options)
    assert endpoint.attempts == []


def test_protocolOptionsReachTheProtocol() -> None:
    """
    maxValueSize, maxReplySize, maxStatsSize, keyPrefix, silenceTimeout, requestTimeout,
    batchGets and base64Keys configure each connection's protocol.
    """
    c = Connected(
        maxValueSize=4 * 1024 * 1024,
        maxReplySize=10**8,
        maxStatsSize=1000,
        keyPrefix="ns:",
        silenceTimeout=7,
        requestTimeout=3,
        batchGets=False,
        base64Keys=True,
    )
    d = c.request(c.pool.get(b"k"))
    proto = c.protocol
    assert proto is not None
    assert (proto.maxValueSize, proto.maxReplySize, proto.maxStatsSize) == (
        4 * 1024 * 1024, 10**8, 1000
    )
    assert (proto.keyPrefix, proto.timeOut, proto.requestTimeout) == (b"ns:", 7, 3)
    assert (proto._batchGets, proto.base64Keys) == (False, True)
    assert c.sent() == b"mg bnM6aw== O2 b v f\r\n"
    c.reply(b"EN O2\r\n")
    assert resultOf(d) == (0, None)


def test_requestTimeoutByDefault() -> None:
    """
    A request without a reply fails with RequestTimeoutError 5 seconds after it was sent,
    by default.
    """
    c = Connected()
    d = c.request(c.pool.get(b"k"))
    c.clock.advance(4.9)
    assertNoResult(d)
    c.clock.advance(0.1)
    failureOf(d, RequestTimeoutError)


# Serializers


def test_serializerOnTheWayInAndOut() -> None:
    """
    With PythonMemcacheSerializer, values are stored with the convention's flags and read
    back as objects, by get, getMultiple, getAndTouch and getValue.
    """
    c = Connected(serializer=PythonMemcacheSerializer())
    stored = c.request(c.pool.set(b"n", 42))
    assert c.sent() == b"ms n 2 O2 F%d T0\r\n42\r\n" % (FLAG_INTEGER,)
    c.reply(b"HD O2\r\n")
    assert resultOf(stored) is True
    got = c.pool.get(b"n")
    c.reply(b"VA 2 O3 f%d\r\n42\r\n" % (FLAG_INTEGER,))
    assert resultOf(got) == (FLAG_INTEGER, 42)
    data = pickle.dumps({"a": 1}, protocol=pickle.HIGHEST_PROTOCOL)
    many = c.pool.getMultiple([b"d", "x"])
    c.reply(b"VA %d O4 f%d\r\n%s\r\nMN\r\n" % (len(data), FLAG_PICKLE, data))
    assert resultOf(many) == {b"d": (FLAG_PICKLE, {"a": 1}), "x": (0, None)}
    touched = c.pool.getAndTouch(b"n", 5)
    c.reply(b"VA 2 O6 f%d\r\n42\r\n" % (FLAG_INTEGER,))
    assert resultOf(touched) == (FLAG_INTEGER, 42)
    value = c.pool.getValue(b"n")
    c.reply(b"VA 2 O7 f%d\r\n42\r\n" % (FLAG_INTEGER,))
    assert resultOf(value) == 42
    bad = c.pool.get(b"n")
    c.reply(b"VA 2 O8 f%d\r\nxx\r\n" % (FLAG_INTEGER,))
    failureOf(bad, SerializationError)


def test_serializerRefusalWritesNothing() -> None:
    """
    A value the serializer refuses fails the write before anything is sent.
    """
    c = Connected()
    c.request(c.pool.version())
    c.reply(b"VERSION 1.6.18\r\n")
    failureOf(c.pool.set(b"k", "not bytes"), InvalidTypeError)
    failureOf(c.pool.setMultiple({b"k": 1}), InvalidTypeError)
    assert c.sent() == b"version\r\n"


# noreply


def test_poolNoreplyIsTheDefault() -> None:
    """
    With noreply=True on the pool, writes are sent in quiet mode and fire at once, unless a
    call says noreply=False; the connection is free again at once.
    """
    c = Connected(noreply=True)
    d = c.request(c.pool.set(b"k", b"v"))
    assert resultOf(d) is True
    assert resultOf(c.pool.delete(b"k")) is True
    assert resultOf(c.pool.increment(b"n")) is None
    assert resultOf(c.pool.touch(b"k", 1)) is True
    assert resultOf(c.pool.deleteMultiple([b"a"])) == {b"a": True}
    assert resultOf(c.pool.setMultiple({b"a": b"1"})) == {b"a": True}
    c.clock.advance(0)
    assert c.sent() == (
        b"ms k 1 O2 F0 T0 q\r\nv\r\nmd k O3 q\r\nma n O4 D1 q\r\nmg k O5 T1 q\r\n"
        b"md a O6 q\r\nms a 1 O7 F0 T0 q\r\n1\r\nmn\r\n"
    )
    answered = c.pool.add(b"k", b"v", noreply=False)
    assert c.sent() == b"ms k 1 O8 F0 T0 ME\r\nv\r\n"
    c.reply(b"HD O5\r\nMN\r\nNS O8\r\n")
    assert resultOf(answered) is False
    stats = c.pool.poolStats()
    assert (stats.busy, stats.idle, stats.failedRequests) == (0, 1, 0)


def test_noreplyPerCall() -> None:
    """
    noreply=True on one call sends it in quiet mode; the pool's default stays False.
    """
    c = Connected()
    assert resultOf(c.request(c.pool.set(b"k", b"v", noreply=True))) is True
    d = c.pool.set(b"k", b"v")
    assert c.sent() == b"ms k 1 O2 F0 T0 q\r\nv\r\nmn\r\nms k 1 O3 F0 T0\r\nv\r\n"
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
        invalidated = c.pool.invalidate(b"k")
        info = c.pool.itemInfo(b"k")
        c.clock.advance(0)
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
    assert resultOf(invalidated) is False
    assert resultOf(info) is None
    assert c.pool.ignoredErrors == 11
    ignored = [e for e in events if e.get("txconnpoolEvent") == "errorIgnored"]
    assert len(ignored) == 11
    assert {e["command"] for e in ignored if e["outcome"] == "miss"} == {
        "get", "getMultiple", "getAndTouch", "itemInfo"
    }
    # The connection broke before it proved usable: a failed attempt, so the pool backs off.
    c.clock.advance(1.0)
    bad = c.pool.get(b"bad key")
    c.connect()
    failureOf(bad, InvalidKeyError)
    pending = c.pool.get(b"k")
    pending.cancel()
    failureOf(pending, CancelledError)
    assert c.pool.ignoredErrors == 11


def test_ignoreErrorsInGetOrCompute() -> None:
    """
    With ignoreErrors, a getOrCompute whose read fails counts as a miss: the value is
    computed without a lease and returned; compute's own error still fails the call.
    """
    c = Connected(ignoreErrors=True)
    d = c.request(c.pool.getOrCompute(b"k", lambda: b"fresh", 60))
    assert c.sent() == b"mg k O2 v f c N30\r\n"
    c.reply(b"garbage\r\n")
    assert c.pool.ignoredErrors == 1
    c.clock.advance(1.0)
    c.connect()
    assert c.sent() == b"ms k 5 O2 T60\r\nfresh\r\n"
    c.reply(b"HD O2\r\n")
    assert resultOf(d) == b"fresh"

    def broken() -> bytes:
        raise RuntimeError("no database")

    failed = c.pool.getOrCompute(b"j", broken, 60)
    c.reply(b"VA 0 O3 f0 c9 W\r\n\r\n")
    assert c.sent() == b"mg j O3 v f c N30\r\nmd j O4 C9\r\n"
    c.reply(b"HD O4\r\n")
    failureOf(failed, RuntimeError)
    assert c.pool.ignoredErrors == 1


def test_withoutIgnoreErrorsGetOrComputeFailsWithTheRead() -> None:
    """
    Without ignoreErrors, a getOrCompute whose read fails fails with that error and computes
    nothing.
    """
    computed: list[int] = []
    c = Connected()
    d = c.request(c.pool.getOrCompute(b"k", lambda: computed.append(1) or b"v", 60))
    c.reply(b"garbage\r\n")
    failureOf(d)
    assert computed == [] and c.pool.ignoredErrors == 0


def test_getOrComputeThroughTheSerializerAndPrefix() -> None:
    """
    getOrCompute stores the computed object through the serializer, under the prefixed key,
    and a waiting caller gets the stored value decoded.
    """
    c = Connected(serializer=PythonMemcacheSerializer(), keyPrefix="ns:")
    d = c.request(c.pool.getOrCompute("k", lambda: {"rows": 3}, 60))
    assert c.sent() == b"mg ns:k O2 v f c N30\r\n"
    c.reply(b"VA 0 O2 f0 c9 W\r\n\r\n")
    data = pickle.dumps({"rows": 3}, protocol=pickle.HIGHEST_PROTOCOL)
    assert c.sent() == b"ms ns:k %d O3 T60 F%d C9 I\r\n%s\r\n" % (len(data), FLAG_PICKLE, data)
    c.reply(b"HD O3\r\n")
    assert resultOf(d) == {"rows": 3}
    other = c.pool.getOrCompute("k", lambda: {"rows": 0}, 60)
    c.reply(b"VA %d O4 f%d c10\r\n%s\r\n" % (len(data), FLAG_PICKLE, data))
    assert resultOf(other) == {"rows": 3}


def test_undecodableValueInGetOrCompute() -> None:
    """
    A stored value the serializer cannot read fails getOrCompute with SerializationError,
    giving back a lease it took; with ignoreErrors, it is recomputed under the lease.
    """
    strict = Connected(serializer=PythonMemcacheSerializer())
    d = strict.request(strict.pool.getOrCompute(b"k", lambda: 1, 60))
    strict.reply(b"VA 2 O2 f%d c9 X W\r\nxx\r\n" % (FLAG_INTEGER,))
    assert strict.sent() == b"mg k O2 v f c N30\r\nmd k O3 C9 I\r\n"
    strict.reply(b"HD O3\r\n")
    failureOf(d, SerializationError)
    lenient = Connected(serializer=PythonMemcacheSerializer(), ignoreErrors=True)
    d = lenient.request(lenient.pool.getOrCompute(b"k", lambda: 7, 60))
    lenient.reply(b"VA 2 O2 f%d c9 X W\r\nxx\r\n" % (FLAG_INTEGER,))
    assert lenient.sent() == b"mg k O2 v f c N30\r\nms k 1 O3 T60 F%d C9 I\r\n7\r\n" % (
        FLAG_INTEGER,
    )
    lenient.reply(b"HD O3\r\n")
    assert resultOf(d) == 7
    assert lenient.pool.ignoredErrors == 1


def test_leaseTimeoutStillFailsWithIgnoreErrors() -> None:
    """
    With ignoreErrors, waiting too long for another client's computation still fails with
    LeaseTimeoutError: memcached did not fail.
    """
    c = Connected(ignoreErrors=True, leasePollPolicy=lambda n: 1.0)
    d: Deferred[bytes] = c.request(c.pool.getOrCompute(b"k", lambda: b"v", 60, waitTimeout=1))
    c.reply(b"VA 0 O2 f0 c9 Z\r\n\r\n")
    c.clock.advance(1.0)
    c.reply(b"VA 0 O3 f0 c9 Z\r\n\r\n")
    failureOf(d, LeaseTimeoutError)
    assert c.pool.ignoredErrors == 0
