"""
One measurement in a process of its own, so that its CPU time and peak memory belong to one
client alone::

    python -m benchmarks.memcache.worker '{"client": "pool", "workload": "get", ...}'

C{concurrency} coroutines each run operations back to back. After C{warmup} seconds the
measurement window opens for C{duration} seconds:

  - throughput counts the operations that complete inside the window;
  - latency is measured on the same operations, plus each operation still waiting when the
    window closes that was already waiting when it opened, counted with the time it has waited
    so far (a lower bound). Without these, a client that lets a few callers monopolise its
    connections while the others starve in its queue would look fast: the starving requests
    never complete inside the window, so they would silently drop out of the sample;
  - CPU time is the process's user+system time (C{getrusage}) read at both ends of the window.

Peak memory is the process's peak resident set size (see L{peakRss}). The result is one line
of JSON on standard output.
"""

from __future__ import annotations

import json
import math
import resource
import sys
import time
from collections.abc import Awaitable, Callable
from operator import itemgetter
from typing import Any

from .specs import KEY_COUNT, WORKLOADS, Workload

perf_counter = time.perf_counter


class Recorder:
    """
    The counters of one measurement.
    """

    def __init__(self, concurrency: int) -> None:
        self.measuring = False
        self.stopped = False
        self.latencies: list[float] = []
        self.starved: list[float] = []
        self.inflight = [0.0] * concurrency
        self.errors = 0
        self.misses = 0
        self.firstError: str | None = None
        self._t0 = self._t1 = 0.0
        self._ru0: Any = None
        self._ru1: Any = None

    def start(self) -> None:
        """
        Open the measurement window.
        """
        self._ru0 = resource.getrusage(resource.RUSAGE_SELF)
        self._t0 = perf_counter()
        self.measuring = True

    def stop(self) -> None:
        """
        Close the measurement window and tell the workers to finish.
        """
        self.measuring = False
        self.stopped = True
        self._t1 = perf_counter()
        self._ru1 = resource.getrusage(resource.RUSAGE_SELF)
        self.starved = [self._t1 - t for t in self.inflight if 0.0 < t < self._t0]

    def failed(self, exc: BaseException) -> None:
        """
        Count an operation that failed.
        """
        self.errors += 1
        if self.firstError is None:
            self.firstError = f"{type(exc).__name__}: {exc}"

    def result(self) -> dict[str, Any]:
        """
        The measurement, as the runner reads it.
        """
        ops = len(self.latencies)
        lat = sorted(self.latencies + self.starved)
        elapsed = self._t1 - self._t0
        user = self._ru1.ru_utime - self._ru0.ru_utime
        system = self._ru1.ru_stime - self._ru0.ru_stime

        def pct(q: float) -> float | None:
            return lat[max(0, math.ceil(q * len(lat)) - 1)] if lat else None

        return {
            "ops": ops,
            "elapsed": elapsed,
            "opsPerSec": ops / elapsed if elapsed > 0 else 0.0,
            "p50": pct(0.50),
            "p99": pct(0.99),
            "max": lat[-1] if lat else None,
            "starved": len(self.starved),
            "cpuUser": user,
            "cpuSys": system,
            "cpuPerOp": (user + system) / ops if ops else None,
            "maxRssKiB": peakRss(),
            "ruMaxRssKiB": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
            "errors": self.errors,
            "misses": self.misses,
            "firstError": self.firstError,
        }


def peakRss() -> int:
    """
    The peak resident memory of this process, in KiB.

    On Linux, C{getrusage}'s C{ru_maxrss} is carried across C{fork} and C{exec}: a worker
    started by a runner that has imported Twisted would report at least the runner's size. The
    address space's own high-water mark (C{VmHWM}) starts afresh at C{exec}, so it is used when
    the system has it.
    """
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


async def drive(
    index: int,
    workload: Workload,
    keys: list[bytes],
    value: bytes,
    get: Callable[[bytes], Awaitable[Any]],
    extract: Callable[[Any], bytes | None],
    store: Callable[[bytes, bytes], Awaitable[Any]],
    rec: Recorder,
    pause: Callable[[], Awaitable[Any]],
) -> None:
    """
    One worker: operations back to back until the recorder stops (the keys and the value are
    shared by all workers, so that memory grows with the client's own per-caller state only).
    """
    size = len(value)
    setEvery = workload.setEvery
    latencies = rec.latencies
    inflight = rec.inflight
    n = index * 7
    while not rec.stopped:
        key = keys[n % KEY_COUNT]
        n += 1
        start = inflight[index] = perf_counter()
        try:
            if setEvery and n % setEvery == 0:
                await store(key, value)
            else:
                got = extract(await get(key))
                if got is None or len(got) != size:
                    rec.misses += 1
        except Exception as exc:
            inflight[index] = 0.0
            rec.failed(exc)
            await pause()
            continue
        inflight[index] = 0.0
        if rec.measuring:
            latencies.append(perf_counter() - start)


