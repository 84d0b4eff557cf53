"""
The Redis client benchmark: RedisPool against txredisapi's own lazyConnectionPool, with the
same number of connections, on a redis-server of its own. Run from the repository root::

    .venv/bin/python -m benchmarks.redis [--rounds 5] [--duration 2] [--poolsize 4]
    .venv/bin/python -m benchmarks.redis --sweep      # RedisPool's pipelining depth

Workloads: C{get} (GET of existing keys) and C{mixed} (GET and SET, half each), at
concurrency 1 and 100 (that many callers, each sending its next command when the last one
answered). Measurements are interleaved: each round measures every cell (workload,
concurrency) once, and within a cell each client once in a shuffled order, so that a slow
moment of the shared machine does not favour one client. The report gives, per cell, the
median over rounds of each client's throughput, and the median of the per-round ratios
RedisPool / txredisapi.

C{--sweep} measures RedisPool alone at concurrency 100 for several C{maxRequestsPerClient}
depths, interleaved the same way, which is how C{RedisPool.defaultMaxRequestsPerClient} was
chosen.

Both write a markdown report and the raw results as JSON into C{benchmarks/results/}.
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import txredisapi
from twisted.internet import reactor as _reactor
from twisted.internet.defer import Deferred, ensureDeferred, gatherResults

from txconnpool.redis import RedisPool
from txconnpool.redis.testing import RedisProcess

reactor: Any = _reactor
ROOT = Path(__file__).resolve().parents[1]
KEYS = [b"bench:%d" % (i,) for i in range(1000)]
VALUE = b"v" * 100


def later(seconds: float) -> Deferred[None]:
    d: Deferred[None] = Deferred()
    reactor.callLater(seconds, d.callback, None)
    return d


class Client:
    """
    One client under test: how to make it, send a GET or a SET, and close it.
    """

    def __init__(self, label: str, make: Callable[[], Any]) -> None:
        self.label = label
        self._make = make
        self.handle: Any = None

    async def open(self) -> None:
        self.handle = await self._make()

    async def close(self) -> None:
        handle, self.handle = self.handle, None
        if isinstance(handle, RedisPool):
            await handle.close()
        else:
            await handle.disconnect()


def poolClient(server: RedisProcess, size: int, depth: int | None = None) -> Client:
    async def make() -> RedisPool:
        pool = RedisPool(
            server.endpoint, maxClients=size, minClients=size, maxRequestsPerClient=depth
        )
        await pool.whenReady()
        return pool

    label = "RedisPool" if depth is None else f"RedisPool depth={depth}"
    return Client(label, make)


def txredisapiClient(server: RedisProcess, size: int) -> Client:
    async def make() -> Any:
        handler = txredisapi.lazyConnectionPool(
            server.host, server.port, poolsize=size, charset=None, convertNumbers=False
        )
        await handler._connected
        return handler

    return Client("txredisapi lazyConnectionPool", make)


async def measure(
    client: Client, workload: str, concurrency: int, duration: float, warmup: float
) -> dict[str, Any]:
    """
    Run C{concurrency} callers for C{warmup} then C{duration} seconds.

    @return: The operations completed while measured, per second, and the errors.
    """
    await client.open()
    handle = client.handle
    state = {"measuring": False, "stop": False, "ops": 0, "errors": 0}
    rng = random.Random(concurrency)
    done: list[Deferred[None]] = []

    def caller() -> Deferred[None]:
        finished: Deferred[None] = Deferred()

        def step(result: object) -> None:
            if state["measuring"]:
                state["ops"] += 1
            if state["stop"]:
                finished.callback(None)
                return
            key = KEYS[rng.randrange(len(KEYS))]
            if workload == "mixed" and rng.random() < 0.5:
                d = handle.set(key, VALUE)
            else:
                d = handle.get(key)
            d.addCallbacks(step, failed)

        def failed(reason: Any) -> None:
            state["errors"] += 1
            step(None)

        step(None)
        return finished

    gc.collect()
    done = [caller() for _ in range(concurrency)]
    await later(warmup)
    state["measuring"] = True
    cpu0, wall0 = time.process_time(), time.perf_counter()
    await later(duration)
    state["measuring"] = False
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    state["stop"] = True
    await gatherResults(done)
    await client.close()
    return {
        "opsPerSecond": state["ops"] / wall,
        "cpuPerOpMicroseconds": 1e6 * cpu / max(1, state["ops"]),
        "errors": state["errors"],
    }


async def populate(server: RedisProcess) -> None:
    pool = RedisPool(server.endpoint, maxClients=4)
    await gatherResults([pool.set(key, VALUE) for key in KEYS])
    await pool.close()


async def compare(args: argparse.Namespace, server: RedisProcess) -> dict[str, Any]:
    cells = [(w, c) for w in args.workloads for c in args.concurrency]
    clients = [poolClient(server, args.poolsize), txredisapiClient(server, args.poolsize)]
    results: list[dict[str, Any]] = []
    for round_ in range(args.rounds):
        for workload, concurrency in cells:
            order = list(clients)
            random.shuffle(order)
            for client in order:
                outcome = await measure(
                    client, workload, concurrency, args.duration, args.warmup
                )
                outcome.update(
                    round=round_, workload=workload, concurrency=concurrency,
                    client=client.label,
                )
                results.append(outcome)
                print(json.dumps(outcome), file=sys.stderr, flush=True)
    return {"results": results, "reference": clients[1].label, "subject": clients[0].label}


async def sweep(args: argparse.Namespace, server: RedisProcess) -> dict[str, Any]:
    clients = [poolClient(server, args.poolsize, depth) for depth in args.depths]
    results: list[dict[str, Any]] = []
    for round_ in range(args.rounds):
        for workload in args.workloads:
            order = list(clients)
            random.shuffle(order)
            for client in order:
                outcome = await measure(client, workload, 100, args.duration, args.warmup)
                outcome.update(round=round_, workload=workload, concurrency=100,
                               client=client.label)
                results.append(outcome)
                print(json.dumps(outcome), file=sys.stderr, flush=True)
    return {"results": results}


def _median(results: list[dict[str, Any]], field: str = "opsPerSecond", **match: Any) -> float:
    values = [r[field] for r in results if all(r[k] == v for k, v in match.items())]
    return statistics.median(values)


def renderCompare(report: dict[str, Any], args: argparse.Namespace) -> str:
    results = report["results"]
    subject, reference = report["subject"], report["reference"]
    lines = [
        "# RedisPool against txredisapi's lazyConnectionPool",
        "",
        f"{args.poolsize} connections each, {args.rounds} interleaved rounds of "
        f"{args.duration} s measurements (after {args.warmup} s of warm-up); medians over "
        f"rounds. {platform.python_implementation()} {platform.python_version()}, "
        f"{platform.machine()}.",
        "",
        "| workload | concurrency | RedisPool ops/s | txredisapi ops/s | ratio (median of "
        "per-round ratios) | RedisPool CPU µs/op | txredisapi CPU µs/op |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for workload in args.workloads:
        for concurrency in args.concurrency:
            ratios = []
            for round_ in range(args.rounds):
                mine = _median(results, workload=workload, concurrency=concurrency,
                               client=subject, round=round_)
                theirs = _median(results, workload=workload, concurrency=concurrency,
                                 client=reference, round=round_)
                ratios.append(mine / theirs)
            cell = {"workload": workload, "concurrency": concurrency}
            mine = _median(results, client=subject, **cell)
            theirs = _median(results, client=reference, **cell)
            cpu = "cpuPerOpMicroseconds"
            lines.append(
                f"| {workload} | {concurrency} | {mine:,.0f} | {theirs:,.0f} | "
                f"{statistics.median(ratios):.2f}x | "
                f"{_median(results, cpu, client=subject, **cell):.1f} | "
                f"{_median(results, cpu, client=reference, **cell):.1f} |"
            )
    errors = sum(r["errors"] for r in results)
    lines += ["", f"Errors: {errors}.", ""]
    return "\n".join(lines)


def renderSweep(report: dict[str, Any], args: argparse.Namespace) -> str:
    results = report["results"]
    lines = [
        "# RedisPool pipelining depth (maxRequestsPerClient), concurrency 100",
        "",
        f"{args.poolsize} connections, {args.rounds} interleaved rounds of {args.duration} s; "
        "medians over rounds, and the ratio to depth 1.",
        "",
        "| depth | "
        + " | ".join(f"{w} ops/s | {w} CPU µs/op" for w in args.workloads)
        + " |",
        "| --- |" + " --- | --- |" * len(args.workloads),
    ]
    for depth in args.depths:
        label = f"RedisPool depth={depth}"
        cells = []
        for workload in args.workloads:
            value = _median(results, workload=workload, client=label)
            base = _median(results, workload=workload, client=f"RedisPool depth={args.depths[0]}")
            cpu = _median(results, "cpuPerOpMicroseconds", workload=workload, client=label)
            cells.append(f"{value:,.0f} ({value / base:.2f}x) | {cpu:.1f}")
        lines.append(f"| {depth} | " + " | ".join(cells) + " |")
    lines += ["", f"Errors: {sum(r['errors'] for r in results)}.", ""]
    return "\n".join(lines)


def parseArguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.redis", description=__doc__)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--duration", type=float, default=2.0)
    parser.add_argument("--warmup", type=float, default=0.5)
    parser.add_argument("--poolsize", type=int, default=4)
    parser.add_argument("--workloads", nargs="+", default=["get", "mixed"],
                        choices=["get", "mixed"])
    parser.add_argument("--concurrency", nargs="+", type=int, default=[1, 100])
    parser.add_argument("--sweep", action="store_true",
                        help="measure RedisPool's pipelining depths instead")
    parser.add_argument("--depths", nargs="+", type=int,
                        default=[1, 2, 4, 8, 16, 32, 64, 128])
    parser.add_argument("--output-dir", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--render", type=Path, metavar="JSON",
                        help="only render the report of an earlier run's JSON")
    return parser.parse_args(argv)


async def main(args: argparse.Namespace) -> None:
    args.output_dir.mkdir(parents=True, exist_ok=True)
    if args.render is not None:
        report = json.loads(args.render.read_text())
        print(renderSweep(report, args) if args.sweep else renderCompare(report, args))
        return
    directory = Path(tempfile.mkdtemp(prefix="redis-bench-"))
    server = RedisProcess(directory / "redis.log")
    server.start()
    try:
        await populate(server)
        if args.sweep:
            report = await sweep(args, server)
            text, name = renderSweep(report, args), "redis-depth"
        else:
            report = await compare(args, server)
            text, name = renderCompare(report, args), "redis"
    finally:
        server.stop()
    (args.output_dir / f"{name}.md").write_text(text)
    (args.output_dir / f"{name}.json").write_text(json.dumps(report, indent=1))
    print(text)


def run(argv: list[str] | None = None) -> None:
    args = parseArguments(argv)
    failure: list[Any] = []

    def done(result: object) -> None:
        if result is not None:
            failure.append(result)
        reactor.stop()

    reactor.callWhenRunning(lambda: ensureDeferred(main(args)).addBoth(done))
    reactor.run()
    if failure:
        failure[0].raiseException()


if __name__ == "__main__":
    run()
