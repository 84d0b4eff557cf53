"""
The in-memory FakeMemcached agrees with a real memcached: the same MemCachePool tests run
against both (in memory and on a loopback port for the fake), and raw protocol exchanges,
errors included, get the same bytes from both.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import defer, reactor
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.protocol import ClientFactory, Protocol

from txconnpool.memcache import ClientError, MemCachePool, ServerError
from txconnpool.memcache.serializers import PythonMemcacheSerializer
from txconnpool.memcache.testing import FakeMemcached, MemcachedProcess


@pytest.fixture(scope="module")
def realServer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MemcachedProcess]:
    """
    A memcached of this module's own, so that flush_all and stats reset touch nothing else.
    """
    server = MemcachedProcess(tmp_path_factory.mktemp("agreement") / "memcached.log")
    server.start()
    yield server
    server.stop()


def tcpEndpoint(server: MemcachedProcess) -> TCP4ClientEndpoint:
    """
    A TCP endpoint to C{server}.
    """
    assert server.port is not None
    return TCP4ClientEndpoint(reactor, "127.0.0.1", server.port)


@pytest.fixture(params=["memcached", "fake-in-memory", "fake-loopback"])
def backend(request: pytest.FixtureRequest, realServer: MemcachedProcess) -> Iterator[Any]:
    """
    The endpoint of a server: the real memcached, a FakeMemcached in memory, or a
    FakeMemcached listening on a loopback port.
    """
    if request.param == "memcached":
        yield tcpEndpoint(realServer)
        return
    fake = FakeMemcached()
    if request.param == "fake-in-memory":
        yield fake.endpoint()
        return
    port = fake.listen()
    try:
        yield TCP4ClientEndpoint(reactor, "127.0.0.1", port.getHost().port)
    finally:
        pytest_twisted.blockon(defer.maybeDeferred(port.stopListening))


@pytest.fixture
def pool(backend: Any, request: pytest.FixtureRequest) -> Iterator[MemCachePool]:
    """
    A MemCachePool on the backend, with a key prefix of the test's own.
    """
    memcachePool = MemCachePool(backend, maxClients=2, keyPrefix=f"{request.node.name[:60]}:")
    yield memcachePool
    pytest_twisted.blockon(memcachePool.close())


@pytest_twisted.ensureDeferred
async def test_storageAndRetrieval(pool: MemCachePool) -> None:
    """
    The storage commands, get, gets, cas, getMultiple and getValue answer alike.
    """
    assert await pool.set(b"k", b"value", flags=7) is True
    assert await pool.get(b"k") == (7, b"value")
    flags, cas, value = await pool.get(b"k", withIdentifier=True)
    assert (flags, value) == (7, b"value")
    assert await pool.checkAndSet(b"k", b"v2", cas) is True
    assert await pool.checkAndSet(b"k", b"v3", cas) is False
    assert await pool.checkAndSet(b"absent", b"v3", cas) is False
    assert await pool.add(b"k", b"x") is False
    assert await pool.add(b"new", b"x") is True
    assert await pool.replace(b"k", b"r") is True
    assert await pool.replace(b"absent", b"r") is False
    assert await pool.append(b"k", b"-t") is True
    assert await pool.prepend(b"k", b"h-") is True
    assert await pool.append(b"absent", b"x") is False
    assert await pool.getMultiple([b"k", "new", b"absent"]) == {
        b"k": (0, b"h-r-t"), "new": (0, b"x"), b"absent": (0, None)
    }
    assert await pool.getValue(b"absent", b"d") == b"d"
    assert await pool.setMultiple({b"m1": b"1", b"m2": (3, b"2")}) == {b"m1": True, b"m2": True}
    assert await pool.getMultiple([b"m1", b"m2"]) == {b"m1": (0, b"1"), b"m2": (3, b"2")}
    assert await pool.deleteMultiple([b"m1", b"m2", b"m3"]) == {
        b"m1": True, b"m2": True, b"m3": False
    }


@pytest_twisted.ensureDeferred
async def test_countersDeleteAndTouch(pool: MemCachePool) -> None:
    """
    incr, decr (with memcached's space padding), delete, touch and gat answer alike.
    """
    assert await pool.set(b"n", b"10") is True
    assert await pool.increment(b"n", 5, noreply=False) == 15
    assert await pool.decrement(b"n", 6, noreply=False) == 9
    assert await pool.get(b"n") == (0, b"9 ")
    assert await pool.increment(b"n", 2**64 - 1, noreply=False) == 8
    assert await pool.decrement(b"n", 100, noreply=False) == 0
    assert await pool.increment(b"absent", noreply=False) is False
    assert await pool.set(b"text", b"abc") is True
    with pytest.raises(ClientError, match="non-numeric"):
        await pool.increment(b"text")
    assert await pool.touch(b"n", 100) is True
    assert await pool.touch(b"absent", 100) is False
    assert await pool.getAndTouch(b"n", 100) == (0, b"0 ")
    flags, cas, value = await pool.getAndTouch(b"n", 100, withIdentifier=True)
    assert (flags, value) == (0, b"0 ") and cas.isdigit()
    assert await pool.getAndTouch(b"absent", 1) == (0, None)
    assert await pool.delete(b"n") is True
    assert await pool.delete(b"n") is False


@pytest_twisted.ensureDeferred
async def test_noreplyStaysInStep(pool: MemCachePool) -> None:
    """
    noreply writes, even refused ones, take no reply and the requests after them get theirs.
    """
    results = await defer.gatherResults(
        [
            pool.set(b"a", b"1", noreply=True),
            pool.get(b"a"),
            pool.increment(b"a", noreply=True),
            pool.set(b"big", b"x" * (1024 * 1024 - 512), noreply=True),
            pool.increment(b"missing", noreply=True),
            pool.get(b"a"),
            pool.delete(b"a", noreply=True),
            pool.get(b"a"),
            pool.version(),
        ]
    )
    assert results[:8] == [True, (0, b"1"), None, True, None, (0, b"2"), True, (0, None)]


@pytest_twisted.ensureDeferred
async def test_serverErrorsAndStats(pool: MemCachePool, backend: Any) -> None:
    """
    A value too large for the server, the stats subcommands and flush_all answer alike.
    """
    large = MemCachePool(backend, maxValueSize=2 * 1024 * 1024, keyPrefix="large:")
    try:
        with pytest.raises(ServerError, match="object too large for cache"):
            await large.set(b"big", b"x" * (1024 * 1024 + 1024))
        assert await large.version() > b""
    finally:
        await large.close()
    assert await pool.set(b"after", b"ok") is True
    general = await pool.stats()
    assert int(general[b"curr_connections"]) >= 1
    assert await pool.stats(b"sizes") == {b"sizes_status": b"disabled"}
    assert await pool.stats(b"detail on") == {}
    assert await pool.stats(b"detail off") == {}
    dumped = await pool.stats(b"cachedump 1 0")
    assert all(re.fullmatch(rb"\[\d+ b; \d+ s\]", value) for value in dumped.values())
    assert b"item_size_max" in await pool.stats(b"settings")
    with pytest.raises(Exception, match="ERROR"):
        await pool.stats(b"nonsense")
    assert await pool.flushAll() is True
    assert await pool.get(b"after") == (0, None)


@pytest_twisted.ensureDeferred
async def test_serializedValues(backend: Any) -> None:
    """
    Values of the python-memcached convention, compressed ones included, round-trip alike.
    """
    pool = MemCachePool(
        backend, keyPrefix="serialized:",
        serializer=PythonMemcacheSerializer(minCompressLength=100),
    )
    try:
        values: dict[str, object] = {
            "s": "t\u00e9xt", "i": 42, "d": {"a": [1, 2]}, "z": "z" * 5000
        }
        assert await pool.setMultiple(values) == dict.fromkeys(values, True)
        assert {k: v for k, (_, v) in (await pool.getMultiple(list(values))).items()} == values
    finally:
        await pool.close()


class Collector(Protocol):
    """
    A raw client that keeps every byte it receives.
    """

    def __init__(self) -> None:
        self.received = b""
        self.waiter: defer.Deferred[None] | None = None

    def dataReceived(self, data: bytes) -> None:
        self.received += data
        if self.waiter is not None and self.received.endswith(SENTINEL_REPLY):
            waiter, self.waiter = self.waiter, None
            waiter.callback(None)


SENTINEL = b"set exchange-done 0 0 4\r\nDONE\r\nget exchange-done\r\n"
SENTINEL_REPLY = b"STORED\r\nVALUE exchange-done 0 4\r\nDONE\r\nEND\r\n"


async def exchange(endpoint: Any, script: bytes) -> bytes:
    """
    Send C{script} on a new connection, then a set and a get of a key of its own, and return
    every byte received up to the get's reply.
    """
    factory = ClientFactory.forProtocol(Collector)
    protocol = await endpoint.connect(factory)
    assert isinstance(protocol, Collector)
    protocol.waiter = defer.Deferred()
    assert protocol.transport is not None
    protocol.transport.write(script + SENTINEL)
    await protocol.waiter
    protocol.transport.loseConnection()
    return re.sub(rb"(VALUE \S+ \d+ \d+) \d+", rb"\1 <cas>", protocol.received)


# A get of a key longer than 250 bytes comes first in its script: memcached 1.6 then drops
# the replies not yet sent of the commands read in the same batch before it, which depends
# on how the bytes arrive.
SCRIPTS = [
    b"set w1 5 0 3\r\nabc\r\nget w1\r\ngets w1\r\nappend w1 0 0 1\r\nd\r\n"
    b"prepend w1 0 0 1\r\n_\r\nget w1\r\nadd w1 0 0 1\r\nx\r\nreplace w2 0 0 1\r\nx\r\n"
    b"add w2 1 0 1\r\ny\r\nget w1 w2 w3\r\n",
    b"set w3 0 0 2\r\n10\r\ndecr w3 1\r\nget w3\r\nincr w3 100\r\nget w3\r\nincr w3 x\r\n"
    b"incr w4 1\r\nset w5 0 0 1\r\nx\r\nincr w5 1\r\ndecr w3 1000\r\n"
    b"incr w3 18446744073709551615\r\n",
    b"bogus\r\n\r\nget\r\nset w6 0 0 -1\r\nset w6 x 0 1\r\nz\r\nset w6 0 0 1\r\nzzz\r\n"
    b"cas w6 0 0 1\r\nq\r\nverbosity\r\nverbosity 1\r\n",
    b"get %s\r\nset %s 0 0 1\r\nz\r\nincr %s 1\r\n" % (b"k" * 251, b"k" * 251, b"k" * 251),
    b"set w7 0 0 1\r\na\r\ndelete w7 0\r\ndelete w7 1\r\ndelete w7\r\ndelete w7 noreply\r\n"
    b"touch w7 x\r\ntouch w7 10\r\ngat x w7\r\ngat 10\r\ngat 10 w7\r\n",
    b"set w8 0 0 1 noreply\r\nqq\r\nset w8 0 0 1 noreply\r\nq\r\nincr w8 1 noreply\r\nget w8\r\n"
    b"set w9 0 -1 1\r\nq\r\nget w9\r\nflush_all x\r\nflush_all 0 noreply\r\nget w8\r\n",
    b"set w10 0 0 2000000\r\n" + b"x" * 2000000 + b"\r\nget w10\r\nstats detail on\r\n"
    b"stats detail off\r\nstats sizes\r\nstats reset\r\nstats nonsense\r\nversion\r\n",
    b"get w11\nset w11 0 0 1\nx\r\nget w11\n",
]


@pytest.mark.parametrize("script", SCRIPTS, ids=[f"script{i}" for i in range(len(SCRIPTS))])
@pytest_twisted.ensureDeferred
async def test_rawExchangesGetTheSameBytes(script: bytes, realServer: MemcachedProcess) -> None:
    """
    A raw script of commands, errors and noreply included, gets the same bytes from the fake
    as from memcached (apart from CAS identifiers).
    """
    expected = await exchange(tcpEndpoint(realServer), script)
    version = await exchange(tcpEndpoint(realServer), b"version\r\n")
    fake = FakeMemcached(version=version.split(b"\r\n")[0][8:].decode())
    assert await exchange(fake.endpoint(), script) == expected


@pytest_twisted.ensureDeferred
async def test_fakeExpiresOnItsClockAndDropsConnections() -> None:
    """
    On a Clock, the fake's items expire when the clock says so, and dropConnections closes
    the pool's connection, which the pool replaces.
    """
    from twisted.internet.task import Clock

    clock = Clock()
    fake = FakeMemcached(clock)
    pool = MemCachePool(fake.endpoint(), reactor=clock, requestTimeout=None)
    box: list[Any] = []
    pool.set(b"k", b"v", expireTime=10).addBoth(box.append)
    for _ in range(3):
        clock.advance(0)
    assert box == [True]
    assert fake.keys() == [b"k"] and fake.connectionCount == 1
    clock.advance(10)
    assert fake.keys() == []
    fake.dropConnections()
    clock.advance(0)
    assert fake.connectionCount == 0
    got: list[Any] = []
    pool.get(b"k").addBoth(got.append)
    for _ in range(4):
        clock.advance(0)
    assert got == [(0, None)] and pool.poolStats().created == 2
    closed: list[Any] = []
    pool.close().addBoth(closed.append)
    for _ in range(3):
        clock.advance(0)
    assert closed == [None] and fake.connectionCount == 0
