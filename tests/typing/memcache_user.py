# mypy: disallow-any-expr
"""
Code a user of MemCachePool and MetaMemCachePool writes, type-checked by
tests/test_memcache_typing.py with the project's mypy configuration (--strict) and, for this
module, --disallow-any-expr: no expression here may have a type that involves Any. It is never
run.
"""

from __future__ import annotations

from twisted.internet.defer import Deferred
from twisted.internet.protocol import Protocol
from typing_extensions import reveal_type

from txconnpool import Pool, PooledClientFactory, PoolStats
from txconnpool.memcache import MemCachePool, MetaMemCachePool
from txconnpool.memcache.serializers import PythonMemcacheSerializer


async def plain(pool: MemCachePool) -> None:
    _, value = await pool.get(b"k")
    reveal_type(value)  # E: bytes | None
    _, cas, value = await pool.get("k", withIdentifier=True)
    reveal_type(cas)  # E: bytes
    reveal_type(await pool.getValue(b"k"))  # E: bytes | None
    reveal_type(await pool.getValue(b"k", b""))  # E: bytes
    reveal_type(await pool.getAndTouch(b"k", 10))  # E: tuple[int, bytes | None]
    reveal_type(await pool.getMultiple([b"a", b"b"]))  # E: dict[bytes, tuple[int, bytes | None]]
    withCas = await pool.getMultiple(["a"], True)
    reveal_type(withCas)  # E: dict[str, tuple[int, bytes, bytes | None]]
    reveal_type(await pool.set(b"k", b"v", flags=1, expireTime=10))  # E: bool
    reveal_type(await pool.add(b"k", b"v", noreply=True))  # E: bool
    reveal_type(await pool.checkAndSet(b"k", b"v", cas))  # E: bool
    reveal_type(await pool.setMultiple({b"a": b"1"}))  # E: dict[bytes, bool]
    reveal_type(await pool.deleteMultiple(["a"]))  # E: dict[str, bool]
    reveal_type(await pool.increment(b"n", noreply=False))  # E: int | Literal[False]
    reveal_type(await pool.increment(b"n", noreply=True))  # E: None
    reveal_type(await pool.decrement(b"n", 2))  # E: int | Literal[False] | None
    reveal_type(await pool.delete(b"k"))  # E: bool
    reveal_type(await pool.touch(b"k", 10))  # E: bool
    reveal_type(await pool.flushAll(5))  # E: bool
    reveal_type(await pool.stats(b"items"))  # E: dict[bytes, bytes]
    reveal_type(await pool.version())  # E: bytes
    reveal_type(pool.poolStats())  # E: txconnpool.stats.PoolStats
    reveal_type(pool.ignoredErrors)  # E: int
    async with pool.connection() as protocol:
        reveal_type(protocol)  # E: txconnpool.memcache.protocol.MemCacheProtocol
        reveal_type(await protocol.get(b"k"))  # E: tuple[int, bytes | None]
    await pool.close()


async def serialized() -> None:
    pool = MemCachePool("tcp:127.0.0.1:11211", serializer=PythonMemcacheSerializer())
    reveal_type(pool)  # E: txconnpool.memcache._pool.MemCachePool[object]
    reveal_type(await pool.get(b"k"))  # E: tuple[int, object]
    reveal_type(await pool.getValue(b"k", 0))  # E: object
    await pool.set(b"k", {"any": ["picklable", 1]})


async def meta(pool: MetaMemCachePool) -> None:
    _, value = await pool.get(b"k")
    reveal_type(value)  # E: bytes | None
    _, cas, value = await pool.get("k", withIdentifier=True)
    reveal_type(cas)  # E: bytes
    reveal_type(await pool.getValue(b"k", b""))  # E: bytes
    reveal_type(await pool.getAndTouch(b"k", 10, True))  # E: tuple[int, bytes, bytes | None]
    reveal_type(await pool.getMultiple(["a"]))  # E: dict[str, tuple[int, bytes | None]]
    reveal_type(await pool.set(b"k", b"v", noreply=True))  # E: bool
    reveal_type(await pool.setMultiple({"a": b"1"}))  # E: dict[str, bool]
    reveal_type(await pool.deleteMultiple([b"a"], noreply=True))  # E: dict[bytes, bool]
    reveal_type(await pool.increment(b"n", noreply=False))  # E: int | Literal[False]
    reveal_type(await pool.decrement(b"n", noreply=True))  # E: None
    reveal_type(await pool.flushAll(5))  # E: bool
    reveal_type(await pool.getOrCompute(b"k", lambda: b"v", 60))  # E: bytes
    reveal_type(await pool.invalidate(b"k"))  # E: bool
    reveal_type(await pool.itemInfo(b"k"))  # E: dict[bytes, bytes] | None
    reveal_type(pool.ignoredErrors)  # E: int
    async with pool.connection() as protocol:
        reveal_type(protocol)  # E: txconnpool.memcache.meta.protocol.MetaMemCacheProtocol
        reveal_type(await protocol.get(b"k"))  # E: tuple[int, bytes | None]
        reveal_type(await protocol.increment(b"n", 1, True))  # E: None
    await pool.close()


async def metaSerialized() -> None:
    pool = MetaMemCachePool("tcp:127.0.0.1:11211", serializer=PythonMemcacheSerializer())
    reveal_type(pool)  # E: txconnpool.memcache.meta._pool.MetaMemCachePool[object]
    reveal_type(await pool.get(b"k"))  # E: tuple[int, object]
    reveal_type(await pool.getOrCompute(b"k", lambda: {"rows": 1}, 60))  # E: object
    defaults = MetaMemCachePool("tcp:127.0.0.1:11211", requestTimeout=2.0, keyPrefix="ns:")
    reveal_type(defaults)  # E: txconnpool.memcache.meta._pool.MetaMemCachePool[bytes]


def defaults() -> None:
    pool = MemCachePool("tcp:127.0.0.1:11211", maxClients=20, requestTimeout=2.0)
    reveal_type(pool)  # E: txconnpool.memcache._pool.MemCachePool[bytes]
    stats: PoolStats = pool.poolStats()
    reveal_type(stats.busy)  # E: int


class LineProtocol(Protocol):
    """
    A user's own client protocol.
    """

    def ask(self, question: bytes) -> Deferred[bytes]:
        return Deferred()


class LineFactory(PooledClientFactory):
    protocol = LineProtocol


class UntypedPool(Pool):
    """
    A pool subclass without a type argument, as txconnpool 0.1.1 code writes it.
    """

    clientFactory = LineFactory


class LinePool(Pool[LineProtocol]):
    clientFactory = LineFactory

    def ask(self, question: bytes) -> Deferred[bytes]:
        d: Deferred[bytes] = self.performRequest("ask", question)
        return d


async def ownProtocol(pool: LinePool, untyped: UntypedPool) -> None:
    reveal_type(await pool.ask(b"q"))  # E: bytes
    async with pool.connection() as protocol:
        reveal_type(protocol)  # E: tests.typing.memcache_user.LineProtocol
    await pool.whenReady(1.0)
    await untyped.close()
