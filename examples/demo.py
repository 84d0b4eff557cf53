"""
The demonstration: a local memcached, the web application of examples/webapp.py caching
through a MemCachePool, a few thousand HTTP requests sent with treq at real concurrency, and
the pool's statistics.

    python examples/demo.py [--requests 3000] [--concurrency 50] [--keys 300]

It needs the memcached binary (the README's demo command installs it).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import treq
from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.task import react
from twisted.web.client import HTTPConnectionPool

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from webapp import makeSite

from txconnpool.memcache import MemCachePool
from txconnpool.memcache.testing import MemcachedProcess


def describe(value: Any) -> str:
    """
    Show one of the pool's statistics: a count, discards by reason, or a timing summary.
    """
    if not isinstance(value, dict):
        return str(value)
    if "p99" in value:
        return (
            f"p50 {value['p50'] * 1000:.2f} ms, p99 {value['p99'] * 1000:.2f} ms, "
            f"max {value['max'] * 1000:.2f} ms (latest {value['count']} requests)"
        )
    counted = [f"{reason} {count}" for reason, count in value.items() if count]
    return ", ".join(counted) or "none"


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


async def main(reactor: Any, args: argparse.Namespace) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="txconnpool-demo-"))
    memcached = MemcachedProcess(workdir / "memcached.log")
    memcached.start()
    print(f"memcached {memcached.endpoint} (pid {memcached.pid})")
    pool = MemCachePool(memcached.endpoint, maxClients=args.max_clients)
    listening = reactor.listenTCP(0, makeSite(pool), interface="127.0.0.1")
    base = f"http://127.0.0.1:{listening.getHost().port}"
    print(f"web application on {base}, pool {pool!r}")
    http = HTTPConnectionPool(reactor, persistent=True)
    http.maxPersistentPerHost = args.concurrency
    try:
        latencies: list[float] = []
        statuses: dict[int, int] = {}
        hits = 0
        todo = iter(range(args.requests))

        async def worker() -> None:
            nonlocal hits
            for i in todo:
                started = reactor.seconds()
                response = await treq.get(f"{base}/compute?n={i % args.keys}", pool=http)
                await treq.content(response)
                latencies.append(reactor.seconds() - started)
                statuses[response.code] = statuses.get(response.code, 0) + 1
                hits += response.headers.getRawHeaders(b"x-cache") == [b"hit"]

        started = reactor.seconds()
        await gatherResults(
            [Deferred.fromCoroutine(worker()) for _ in range(args.concurrency)]
        )
        elapsed = reactor.seconds() - started

        response = await treq.get(f"{base}/stats", pool=http)
        stats = json.loads(await treq.content(response))
        print(
            f"{len(latencies)} requests at concurrency {args.concurrency} in {elapsed:.2f}s: "
            f"{len(latencies) / elapsed:.0f} requests/s, "
            f"p50 {percentile(latencies, 0.5) * 1000:.1f} ms, "
            f"p99 {percentile(latencies, 0.99) * 1000:.1f} ms"
        )
        print(f"HTTP statuses: {statuses}; cache hits {hits}, misses {len(latencies) - hits}")
        print("pool statistics (from /stats):")
        width = max(len(name) for name in stats["pool"])
        for name, value in stats["pool"].items():
            print(f"  {name:>{width}}: {describe(value)}")
        if statuses != {200: args.requests} or stats["pool"]["failedRequests"]:
            raise SystemExit("the demonstration saw failures")
    finally:
        await http.closeCachedConnections()
        await listening.stopListening()
        await pool.close()
        memcached.stop()


def parseArguments(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--keys", type=int, default=300, help="distinct values computed")
    parser.add_argument("--max-clients", type=int, default=10, help="the pool's maxClients")
    return parser.parse_args(argv)


if __name__ == "__main__":
    arguments = parseArguments(sys.argv[1:])
    react(lambda reactor: Deferred.fromCoroutine(main(reactor, arguments)))
