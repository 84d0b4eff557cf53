"""
MemCacheCluster and pylibmc (libmemcached) sharing keys on the same real memcached servers:
what one writes the other reads, and each key sits on the server libmemcached chose.

The expected placement is pylibmc's, found when the tests run by asking every server which keys
it holds; none is copied in. The servers listen on port 11211 of three loopback addresses
(points hashed from C{"host-i"}) and on other ports of 127.0.0.1 (C{"host:port-i"}).
"""

from __future__ import annotations

from collections.abc import Iterator

import pylibmc
import pytest
import pytest_twisted

from txconnpool.memcache import MemCacheCluster
from txconnpool.memcache.testing import MemcachedProcess

from ..cluster_support import address, flush, hostsWithPort11211, keysHeld, startMemcacheds

BEHAVIOURS = {"ketama": {"ketama": True}, "ketama_weighted": {"ketama_weighted": True}}
HASHES = {"default": None, "md5": "md5", "fnv1a_32": "fnv1a_32"}
WEIGHTS = {"unweighted": (1, 1, 1), "weighted": (1, 2, 3)}


def clusterArguments(behaviour: str, hash: str | None, weights: tuple[int, ...]) -> dict[str, str]:
    """
    The MemCacheCluster arguments equivalent to pylibmc's behaviours, as the Sharding page's
    table gives them: C{ketama_weighted} forces MD5 keys; C{ketama} is unweighted while every
    weight is 1 and weighted as soon as one is more (libmemcached switches by itself).
    """
    if behaviour == "ketama_weighted":
        return {"distribution": "ketama", "hash": "md5"}
    keyHash = "one_at_a_time" if hash is None else hash
    if any(w > 1 for w in weights):
        return {"distribution": "ketama", "hash": keyHash}
    return {"distribution": "ketama-unweighted", "hash": keyHash}


KEYS = (
    [b"key-%d" % i for i in range(150)]
    + [b"user:%d:profile" % i for i in range(50)]
    + [bytes([0x80 + i % 0x7F]) + b"-raw-%d" % i for i in range(50)]
    + [f"ключ-{i}-€".encode() for i in range(50)]
)
"""300 keys, a third with bytes of 0x80 or more (sign-extended by the C key hashes)."""


@pytest.fixture(scope="module", params=["port11211", "otherPorts"])
def servers(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[list[MemcachedProcess]]:
    """
    Three memcached servers: on port 11211 of three loopback addresses, or on three free ports
    of 127.0.0.1.
    """
    directory = tmp_path_factory.mktemp(request.param)
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
    Which server holds each key, asked of the servers themselves.
    """
    where: dict[bytes, int] = {}
    for index, server in enumerate(servers):
        for key in keysHeld(server, keys):
            assert key not in where, f"{key!r} is on two servers"
            where[key] = index
    return where


@pytest.mark.parametrize("weights", list(WEIGHTS))
@pytest.mark.parametrize("hash", list(HASHES))
@pytest.mark.parametrize("behaviour", list(BEHAVIOURS))
@pytest_twisted.ensureDeferred
async def test_clusterAndPylibmcShareKeys(
    servers: list[MemcachedProcess], behaviour: str, hash: str, weights: str
) -> None:
    """
    Keys pylibmc stores are where MemCacheCluster looks for them, and the other way round, for
    each ketama mode, key hash and weighting of pylibmc.
    """
    flush(servers)
    weightList = WEIGHTS[weights]
    behaviors = dict(BEHAVIOURS[behaviour])
    if HASHES[hash] is not None:
        behaviors["hash"] = HASHES[hash]
    client = pylibmc.Client(
        ["{}:{}:{}".format(*address(s), w) for s, w in zip(servers, weightList)],
        behaviors=behaviors,
    )
    cluster = MemCacheCluster(
        [(s.endpoint, w) for s, w in zip(servers, weightList)],
        maxClients=2,
        **clusterArguments(behaviour, HASHES[hash], weightList),
    )
    try:
        written = KEYS[::2]
        for key in written:
            assert client.set(key, b"from pylibmc " + key)
        theirs = placement(servers, written)
        assert len(theirs) == len(written)
        pools = list(cluster.pools.values())
        ours = {key: pools.index(cluster.poolFor(key)) for key in written}
        assert ours == theirs
        found = await cluster.getMultiple([k.decode("utf-8", "strict") if k.isascii() else k
                                           for k in written])
        assert {k.encode() if isinstance(k, str) else k: v for k, v in found.items()} == {
            key: (0, b"from pylibmc " + key) for key in written
        }

        mine = KEYS[1::2]
        for key in mine:
            assert await cluster.set(key, b"from the cluster " + key) is True
        assert client.get_multi(mine) == {key: b"from the cluster " + key for key in mine}
        assert placement(servers, mine) == {
            key: pools.index(cluster.poolFor(key)) for key in mine
        }
        assert len(set(placement(servers, KEYS).values())) == 3
    finally:
        client.disconnect_all()
        await cluster.close()
