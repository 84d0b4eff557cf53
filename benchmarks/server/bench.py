"""
Benchmark: a twisted.web hello-world behind LimitConnectionsFactory against the bare Site,
loaded with wrk.

Every server runs in its own process for the whole scenario; the rounds interleave them (in
one order, then the reverse, ...), so a slow moment of the machine hits all of them, and each
limited variant is compared with the bare site of the same round.  Two scenarios:

- below the limit: C{--below} wrk connections against C{--slots} slots, all served at once;
  the throughput ratio limited/bare, per round and its median, is the limiter's cost;
- taking turns: C{--clients} wrk connections against C{--few} slots, with the limiter's
  default options and with each C{--turns} value of C{minTurn}; reports throughput (and its
  ratio to the bare site), p99 latency, wrk's socket errors and the limiter's counters.

Run from the repository root (needs the C{wrk} program, Debian package C{wrk}):

    .venv/bin/python benchmarks/server/bench.py

It prints a markdown report and writes it to C{benchmarks/results/server.md}.
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT))

from txconnpool.server import LimitConnectionsFactory  # noqa: E402

DEFAULT_MIN_TURN: float = inspect.signature(LimitConnectionsFactory).parameters["minTurn"].default

_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}
_ERRORS = ("connect", "read", "write", "timeout")


def _ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    if match is None:
        raise ValueError(f"cannot read a duration from {text!r}")
    return float(match.group(1)) * _UNITS[match.group(2)]


class Server:
    """
    One benchmark server process: the bare site, or the site behind a limiter with options.
    """

    def __init__(self, *args: str) -> None:
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        self.process = subprocess.Popen(
            [sys.executable, str(HERE / "server.py"), *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line.startswith("PORT "):
            raise RuntimeError(f"server did not start: {line!r}")
        self.url = f"http://127.0.0.1:{int(line.split()[1])}/"

    @classmethod
    def limited(cls, slots: int, **options: Any) -> Server:
        return cls("limited", str(slots), json.dumps(options))

    def cpuSeconds(self) -> float:
        """
        @return: The CPU time the server process has used (user and system), from C{/proc}.
        """
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stats(self) -> dict[str, Any]:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write("stats\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        result: dict[str, Any] = json.loads(line[len("STATS ") :])
        return result

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)


def wrk(url: str, connections: int, seconds: int, threads: int) -> dict[str, float]:
    """
    Run wrk (with its default 2-second timeout) and read requests/s, p99 latency (ms) and
    socket errors from its output.
    """
    done = subprocess.run(
        ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--latency", url],
        capture_output=True,
        text=True,
        check=True,
    )
    out = done.stdout
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    requests = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    p99 = _ms(re.search(r"\s99%\s+(\S+)", out).group(1))  # type: ignore[union-attr]
    result = {"rate": rate, "requests": requests, "p99": p99, **dict.fromkeys(_ERRORS, 0)}
    match = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if match is not None:
        result.update(zip(_ERRORS, map(int, match.groups())))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    result["non2xx"] = 0 if non2xx is None else int(non2xx.group(1))
    return result


def interleave(
    servers: dict[str, Server], connections: int, rounds: int, seconds: int, threads: int
) -> dict[str, list[dict[str, float]]]:
    names = list(servers)
    results: dict[str, list[dict[str, float]]] = {name: [] for name in names}
    for name in names:
        wrk(servers[name].url, connections, 1, threads)  # warm up
    for index in range(rounds):
        order = names if index % 2 == 0 else names[::-1]
        for name in order:
            before = servers[name].cpuSeconds()
            result = wrk(servers[name].url, connections, seconds, threads)
            result["cpu"] = 1e6 * (servers[name].cpuSeconds() - before) / result["requests"]
            results[name].append(result)
            print(f"  round {index + 1} {name}: {result}", file=sys.stderr)
    return results


def run(
    servers: dict[str, Server], connections: int, options: argparse.Namespace
) -> tuple[dict[str, list[dict[str, float]]], dict[str, dict[str, Any]]]:
    """
    Interleave the servers, then collect the limiters' counters and stop every server.
    """
    try:
        results = interleave(
            servers, connections, options.rounds, options.seconds, options.threads
        )
        stats = {name: server.stats() for name, server in servers.items()}
    finally:
        for server in servers.values():
            server.stop()
    return results, stats


def median(values: list[float]) -> float:
    return statistics.median(values)


def ratios(runs: list[dict[str, float]], bare: list[dict[str, float]]) -> list[float]:
    return [run["rate"] / base["rate"] for run, base in zip(runs, bare)]


QUIET = {
    "queueTimeout": None,
    "idleTimeout": None,
    "headerTimeout": None,
    "reapIdleAfter": None,
    "minTurn": None,
}
"""
The limiter's options that turn off every time limit, and with them the watching of traffic.
"""


def belowTheLimit(options: argparse.Namespace) -> list[str]:
    servers = {
        "bare": Server("bare"),
        "limited": Server.limited(options.slots),
        "limited, no time limits": Server.limited(options.slots, **QUIET),
    }
    results, stats = run(servers, options.below, options)
    cost = ratios(results["limited"], results["bare"])
    quietCost = ratios(results["limited, no time limits"], results["bare"])
    lines = [
        f"## Below the limit: {options.below} connections, {options.slots} slots",
        "",
        "| variant | median req/s | median p99 (ms) | server CPU per request (µs) "
        "| req/s per round |",
        "|---|---:|---:|---:|---|",
    ]
    for name, runs in results.items():
        lines.append(
            f"| {name} | {median([r['rate'] for r in runs]):.0f} "
            f"| {median([r['p99'] for r in runs]):.2f} "
            f"| {median([r['cpu'] for r in runs]):.0f} "
            f"| {', '.join(format(r['rate'], '.0f') for r in runs)} |"
        )
    limited = stats["limited"]
    return [
        *lines,
        "",
        f"Throughput ratio limited/bare, per round: {', '.join(f'{r:.3f}' for r in cost)}; "
        f"**median {median(cost):.3f}** (cost {100 * (1 - median(cost)):.1f}%).",
        "With no time limits, per round: "
        f"{', '.join(f'{r:.3f}' for r in quietCost)}; **median {median(quietCost):.3f}**.",
        f"Limiter: served {limited['served']}, queued {limited['queued']}, "
        f"overflowed {limited['overflowed']}.",
        "",
    ]


def takingTurns(options: argparse.Namespace) -> list[str]:
    servers = {
        "bare": Server("bare"),
        f"defaults (minTurn={DEFAULT_MIN_TURN:g})": Server.limited(options.few),
    }
    for turn in options.turns:
        if turn != DEFAULT_MIN_TURN:
            servers[f"minTurn={turn:g}"] = Server.limited(options.few, minTurn=turn)
    results, stats = run(servers, options.clients, options)
    bare = results["bare"]
    lines = [
        f"## Taking turns: {options.clients} connections, {options.few} slots",
        "",
        "| variant | median req/s | ratio to bare | median p99 (ms) | server CPU per request (µs) "
        "| socket errors (connect/read/write/timeout) | connections served | turns ended "
        "| reaped |",
        "|---|---:|---:|---:|---:|---|---:|---:|---:|",
    ]
    for name, runs in results.items():
        errors = "/".join(str(sum(int(r[kind]) for r in runs)) for kind in _ERRORS)
        ratio = "1" if name == "bare" else f"{median(ratios(runs, bare)):.2f}"
        counters = stats[name]
        served, ended, reaped = (
            (str(counters[k]) for k in ("served", "turnsEnded", "reaped"))
            if counters
            else ("", "", "")
        )
        lines.append(
            f"| {name} | {median([r['rate'] for r in runs]):.0f} | {ratio} "
            f"| {median([r['p99'] for r in runs]):.0f} | {median([r['cpu'] for r in runs]):.0f} "
            f"| {errors} | {served} | {ended} | {reaped} |"
        )
    return [
        *lines,
        "",
        "Ratios and p99 are medians over the rounds; errors and the limiter's counters are "
        "totals over every round (and the warm-up).",
        "",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2, help="wrk threads")
    parser.add_argument("--slots", type=int, default=100)
    parser.add_argument("--below", type=int, default=50)
    parser.add_argument("--few", type=int, default=5)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument(
        "--turns", type=float, nargs="*", default=[0.005, 0.01, 0.02, 0.05, 0.1, 0.2]
    )
    parser.add_argument(
        "--scenarios", nargs="+", choices=["below", "turns"], default=["below", "turns"]
    )
    parser.add_argument("--output", type=Path, default=ROOT / "benchmarks/results/server.md")
    options = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed (Debian: apt-get install wrk)")

    lines = [
        "# Limiter benchmark: twisted.web hello-world, bare Site vs LimitConnectionsFactory",
        "",
        f"wrk -t{options.threads}, {options.rounds} interleaved rounds of {options.seconds}s "
        f"per variant; Python {sys.version.split()[0]}, {os.cpu_count()} CPUs.",
        "",
    ]
    if "below" in options.scenarios:
        print("below the limit", file=sys.stderr)
        lines += belowTheLimit(options)
    if "turns" in options.scenarios:
        print("taking turns", file=sys.stderr)
        lines += takingTurns(options)

    report = "\n".join(lines)
    print(report)
    options.output.parent.mkdir(parents=True, exist_ok=True)
    options.output.write_text(report)


if __name__ == "__main__":
    main()
