"""
Benchmark: a twisted.web hello-world behind LimitConnectionsFactory against the bare Site,
loaded with wrk.

Both servers run side by side in their own processes for the whole run; the rounds interleave
them (bare then limited, then limited then bare, ...), so a slow moment of the machine hits both.
Two scenarios:

- below the limit: C{--below} wrk connections against C{--slots} slots (all served at once);
  the throughput ratio limited/bare per round, and its median, is the limiter's cost;
- far above the limit: C{--above} wrk connections against C{--few} slots, with reaping of idle
  keep-alive connections so waiting clients take turns; reports throughput, p99 latency, wrk's
  socket errors, and the limiter's served/queued/reaped counts.

Run from the repository root (needs the C{wrk} program, Debian package C{wrk}):

    .venv/bin/python benchmarks/server/bench.py

It prints a markdown report and writes it to C{benchmarks/results/server.md}.
"""

from __future__ import annotations

import argparse
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

_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}


def _ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    if match is None:
        raise ValueError(f"cannot read a duration from {text!r}")
    return float(match.group(1)) * _UNITS[match.group(2)]


class Server:
    """
    One benchmark server process.
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


def wrk(url: str, connections: int, seconds: int) -> dict[str, float]:
    """
    Run wrk and read requests/s, p99 latency (ms) and socket errors from its output.
    """
    done = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", "--timeout", "10s", url],
        capture_output=True,
        text=True,
        check=True,
    )
    out = done.stdout
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p99 = _ms(re.search(r"\s99%\s+(\S+)", out).group(1))  # type: ignore[union-attr]
    errors = 0
    match = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if match is not None:
        errors = sum(int(g) for g in match.groups())
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {
        "rate": rate,
        "p99": p99,
        "errors": errors,
        "non2xx": 0 if non2xx is None else int(non2xx.group(1)),
    }


def interleave(
    servers: dict[str, Server], connections: int, rounds: int, seconds: int
) -> dict[str, list[dict[str, float]]]:
    names = list(servers)
    results: dict[str, list[dict[str, float]]] = {name: [] for name in names}
    for name in names:
        wrk(servers[name].url, connections, 1)  # warm up
    for index in range(rounds):
        order = names if index % 2 == 0 else names[::-1]
        for name in order:
            results[name].append(wrk(servers[name].url, connections, seconds))
            print(f"  round {index + 1} {name}: {results[name][-1]}", file=sys.stderr)
    return results


def median(values: list[float]) -> float:
    return statistics.median(values)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--slots", type=int, default=100)
    parser.add_argument("--below", type=int, default=50)
    parser.add_argument("--few", type=int, default=50)
    parser.add_argument("--above", type=int, default=400)
    parser.add_argument("--output", type=Path, default=ROOT / "benchmarks/results/server.md")
    options = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed (Debian: apt-get install wrk)")

    lines = [
        "# Limiter benchmark: twisted.web hello-world, bare Site vs LimitConnectionsFactory",
        "",
        f"wrk -t1, {options.rounds} interleaved rounds of {options.seconds}s per variant; "
        f"Python {sys.version.split()[0]}, {os.cpu_count()} CPUs.",
        "",
    ]

    print("below the limit", file=sys.stderr)
    servers = {"bare": Server("bare"), "limited": Server("limited", str(options.slots))}
    try:
        below = interleave(servers, options.below, options.rounds, options.seconds)
        limitedStats = servers["limited"].stats()
    finally:
        for server in servers.values():
            server.stop()
    ratios = [lim["rate"] / bare["rate"] for bare, lim in zip(below["bare"], below["limited"])]
    lines += [
        f"## Below the limit: {options.below} connections, {options.slots} slots",
        "",
        "| variant | median req/s | median p99 (ms) | req/s per round |",
        "|---|---:|---:|---|",
    ]
    for name, runs in below.items():
        lines.append(
            f"| {name} | {median([r['rate'] for r in runs]):.0f} "
            f"| {median([r['p99'] for r in runs]):.2f} "
            f"| {', '.join(format(r['rate'], '.0f') for r in runs)} |"
        )
    lines += [
        "",
        f"Throughput ratio limited/bare, per round: {', '.join(f'{r:.3f}' for r in ratios)}; "
        f"**median {median(ratios):.3f}** (cost {100 * (1 - median(ratios)):.1f}%).",
        f"Limiter: served {limitedStats['served']}, queued {limitedStats['queued']}, "
        f"overflowed {limitedStats['overflowed']}.",
        "",
    ]

    print("far above the limit", file=sys.stderr)
    servers = {"bare": Server("bare"), "limited": Server("limited", str(options.few), "0")}
    try:
        above = interleave(servers, options.above, options.rounds, options.seconds)
        limitedStats = servers["limited"].stats()
    finally:
        for server in servers.values():
            server.stop()
    lines += [
        f"## Far above the limit: {options.above} connections, {options.few} slots, "
        "reapIdleAfter=0",
        "",
        "| variant | median req/s | median p99 (ms) | median socket errors | non-2xx |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, runs in above.items():
        lines.append(
            f"| {name} | {median([r['rate'] for r in runs]):.0f} "
            f"| {median([r['p99'] for r in runs]):.2f} "
            f"| {median([r['errors'] for r in runs]):.0f} "
            f"| {sum(r['non2xx'] for r in runs):.0f} |"
        )
    ratiosAbove = [
        lim["rate"] / bare["rate"] for bare, lim in zip(above["bare"], above["limited"])
    ]
    lines += [
        "",
        f"Throughput ratio limited/bare: median {median(ratiosAbove):.3f}.",
        f"Limiter over the whole scenario: served {limitedStats['served']} connections, "
        f"reaped {limitedStats['reaped']}, queued at the end {limitedStats['queued']}, "
        f"left while queued {limitedStats['leftQueued']}, overflowed "
        f"{limitedStats['overflowed']}.",
        "",
    ]

    report = "\n".join(lines)
    print(report)
    options.output.parent.mkdir(parents=True, exist_ok=True)
    options.output.write_text(report)


if __name__ == "__main__":
    main()