def runTwisted(spec: dict[str, Any]) -> dict[str, Any]:
    """
    Measure a Twisted client (C{pool}, C{pool-exclusive}, C{meta} or C{twisted}) on the epoll
    reactor.
    """
    from twisted.internet import epollreactor

    epollreactor.install()
    from twisted.internet import defer, reactor, task

    workload = WORKLOADS[spec["workload"]]
    kind = spec["client"]
    results: list[dict[str, Any]] = []

    def pause() -> Any:
        return task.deferLater(reactor, 0.001, lambda: None)

    async def main() -> None:
        close: Callable[[], Any]
        if kind == "twisted":
            from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
            from twisted.protocols.memcache import MemCacheProtocol

            endpoint = TCP4ClientEndpoint(reactor, spec["host"], spec["port"])
            protocol = await connectProtocol(endpoint, MemCacheProtocol())
            get: Callable[[bytes], Awaitable[Any]] = protocol.get
            store: Callable[[bytes, bytes], Awaitable[Any]] = protocol.set

            def close() -> Any:
                protocol.transport.loseConnection()

        else:
            from txconnpool.memcache import MemCachePool, MetaMemCachePool

            poolClass = MetaMemCachePool if kind == "meta" else MemCachePool
            pool = poolClass(f"tcp:{spec['host']}:{spec['port']}", **spec["poolOptions"])
            close = pool.close
            if kind in ("pool", "meta"):
                get, store = pool.get, pool.set
            else:
                connection = pool.connection

                async def get(key: bytes) -> Any:
                    async with connection() as protocol:
                        return await protocol.get(key)

                async def store(key: bytes, value: bytes) -> Any:
                    async with connection() as protocol:
                        return await protocol.set(key, value)

        rec = Recorder(spec["concurrency"])
        keys = [workload.key(i) for i in range(KEY_COUNT)]
        value = workload.value()
        extract = itemgetter(1)
        workers = [
            defer.ensureDeferred(drive(i, workload, keys, value, get, extract, store, rec, pause))
            for i in range(spec["concurrency"])
        ]
        await task.deferLater(reactor, spec["warmup"], lambda: None)
        rec.start()
        await task.deferLater(reactor, spec["duration"], lambda: None)
        rec.stop()
        await defer.gatherResults(workers)
        results.append(rec.result())
        await defer.maybeDeferred(close)

    def start(r: Any) -> Any:
        return defer.ensureDeferred(main())

    try:
        task.react(start)
    except SystemExit as exit:
        if exit.code:
            raise
    return results[0]


def runAsyncio(spec: dict[str, Any]) -> dict[str, Any]:
    """
    Measure an asyncio client: C{aiomcache} on the default event loop, C{emcache} on uvloop.
    """
    import asyncio

    workload = WORKLOADS[spec["workload"]]
    kind = spec["client"]

    def pause() -> Any:
        return asyncio.sleep(0.001)

    async def main() -> dict[str, Any]:
        if kind == "aiomcache":
            import aiomcache

            client: Any = aiomcache.Client(spec["host"], spec["port"])

            def extract(item: Any) -> bytes | None:
                return item  # type: ignore[no-any-return]

        else:
            import emcache

            # Its default 1 s timeout fails requests that its LIFO queue starves at high
            # concurrency; no client here gives up on a request.
            client = await emcache.create_client(
                [emcache.MemcachedHostAddress(spec["host"], spec["port"])], timeout=None
            )

            def extract(item: Any) -> bytes | None:
                return None if item is None else item.value  # type: ignore[no-any-return]

        rec = Recorder(spec["concurrency"])
        keys = [workload.key(i) for i in range(KEY_COUNT)]
        value = workload.value()
        workers = [
            asyncio.ensure_future(
                drive(i, workload, keys, value, client.get, extract, client.set, rec, pause)
            )
            for i in range(spec["concurrency"])
        ]
        await asyncio.sleep(spec["warmup"])
        rec.start()
        await asyncio.sleep(spec["duration"])
        rec.stop()
        await asyncio.gather(*workers)
        await client.close()
        return rec.result()

    if kind == "emcache":
        import uvloop

        return uvloop.run(main())  # type: ignore[no-any-return]
    return asyncio.run(main())


def main(argv: list[str]) -> int:
    """
    Run the measurement described by the JSON in C{argv[1]} and print its result.
    """
    spec = json.loads(argv[1])
    if spec["client"] in ("aiomcache", "emcache"):
        result = runAsyncio(spec)
    else:
        result = runTwisted(spec)
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
