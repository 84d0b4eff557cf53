"""
The cost of queueing in a pool: per-request time and memory with 100 to 100,000 requests
waiting for a connection.

    .venv/bin/python benchmarks/queueing.py [--rounds 7]

Each measurement queues N requests on a pool whose only connection is still being opened
(a fake endpoint: no network, so only the pool's own work is timed), then opens the
connection and lets the pool serve them all; the protocol answers at once. Sizes are measured
in interleaved rounds, in a shuffled order each round, and the medians are reported, with the
ratio to the smallest size. It runs with the garbage collector on (as applications do) and
off, since a full collection visits every live object, which grows with the queue whatever
the queue does.
"""

from __future__ import annotations

import argparse
import gc
import random
import statistics
import time
import tracemalloc
from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.internet.protocol import Protocol
from twisted.internet.task import Clock

from txconnpool import Pool, PooledClientFactory
from txconnpool.testing import FakeEndpoint

SIZES = (100, 1_000, 10_000, 100_000)


class Echo(Protocol):
    """
    Answers every request at once.
    """

    def echo(self, value: object) -> Deferred[object]:
        return succeed(value)


class EchoFactory(PooledClientFactory):
    protocol = Echo


class EchoPool(Pool[Echo]):
    clientFactory = EchoFactory


def makePool() -> tuple[EchoPool, FakeEndpoint]:
    clock = Clock()
    endpoint = FakeEndpoint(clock)
    return EchoPool(endpoint, maxClients=1, reactor=clock, idleTimeout=None), endpoint


def measure(n: int) -> float:
    """
    @return: Seconds per request to queue C{n} requests and serve them.
    """
    pool, endpoint = makePool()
    started = time.perf_counter()
    results = [pool.performRequest("echo", i) for i in range(n)]
    endpoint.attempts[0].succeed()
    elapsed = time.perf_counter() - started
    assert all(d.called for d in results)
    return elapsed / n


def memoryPerWaiter(n: int) -> float:
    """
    @return: Bytes allocated per waiting request (the request and its Deferred).
    """
    pool, endpoint = makePool()
    keep: list[Any] = [None] * n
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for i in range(n):
        keep[i] = pool.performRequest("echo", i)
    used = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    endpoint.attempts[0].succeed()
    return used / n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    rows = []
    for collector in ("on", "off"):
        if collector == "off":
            gc.disable()
        samples: dict[int, list[float]] = {n: [] for n in SIZES}
        for _ in range(args.rounds):
            order = list(SIZES)
            random.shuffle(order)
            for n in order:
                samples[n].append(measure(n))
        base = statistics.median(samples[SIZES[0]])
        for n in SIZES:
            median = statistics.median(samples[n])
            rows.append((collector, n, median * 1e6, median / base))
        gc.enable()
    print("| garbage collector | requests waiting | µs per request (median) | x 100 waiting |")
    print("|---|---:|---:|---:|")
    for collector, n, micros, ratio in rows:
        print(f"| {collector} | {n:,} | {micros:.2f} | {ratio:.2f} |")
    print()
    print(f"Memory per waiting request: {memoryPerWaiter(100_000):.0f} bytes (100,000 waiting).")


if __name__ == "__main__":
    main()
