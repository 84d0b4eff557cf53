"""
MemCachePool with async/await: concurrent requests, an exclusive connection, statistics and a
clean close.

    python examples/modern_async.py [endpoint]

The endpoint defaults to tcp:127.0.0.1:11211; unix:/path/to/memcached.sock works too.
"""

import sys

from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.task import react

from txconnpool.memcache import MemCachePool


async def main(reactor, endpoint="tcp:127.0.0.1:11211"):
    pool = MemCachePool(endpoint, maxClients=4)
    try:
        # 100 requests at once: MemCachePool sends up to 128 at a time on one connection
        # (pipelining), and concurrent gets travel together as one multi-key get.
        await gatherResults([pool.set(f"user:{i}", b"%d" % (i * i)) for i in range(100)])
        values = await gatherResults([pool.get(f"user:{i}") for i in range(100)])
        print("user:9 =", values[9][1].decode())

        # Several commands on one connection, with nothing else in between.
        async with pool.connection() as memcache:
            await memcache.set(b"visits", b"0")
            for _ in range(3):
                visits = await memcache.increment(b"visits")
        print("visits =", visits)

        print(pool.poolStats())
    finally:
        await pool.close()


if __name__ == "__main__":
    react(lambda reactor: Deferred.fromCoroutine(main(reactor, *sys.argv[1:])))
