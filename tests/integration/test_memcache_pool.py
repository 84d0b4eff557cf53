"""
MemCachePool against a real memcached server, over TCP and a unix socket; the same tests run
against MetaMemCachePool, which has the same surface over the meta protocol: every command,
the legacy pattern, failures, and the client API's commands and options (getValue,
getAndTouch, setMultiple, deleteMultiple, flushAll with a delay, noreply, keyPrefix,
serializers, ignoreErrors, requestTimeout and the reply size limits).
"""

from __future__ import annotations

import re
import signal
from collections.abc import Iterator
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import defer, reactor
from twisted.internet.address import IPv4Address
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.protocols.memcache import MemCacheProtocol as TwistedMemCacheProtocol

from tests.faults.support import pause
from txconnpool import (
    ConnectionLostError,
    PoolClosedError,
    RequestTimeoutError,
    ServerUnavailableError,
)
from txconnpool.memcache import InvalidKeyError, MemCachePool, MetaMemCachePool
from txconnpool.memcache.errors import ReplyTooLargeError
from txconnpool.memcache.serializers import PythonMemcacheSerializer
from txconnpool.memcache.testing import MemcachedProcess, freePort
from txconnpool.pool import Pool, PooledClientFactory


@pytest.fixture(params=["memcached", "memcachedUnix"])
def server(request: pytest.FixtureRequest) -> MemcachedProcess:
    """
    The shared memcached server, once over TCP and once over a unix socket.
    """
    result: MemcachedProcess = request.getfixturevalue(request.param)
    return result


@pytest.fixture(params=[MemCachePool, MetaMemCachePool], ids=["text", "meta"])
def poolClass(request: pytest.FixtureRequest) -> type[Any]:
    """
    The pool class under test: MemCachePool, then MetaMemCachePool.
    """
    result: type[Any] = request.param
    return result


async def acceptedConnections(server: MemcachedProcess) -> int:
    """
    Ask memcached how many connections it has accepted so far, not counting the one asking.
    """
    pool = MemCachePool(server.endpoint, maxClients=1)
    try:
        stats = await pool.stats()
    finally:
        await pool.close()
    return int(stats[b"total_connections"]) - 1


@pytest_twisted.ensureDeferred
async def test_everyCommand(
    server: MemcachedProcess, request: pytest.FixtureRequest, poolClass: type[Any]
) -> None:
    """
    Every MemCachePool method gives memcached's answer, with Twisted's result shapes.
    """
    pool = poolClass(server.endpoint, maxClients=3)
    prefix = request.node.callspec.id.encode() + b"-"
    k = prefix + b"key"
    try:
        assert await pool.set(k, b"value", flags=7) is True
        assert await pool.get(k) == (7, b"value")
        flags, cas, value = await pool.get(k, withIdentifier=True)
        assert (flags, value) == (7, b"value")
        assert await pool.checkAndSet(k, b"value2", cas) is True
        assert await pool.checkAndSet(k, b"value3", cas) is False
        assert await pool.get(k) == (0, b"value2")
        assert await pool.add(k, b"x") is False
        assert await pool.add(prefix + b"new", b"x") is True
        assert await pool.replace(k, b"replaced") is True
        assert await pool.replace(prefix + b"absent", b"x") is False
        assert await pool.append(k, b"-tail") is True
        assert await pool.prepend(k, b"head-") is True
        assert await pool.get(k) == (0, b"head-replaced-tail")
        assert await pool.set(prefix + b"n", b"10") is True
        assert await pool.increment(prefix + b"n") == 11
        assert await pool.increment(prefix + b"n", 5) == 16
        assert await pool.decrement(prefix + b"n", 6) == 10
        multiple = await pool.getMultiple([k, prefix + b"n", prefix + b"absent"])
        assert multiple == {
            k: (0, b"head-replaced-tail"),
            prefix + b"n": (0, b"10"),
            prefix + b"absent": (0, None),
        }
        assert await pool.touch(k, 100) is True
        assert await pool.touch(prefix + b"absent", 100) is False
        assert await pool.delete(k) is True
        assert await pool.delete(k) is False
        assert await pool.get(k) == (0, None)
        textKey = prefix.decode() + "clé"
        assert await pool.set(textKey, b"unicode key") is True
        assert await pool.get(textKey.encode("utf-8")) == (0, b"unicode key")
        stats = await pool.stats()
        assert int(stats[b"pid"]) == server.pid
        assert (await pool.version()).startswith(b"1.")
        assert await pool.flushAll() is True
        assert await pool.get(prefix + b"new") == (0, None)
        with pytest.raises(TypeError):
            await pool.set(k, "not bytes")  # type: ignore[arg-type]
        with pytest.raises(InvalidKeyError):
            await pool.get(b"has space")
        assert await pool.set(k, b"still fine") is True
        assert pool.poolStats().created <= 3
    finally:
        await pool.close()


