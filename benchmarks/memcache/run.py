"""
The memcached client benchmark. Run from the repository root::

    .venv/bin/python -m benchmarks.memcache [--quick] [flags]

It starts a memcached of its own (default settings, a free loopback port), stores the keys of
every workload, then measures each client at each workload and concurrency, one measurement per
worker process (see L{benchmarks.memcache.worker}), in interleaved rounds: each round measures
every (workload, concurrency) cell once, and inside a cell runs every client once, in a
shuffled order, so a slow moment of the machine does not favour one client.

For every cell and client it reports the median over rounds of throughput, p50 and p99 latency,
client CPU time per operation and peak memory, and each as a ratio to the reference client
(the raw pipelined Twisted connection) measured in the same round (the median of the per-round
ratios). It writes a markdown report, the raw results as JSON, and a PNG plot into the output
directory (C{benchmarks/results/} by default).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import inspect
import json
import os
import platform
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from .report import Results, plot, renderMarkdown
from .specs import (
    CLIENT_KINDS,
    DEFAULT_CLIENTS,
    DEFAULT_WORKLOADS,
    KEY_COUNT,
    REFERENCE,
    WORKLOADS,
    Client,
    parseClient,
    parseOption,
)

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]

_NEEDS = {"aiomcache": ("aiomcache",), "emcache": ("emcache", "uvloop")}


def parseArguments(argv: list[str] | None) -> argparse.Namespace:
    """
    Read the command line.
    """
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.memcache",
        description=(
            "Compare MemCachePool with a raw pipelined Twisted MemCacheProtocol connection and "
            "asyncio memcached clients, on a memcached server of its own."
        ),
    )
    parser.add_argument(
        "--quick", action="store_true",
        help="a smoke run: 1 round of 0.3 s measurements after 0.1 s of warm-up "
             "(explicit --rounds/--duration/--warmup still win)",
    )
    parser.add_argument("--rounds", type=int, help="interleaved rounds (default 3)")
    parser.add_argument(
        "--duration", type=float, help="seconds measured per measurement (default 1.5)"
    )
    parser.add_argument(
        "--warmup", type=float, help="seconds run before each measurement (default 0.5)"
    )
    parser.add_argument(
        "--clients", nargs="+", default=list(DEFAULT_CLIENTS), metavar="CLIENT",
        help=f"clients to compare, from: {', '.join(CLIENT_KINDS)}; a pool client may take "
             "options of its own, e.g. 'pool:maxRequestsPerClient=8,maxClients=2' "
             f"(default: {' '.join(DEFAULT_CLIENTS)})",
    )
    parser.add_argument(
        "--workloads", nargs="+", default=list(DEFAULT_WORKLOADS), choices=list(WORKLOADS),
        metavar="WORKLOAD",
        help=f"from: {', '.join(WORKLOADS)} (default: {' '.join(DEFAULT_WORKLOADS)})",
    )
    parser.add_argument(
        "--concurrency", nargs="+", type=int, default=[1, 10, 100, 1000], metavar="N",
        help="concurrent callers (default: 1 10 100 1000)",
    )
    parser.add_argument(
        "--pool-option", action="append", default=[], metavar="KEY=VALUE", dest="poolOptions",
        help="a MemCachePool keyword argument for both pool clients, e.g. "
             "maxRequestsPerClient=32 or maxClients=10 (repeatable; values are Python literals)",
    )
    parser.add_argument(
        "--reference", default=REFERENCE, metavar="CLIENT",
        help=f"the client every ratio is relative to (default: {REFERENCE})",
    )
    parser.add_argument(
        "--output-dir", type=Path, default=ROOT / "benchmarks" / "results", dest="outputDir",
        help="where memcache.md, memcache.json and memcache.png go "
             "(default: benchmarks/results)",
    )
    parser.add_argument("--seed", type=int, default=None, help="seed of the shuffled orders")
    args = parser.parse_args(argv)
    quick = args.quick
    if args.rounds is None:
        args.rounds = 1 if quick else 3
    if args.duration is None:
        args.duration = 0.3 if quick else 1.5
    if args.warmup is None:
        args.warmup = 0.1 if quick else 0.5
    if args.rounds < 1 or args.duration <= 0 or args.warmup < 0:
        parser.error("--rounds must be at least 1, --duration above 0, --warmup not negative")
    if any(c < 1 for c in args.concurrency):
        parser.error("--concurrency values must be at least 1")
    try:
        args.poolOptions = dict(parseOption(o) for o in args.poolOptions)
        clients = [parseClient(spec) for spec in args.clients]
    except ValueError as e:
        parser.error(str(e))
    unknown = set(args.poolOptions)
    for client in clients:
        unknown |= set(client.options)
    accepted = _poolParameters()
    if "*" not in accepted and unknown - accepted:
        parser.error(
            f"MemCachePool takes no option {', '.join(sorted(unknown - accepted))}; "
            f"it takes: {', '.join(sorted(accepted))}"
        )
    args.clients = _available(_unique(clients))
    if args.reference not in {c.spec for c in args.clients}:
        print(f"note: the reference client {args.reference!r} is not in this run; "
              "no ratios will be shown", file=sys.stderr)
    return args


def _unique(clients: list[Client]) -> list[Client]:
    seen: dict[str, Client] = {}
    for client in clients:
        seen.setdefault(client.spec, client)
    return list(seen.values())


def _poolParameters() -> set[str]:
    from txconnpool.memcache import MemCachePool

    parameters = inspect.signature(MemCachePool.__init__).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return {"*"} | set(parameters)
    return {
        name for name, p in parameters.items()
        if name not in ("self", "serverAddress") and p.kind is not p.VAR_POSITIONAL
    }


def _available(clients: list[Client]) -> list[Client]:
    """
    Drop, with a note, the clients whose library is not installed.
    """
    kept = []
    for client in clients:
        missing = [m for m in _NEEDS.get(client.kind.name, ()) if not importlib.util.find_spec(m)]
        if missing:
            print(f"note: skipping {client.spec}: {', '.join(missing)} not installed "
                  f"(pip install {' '.join(missing)})", file=sys.stderr)
        else:
            kept.append(client)
    if not kept:
        raise SystemExit("no client to measure")
    return kept


class BenchmarkMemcached:
    """
    A memcached with its default settings (4 threads, 64 MB, 1024 connections) on a free
    loopback port, stopped by its PID. Unlike the test suite's C{MemcachedProcess}, it runs
    without C{-vv}, which would log every command.
    """

    def __init__(self, logPath: Path) -> None:
        from txconnpool.memcache.testing import freePort

        self.host = "127.0.0.1"
        self.port = freePort(self.host)
        self.logPath = logPath
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """
        Start memcached and return once it accepts connections.
        """
        binary = shutil.which("memcached")
        if binary is None:
            raise SystemExit("the memcached binary is not installed (apt-get install memcached)")
        args = [binary, "-l", self.host, "-p", str(self.port)]
        if os.geteuid() == 0:
            args += ["-u", "root"]
        with self.logPath.open("wb") as log:
            self.process = subprocess.Popen(
                args, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + 10
        while True:
            if self.process.poll() is not None:
                raise SystemExit(f"memcached exited with {self.process.returncode}; "
                                 f"see {self.logPath}")
            try:
                socket.create_connection((self.host, self.port), timeout=1).close()
                return
            except OSError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise SystemExit("memcached did not listen within 10 s") from None
                time.sleep(0.02)

    def stop(self) -> None:
        """
        Stop memcached by its PID.
        """
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def version(self) -> str:
        """
        The server's version, as it says it.
        """
        with socket.create_connection((self.host, self.port), timeout=5) as s:
            s.sendall(b"version\r\n")
            return s.recv(100).decode().strip().removeprefix("VERSION ")

    def populate(self, workloads: list[str]) -> None:
        """
        Store every key of the given workloads.
        """
        with socket.create_connection((self.host, self.port), timeout=30) as s:
            for name in workloads:
                workload = WORKLOADS[name]
                value = workload.value()
                s.sendall(b"".join(
                    b"set %s 0 0 %d noreply\r\n%s\r\n" % (workload.key(i), len(value), value)
                    for i in range(KEY_COUNT)
                ))
            s.sendall(b"version\r\n")
            reply = b""
            while not reply.endswith(b"\r\n"):
                chunk = s.recv(100)
                if not chunk:
                    break
                reply += chunk
            if not reply.startswith(b"VERSION"):
                raise SystemExit(f"storing the benchmark keys failed: {reply!r}")


class Progress:
    """
    A progress bar on standard error: tqdm's if it is installed, else a plain one.
    """

    def __init__(self, total: int) -> None:
        self.total = total
        self.done = 0
        self.started = time.monotonic()
        try:
            from tqdm import tqdm
        except ImportError:
            self._bar: Any = None
        else:
            self._bar = tqdm(total=total, unit="run", file=sys.stderr, dynamic_ncols=True)

    def describe(self, text: str) -> None:
        """
        Show what runs now.
        """
        if self._bar is not None:
            self._bar.set_postfix_str(text, refresh=True)
        else:
            self._draw(text)

    def advance(self) -> None:
        """
        Count one measurement done.
        """
        self.done += 1
        if self._bar is not None:
            self._bar.update(1)
        else:
            self._draw("")

    def close(self) -> None:
        """
        Finish the bar.
        """
        if self._bar is not None:
            self._bar.close()
        else:
            sys.stderr.write("\n")

    def _draw(self, text: str) -> None:
        width = 30
        filled = width * self.done // max(self.total, 1)
        elapsed = time.monotonic() - self.started
        sys.stderr.write(
            f"\r[{'#' * filled}{'.' * (width - filled)}] {self.done}/{self.total} "
            f"{elapsed:5.0f}s {text:<50.50}"
        )
        sys.stderr.flush()


def measure(args: argparse.Namespace, server: BenchmarkMemcached, client: Client,
            workload: str, concurrency: int) -> dict[str, Any]:
    """
    Run one measurement in a worker process and return its result, or C{{"failed": ...}}.
    """
    spec = {
        "client": client.kind.name,
        "workload": workload,
        "concurrency": concurrency,
        "warmup": args.warmup,
        "duration": args.duration,
        "host": server.host,
        "port": server.port,
        "poolOptions": {**args.poolOptions, **client.options},
    }
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p
    )}
    try:
        done = subprocess.run(
            [sys.executable, "-m", "benchmarks.memcache.worker", json.dumps(spec)],
            cwd=ROOT, env=env, capture_output=True, text=True,
            timeout=args.warmup + args.duration + 60,
        )
    except subprocess.TimeoutExpired:
        return {"failed": "the worker process did not finish in time"}
    if done.returncode != 0 or not done.stdout.strip():
        tail = done.stderr.strip().splitlines()[-3:]
        return {"failed": f"worker exited with {done.returncode}: {' | '.join(tail)}"}
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main(argv: list[str] | None = None) -> int:
    """
    Run the benchmark; return the exit status.
    """
    args = parseArguments(argv)
    outputDir: Path = args.outputDir
    outputDir.mkdir(parents=True, exist_ok=True)
    clients: list[Client] = args.clients
    cells = [(w, c) for w in args.workloads for c in args.concurrency]
    total = args.rounds * len(cells) * len(clients)
    estimate = total * (args.warmup + args.duration + 0.6)
    print(f"{total} measurements, about {estimate / 60:.1f} minutes", file=sys.stderr)

    rng = random.Random(args.seed)
    results = Results(clients=clients, reference=args.reference)
    loadAverage = " / ".join(f"{v:.1f}" for v in os.getloadavg())
    logDir = tempfile.TemporaryDirectory(prefix="memcache-benchmark-")
    server = BenchmarkMemcached(Path(logDir.name) / "memcached.log")
    server.start()
    started = time.time()
    try:
        server.populate(args.workloads)
        memcachedVersion = server.version()
        progress = Progress(total)
        try:
            for r in range(args.rounds):
                for workload, concurrency in cells:
                    order = list(clients)
                    rng.shuffle(order)
                    for client in order:
                        progress.describe(
                            f"round {r + 1} {workload} c={concurrency} {client.spec}"
                        )
                        result = measure(args, server, client, workload, concurrency)
                        results.add(r, workload, concurrency, client.spec, result)
                        progress.advance()
        finally:
            progress.close()
    finally:
        server.stop()
        logDir.cleanup()

    meta = {
        "command": " ".join(["python -m benchmarks.memcache", *(argv or sys.argv[1:])]),
        "date": time.strftime("%Y-%m-%d %H:%M", time.localtime(started)),
        "wallSeconds": round(time.time() - started),
        "python": platform.python_version(),
        "twisted": _version("twisted"),
        "txconnpool": _version("txconnpool"),
        "aiomcache": _version("aiomcache"),
        "emcache": _version("emcache"),
        "uvloop": _version("uvloop"),
        "memcached": memcachedVersion,
        "cpus": os.cpu_count(),
        "loadAverage": loadAverage,
        "platform": platform.platform(),
        "rounds": args.rounds,
        "duration": args.duration,
        "warmup": args.warmup,
        "poolOptions": args.poolOptions,
        "workloads": args.workloads,
        "concurrency": args.concurrency,
        "reference": args.reference,
    }
    markdown = renderMarkdown(results, meta)
    (outputDir / "memcache.md").write_text(markdown)
    (outputDir / "memcache.json").write_text(
        json.dumps({"meta": meta, "results": results.raw()}, indent=1)
    )
    print(markdown)
    try:
        plot(results, meta, outputDir / "memcache.png")
    except ImportError:
        print("note: matplotlib is not installed, so no plot (pip install matplotlib)",
              file=sys.stderr)
    else:
        print(f"wrote {outputDir / 'memcache.md'} and {outputDir / 'memcache.png'}",
              file=sys.stderr)
    return 1 if results.failures() else 0


def _version(distribution: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    with contextlib.suppress(PackageNotFoundError):
        return version(distribution)
    return "-"
