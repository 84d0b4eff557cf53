"""
The sharded memcached benchmark: MemCacheCluster against pylibmc (libmemcached, ketama) and
pymemcache's HashClient, over three local memcached servers. Run from the repository root::

    .venv/bin/python -m benchmarks.cluster [--quick] [--rounds N] [--duration S]

Workloads: C{get} (100-byte values) and C{mix} (50% get, 50% set) at C{--concurrency}
callers (default 100), and C{multi}: a C{getMultiple} of 100 keys spanning the three nodes per
operation, at C{--multi-concurrency} callers (default 10). Clients:

  - C{cluster}: MemCacheCluster with its default settings, the callers coroutines on one
    reactor;
  - C{pylibmc-pool}: pylibmc as a Twisted application uses a blocking client, the callers
    coroutines on one reactor calling it through C{deferToThreadPool} on a thread pool of
    C{--threads} threads (default 10, the reactor's own size), each thread with a client of its
    own (pylibmc clients are not thread-safe);
  - C{pylibmc} and C{pymemcache}: no reactor, each caller a thread with a client of its own,
    the most favourable way to run them.

Every key is stored on every server, so each client finds every key whatever its placement.
Each measurement runs in a process of its own, in interleaved rounds with a shuffled client
order; the report gives each client's median throughput and the median of its per-round ratio
to C{pylibmc} (threads). It writes C{cluster.md} and C{cluster.json} into C{--output-dir}
(C{benchmarks/results/} by default).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
KEYS = 1000
VALUE = b"v" * 100
CLIENTS = ("cluster", "pylibmc", "pylibmc-pool", "pymemcache")
LABELS = {
    "cluster": "MemCacheCluster (Twisted)",
    "pylibmc-pool": "pylibmc, ketama, Twisted thread pool of 10",
    "pylibmc": "pylibmc, ketama, 1 thread per caller",
    "pymemcache": "pymemcache HashClient, 1 thread per caller",
}
REFERENCE = "pylibmc"


def key(i: int) -> bytes:
    return b"bench:%d" % i


def multiKeys(i: int) -> list[bytes]:
    start = (i * 37) % KEYS
    return [key((start + j) % KEYS) for j in range(100)]


# Workers: one measurement each, in a process of their own


def clusterOperations(spec: dict[str, Any]) -> tuple[Any, Any, Any, Any]:
    """
    MemCacheCluster's get, set and getMultiple, and its close.
    """
    from txconnpool.memcache import MemCacheCluster

    cluster = MemCacheCluster([f"tcp:127.0.0.1:{p}" for p in spec["ports"]])
    return cluster.get, cluster.set, cluster.getMultiple, cluster.close


def threadPoolOperations(spec: dict[str, Any]) -> tuple[Any, Any, Any, Any]:
    """
    pylibmc's get, set and get_multi run in a Twisted thread pool (deferToThreadPool), each
    thread with a pylibmc client of its own, as a Twisted application would use pylibmc.
    """
    import pylibmc
    from twisted.internet import reactor
    from twisted.internet.threads import deferToThreadPool
    from twisted.python.threadpool import ThreadPool

    base = pylibmc.Client([f"127.0.0.1:{p}" for p in spec["ports"]], binary=False,
                          behaviors={"ketama_weighted": True, "tcp_nodelay": True})
    local = threading.local()

    def client() -> Any:
        mine = getattr(local, "client", None)
        if mine is None:
            mine = local.client = base.clone()
        return mine

    pool = ThreadPool(minthreads=spec["threads"], maxthreads=spec["threads"])
    pool.start()

    def get(k: bytes) -> Any:
        return deferToThreadPool(reactor, pool, lambda: client().get(k))

    def store(k: bytes, v: bytes) -> Any:
        return deferToThreadPool(reactor, pool, lambda: client().set(k, v))

    def multi(keys: list[bytes]) -> Any:
        return deferToThreadPool(reactor, pool, lambda: client().get_multi(keys))

    def close() -> Any:
        from twisted.internet.defer import succeed

        pool.stop()
        return succeed(None)

    return get, store, multi, close


def runCluster(spec: dict[str, Any]) -> dict[str, Any]:
    from twisted.internet import defer, reactor

    make = clusterOperations if spec["client"] == "cluster" else threadPoolOperations
    get, store, getMultiple, close = make(spec)
    counts = {"ops": 0, "errors": 0, "measuring": False, "stopped": False}
    workload = spec["workload"]

    async def caller(index: int) -> None:
        i = index
        while not counts["stopped"]:
            i += 7919
            try:
                if workload == "multi":
                    await getMultiple(multiKeys(i))
                elif workload == "mix" and i % 2:
                    await store(key(i % KEYS), VALUE)
                else:
                    await get(key(i % KEYS))
            except Exception:
                counts["errors"] += 1
            if counts["measuring"]:
                counts["ops"] += 1

    result: dict[str, Any] = {}

    def start() -> None:
        counts["measuring"] = True
        result["t0"] = time.perf_counter()
        result["cpu0"] = time.process_time()

    def stop() -> None:
        counts["measuring"] = False
        result["elapsed"] = time.perf_counter() - result["t0"]
        result["cpu"] = time.process_time() - result["cpu0"]
        counts["stopped"] = True

    async def main() -> None:
        await get(key(0))
        callers = [defer.Deferred.fromCoroutine(caller(i)) for i in range(spec["concurrency"])]
        reactor.callLater(spec["warmup"], start)  # type: ignore[attr-defined]
        reactor.callLater(spec["warmup"] + spec["duration"], stop)  # type: ignore[attr-defined]
        await defer.gatherResults(callers)
        await close()

    d = defer.Deferred.fromCoroutine(main())
    d.addBoth(lambda r: reactor.stop())  # type: ignore[attr-defined]
    reactor.run()  # type: ignore[attr-defined]
    return {"ops": counts["ops"], "errors": counts["errors"], "elapsed": result["elapsed"],
            "cpu": result["cpu"]}


def runThreads(spec: dict[str, Any]) -> dict[str, Any]:
    ports = spec["ports"]
    if spec["client"] == "pylibmc":
        import pylibmc

        base = pylibmc.Client([f"127.0.0.1:{p}" for p in ports], binary=False,
                              behaviors={"ketama_weighted": True, "tcp_nodelay": True})

        def makeClient() -> Any:
            return base.clone()

        def multi(client: Any, keys: list[bytes]) -> Any:
            return client.get_multi(keys)
    else:
        from pymemcache.client.hash import HashClient

        def makeClient() -> Any:
            return HashClient([("127.0.0.1", p) for p in ports], no_delay=True)

        def multi(client: Any, keys: list[bytes]) -> Any:
            return client.get_many(keys)

    workload = spec["workload"]
    state = {"measuring": False, "stopped": False}
    counts = [0] * spec["concurrency"]
    errors = [0] * spec["concurrency"]

    def caller(index: int) -> None:
        client = makeClient()
        i = index
        while not state["stopped"]:
            i += 7919
            try:
                if workload == "multi":
                    multi(client, multiKeys(i))
                elif workload == "mix" and i % 2:
                    client.set(key(i % KEYS), VALUE)
                else:
                    client.get(key(i % KEYS))
            except Exception:
                errors[index] += 1
            if state["measuring"]:
                counts[index] += 1

    threads = [threading.Thread(target=caller, args=(i,), daemon=True)
               for i in range(spec["concurrency"])]
    for thread in threads:
        thread.start()
    time.sleep(spec["warmup"])
    state["measuring"] = True
    t0, cpu0 = time.perf_counter(), time.process_time()
    time.sleep(spec["duration"])
    state["measuring"] = False
    elapsed, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    state["stopped"] = True
    for thread in threads:
        thread.join(timeout=10)
    return {"ops": sum(counts), "errors": sum(errors), "elapsed": elapsed, "cpu": cpu}


def worker(spec: dict[str, Any]) -> None:
    run = runCluster if spec["client"] in ("cluster", "pylibmc-pool") else runThreads
    result = run(spec)
    result["opsPerSec"] = result["ops"] / result["elapsed"]
    print(json.dumps(result))


# The runner


def measure(args: argparse.Namespace, ports: list[int], client: str, workload: str,
            concurrency: int) -> dict[str, Any]:
    spec = {"client": client, "workload": workload, "concurrency": concurrency,
            "warmup": args.warmup, "duration": args.duration, "ports": ports,
            "threads": args.threads}
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.cluster", "--worker", json.dumps(spec)],
        cwd=ROOT, env=env, capture_output=True, text=True,
        timeout=args.warmup + args.duration + 60,
    )
    if done.returncode != 0 or not done.stdout.strip():
        return {"failed": done.stderr.strip().splitlines()[-1:] or ["no output"]}
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def populate(ports: list[int]) -> None:
    import socket

    for port in ports:
        with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
            s.sendall(b"".join(
                b"set %s 0 0 %d noreply\r\n%s\r\n" % (key(i), len(VALUE), VALUE)
                for i in range(KEYS)
            ) + b"version\r\n")
            reply = b""
            while not reply.endswith(b"\r\n"):
                reply += s.recv(100)


def report(results: list[dict[str, Any]], cells: list[tuple[str, int]],
           meta: dict[str, Any]) -> str:
    lines = [
        "# Sharded memcached: MemCacheCluster, pylibmc and pymemcache", "",
        f"{meta['date']}, {meta['rounds']} rounds of {meta['duration']} s after "
        f"{meta['warmup']} s of warm-up, Python {meta['python']}, {meta['cpus']} CPUs, "
        f"load average {meta['loadAverage']}; three memcached {meta['memcached']} on "
        "127.0.0.1, sharing the CPUs with the clients.", "",
        "Operations per second (median over rounds), and the medians of the per-round ratios "
        "to pylibmc in threads and to pylibmc in a Twisted thread pool. A `multi` operation is "
        "one getMultiple of 100 keys.", "",
        "| workload | callers | client | ops/s | ratio to pylibmc (threads) | "
        "ratio to pylibmc (Twisted thread pool) | CPU µs/op | errors |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for workload, concurrency in cells:
        cell = [r for r in results if r["workload"] == workload
                and r["concurrency"] == concurrency and "failed" not in r]
        for client in CLIENTS:
            mine = [r for r in cell if r["client"] == client]
            if not mine:
                continue
            ratio = [_ratio(mine, cell, reference) for reference in (REFERENCE, "pylibmc-pool")]
            ops = statistics.median(r["opsPerSec"] for r in mine)
            cpu = statistics.median(r["cpu"] / max(r["ops"], 1) * 1e6 for r in mine)
            label = LABELS[client].replace("of 10", f"of {meta['threads']}")
            lines.append(f"| {workload} | {concurrency} | {label} | {ops:,.0f} | {ratio[0]} | "
                         f"{ratio[1]} | {cpu:.0f} | {sum(r['errors'] for r in mine)} |")
    failed = [r for r in results if "failed" in r]
    if failed:
        lines += ["", f"{len(failed)} measurements failed: {failed[:3]}"]
    return "\n".join(lines) + "\n"


def _ratio(mine: list[dict[str, Any]], cell: list[dict[str, Any]], reference: str) -> str:
    """
    The median of the per-round ratios of C{mine} to C{reference} in the same cell.
    """
    ratios = []
    for r in mine:
        ref = [x for x in cell if x["client"] == reference and x["round"] == r["round"]]
        if ref and ref[0]["opsPerSec"]:
            ratios.append(r["opsPerSec"] / ref[0]["opsPerSec"])
    return f"{statistics.median(ratios):.2f}x" if ratios else "-"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.cluster")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--quick", action="store_true", help="1 round of 0.5 s measurements")
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--duration", type=float, default=None)
    parser.add_argument("--warmup", type=float, default=None)
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--multi-concurrency", type=int, default=10, dest="multiConcurrency")
    parser.add_argument("--threads", type=int, default=10,
                        help="threads of pylibmc-pool's thread pool (default 10, the size of "
                             "the reactor's own)")
    parser.add_argument("--clients", nargs="+", default=list(CLIENTS), choices=CLIENTS)
    parser.add_argument("--workloads", nargs="+", default=["get", "mix", "multi"],
                        choices=["get", "mix", "multi"])
    parser.add_argument("--output-dir", type=Path, default=ROOT / "benchmarks" / "results",
                        dest="outputDir")
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args(argv)
    if args.worker:
        worker(json.loads(args.worker))
        return 0
    args.rounds = args.rounds or (1 if args.quick else 5)
    args.duration = args.duration or (0.5 if args.quick else 2.0)
    args.warmup = args.warmup if args.warmup is not None else (0.2 if args.quick else 0.5)

    sys.path.insert(0, str(ROOT))
    from benchmarks.memcache.run import BenchmarkMemcached

    logDir = tempfile.TemporaryDirectory(prefix="cluster-benchmark-")
    servers = [BenchmarkMemcached(Path(logDir.name) / f"memcached-{i}.log") for i in range(3)]
    for server in servers:
        server.start()
    ports = [server.port for server in servers]
    cells = [(w, args.multiConcurrency if w == "multi" else args.concurrency)
             for w in args.workloads]
    rng = random.Random(args.seed)
    results: list[dict[str, Any]] = []
    started = time.time()
    try:
        populate(ports)
        version = servers[0].version()
        for r in range(args.rounds):
            for workload, concurrency in cells:
                order = list(args.clients)
                rng.shuffle(order)
                for client in order:
                    print(f"round {r + 1} {workload} c={concurrency} {client}", file=sys.stderr)
                    result = measure(args, ports, client, workload, concurrency)
                    result.update(round=r, client=client, workload=workload,
                                  concurrency=concurrency)
                    results.append(result)
    finally:
        for server in servers:
            server.stop()
        logDir.cleanup()
    meta = {
        "date": time.strftime("%Y-%m-%d %H:%M", time.localtime(started)),
        "rounds": args.rounds, "duration": args.duration, "warmup": args.warmup,
        "threads": args.threads,
        "python": platform.python_version(), "cpus": os.cpu_count(),
        "loadAverage": " / ".join(f"{v:.1f}" for v in os.getloadavg()), "memcached": version,
    }
    text = report(results, cells, meta)
    args.outputDir.mkdir(parents=True, exist_ok=True)
    (args.outputDir / "cluster.md").write_text(text)
    (args.outputDir / "cluster.json").write_text(
        json.dumps({"meta": meta, "results": results}, indent=1)
    )
    print(text)
    return 1 if any("failed" in r for r in results) else 0


if __name__ == "__main__":
    raise SystemExit(main())