@pytest_twisted.ensureDeferred
async def test_manyConcurrentRequestsShareFewConnections(
    memcached: MemcachedProcess, poolClass: type[Any]
) -> None:
    """
    Hundreds of concurrent requests are all answered correctly over at most maxClients
    connections.
    """
    accepted = await acceptedConnections(memcached)
    pool = poolClass(memcached.endpoint, maxClients=4)
    try:
        keys = [f"concurrent-{i}".encode() for i in range(400)]
        stored = await defer.gatherResults([pool.set(k, k[::-1]) for k in keys])
        assert stored == [True] * 400
        got = await defer.gatherResults([pool.get(k) for k in keys])
        assert got == [(0, k[::-1]) for k in keys]
        stats = pool.poolStats()
        assert stats.created == 4
        assert (stats.requests, stats.failedRequests, stats.waiting, stats.busy) == (800, 0, 0, 0)
    finally:
        await pool.close()
    assert await acceptedConnections(memcached) - accepted == 4 + 1
    assert pool.poolStats().closed == 4


class PooledMemCacheProtocol(TwistedMemCacheProtocol):
    """
    The protocol of the txconnpool 0.1.1 README.
    """

    factory: Any = None

    def connectionMade(self) -> None:
        TwistedMemCacheProtocol.connectionMade(self)
        self.factory.connectionPool.clientFree(self)
        if self.factory.deferred is not None:
            self.factory.deferred.callback(self)
            self.factory.deferred = None


class MemCacheClientFactory(PooledClientFactory):
    protocol = PooledMemCacheProtocol


