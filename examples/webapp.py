"""
A twisted.web application that caches an expensive computation in memcached through a
MemCachePool.

    python examples/webapp.py [--memcached tcp:127.0.0.1:11211] [--port 8080]

GET /compute?n=42 derives a key from n (slowly, on purpose) and caches it; the X-Cache header
says whether memcached had it. GET /stats shows the pool's statistics as JSON. If memcached is
unreachable the application still answers, computing every time.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from typing import Any

import attrs
from twisted.internet.defer import Deferred
from twisted.logger import Logger, globalLogBeginner, textFileLogObserver
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request, Site

from txconnpool import PoolError
from txconnpool.memcache import MemCachePool

log = Logger()


def expensive(n: int) -> bytes:
    """
    The computation worth caching: a deliberately slow key derivation.
    """
    return hashlib.pbkdf2_hmac("sha256", b"%d" % n, b"txconnpool-demo", 2000).hex().encode()


class Compute(Resource):
    """
    GET /compute?n=N: the result of expensive(N), from memcached when it has it.
    """

    isLeaf = True

    def __init__(self, pool: MemCachePool, counters: dict[str, int]) -> None:
        super().__init__()
        self.pool = pool
        self.counters = counters

    def render_GET(self, request: Request) -> Any:
        try:
            n = int(request.args.get(b"n", [b"1"])[0])
        except ValueError:
            request.setResponseCode(400)
            return b"n must be an integer\n"
        d = Deferred.fromCoroutine(self.lookup(n))

        def respond(result: tuple[bytes, bool]) -> None:
            value, hit = result
            request.setHeader(b"content-type", b"text/plain")
            request.setHeader(b"x-cache", b"hit" if hit else b"miss")
            request.write(value + b"\n")
            request.finish()

        def failed(failure: Any) -> None:
            log.failure("compute failed", failure)
            request.setResponseCode(500)
            request.finish()

        d.addCallbacks(respond, failed)
        request.notifyFinish().addErrback(lambda _: d.cancel())
        return NOT_DONE_YET

    async def lookup(self, n: int) -> tuple[bytes, bool]:
        key = f"compute:{n}"
        try:
            _, cached = await self.pool.get(key)
        except PoolError as e:
            log.warn("cache unavailable: {error}", error=e)
            cached = None
        if cached is not None:
            self.counters["hits"] += 1
            return cached, True
        self.counters["misses"] += 1
        value = expensive(n)
        try:
            await self.pool.set(key, value, expireTime=300)
        except PoolError as e:
            log.warn("could not cache: {error}", error=e)
        return value, False


class Stats(Resource):
    """
    GET /stats: the pool's statistics and the cache hit counts, as JSON.
    """

    isLeaf = True

    def __init__(self, pool: MemCachePool, counters: dict[str, int]) -> None:
        super().__init__()
        self.pool = pool
        self.counters = counters

    def render_GET(self, request: Request) -> bytes:
        request.setHeader(b"content-type", b"application/json")
        body = {"pool": attrs.asdict(self.pool.poolStats()), "cache": self.counters}
        return json.dumps(body).encode() + b"\n"


def makeSite(pool: MemCachePool) -> Site:
    """
    Build the application around a pool.
    """
    counters = {"hits": 0, "misses": 0}
    root = Resource()
    root.putChild(b"compute", Compute(pool, counters))
    root.putChild(b"stats", Stats(pool, counters))
    return Site(root)


def main() -> None:
    from twisted.internet import reactor

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--memcached", default="tcp:127.0.0.1:11211")
    parser.add_argument("--port", type=int, default=8080)
    args = parser.parse_args()
    globalLogBeginner.beginLoggingTo([textFileLogObserver(sys.stdout)])
    pool = MemCachePool(args.memcached, maxClients=10)
    reactor.listenTCP(args.port, makeSite(pool), interface="127.0.0.1")
    reactor.run()


if __name__ == "__main__":
    main()
