"""
A twisted.web application protected from cache stampedes by MetaMemCachePool.getOrCompute:
however many requests ask at once for a report that is not cached, it is computed once.

    python examples/stampede_web.py [--memcached tcp:127.0.0.1:11211] [--port 8080]
    python examples/stampede_web.py [--memcached ...] --demo

GET /report?id=N computes report N slowly (a fifth of a second, standing for an expensive
database query) and caches it for a minute; GET /invalidate?id=N marks it stale, so that the
next request recomputes it while the others are served the stale report; GET /stats counts
the computations. --demo serves the application on a free port, sends it 100 concurrent
requests for a cold report, then invalidates it and sends 100 more, and prints what happened.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from typing import Any

from twisted.internet import task
from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.protocol import Protocol, connectionDone
from twisted.logger import Logger, globalLogBeginner, textFileLogObserver
from twisted.python.failure import Failure
from twisted.web.client import Agent, HTTPConnectionPool, ResponseDone
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request, Site

from txconnpool import PoolError
from txconnpool.memcache import MetaMemCachePool

log = Logger()


class Reports:
    """
    The expensive computation, and how often it ran.
    """

    def __init__(self, reactor: Any, delay: float = 0.2) -> None:
        self.reactor = reactor
        self.delay = delay
        self.computations = 0

    async def compute(self, reportId: int) -> bytes:
        self.computations += 1
        generation = self.computations
        await task.deferLater(self.reactor, self.delay, lambda: None)
        return b"report %d (computation %d)" % (reportId, generation)


class Report(Resource):
    """
    GET /report?id=N: report N, from memcached, computed once on a miss.
    """

    isLeaf = True

    def __init__(self, pool: MetaMemCachePool, reports: Reports) -> None:
        super().__init__()
        self.pool = pool
        self.reports = reports

    def render_GET(self, request: Request) -> Any:
        try:
            reportId = int(request.args.get(b"id", [b"1"])[0])
        except ValueError:
            request.setResponseCode(400)
            return b"id must be an integer\n"
        d = self.pool.getOrCompute(
            f"report:{reportId}", lambda: self.reports.compute(reportId), ttl=60, lockTtl=10
        )

        def respond(body: bytes) -> None:
            request.setHeader(b"content-type", b"text/plain")
            request.write(body + b"\n")
            request.finish()

        def failed(failure: Any) -> None:
            log.failure("report failed", failure)
            request.setResponseCode(503 if failure.check(PoolError) else 500)
            request.finish()

        d.addCallbacks(respond, failed)
        request.notifyFinish().addErrback(lambda _: d.cancel())
        return NOT_DONE_YET


class Invalidate(Resource):
    """
    GET /invalidate?id=N: mark report N stale.
    """

    isLeaf = True

    def __init__(self, pool: MetaMemCachePool) -> None:
        super().__init__()
        self.pool = pool

    def render_GET(self, request: Request) -> Any:
        reportId = int(request.args.get(b"id", [b"1"])[0])
        d = self.pool.invalidate(f"report:{reportId}")
        d.addCallback(lambda found: request.write(b"stale\n" if found else b"not cached\n"))
        d.addErrback(lambda failure: request.setResponseCode(503))
        d.addBoth(lambda _: request.finish())
        return NOT_DONE_YET


class Stats(Resource):
    """
    GET /stats: how many times a report was computed, as JSON.
    """

    isLeaf = True

    def __init__(self, reports: Reports) -> None:
        super().__init__()
        self.reports = reports

    def render_GET(self, request: Request) -> bytes:
        request.setHeader(b"content-type", b"application/json")
        return json.dumps({"computations": self.reports.computations}).encode() + b"\n"


class Body(Protocol):
    """
    Collects a response body.
    """

    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.done: Deferred[bytes] = Deferred()

    def dataReceived(self, data: bytes) -> None:
        self.chunks.append(data)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        if reason.check(ResponseDone):
            self.done.callback(b"".join(self.chunks))
        else:
            self.done.errback(reason)


def makeSite(pool: MetaMemCachePool, reports: Reports) -> Site:
    """
    Build the application around a pool.
    """
    root = Resource()
    root.putChild(b"report", Report(pool, reports))
    root.putChild(b"invalidate", Invalidate(pool))
    root.putChild(b"stats", Stats(reports))
    return Site(root)


async def demo(reactor: Any, memcached: str) -> None:
    """
    Serve the application on a free port and send it a stampede.
    """
    pool = MetaMemCachePool(memcached, maxClients=4)
    reports = Reports(reactor)
    listening = reactor.listenTCP(0, makeSite(pool, reports), interface="127.0.0.1")
    http = HTTPConnectionPool(reactor)
    http.maxPersistentPerHost = 100
    agent = Agent(reactor, pool=http)
    url = f"http://127.0.0.1:{listening.getHost().port}"

    async def fetch(path: str) -> bytes:
        response = await agent.request(b"GET", (url + path).encode())
        collector = Body()
        response.deliverBody(collector)
        body = await collector.done
        assert response.code == 200, (response.code, body)
        return body

    async def stampede() -> Counter[bytes]:
        bodies = await gatherResults(
            [Deferred.fromCoroutine(fetch("/report?id=7")) for _ in range(100)]
        )
        return Counter(bodies)

    try:
        await pool.delete("report:7")
        cold = await stampede()
        print(f"cold report: {sum(cold.values())} responses, "
              f"{reports.computations} computation")
        await fetch("/invalidate?id=7")
        before = reports.computations
        stale = await stampede()
        served = stale[b"report 7 (computation 1)\n"]
        print(f"after invalidate: {sum(stale.values())} responses ({served} of them stale), "
              f"{reports.computations - before} computation more")
        print("stats:", (await fetch("/stats")).decode().strip())
    finally:
        await http.closeCachedConnections()
        await listening.stopListening()
        await pool.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--memcached", default="tcp:127.0.0.1:11211")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--demo", action="store_true", help="send a stampede and report")
    args = parser.parse_args()
    if args.demo:
        task.react(lambda reactor: Deferred.fromCoroutine(demo(reactor, args.memcached)))
        return
    from twisted.internet import reactor

    globalLogBeginner.beginLoggingTo([textFileLogObserver(sys.stdout)])
    pool = MetaMemCachePool(args.memcached, maxClients=10)
    reactor.listenTCP(args.port, makeSite(pool, Reports(reactor)), interface="127.0.0.1")
    reactor.run()  # type: ignore[attr-defined]


if __name__ == "__main__":
    main()
