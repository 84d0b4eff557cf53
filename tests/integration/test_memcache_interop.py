"""
Values shared with pymemcache and pylibmc through a real memcached: what they store reads
back equal through MemCachePool with PythonMemcacheSerializer, and what MemCachePool stores
reads back equal through them; the expected values and flags are computed by those clients.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pylibmc
import pytest
import pytest_twisted
from pymemcache import serde
from pymemcache.client.base import Client as PymemcacheClient

from txconnpool.memcache import MemCachePool
from txconnpool.memcache.errors import ReplyTooLargeError
from txconnpool.memcache.serializers import PythonMemcacheSerializer
from txconnpool.memcache.testing import MemcachedProcess

VALUES: dict[str, Any] = {
    "text": "h\u00e9llo w\u00f6rld",
    "int": 1234567890123,
    "negative": -42,
    "dict": {"a": [1, 2, 3], "b": {"c": None}},
    "bytes": b"\x00raw\xffbytes",
    "large": "compressible " * 2000,
}


def hostPort(server: MemcachedProcess) -> tuple[str, int]:
    """
    The host and port of C{server}.
    """
    assert server.host is not None and server.port is not None
    return server.host, server.port


@pytest.fixture
def pymemcache(memcached: MemcachedProcess) -> Iterator[PymemcacheClient]:
    """
    A pymemcache client with its python-memcached serializer and compression above 400
    bytes (pymemcache's compressed_serde).
    """
    client = PymemcacheClient(
        hostPort(memcached), serde=serde.CompressedSerde(min_compress_len=400)
    )
    yield client
    client.close()


@pytest.fixture
def libmc(memcached: MemcachedProcess) -> Any:
    """
    A pylibmc client over the text protocol.
    """
    host, port = hostPort(memcached)
    return pylibmc.Client([f"{host}:{port}"], binary=False)


@pytest.fixture
def pool(memcached: MemcachedProcess) -> Iterator[MemCachePool[object]]:
    """
    A MemCachePool with the python-memcached convention, compressing above 400 bytes.
    """
    memcachePool = MemCachePool(
        memcached.endpoint, serializer=PythonMemcacheSerializer(minCompressLength=400)
    )
    yield memcachePool
    pytest_twisted.blockon(memcachePool.close())


@pytest.fixture
def raw(memcached: MemcachedProcess) -> Iterator[MemCachePool]:
    """
    A MemCachePool of bytes, to read what is stored as it is.
    """
    memcachePool = MemCachePool(memcached.endpoint)
    yield memcachePool
    pytest_twisted.blockon(memcachePool.close())


@pytest_twisted.ensureDeferred
async def test_pymemcacheToPool(
    pymemcache: PymemcacheClient, pool: MemCachePool[object]
) -> None:
    """
    Values stored by pymemcache read back through the pool as pymemcache reads them, with
    the flags pymemcache's serializer gave them.
    """
    for name, value in VALUES.items():
        key = f"interop-pm-{name}"
        assert pymemcache.set(key, value, noreply=False) is True
        expectedFlags = pymemcache.serde.serialize(key.encode(), value)[1]
        assert await pool.get(key) == (expectedFlags, pymemcache.get(key))
        assert await pool.getValue(key) == value
    assert expectedFlags & 8, "the large value was stored compressed"


@pytest_twisted.ensureDeferred
async def test_poolToPymemcache(
    pymemcache: PymemcacheClient, pool: MemCachePool[object], raw: MemCachePool
) -> None:
    """
    Values stored by the pool read back equal through pymemcache, stored with the flags
    pymemcache's own serializer gives them, and the same bytes (pickles aside, which may
    differ byte for byte and still load equal).
    """
    for name, value in VALUES.items():
        key = f"interop-pool-{name}"
        assert await pool.set(key, value) is True
        assert pymemcache.get(key) == value
        data, flags = pymemcache.serde.serialize(key.encode(), value)
        storedFlags, stored = await raw.get(key)
        assert storedFlags == flags
        if not flags & 1:
            assert stored == (data if isinstance(data, bytes) else str(data).encode())


@pytest_twisted.ensureDeferred
async def test_pylibmcToPool(libmc: Any, pool: MemCachePool[object], raw: MemCachePool) -> None:
    """
    Values stored by pylibmc, compressed ones included, read back through the pool as
    pylibmc reads them.
    """
    for name, value in VALUES.items():
        key = f"interop-lm-{name}"
        assert libmc.set(key, value, min_compress_len=400) is True
        assert await pool.getValue(key) == libmc.get(key) == value
    flags, _ = await raw.get("interop-lm-large")
    assert flags & 8, "pylibmc stored the large value compressed"


@pytest_twisted.ensureDeferred
async def test_poolToPylibmc(libmc: Any, pool: MemCachePool[object]) -> None:
    """
    Values stored by the pool, compressed ones included, read back equal through pylibmc.
    """
    for name, value in VALUES.items():
        key = f"interop-pool-lm-{name}"
        assert await pool.set(key, value) is True
        assert libmc.get(key) == value


@pytest_twisted.ensureDeferred
async def test_keyPrefixMatchesPymemcache(memcached: MemcachedProcess) -> None:
    """
    A pool's keyPrefix names the same items as pymemcache's key_prefix, and getMultiple is
    keyed without it.
    """
    client = PymemcacheClient(hostPort(memcached), key_prefix=b"ns:")
    pool = MemCachePool(memcached.endpoint, keyPrefix="ns:")
    try:
        client.set("a", b"1", noreply=False)
        assert await pool.getMultiple(["a", "b"]) == {"a": (0, b"1"), "b": (0, None)}
        assert await pool.set("b", b"2") is True
        assert client.get("b") == b"2"
    finally:
        client.close()
        await pool.close()


@pytest.fixture
def largeItems(tmp_path: Any) -> Iterator[MemcachedProcess]:
    """
    A memcached started with -I 4m, which stores items of up to 4 MiB.
    """
    server = MemcachedProcess(tmp_path / "memcached.log", extraArgs=("-I", "4m"))
    server.start()
    yield server
    server.stop()


@pytest_twisted.ensureDeferred
async def test_largeValueStoredByAnotherClient(largeItems: MemcachedProcess) -> None:
    """
    A 2 MB value stored by pymemcache on a memcached started with -I 4m reads back through a
    pool with maxValueSize raised; a pool with the default fails with ReplyTooLargeError.
    """
    value = bytes(range(256)) * (2 * 1024 * 1024 // 256)
    client = PymemcacheClient(hostPort(largeItems))
    assert client.set("big", value, noreply=False) is True
    client.close()
    raised = MemCachePool(largeItems.endpoint, maxValueSize=4 * 1024 * 1024)
    default = MemCachePool(largeItems.endpoint)
    try:
        assert await raised.get("big") == (0, value)
        assert await raised.set("big2", value) is True
        with pytest.raises(ReplyTooLargeError):
            await default.get("big")
        assert await default.get("small") == (0, None)
    finally:
        await raised.close()
        await default.close()
