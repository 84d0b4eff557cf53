"""
Unit tests of MemCacheCluster over fake endpoints and a clock: routing, multi-gets split by
node, failures kept to their node, ejection and re-admission, per-node commands and stats.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from twisted.internet.address import IPv4Address
from twisted.internet.defer import CancelledError
from twisted.logger import globalLogPublisher

from txconnpool.errors import ServerUnavailableError
from txconnpool.memcache import (
    InvalidKeyError,
    InvalidRequestError,
    InvalidTypeError,
    MemCacheCluster,
    PartialResultError,
)
from txconnpool.testing import FakeConnectAttempt, FakeEndpoint

from .helpers import FakeReactor, assertNoResult, failureOf, resultOf

NAMES = ("a", "b", "c")


class Fixture:
    """
    A cluster of three named nodes over fake endpoints.
    """

    def __init__(self, **options: Any) -> None:
        self.clock = FakeReactor()
        self.endpoints = {name: FakeEndpoint(self.clock) for name in NAMES}
        options.setdefault("retryPolicy", lambda n: 1.0)
        options.setdefault("failFastAfter", 1)
        self.cluster = MemCacheCluster(
            [(self.endpoints[name], 1, name) for name in NAMES],
            reactor=self.clock,
            maxClients=1,
            **options,
        )

    def nodeOf(self, key: bytes | str) -> str:
        pool = self.cluster.poolFor(key)
        return next(name for name, p in self.cluster.pools.items() if p is pool)

    def keysOn(self, name: str, count: int) -> list[bytes]:
        keys = (b"key-%d" % i for i in range(10_000))
        found = []
        for key in keys:
            if self.nodeOf(key) == name:
                found.append(key)
                if len(found) == count:
                    return found
        raise AssertionError(f"no {count} keys on {name}")

    def connect(self, name: str) -> tuple[Any, Any]:
        attempt = self.endpoints[name].pending()[-1]
        protocol = attempt.succeed()
        return protocol, attempt.transport

    def refuse(self, name: str) -> FakeConnectAttempt:
        attempt = self.endpoints[name].pending()[-1]
        attempt.fail()
        return attempt

    def close(self) -> None:
        d = self.cluster.close()
        self.clock.advance(0)
        resultOf(d)
        assert self.clock.getDelayedCalls() == []


@pytest.fixture
def fx() -> Iterator[Fixture]:
    fixture = Fixture()
    yield fixture
    fixture.close()


def test_aKeyGoesToItsNodeOnly(fx: Fixture) -> None:
    """
    A single-key command is sent to the node of its key, and to no other.
    """
    key = fx.keysOn("b", 1)[0]
    d = fx.cluster.get(key)
    assert fx.endpoints["a"].attempts == [] and fx.endpoints["c"].attempts == []
    protocol, transport = fx.connect("b")
    assert transport.value() == b"get " + key + b"\r\n"
    protocol.dataReceived(b"VALUE " + key + b" 5 2\r\nhi\r\nEND\r\n")
    assert resultOf(d) == (5, b"hi")


def test_strAndBytesKeysPlaceTheSame(fx: Fixture) -> None:
    """
    A str key and its UTF-8 bytes belong to the same node.
    """
    keys = [f"ключ-{i}" for i in range(300)]
    assert all(fx.cluster.poolFor(k) is fx.cluster.poolFor(k.encode()) for k in keys)
    assert {fx.nodeOf(k) for k in keys} == set(NAMES)


def test_everyCommandIsRoutedByKey(fx: Fixture) -> None:
    """
    Every single-key command of MemCachePool goes to its key's node with its own wire form.
    """
    key = fx.keysOn("c", 1)[0]
    protocol, transport = None, None
    calls = [
        (lambda: fx.cluster.set(key, b"v", 1, 2), b"set %s 1 2 1\r\nv\r\n", b"STORED", True),
        (lambda: fx.cluster.add(key, b"v"), b"add %s 0 0 1\r\nv\r\n", b"NOT_STORED", False),
        (lambda: fx.cluster.replace(key, b"v"), b"replace %s 0 0 1\r\nv\r\n", b"STORED", True),
        (lambda: fx.cluster.append(key, b"v"), b"append %s 0 0 1\r\nv\r\n", b"STORED", True),
        (lambda: fx.cluster.prepend(key, b"v"), b"prepend %s 0 0 1\r\nv\r\n", b"STORED", True),
        (lambda: fx.cluster.checkAndSet(key, b"v", 7), b"cas %s 0 0 1 7\r\nv\r\n", b"EXISTS",
         False),
        (lambda: fx.cluster.increment(key, 3), b"incr %s 3\r\n", b"4", 4),
        (lambda: fx.cluster.decrement(key), b"decr %s 1\r\n", b"3", 3),
        (lambda: fx.cluster.delete(key), b"delete %s\r\n", b"DELETED", True),
        (lambda: fx.cluster.touch(key, 10), b"touch %s 10\r\n", b"TOUCHED", True),
    ]
    for call, wire, reply, result in calls:
        d = call()
        if protocol is None:
            protocol, transport = fx.connect("c")
        assert transport.value() == wire % (key,)
        transport.clear()
        protocol.dataReceived(reply + b"\r\n")
        assert resultOf(d) == result
    assert fx.endpoints["a"].attempts == [] and fx.endpoints["b"].attempts == []


def test_namedServersHashTheirNameAndOthersTheirHostAndPort() -> None:
    """
    A server's points are hashed from its name when it has one, from C{host} on port 11211
    and from C{host:port} on other ports: addresses and the equivalent names place alike.
    """
    clock = FakeReactor()
    byAddress = MemCacheCluster(
        ["tcp:127.0.0.2:11211", IPv4Address("TCP", "127.0.0.3", 11211),
         "tcp:host=127.0.0.1:port=22122"],
        reactor=clock,
    )
    endpoints = [FakeEndpoint(clock) for _ in range(3)]
    byName = MemCacheCluster(
        [(endpoints[0], 1, "127.0.0.2"), (endpoints[1], 1, "127.0.0.3"),
         (endpoints[2], 1, "127.0.0.1:22122")],
        reactor=clock,
    )
    order = {name: i for i, name in enumerate(byAddress.pools)}
    assert list(order) == ["127.0.0.2:11211", "127.0.0.3:11211", "127.0.0.1:22122"]
    poolsA = list(byAddress.pools.values())
    poolsB = list(byName.pools.values())
    for i in range(500):
        key = b"k%d" % i
        assert poolsA.index(byAddress.poolFor(key)) == poolsB.index(byName.poolFor(key))
    resultOf(byAddress.close())
    resultOf(byName.close())


def test_getMultipleSendsOneGetPerNodeAndMerges(fx: Fixture) -> None:
    """
    getMultiple sends each node one multi-key get with exactly its keys, in parallel, and fires
    with all the results merged, keyed by the objects given.
    """
    keys = {name: fx.keysOn(name, 2) for name in NAMES}
    asked: list[bytes | str] = [keys["a"][0], keys["b"][0].decode(), keys["c"][0],
                                keys["a"][1], keys["b"][1], keys["c"][1]]
    d = fx.cluster.getMultiple(asked)
    for name in NAMES:
        protocol, transport = fx.connect(name)
        assert transport.value() == b"get %s %s\r\n" % tuple(keys[name])
        first = keys[name][0]
        protocol.dataReceived(b"VALUE %s 0 1\r\n%s\r\nEND\r\n" % (first, name.encode()))
        assertNoResult(d) if name != "c" else None
    result = resultOf(d)
    assert result == {
        keys["a"][0]: (0, b"a"), keys["b"][0].decode(): (0, b"b"), keys["c"][0]: (0, b"c"),
        keys["a"][1]: (0, None), keys["b"][1]: (0, None), keys["c"][1]: (0, None),
    }


def test_aFailedNodeFailsOnlyItsKeys(fx: Fixture) -> None:
    """
    When one node's multi-get fails, getMultiple fails with PartialResultError once the others
    answered: its results hold their keys, its errors the failed node's keys.
    """
    keys = {name: fx.keysOn(name, 2) for name in NAMES}
    d = fx.cluster.getMultiple([k for name in NAMES for k in keys[name]])
    fx.refuse("b")
    assertNoResult(d)
    for name in ("a", "c"):
        protocol, _ = fx.connect(name)
        protocol.dataReceived(b"VALUE %s 0 1\r\nv\r\nEND\r\n" % (keys[name][0],))
    error = failureOf(d, PartialResultError).value
    assert error.results == {
        keys["a"][0]: (0, b"v"), keys["a"][1]: (0, None),
        keys["c"][0]: (0, b"v"), keys["c"][1]: (0, None),
    }
    assert set(error.errors) == set(keys["b"])
    assert all(isinstance(e, ServerUnavailableError) for e in error.errors.values())
    assert "1 of 3" not in str(error) and "2 of 6 failed" in str(error)


def test_aDeadNodeFailsItsKeysFastByDefault(fx: Fixture) -> None:
    """
    Without ejection, once a node's server is unreachable its keys fail at once with
    ServerUnavailableError while the other nodes keep working.
    """
    deadKey = fx.keysOn("a", 1)[0]
    liveKey = fx.keysOn("b", 1)[0]
    first = fx.cluster.get(deadKey)
    fx.refuse("a")
    failureOf(first, ServerUnavailableError)
    failureOf(fx.cluster.get(deadKey), ServerUnavailableError)
    assert fx.endpoints["a"].pending() == []
    d = fx.cluster.get(liveKey)
    protocol, _ = fx.connect("b")
    protocol.dataReceived(b"END\r\n")
    assert resultOf(d) == (0, None)
    assert fx.nodeOf(deadKey) == "a"
    assert fx.cluster.poolStats().ejectedNodes == 0


def test_anInvalidKeyFailsAtOnceAndSendsNothing(fx: Fixture) -> None:
    """
    An unusable key fails with the pool's typed error before anything is sent to any node.
    """
    failureOf(fx.cluster.get(b"has space"), InvalidKeyError)
    failureOf(fx.cluster.set(42, b"v"), InvalidTypeError)  # type: ignore[arg-type]
    failureOf(fx.cluster.getMultiple([b"fine", b"x" * 251]), InvalidKeyError)
    failureOf(fx.cluster.getMultiple(b"one"), InvalidTypeError)
    failureOf(fx.cluster.stats(b"bad\nline"), InvalidRequestError)
    assert all(endpoint.attempts == [] for endpoint in fx.endpoints.values())
    with pytest.raises(InvalidKeyError):
        fx.cluster.poolFor("")


def test_noKeysFireWithAnEmptyDict(fx: Fixture) -> None:
    """
    getMultiple of no keys fires with an empty dict and sends nothing.
    """
    assert resultOf(fx.cluster.getMultiple([])) == {}
    assert all(endpoint.attempts == [] for endpoint in fx.endpoints.values())


def test_cancellingGetMultipleCancelsEveryPart(fx: Fixture) -> None:
    """
    Cancelling a getMultiple fails it with CancelledError and cancels each node's request.
    """
    keys = [k for name in NAMES for k in fx.keysOn(name, 1)]
    d = fx.cluster.getMultiple(keys)
    d.cancel()
    failureOf(d, CancelledError)
    assert all(
        a.cancelled for endpoint in fx.endpoints.values() for a in endpoint.attempts
    )


def test_statsVersionAndFlushAllGoToEveryNode(fx: Fixture) -> None:
    """
    stats and version fire with each node's answer by node name; flushAll flushes every node.
    """
    stats = fx.cluster.stats()
    version = fx.cluster.version()
    flush = fx.cluster.flushAll()
    for i, name in enumerate(NAMES):
        protocol, transport = fx.connect(name)
        assert transport.value() == b"stats\r\nversion\r\nflush_all\r\n"
        protocol.dataReceived(b"STAT pid %d\r\nEND\r\nVERSION 1.6.%d\r\nOK\r\n" % (i, i))
    assert resultOf(stats) == {name: {b"pid": b"%d" % i} for i, name in enumerate(NAMES)}
    assert resultOf(version) == {name: b"1.6.%d" % i for i, name in enumerate(NAMES)}
    assert resultOf(flush) is True


def test_perNodeRequestsFailOnlyTheirNode(fx: Fixture) -> None:
    """
    version with one node down fails with PartialResultError holding the others' versions.
    """
    d = fx.cluster.version()
    fx.refuse("c")
    for name in ("a", "b"):
        protocol, _ = fx.connect(name)
        protocol.dataReceived(b"VERSION 1.6.18\r\n")
    error = failureOf(d, PartialResultError).value
    assert error.results == {"a": b"1.6.18", "b": b"1.6.18"}
    assert list(error.errors) == ["c"]


def _observe(events: list[dict[str, Any]]) -> Any:
    def observer(event: dict[str, Any]) -> None:
        if event.get("txconnpoolEvent") in ("nodeEjected", "nodeReadmitted"):
            events.append(event)

    globalLogPublisher.addObserver(observer)
    return observer


def test_ejectionMovesKeysAsIfTheServerWereGoneAndReadmits() -> None:
    """
    With ejectAfter, a node whose requests fail that many times in a row leaves the continuum
    (logged and counted), its keys placed as by a cluster without it; after retryTimeout a
    version request goes to it, and when it answers the node is back.
    """
    fx = Fixture(ejectAfter=2, retryTimeout=5.0)
    without = Fixture()
    withoutAC = MemCacheCluster(
        [(without.endpoints["a"], 1, "a"), (without.endpoints["c"], 1, "c")],
        reactor=without.clock,
    )
    events: list[dict[str, Any]] = []
    observer = _observe(events)
    try:
        keysOfB = fx.keysOn("b", 40)
        for _ in range(2):
            d = fx.cluster.get(keysOfB[0])
            if fx.endpoints["b"].pending():
                fx.refuse("b")
            failureOf(d, ServerUnavailableError)
        stats = fx.cluster.poolStats()
        assert (stats.node("b").ejected, stats.node("b").ejections, stats.liveNodes) == (
            True, 1, 2
        )
        assert "live=2 ejected=1" in repr(fx.cluster)
        assert [e["txconnpoolEvent"] for e in events] == ["nodeEjected"]
        for key in keysOfB + [b"other-%d" % i for i in range(200)]:
            expected = list(withoutAC.pools).index(
                next(n for n, p in withoutAC.pools.items() if p is withoutAC.poolFor(key))
            )
            assert fx.nodeOf(key) == ("a", "c")[expected]

        fx.clock.advance(5.0)
        protocol, transport = fx.connect("b")
        assert transport.value() == b"version\r\n"
        protocol.dataReceived(b"VERSION 1.6.18\r\n")
        assert fx.nodeOf(keysOfB[0]) == "b"
        node = fx.cluster.poolStats().node("b")
        assert (node.ejected, node.readmissions, node.consecutiveFailures) == (False, 1, 0)
        assert [e["txconnpoolEvent"] for e in events] == ["nodeEjected", "nodeReadmitted"]
    finally:
        globalLogPublisher.removeObserver(observer)
        resultOf(withoutAC.close())
        without.close()
        fx.close()


def test_anEjectedNodeThatStillFailsIsTriedAgainLater() -> None:
    """
    An ejected node whose version probe fails stays out and is tried again after another
    retryTimeout.
    """
    fx = Fixture(ejectAfter=1, retryTimeout=3.0)
    key = fx.keysOn("a", 1)[0]
    d = fx.cluster.get(key)
    fx.refuse("a")
    failureOf(d, ServerUnavailableError)
    assert fx.cluster.poolStats().node("a").ejected
    fx.clock.advance(3.0)
    if fx.endpoints["a"].pending():
        fx.refuse("a")
    fx.clock.advance(1.0)
    assert fx.cluster.poolStats().node("a").ejected
    fx.clock.advance(2.0)
    fx.connect("a")[0].dataReceived(b"VERSION 1.6.18\r\n")
    assert not fx.cluster.poolStats().node("a").ejected
    fx.close()


def test_everyNodeEjectedFailsFast() -> None:
    """
    With every node ejected, requests fail at once with ServerUnavailableError, and a
    getMultiple with PartialResultError naming every key.
    """
    fx = Fixture(ejectAfter=1)
    for name in NAMES:
        d = fx.cluster.get(fx.keysOn(name, 1)[0])
        fx.refuse(name)
        failureOf(d, ServerUnavailableError)
    assert fx.cluster.poolStats().liveNodes == 0
    failureOf(fx.cluster.set(b"k", b"v"), ServerUnavailableError)
    error = failureOf(fx.cluster.getMultiple([b"k1", b"k2"]), PartialResultError).value
    assert error.results == {} and set(error.errors) == {b"k1", b"k2"}
    fx.close()


def test_aServerAnsweringWithAnErrorIsNotEjected() -> None:
    """
    Error replies from a server prove it is up: they reset its failure count.
    """
    fx = Fixture(ejectAfter=2)
    key = fx.keysOn("a", 1)[0]
    d = fx.cluster.get(key)
    fx.refuse("a")
    failureOf(d, ServerUnavailableError)
    fx.clock.advance(1.0)
    d = fx.cluster.increment(key)
    protocol, _ = fx.connect("a")
    protocol.dataReceived(b"CLIENT_ERROR cannot increment or decrement non-numeric value\r\n")
    failureOf(d)
    assert fx.cluster.poolStats().node("a").consecutiveFailures == 0
    fx.close()


def test_poolStatsSumTheNodes(fx: Fixture) -> None:
    """
    poolStats gives each node's pool statistics and the totals; repr shows the counts.
    """
    d = fx.cluster.get(fx.keysOn("a", 1)[0])
    stats = fx.cluster.poolStats()
    assert [n.name for n in stats.nodes] == list(NAMES)
    assert (stats.connecting, stats.requests, stats.liveNodes) == (1, 1, 3)
    assert stats.node("a").pool.connecting == 1
    assert repr(fx.cluster) == (
        "<MemCacheCluster ketama/md5 nodes=3 live=3 ejected=0 busy=0 idle=0 connecting=1 "
        "waiting=1>"
    )
    with pytest.raises(KeyError):
        stats.node("z")
    fx.connect("a")[0].dataReceived(b"END\r\n")
    resultOf(d)


@pytest.mark.parametrize(
    ("servers", "options", "error", "match"),
    [
        ([], {}, ValueError, "at least one server"),
        ("tcp:127.0.0.1:11211", {}, TypeError, "not one string"),
        ([("tcp:127.0.0.1:11211", 0)], {}, ValueError, "at least 1"),
        ([("tcp:127.0.0.1:11211", 1.5)], {}, TypeError, "must be an int"),
        ([("tcp:127.0.0.1:11211", 1, b"n")], {}, TypeError, "must be a str"),
        ([("tcp:127.0.0.1:11211", 1, 2, 3)], {}, TypeError, "tuple of 4"),
        (["tcp:127.0.0.1:11211", "tcp:host=127.0.0.1:port=11211"], {}, ValueError, "share"),
        (["tcp:127.0.0.1:11211"], {"distribution": "modula"}, ValueError, "distribution"),
        (["tcp:127.0.0.1:11211"], {"hash": "murmur"}, ValueError, "hash must be"),
        (["tcp:127.0.0.1:11211"], {"hashTag": "{}"}, TypeError, "hashTag"),
        (["tcp:127.0.0.1:11211"], {"hashTag": b"{"}, ValueError, "two bytes"),
        (["tcp:127.0.0.1:11211"], {"ejectAfter": 0}, ValueError, "ejectAfter"),
        (["tcp:127.0.0.1:11211"], {"ejectAfter": True}, TypeError, "ejectAfter"),
        (["tcp:127.0.0.1:11211"], {"retryTimeout": 0}, ValueError, "retryTimeout"),
        (["tcp:127.0.0.1:11211"], {"maxClients": 0}, ValueError, "maxClients"),
    ],
)
def test_badArgumentsAreRefused(
    servers: Any, options: dict[str, Any], error: type[Exception], match: str
) -> None:
    """
    Bad servers or options raise TypeError or ValueError naming the problem, and leave no
    pool behind.
    """
    clock = FakeReactor()
    with pytest.raises(error, match=match):
        MemCacheCluster(servers, reactor=clock, **options)
    assert all(not triggers for phase in clock.triggers.values() for triggers in phase.values())


def test_anEndpointNeedsAName() -> None:
    """
    A server given as an endpoint object has no host and port to hash: it needs a name.
    """
    clock = FakeReactor()
    with pytest.raises(ValueError, match="give it a name"):
        MemCacheCluster([FakeEndpoint(clock)], reactor=clock)


def test_hashTagKeepsTaggedKeysTogether(fx: Fixture) -> None:
    """
    With hashTag, keys sharing their tagged part share a node.
    """
    tagged = Fixture(hashTag=b"{}")
    for i in range(50):
        nodes = {tagged.nodeOf(b"user:{%d}:%s" % (i, field)) for field in (b"a", b"bb", b"ccc")}
        assert nodes == {tagged.nodeOf(b"%d" % i)}
    tagged.close()