class LegacyMemCachePool(Pool[Any]):
    clientFactory = MemCacheClientFactory

    def get(self, *args: Any, **kwargs: Any) -> defer.Deferred[Any]:
        return self.performRequest("get", *args, **kwargs)

    def set(self, *args: Any, **kwargs: Any) -> defer.Deferred[Any]:
        return self.performRequest("set", *args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> defer.Deferred[Any]:
        return self.performRequest("delete", *args, **kwargs)

    def add(self, *args: Any, **kwargs: Any) -> defer.Deferred[Any]:
        return self.performRequest("add", *args, **kwargs)


@pytest_twisted.ensureDeferred
async def test_legacyReadmePattern(memcached: MemcachedProcess) -> None:
    """
    The txconnpool 0.1.1 README's classes and IPv4Address work against memcached, with
    requests queued beyond maxClients.
    """
    assert memcached.port is not None
    addr = IPv4Address("TCP", "127.0.0.1", memcached.port)
    mc_pool = LegacyMemCachePool(addr, maxClients=2)
    try:
        assert await mc_pool.get(b"legacy-cached-data") == (0, None)
        results = await defer.gatherResults(
            [mc_pool.set(f"legacy-{i}".encode(), b"v%d" % i) for i in range(20)]
        )
        assert results == [True] * 20
        assert await mc_pool.get(b"legacy-7") == (0, b"v7")
        assert await mc_pool.add(b"legacy-7", b"other") is False
        assert await mc_pool.delete(b"legacy-7") is True
        assert mc_pool.poolStats().created == 2
    finally:
        await mc_pool.close()


@pytest_twisted.ensureDeferred
async def test_serverKilledMidRequestThenDown(
    freshMemcached: MemcachedProcess, poolClass: type[Any]
) -> None:
    """
    Killing memcached fails the request in flight with ConnectionLostError; the request
    queued behind it, like the requests made while the server is down, fails with
    ServerUnavailableError after failFastAfter refused connections.
    """
    pool = poolClass(freshMemcached.endpoint, maxClients=1, failFastAfter=2)
    try:
        assert await pool.set(b"k", b"1") is True
        assert await pool.get(b"k") == (0, b"1")
        freshMemcached.signal(signal.SIGSTOP)
        increment = pool.increment(b"k")
        get = pool.get(b"k")
        freshMemcached.signal(signal.SIGKILL)
        freshMemcached.process.wait()  # type: ignore[union-attr]
        with pytest.raises(ConnectionLostError):
            await increment
        with pytest.raises(ServerUnavailableError):
            await get
        with pytest.raises(ServerUnavailableError):
            await pool.get(b"k")
        stats = pool.poolStats()
        assert (stats.busy, stats.idle, stats.waiting, stats.closed) == (0, 0, 0, 1)
        assert stats.discarded.lost == 1
    finally:
        await pool.close()


@pytest_twisted.ensureDeferred
async def test_closeWaitsForInFlightAndClosesSockets(
    memcached: MemcachedProcess, poolClass: type[Any]
) -> None:
    """
    close() lets requests in flight finish, fails queued ones, and fires when every socket to
    memcached is closed.
    """
    pool = poolClass(memcached.endpoint, maxClients=1, maxRequestsPerClient=1)
    assert await pool.set(b"close-k", b"v") is True
    inFlight = pool.get(b"close-k")
    queued = pool.get(b"close-k")
    await pool.close()
    assert await inFlight == (0, b"v")
    with pytest.raises(PoolClosedError):
        await queued
    with pytest.raises(PoolClosedError):
        await pool.get(b"close-k")
    stats = pool.poolStats()
    assert (stats.created, stats.closed, stats.busy, stats.idle) == (1, 1, 0, 0)


@pytest_twisted.ensureDeferred
async def test_endpointObjectAndExclusiveCheckout(
    memcached: MemcachedProcess, poolClass: type[Any]
) -> None:
    """
    A pool built on an endpoint object hands out a connection for exclusive use with
    connection(), and reuses it afterwards.
    """
    assert memcached.port is not None
    pool = poolClass(TCP4ClientEndpoint(reactor, "127.0.0.1", memcached.port), maxClients=1)
    try:
        async with pool.connection() as protocol:
            assert await protocol.set(b"exclusive", b"1") is True
            assert await protocol.increment(b"exclusive") == 2
        assert await pool.get(b"exclusive") == (0, b"2")
        assert pool.poolStats().created == 1
    finally:
        await pool.close()


# The memcached client API: commands and options added to both pools


@pytest_twisted.ensureDeferred
async def test_valueReadsAndMultiKeyWrites(
    server: MemcachedProcess, request: pytest.FixtureRequest, poolClass: type[Any]
) -> None:
    """
    getValue, getAndTouch (with and without the CAS token), setMultiple and deleteMultiple
    give memcached's answers.
    """
    pool = poolClass(server.endpoint, maxClients=2, keyPrefix=request.node.callspec.id + ":")
    try:
        assert await pool.set(b"k", b"value", flags=3) is True
        assert await pool.getValue(b"k") == b"value"
        assert await pool.getValue(b"absent") is None
        assert await pool.getValue(b"absent", b"default") == b"default"
        assert await pool.getAndTouch(b"k", 100) == (3, b"value")
        flags, cas, value = await pool.getAndTouch(b"k", 200, withIdentifier=True)
        assert (flags, value) == (3, b"value") and cas.isdigit()
        assert await pool.checkAndSet(b"k", b"next", cas) is True
        assert await pool.getAndTouch(b"absent", 100) == (0, None)
        assert await pool.getAndTouch(b"absent", 100, True) == (0, b"", None)
        assert await pool.setMultiple({b"m1": b"1", "m2": (9, b"2")}, expireTime=100) == {
            b"m1": True, "m2": True
        }
        assert await pool.getMultiple([b"m1", "m2", b"m3"]) == {
            b"m1": (0, b"1"), "m2": (9, b"2"), b"m3": (0, None)
        }
        assert await pool.deleteMultiple([b"m1", "m2", b"m3", b"m1"]) == {
            b"m1": True, "m2": True, b"m3": False
        }
        assert await pool.getMultiple([b"m1", "m2"]) == {b"m1": (0, None), "m2": (0, None)}
        assert await pool.setMultiple({}) == {} and await pool.deleteMultiple([]) == {}
    finally:
        await pool.close()


@pytest_twisted.ensureDeferred
async def test_flushAllWithADelay(freshMemcached: MemcachedProcess, poolClass: type[Any]) -> None:
    """
    flushAll with a delay leaves the items readable until then; flushAll() flushes at once.
    """
    pool = poolClass(freshMemcached.endpoint, maxClients=1)
    try:
        assert await pool.set(b"k", b"v") is True
        assert await pool.flushAll(3600) is True
        assert await pool.get(b"k") == (0, b"v")
        assert await pool.flushAll() is True
        assert await pool.get(b"k") == (0, None)
    finally:
        await pool.close()


@pytest_twisted.ensureDeferred
async def test_noreplyStaysInStep(memcached: MemcachedProcess, poolClass: type[Any]) -> None:
    """
    noreply writes, the ones memcached refuses included (an add of a key that is there, an
    increment of a missing key or of text, a value larger than the server stores), fire at
    once, and the requests after them on the same connection get their own replies.
    """
    pool = poolClass(
        memcached.endpoint, maxClients=1, keyPrefix=f"noreply-{poolClass.__name__}:",
        maxValueSize=2 * 1024 * 1024,
    )
    try:
        results = await defer.gatherResults(
            [
                pool.set(b"a", b"1", noreply=True),
                pool.get(b"a"),
                pool.add(b"a", b"2", noreply=True),
                pool.increment(b"a", noreply=True),
                pool.set(b"big", b"x" * (1024 * 1024 + 1024), noreply=True),
                pool.increment(b"missing", 5, noreply=True),
                pool.get(b"a"),
                pool.set(b"text", b"abc", noreply=True),
                pool.decrement(b"text", noreply=True),
                pool.touch(b"a", 100, noreply=True),
                pool.setMultiple({b"m": b"3", b"n": b"4"}, noreply=True),
                pool.getMultiple([b"m", b"n", b"big"]),
                pool.deleteMultiple([b"m", b"gone"], noreply=True),
                pool.delete(b"a", noreply=True),
                pool.get(b"a"),
                pool.version(),
            ]
        )
        assert results[:15] == [
            True, (0, b"1"), True, None, True, None, (0, b"2"), True, None, True,
            {b"m": True, b"n": True},
            {b"m": (0, b"3"), b"n": (0, b"4"), b"big": (0, None)},
            {b"m": True, b"gone": True}, True, (0, None),
        ]
        assert await pool.get(b"text") == (0, b"abc")
        assert await pool.get(b"m") == (0, None)
        stats = pool.poolStats()
        assert (stats.created, stats.failedRequests, stats.closed) == (1, 0, 0)
    finally:
        await pool.close()


@pytest_twisted.ensureDeferred
async def test_keyPrefixOnEveryCommand(memcached: MemcachedProcess, poolClass: type[Any]) -> None:
    """
    keyPrefix puts the prefix in front of every key the server sees, and the results keyed
    by key use the keys given.
    """
    prefix = f"prefix-{poolClass.__name__}:"
    pool = poolClass(memcached.endpoint, maxClients=2, keyPrefix=prefix)
    raw = MemCachePool(memcached.endpoint, maxClients=1)
    try:
        assert await pool.set(b"k", b"v") is True
        assert await pool.setMultiple({"s": b"1"}) == {"s": True}
        assert await raw.getMultiple([prefix + "k", prefix + "s", "k"]) == {
            prefix + "k": (0, b"v"), prefix + "s": (0, b"1"), "k": (0, None)
        }
        assert await raw.set(prefix + "n", b"1") is True
        assert await pool.increment(b"n", 4) == 5
        assert await pool.getMultiple(["k", b"n"]) == {"k": (0, b"v"), b"n": (0, b"5")}
        assert await pool.touch(b"k", 100) is True
        assert await pool.deleteMultiple(["s"]) == {"s": True}
        assert await pool.delete(b"k") is True
        assert await raw.getMultiple([prefix + "k", prefix + "s"]) == {
            prefix + "k": (0, None), prefix + "s": (0, None)
        }
    finally:
        await pool.close()
        await raw.close()


@pytest_twisted.ensureDeferred
async def test_serializedValuesAreSharedWithTheOtherPool(
    memcached: MemcachedProcess, poolClass: type[Any]
) -> None:
    """
    Values written through PythonMemcacheSerializer (text, numbers, pickles, a compressed
    large value) read back equal through the pool and through the other pool class.
    """
    other = MetaMemCachePool if poolClass is MemCachePool else MemCachePool
    serializer = PythonMemcacheSerializer(minCompressLength=100)
    prefix = f"serialized-{poolClass.__name__}:"
    pool = poolClass(memcached.endpoint, keyPrefix=prefix, serializer=serializer)
    reader = other(memcached.endpoint, keyPrefix=prefix, serializer=serializer)
    values: dict[str, object] = {"s": "t\u00e9xt", "i": 42, "d": {"a": [1, 2]}, "z": "z" * 5000}
    try:
        assert await pool.setMultiple(values) == dict.fromkeys(values, True)
        assert await pool.set("one", [1, "two"]) is True
        for source in (pool, reader):
            found = await source.getMultiple([*values, "absent"])
            assert {k: v for k, (_, v) in found.items()} == {**values, "absent": None}
            assert await source.getValue("one") == [1, "two"]
    finally:
        await pool.close()
        await reader.close()


@pytest_twisted.ensureDeferred
async def test_ignoreErrorsWithoutAServer(poolClass: type[Any]) -> None:
    """
    With ignoreErrors, against a port nobody listens on, reads are misses and writes False
    (None for increments), each counted.
    """
    pool = poolClass(
        f"tcp:127.0.0.1:{freePort()}", maxClients=1, ignoreErrors=True, failFastAfter=1
    )
    try:
        assert await pool.get(b"k") == (0, None)
        assert await pool.getValue(b"k", b"default") == b"default"
        assert await pool.getMultiple([b"a", "b"]) == {b"a": (0, None), "b": (0, None)}
        assert await pool.set(b"k", b"v") is False
        assert await pool.increment(b"n") is None
        assert await pool.deleteMultiple([b"a"]) == {b"a": False}
        assert pool.ignoredErrors == 6
    finally:
        await pool.close()


@pytest_twisted.ensureDeferred
async def test_requestTimeoutOfAStoppedServer(
    freshMemcached: MemcachedProcess, poolClass: type[Any]
) -> None:
    """
    A request to a stopped memcached fails with RequestTimeoutError after requestTimeout,
    and its connection is dropped; once the server resumes, a new connection works.
    """
    pool = poolClass(freshMemcached.endpoint, maxClients=1, requestTimeout=0.2)
    try:
        assert await pool.set(b"k", b"v") is True
        await pause(freshMemcached)
        try:
            with pytest.raises(RequestTimeoutError):
                await pool.get(b"k")
        finally:
            freshMemcached.signal(signal.SIGCONT)
        assert await pool.get(b"k") == (0, b"v")
        assert pool.poolStats().created == 2
    finally:
        await pool.close()


@pytest.fixture(scope="module")
def largeItems(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MemcachedProcess]:
    """
    A memcached started with -I 4m, which stores items of up to 4 MiB.
    """
    server = MemcachedProcess(
        tmp_path_factory.mktemp("large") / "memcached.log", extraArgs=("-I", "4m")
    )
    server.start()
    yield server
    server.stop()


@pytest_twisted.ensureDeferred
async def test_replySizeLimits(largeItems: MemcachedProcess, poolClass: type[Any]) -> None:
    """
    A 2 MB value reads back through a pool whose maxValueSize allows it, and fails with
    ReplyTooLargeError through a pool with the defaults; so does a multi-get past
    maxReplySize, and a stats reply past maxStatsSize.
    """
    value = bytes(range(256)) * (2 * 1024 * 1024 // 256)
    raised = poolClass(largeItems.endpoint, maxValueSize=4 * 1024 * 1024)
    default = poolClass(largeItems.endpoint)
    bounded = poolClass(
        largeItems.endpoint, maxValueSize=len(value), maxReplySize=3 * 1024 * 1024,
        maxStatsSize=100,
    )
    try:
        assert await raised.setMultiple({"big1": value, "big2": value}) == {
            "big1": True, "big2": True
        }
        assert await raised.get("big1") == (0, value)
        with pytest.raises(ReplyTooLargeError):
            await default.get("big1")
        assert await default.get("small") == (0, None)
        assert await bounded.getMultiple(["big1", "small"]) == {
            "big1": (0, value), "small": (0, None)
        }
        with pytest.raises(ReplyTooLargeError):
            await bounded.getMultiple(["big1", "big2", "big1"])
        with pytest.raises(ReplyTooLargeError):
            await bounded.stats()
        assert await bounded.version() > b""
    finally:
        await raised.close()
        await default.close()
        await bounded.close()


@pytest_twisted.ensureDeferred
async def test_statsSubcommands(freshMemcached: MemcachedProcess, poolClass: type[Any]) -> None:
    """
    The stats subcommands parse into dicts: detail dump's PREFIX lines (of keys used by a
    text-protocol client: memcached keeps those statistics for its commands), cachedump's
    ITEM lines, settings, and detail on and off.
    """
    pool = poolClass(freshMemcached.endpoint, maxClients=1)
    raw = MemCachePool(freshMemcached.endpoint, maxClients=1)
    try:
        assert await pool.stats(b"detail on") == {}
        assert await raw.set(b"ns:k", b"12345") is True
        assert await raw.get(b"ns:k") == (0, b"12345")
        assert await pool.stats(b"detail dump") == {b"ns": b"get 1 hit 1 set 1 del 0"}
        assert await pool.stats(b"detail off") == {}
        dumped = await pool.stats(b"cachedump 1 0")
        assert all(re.fullmatch(rb"\[\d+ b; \d+ s\]", line) for line in dumped.values())
        assert (await pool.stats(b"settings"))[b"item_size_max"] == b"1048576"
    finally:
        await pool.close()
        await raw.close()


@pytest_twisted.ensureDeferred
async def test_noreplyWritesReachTheServerWhenThePoolCloses(
    memcached: MemcachedProcess, poolClass: type[Any]
) -> None:
    """
    noreply writes made just before close() are carried out by the server.
    """
    prefix = f"closing-{poolClass.__name__}:"
    pool = poolClass(memcached.endpoint, maxClients=1, keyPrefix=prefix, noreply=True)
    raw = MemCachePool(memcached.endpoint, maxClients=1, keyPrefix=prefix)
    try:
        assert await pool.set(b"first", b"1") is True
        assert await pool.setMultiple({b"a": b"2", b"b": b"3"}) == {b"a": True, b"b": True}
        await pool.close()
        expected = {b"first": (0, b"1"), b"a": (0, b"2"), b"b": (0, b"3")}
        # memcached may read the closed connection's last writes after another connection's
        # request: ask again (a round trip each, no sleep) until they are in, or give up.
        for _ in range(100):
            got = await raw.getMultiple([b"first", b"a", b"b"])
            if got == expected:
                break
        assert got == expected
    finally:
        await raw.close()
