"""
MetaMemCachePool against a real memcached (and nutcracker, a proxy without meta commands):
opaque checks with a reply injected on the connection, quiet misses in batches, binary keys
with base64 (and a key prefix), stale values, values shared with the text protocol as
pymemcache sees them, and getOrCompute with a serializer, a key prefix and ignoreErrors.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import pytest_twisted
from pymemcache.client.base import Client as PyMemcacheClient
from twisted.internet import defer

from tests.faults.support import turnsUntil
from txconnpool import ProtocolError, ServerUnavailableError
from txconnpool.memcache import InvalidKeyError, MemCachePool, MetaMemCachePool
from txconnpool.memcache.meta import MetaProtocolUnsupportedError
from txconnpool.memcache.serializers import PythonMemcacheSerializer
from txconnpool.memcache.testing import MemcachedProcess, freePort


class FlagsSerde:
    """
    A pymemcache serde that stores bytes with the flags given and reads back (flags, value).
    """

    def serialize(self, key: bytes, value: tuple[int, bytes]) -> tuple[bytes, int]:
        flags, data = value
        return data, flags

    def deserialize(self, key: bytes, value: bytes, flags: int) -> tuple[int, bytes]:
        return flags, value


def peer(server: MemcachedProcess) -> PyMemcacheClient:
    """
    A pymemcache client of the server, reading (flags, value).
    """
    assert server.port is not None
    return PyMemcacheClient(("127.0.0.1", server.port), serde=FlagsSerde(), default_noreply=False)


@pytest_twisted.ensureDeferred
async def test_injectedReplyWithAnotherOpaqueIsCaught(memcached: MemcachedProcess) -> None:
    """
    A request written behind the protocol's back on a pooled connection makes memcached send
    a reply no request expects: the opaque check catches it, the requests in flight on that
    connection fail with ProtocolError, the connection is discarded, and the pool goes on
    with a new one.
    """
    pool = MetaMemCachePool(memcached.endpoint, maxClients=1)
    try:
        assert await pool.set(b"meta-inject", b"right") is True
        protocol = await pool.acquire()
        assert protocol.transport is not None
        protocol.transport.write(b"mg meta-inject O999999 v f\r\n")
        pool.release(protocol)
        first = pool.get(b"meta-inject")
        second = pool.get(b"meta-other")
        with pytest.raises(ProtocolError, match="O999999"):
            await first
        with pytest.raises(ProtocolError):
            await second
        assert await pool.get(b"meta-inject") == (0, b"right")
        stats = pool.poolStats()
        assert (stats.created, stats.closed, stats.idle) == (2, 1, 1)
    finally:
        await pool.close()


@pytest_twisted.ensureDeferred
async def test_extraReplyOfTheRightShapeIsCaught(memcached: MemcachedProcess) -> None:
    """
    An extra reply of the very shape the next request expects (a second HD after a set),
    which the text protocol cannot tell from the real one, fails the next request instead
    of answering it (the server did store it, as with any request whose reply is lost).
    """
    pool = MetaMemCachePool(memcached.endpoint, maxClients=1)
    try:
        protocol = await pool.acquire()
        assert protocol.transport is not None
        protocol.transport.write(b"ms meta-extra 1 O12345\r\nx\r\n")
        pool.release(protocol)
        with pytest.raises(ProtocolError, match="O12345"):
            await pool.set(b"meta-extra", b"y")
        assert await pool.get(b"meta-extra") == (0, b"y")
        stats = pool.poolStats()
        assert (stats.created, stats.closed, stats.idle) == (2, 1, 1)
    finally:
        await pool.close()


@pytest_twisted.ensureDeferred
async def test_quietMissesInsideBatches(memcached: MemcachedProcess) -> None:
    """
    Hundreds of concurrent gets, mostly misses, are batched as quiet mgs: every get gets
    what pymemcache reads for its key, with and without CAS tokens, and no reply is out of
    place.
    """
    client = peer(memcached)
    keys = [b"meta-batch-%03d" % i for i in range(300)]
    client.delete_many(keys)
    for i, key in enumerate(keys):
        if i % 7 == 0:
            client.set(key, (i, b"v%d" % i))
    expected = client.get_many(keys)
    withCas = client.gets_many(keys)
    pool = MetaMemCachePool(memcached.endpoint, maxClients=2)
    try:
        plain = [pool.get(key) for key in keys]
        casGets = [pool.get(key, withIdentifier=True) for key in keys]
        results = await defer.gatherResults(plain + casGets)
        assert results[:300] == [expected.get(k, (0, None)) for k in keys]
        for key, (flags, cas, value) in zip(keys, results[300:]):
            if key in withCas:
                (peerFlags, peerValue), peerCas = withCas[key]
                assert (flags, cas, value) == (peerFlags, peerCas, peerValue)
            else:
                assert (flags, cas, value) == (0, b"", None)
        multiple = await pool.getMultiple(keys)
        assert multiple == {k: expected.get(k, (0, None)) for k in keys}
        stats = pool.poolStats()
        assert stats.failedRequests == 0 and stats.discarded.protocolError == 0
    finally:
        await pool.close()
        client.close()


@pytest_twisted.ensureDeferred
async def test_binaryKeysWithBase64(memcached: MemcachedProcess) -> None:
    """
    With base64Keys, keys holding any bytes (spaces, CR LF, NUL, 186 of them) work with every
    command; a key the text protocol can carry is the same key for a pymemcache client.
    """
    pool = MetaMemCachePool(memcached.endpoint, maxClients=2, base64Keys=True)
    client = peer(memcached)
    binary = b"\x00meta key\r\nwith everything\xff"
    longest = bytes(range(186))
    try:
        assert await pool.set(binary, b"1", flags=9) is True
        assert await pool.get(binary) == (9, b"1")
        assert await pool.increment(binary, 41) == 42
        assert await pool.decrement(binary) == 41
        _, cas, _ = await pool.get(binary, withIdentifier=True)
        assert await pool.checkAndSet(binary, b"cas", cas) is True
        assert await pool.append(binary, b"+") is True
        assert await pool.prepend(binary, b"-") is True
        assert await pool.replace(longest, b"x") is False
        assert await pool.add(longest, b"long") is True
        assert await pool.getMultiple([binary, longest, b"\r\n"]) == {
            binary: (0, b"-cas+"),
            longest: (0, b"long"),
            b"\r\n": (0, None),
        }
        assert await pool.touch(longest, 100) is True
        info = await pool.itemInfo(longest)
        assert info is not None and info[b"exp"] != b"-1"
        assert await pool.delete(longest) is True
        assert await pool.itemInfo(longest) is None
        with pytest.raises(InvalidKeyError):
            await pool.get(bytes(187))
        client.set(b"meta-plain", (3, b"shared"))
        assert await pool.get(b"meta-plain") == (3, b"shared")
        assert await pool.set("meta-clé", b"utf8") is True
        assert client.get("meta-clé".encode()) == (0, b"utf8")
        assert pool.poolStats().failedRequests == 1
    finally:
        await pool.close()
        client.close()


@pytest_twisted.ensureDeferred
async def test_keyPrefixWithBase64Keys(memcached: MemcachedProcess) -> None:
    """
    With base64Keys and keyPrefix, the server stores the prefix and the key together,
    decoded: a text-protocol client sees a text-safe one under the prefixed name.
    """
    pool = MetaMemCachePool(memcached.endpoint, base64Keys=True, keyPrefix="b64:")
    text = MemCachePool(memcached.endpoint)
    binary = b"key with\r\nbytes\x00"
    try:
        assert await pool.set(b"plain", b"1") is True
        assert await text.get(b"b64:plain") == (0, b"1")
        assert await pool.setMultiple({binary: b"2"}, noreply=True) == {binary: True}
        assert await pool.getMultiple([binary, b"plain"]) == {
            binary: (0, b"2"), b"plain": (0, b"1")
        }
        assert await pool.getAndTouch(binary, 100) == (0, b"2")
        assert await pool.deleteMultiple([binary, b"plain"]) == {binary: True, b"plain": True}
        assert await text.get(b"b64:plain") == (0, None)
        with pytest.raises(InvalidKeyError):
            await pool.get(bytes(183))
    finally:
        await pool.close()
        await text.close()


@pytest_twisted.ensureDeferred
async def test_getOrComputeWithASerializerAndAPrefix(memcached: MemcachedProcess) -> None:
    """
    getOrCompute stores the computed object through the serializer under the prefixed key:
    the next call gets it without computing, and MemCachePool with the same serializer and
    prefix reads it too.
    """
    serializer = PythonMemcacheSerializer()
    meta = MetaMemCachePool(memcached.endpoint, serializer=serializer, keyPrefix="soc:")
    text = MemCachePool(memcached.endpoint, serializer=serializer, keyPrefix="soc:")
    computed: list[int] = []

    def compute() -> dict[str, int]:
        computed.append(1)
        return {"rows": len(computed)}

    try:
        assert await meta.getOrCompute("report", compute, 60) == {"rows": 1}
        assert await meta.getOrCompute("report", compute, 60) == {"rows": 1}
        assert computed == [1]
        assert await text.getValue("report") == {"rows": 1}
        assert await meta.invalidate("report") is True
        assert await meta.getOrCompute("report", compute, 60) == {"rows": 2}
    finally:
        await meta.close()
        await text.close()


@pytest_twisted.ensureDeferred
async def test_getOrComputeWithIgnoreErrorsWithoutAServer() -> None:
    """
    With ignoreErrors and no server, getOrCompute computes the value and returns it, the
    failed read counted; without ignoreErrors it fails and computes nothing.
    """
    address = f"tcp:127.0.0.1:{freePort()}"
    lenient = MetaMemCachePool(address, ignoreErrors=True, failFastAfter=1)
    strict = MetaMemCachePool(address, failFastAfter=1)
    computed: list[bytes] = []
    try:
        assert await lenient.getOrCompute(b"k", lambda: computed.append(b"v") or b"v", 60) == b"v"
        assert computed == [b"v"] and lenient.ignoredErrors >= 1
        with pytest.raises(ServerUnavailableError):
            await strict.getOrCompute(b"k", lambda: computed.append(b"w") or b"w", 60)
        assert computed == [b"v"]
    finally:
        await lenient.close()
        await strict.close()


@pytest_twisted.ensureDeferred
async def test_valuesAreSharedWithTheTextProtocol(memcached: MemcachedProcess) -> None:
    """
    What MetaMemCachePool stores, pymemcache and MemCachePool read back the same (flags and
    CAS tokens included), and the other way round.
    """
    meta = MetaMemCachePool(memcached.endpoint)
    text = MemCachePool(memcached.endpoint)
    client = peer(memcached)
    try:
        assert await meta.set(b"meta-shared", b"from meta", flags=77, expireTime=100) is True
        assert client.get(b"meta-shared") == (77, b"from meta")
        assert await text.get(b"meta-shared", True) == await meta.get(b"meta-shared", True)
        client.set(b"meta-shared", (5, b"from pymemcache"))
        assert await meta.get(b"meta-shared") == (5, b"from pymemcache")
        (_, casPeer) = client.gets(b"meta-shared")
        _, cas, _ = await meta.get(b"meta-shared", True)
        assert cas == casPeer
        assert await meta.checkAndSet(b"meta-shared", b"swapped", int(cas)) is True
        assert client.get(b"meta-shared") == (0, b"swapped")
    finally:
        await meta.close()
        await text.close()
        client.close()


@pytest_twisted.ensureDeferred
async def test_invalidatedValueReadsStale(memcached: MemcachedProcess) -> None:
    """
    After invalidate, plain reads keep getting the old value and give back the lease they
    are handed, which getOrCompute then takes to recompute.
    """
    pool = MetaMemCachePool(memcached.endpoint, maxClients=1)
    try:
        assert await pool.set(b"meta-stale", b"old") is True
        assert await pool.invalidate(b"meta-stale", staleTtl=100) is True
        assert await pool.invalidate(b"meta-absent") is False
        assert await pool.get(b"meta-stale") == (0, b"old")
        assert await pool.get(b"meta-stale") == (0, b"old")
        assert await pool.touch(b"meta-stale", 100) is True
        assert await pool.getOrCompute(b"meta-stale", lambda: b"new", 60) == b"new"
        assert await pool.get(b"meta-stale") == (0, b"new")
        assert pool.poolStats().failedRequests == 0
    finally:
        await pool.close()


class NutcrackerProcess:
    """
    A nutcracker (twemproxy) in front of a memcached: a real server that only speaks the
    text protocol. Started on free loopback ports, stopped by its PID.
    """

    def __init__(self, directory: Path, upstreamPort: int) -> None:
        self.port = freePort()
        self.statsPort = freePort()
        self.config = directory / "nutcracker.yml"
        self.config.write_text(
            "meta:\n"
            f"  listen: 127.0.0.1:{self.port}\n"
            "  distribution: ketama\n"
            "  hash: fnv1a_64\n"
            "  servers:\n"
            f"   - 127.0.0.1:{upstreamPort}:1\n"
        )
        self.log = directory / "nutcracker.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        binary = shutil.which("nutcracker")
        assert binary is not None, "nutcracker is installed by the test command"
        self.process = subprocess.Popen(
            [binary, "-c", str(self.config), "-o", str(self.log), "-s", str(self.statsPort),
             "-a", "127.0.0.1", "-p", str(self.config.with_suffix(".pid"))],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )

    def listening(self) -> bool:
        """
        Whether nutcracker listens on its port yet, as C{/proc/net/tcp} shows.
        """
        assert self.process is not None and self.process.poll() is None, self.log.read_text()
        with open("/proc/net/tcp") as table:
            next(table)
            for line in table:
                fields = line.split()
                if int(fields[1].split(":")[1], 16) == self.port and fields[3] == "0A":
                    return True
        return False

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(timeout=10)


@pytest.fixture
def nutcracker(memcached: MemcachedProcess, tmp_path: Path) -> Iterator[NutcrackerProcess]:
    """
    A nutcracker of the test's own, in front of the shared memcached.
    """
    assert memcached.port is not None
    proxy = NutcrackerProcess(tmp_path, memcached.port)
    proxy.start()
    yield proxy
    proxy.stop()


@pytest_twisted.ensureDeferred
async def test_serverWithoutMetaCommandsIsRefused(nutcracker: NutcrackerProcess) -> None:
    """
    A server that only speaks the text protocol (nutcracker closes the connection on mn) is
    refused when the connection is made: requests fail with ServerUnavailableError whose
    cause says the meta protocol is needed, while MemCachePool works through it.
    """
    await turnsUntil(nutcracker.listening)
    endpoint = f"tcp:127.0.0.1:{nutcracker.port}"
    text = MemCachePool(endpoint, maxClients=1)
    meta = MetaMemCachePool(endpoint, maxClients=1, failFastAfter=2, retryPolicy=lambda n: 0.01)
    try:
        assert await text.set(b"meta-via-proxy", b"1") is True
        with pytest.raises(ServerUnavailableError) as raised:
            await meta.get(b"meta-via-proxy")
        cause = raised.value.__cause__
        assert isinstance(cause, MetaProtocolUnsupportedError)
        assert "text protocol" in str(cause) and "meta protocol" in str(cause)
        stats = meta.poolStats()
        assert (stats.created, stats.connectsFailed) == (0, 2)
    finally:
        await text.close()
        await meta.close()

