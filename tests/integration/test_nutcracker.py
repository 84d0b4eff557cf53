"""
MemCacheCluster and MemCachePool's twemproxy mode against a real nutcracker (twemproxy 0.5) in
front of real memcached servers.

Placement: keys stored through nutcracker are found by MemCacheCluster on the backend
nutcracker chose (asked of the backends themselves when the tests run). Twemproxy mode: the
failures nutcracker causes for a plain pool (a connection closed on C{stats}, a whole batch of
gets failed when one backend is down) are shown with a plain pool, and gone in twemproxy mode.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import defer

from txconnpool.errors import ConnectionLostError
from txconnpool.memcache import (
    MemCacheCluster,
    MemCachePool,
    PartialResultError,
    ServerError,
    UnsupportedCommandError,
)
from txconnpool.memcache.testing import MemcachedProcess

from ..cluster_support import (
    NutcrackerProcess,
    address,
    flush,
    hostsWithPort11211,
    keysHeld,
    startMemcacheds,
)

KEYS = [b"key-%d" % i for i in range(200)] + [
    bytes([0x80 + i % 0x7F]) + b"-raw-%d" % i for i in range(100)
]


@pytest.fixture(scope="module", params=["port11211", "otherPorts"])
def backends(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[list[MemcachedProcess]]:
    """
    Three memcached backends: on port 11211 of three loopback addresses, or on free ports of
    127.0.0.1.
    """
    directory = tmp_path_factory.mktemp("nutcracker-" + request.param)
    if request.param == "port11211":
        addresses: list[tuple[str, int | None]] = [(h, 11211) for h in hostsWithPort11211(3)]
    else:
        addresses = [("127.0.0.1", None)] * 3
    processes = startMemcacheds(directory, addresses)
    yield processes
    for process in processes:
        process.stop()


def placement(servers: list[MemcachedProcess], keys: list[bytes]) -> dict[bytes, int]:
    """
    Which backend holds each key, asked of the backends.
    """
    where: dict[bytes, int] = {}
    for index, server in enumerate(servers):
        for key in keysHeld(server, keys):
            assert key not in where
            where[key] = index
    return where


CONFIGS = {
    "md5": {"hash": "md5", "weights": (1, 1, 1), "names": False, "hashTag": None},
    "fnv1a_64-weighted": {"hash": "fnv1a_64", "weights": (1, 2, 3), "names": False,
                          "hashTag": None},
    "fnv1a_64-named": {"hash": "fnv1a_64", "weights": (3, 1, 2), "names": True,
                       "hashTag": None},
    "md5-hashtag": {"hash": "md5", "weights": (1, 1, 1), "names": False, "hashTag": "{}"},
    "fnv1a_32": {"hash": "fnv1a_32", "weights": (2, 1, 1), "names": False, "hashTag": None},
    "one_at_a_time": {"hash": "one_at_a_time", "weights": (1, 1, 1), "names": True,
                      "hashTag": None},
    "crc": {"hash": "crc", "weights": (1, 1, 1), "names": False, "hashTag": None},
}
"""Each configuration's key hash (ours; nutcracker calls C{crc} C{crc32}), weights, whether
the servers have names, and hash tag."""


@pytest.mark.parametrize("config", list(CONFIGS))
@pytest_twisted.ensureDeferred
async def test_clusterFindsWhatNutcrackerStored(
    backends: list[MemcachedProcess], tmp_path: Path, config: str
) -> None:
    """
    With nutcracker's ketama distribution and a key hash, every key nutcracker stored is on the
    backend MemCacheCluster places it on, and the cluster reads it there.
    """
    settings: dict[str, Any] = CONFIGS[config]
    flush(backends)
    weights = settings["weights"]
    names = [f"node-{i}" for i in range(3)] if settings["names"] else [None] * 3
    lines = [
        "{}:{}:{}{}".format(*address(s), w, "" if n is None else " " + n)
        for s, w, n in zip(backends, weights, names)
    ]
    proxy = NutcrackerProcess(
        tmp_path, lines, hash="crc32" if settings["hash"] == "crc" else settings["hash"],
        hashTag=settings["hashTag"],
    )
    proxy.start()
    keys = list(KEYS)
    if settings["hashTag"]:
        keys += [b"user:{%d}:name" % i for i in range(60)] + [b"{}empty-%d" % i for i in range(20)]
    viaProxy = MemCachePool(proxy.endpoint, maxClients=2, proxy="twemproxy")
    cluster = MemCacheCluster(
        [(s.endpoint, w) if n is None else (s.endpoint, w, n)
         for s, w, n in zip(backends, weights, names)],
        distribution="ketama",
        hash=settings["hash"],
        hashTag=None if settings["hashTag"] is None else settings["hashTag"].encode(),
        maxClients=2,
    )
    try:
        stored = await defer.gatherResults([viaProxy.set(k, b"v-" + k) for k in keys])
        assert all(stored)
        theirs = placement(backends, keys)
        assert len(theirs) == len(keys)
        pools = list(cluster.pools.values())
        assert {k: pools.index(cluster.poolFor(k)) for k in keys} == theirs
        assert await cluster.getMultiple(keys) == {k: (0, b"v-" + k) for k in keys}
        if settings["hash"] != "crc":  # 15-bit hashes: most keys share the first arc
            assert len(set(theirs.values())) == 3
    finally:
        await viaProxy.close()
        await cluster.close()
        proxy.stop()


@pytest.fixture
def ownBackends(tmp_path: Path) -> Iterator[list[MemcachedProcess]]:
    """
    Three memcached backends of the test's own, for tests that kill one.
    """
    processes = startMemcacheds(tmp_path, [("127.0.0.1", None)] * 3)
    yield processes
    for process in processes:
        process.stop()


@pytest.fixture
def nutcracker(ownBackends: list[MemcachedProcess], tmp_path: Path
               ) -> Iterator[NutcrackerProcess]:
    """
    A nutcracker in front of the test's own three backends (fnv1a_64, ketama, no ejection).
    """
    proxy = NutcrackerProcess(tmp_path, ["{}:{}:1".format(*address(s)) for s in ownBackends])
    proxy.start()
    yield proxy
    proxy.stop()


async def _settled(ds: list[defer.Deferred[Any]]) -> list[tuple[bool, Any]]:
    results: list[tuple[bool, Any]] = await defer.DeferredList(ds, consumeErrors=True)
    return results


@pytest_twisted.ensureDeferred
async def test_statsNoLongerLosesTheRequestsInFlight(nutcracker: NutcrackerProcess) -> None:
    """
    Through nutcracker, stats on a pipelined connection loses every request in flight with a
    plain pool; in twemproxy mode it fails at once with UnsupportedCommandError and they all
    succeed.
    """
    keys = [b"in-flight-%d" % i for i in range(40)]
    plain = MemCachePool(nutcracker.endpoint, maxClients=1)
    proxied = MemCachePool(nutcracker.endpoint, maxClients=1, proxy="twemproxy")
    try:
        await plain.version()
        inFlight = [plain.set(k, b"v") for k in keys] + [plain.stats()]
        outcomes = await _settled(inFlight)
        lost = [r for ok, r in outcomes if not ok and r.check(ConnectionLostError)]
        assert len(lost) >= len(keys)

        await proxied.version()
        inFlight = [proxied.set(k, b"v") for k in keys]
        refused = proxied.stats()
        assert refused.called
        with pytest.raises(UnsupportedCommandError):
            await refused
        assert await defer.gatherResults(inFlight) == [True] * len(keys)
        assert proxied.poolStats().discarded.lost == 0
    finally:
        await plain.close()
        await proxied.close()


@pytest_twisted.ensureDeferred
async def test_aDeadBackendFailsOnlyItsKeys(
    nutcracker: NutcrackerProcess, ownBackends: list[MemcachedProcess]
) -> None:
    """
    With one of three backends dead, batched gets through nutcracker fail far beyond its keys
    with a plain pool; in twemproxy mode exactly its keys fail, for gets and multi-gets, and a
    ping (version, which nutcracker may forward to the dead backend) still succeeds.
    """
    keys = [b"%d:batch" % (i * 7919) for i in range(30)]
    setup = MemCachePool(nutcracker.endpoint, maxClients=1, proxy="twemproxy")
    assert all(await defer.gatherResults([setup.set(k, b"v-" + k) for k in keys]))
    await setup.close()
    where = placement(ownBackends, keys)
    victim = max(range(3), key=lambda i: list(where.values()).count(i))
    dead = {k for k, i in where.items() if i == victim}
    assert 0 < len(dead) < len(keys)
    ownBackends[victim].signal(signal.SIGKILL)
    ownBackends[victim].process.wait()  # type: ignore[union-attr]

    live = next(k for k in keys if k not in dead)
    plain = MemCachePool(nutcracker.endpoint, maxClients=1)
    proxied = MemCachePool(nutcracker.endpoint, maxClients=1, proxy="twemproxy")
    try:
        await plain.get(live)
        outcomes = await _settled([plain.get(k) for k in keys])
        failedPlain = {k for k, (ok, _) in zip(keys, outcomes) if not ok}
        assert len(failedPlain) > len(dead)

        for _ in range(3):
            await proxied.get(live)
            outcomes = await _settled([proxied.get(k) for k in keys])
            failed = {k for k, (ok, _) in zip(keys, outcomes) if not ok}
            assert failed == dead
            assert all(r.check(ServerError) for ok, r in outcomes if not ok)
            assert all(r == (0, b"v-" + k) for k, (ok, r) in zip(keys, outcomes) if ok)

            with pytest.raises(PartialResultError) as caught:
                await proxied.getMultiple(keys)
            assert set(caught.value.errors) == dead
            assert caught.value.results == {k: (0, b"v-" + k) for k in keys if k not in dead}
        protocol = await proxied.acquire()
        try:
            pings = [await proxied.pingConnection(protocol) for _ in range(10)]
        finally:
            proxied.release(protocol)
        assert all(isinstance(p, (bytes, ServerError)) for p in pings)
    finally:
        await plain.close()
        await proxied.close()
        flush(s for i, s in enumerate(ownBackends) if i != victim)
