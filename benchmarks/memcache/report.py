"""
Summaries of the benchmark's measurements: medians, ratios to the reference client, the
markdown report and the plot.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .specs import WORKLOADS, Client

# Metrics: (key in a worker's result, scale to the unit shown).
METRICS: dict[str, tuple[str, float]] = {
    "ops": ("opsPerSec", 1.0),
    "p50": ("p50", 1e3),  # ms
    "p99": ("p99", 1e3),  # ms
    "cpu": ("cpuPerOp", 1e6),  # µs per operation
    "rss": ("maxRssKiB", 1 / 1024),  # MiB
}


class Results:
    """
    Every measurement of a run, by round, workload, concurrency and client.
    """

    def __init__(self, clients: list[Client], reference: str) -> None:
        self.clients = clients
        self.reference = reference
        self._runs: dict[tuple[str, int, str], dict[int, dict[str, Any]]] = defaultdict(dict)

    def add(self, rnd: int, workload: str, concurrency: int, client: str,
            result: dict[str, Any]) -> None:
        """
        Record the result of one measurement.
        """
        self._runs[workload, concurrency, client][rnd] = result

    def cells(self) -> list[tuple[str, int]]:
        """
        The (workload, concurrency) pairs measured, in order.
        """
        return sorted({(w, c) for w, c, _ in self._runs}, key=lambda wc: (
            list(WORKLOADS).index(wc[0]), wc[1]))

    def values(self, metric: str, workload: str, concurrency: int,
               client: str) -> dict[int, float]:
        """
        The metric of each round that measured it, in the unit shown.
        """
        key, scale = METRICS[metric]
        out = {}
        for rnd, result in self._runs.get((workload, concurrency, client), {}).items():
            value = result.get(key)
            if value is not None:
                out[rnd] = value * scale
        return out

    def median(self, metric: str, workload: str, concurrency: int,
               client: str) -> float | None:
        """
        The median over rounds of a metric, or L{None} if never measured.
        """
        values = self.values(metric, workload, concurrency, client)
        return statistics.median(values.values()) if values else None

    def ratio(self, metric: str, workload: str, concurrency: int, client: str,
              other: str | None = None) -> float | None:
        """
        The median over rounds of C{client}'s metric divided by C{other}'s (the reference's by
        default) in the same round.
        """
        mine = self.values(metric, workload, concurrency, client)
        theirs = self.values(metric, workload, concurrency, other or self.reference)
        ratios = [mine[r] / theirs[r] for r in mine if r in theirs and theirs[r] > 0]
        return statistics.median(ratios) if ratios else None

    def count(self, field: str, workload: str, concurrency: int, client: str) -> int:
        """
        The largest value of a counter (C{errors}, C{misses}, C{starved}) over rounds.
        """
        runs = self._runs.get((workload, concurrency, client), {}).values()
        return max((int(r.get(field) or 0) for r in runs), default=0)

    def failures(self) -> list[str]:
        """
        The measurements that failed, described.
        """
        return [
            f"round {rnd + 1} {w} c={c} {client}: {result['failed']}"
            for (w, c, client), runs in self._runs.items()
            for rnd, result in sorted(runs.items())
            if "failed" in result
        ]

    def raw(self) -> list[dict[str, Any]]:
        """
        Every measurement, as JSON-ready records.
        """
        return [
            {"round": rnd + 1, "workload": w, "concurrency": c, "client": client, **result}
            for (w, c, client), runs in self._runs.items()
            for rnd, result in sorted(runs.items())
        ]


def _ms(value: float | None) -> str:
    if value is None:
        return "-"
    if value < 1:
        return f"{value:.3f}"
    if value < 10:
        return f"{value:.2f}"
    if value < 100:
        return f"{value:.1f}"
    return f"{value:,.0f}"


def _ops(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


def _one(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _both(results: Results, metric: str, fmt: Callable[[float | None], str],
          workload: str, concurrency: int, client: str) -> str:
    return (f"{fmt(results.median(metric, workload, concurrency, client))} | "
            f"{_ratio(results.ratio(metric, workload, concurrency, client))}")


def _label(results: Results, spec: str) -> str:
    for client in results.clients:
        if client.spec == spec:
            return client.label
    return spec


def _targets(results: Results) -> list[str]:
    """
    The issue's targets (get workload, MemCachePool default settings), as table rows.
    """
    specs = {c.spec for c in results.clients}
    pool, ref = "pool", results.reference
    if pool not in specs or ref != "twisted" or ref not in specs:
        return []
    rows: list[tuple[str, Callable[[], float | None], Callable[[float], bool]]] = [
        ("c=100 throughput ≥ 1.5x raw Twisted connection",
         lambda: results.ratio("ops", "get", 100, pool), lambda r: r >= 1.5),
        ("c=100 throughput ≥ 1.5x emcache on uvloop",
         lambda: results.ratio("ops", "get", 100, pool, "emcache"), lambda r: r >= 1.5),
        ("c=1 throughput ≥ 0.95x raw Twisted connection",
         lambda: results.ratio("ops", "get", 1, pool), lambda r: r >= 0.95),
        ("c=100 client CPU per operation ≤ raw Twisted connection's",
         lambda: results.ratio("cpu", "get", 100, pool), lambda r: r <= 1.0),
        ("c=100 p99 latency ≤ raw Twisted connection's",
         lambda: results.ratio("p99", "get", 100, pool), lambda r: r <= 1.0),
    ]
    out = []
    for text, measure, met in rows:
        value = measure()
        verdict = "not measured" if value is None else ("met" if met(value) else "**not met**")
        out.append(f"| {text} | {_ratio(value)} | {verdict} |")
    return out


def renderMarkdown(results: Results, meta: dict[str, Any]) -> str:
    """
    The report: run description, the issue's targets, a throughput summary and the details.
    """
    ref = results.reference
    hasRef = any(c.spec == ref for c in results.clients)
    options = ", ".join(f"{k}={v!r}" for k, v in meta["poolOptions"].items()) or "none"
    lines = [
        "# memcached client benchmark",
        "",
        f"`{meta['command']}` on {meta['date']}, {meta['wallSeconds']} s: "
        f"{meta['rounds']} interleaved round(s), each measurement {meta['duration']} s after "
        f"{meta['warmup']} s of warm-up, in a process of its own.",
        "",
        f"{meta['cpus']} CPUs, {meta['platform']}; Python {meta['python']}, Twisted "
        f"{meta['twisted']}, txconnpool {meta['txconnpool']}, aiomcache {meta['aiomcache']}, "
        f"emcache {meta['emcache']}, uvloop {meta['uvloop']}; memcached {meta['memcached']} "
        "with its default settings (4 threads) on loopback, sharing the CPUs with the client; "
        f"load average at the start {meta['loadAverage']}. "
        f"Extra MemCachePool options (`--pool-option`): {options}.",
        "",
        "Clients:",
        "",
    ]
    for client in results.clients:
        extra = f" Options: `{client.spec.partition(':')[2]}`." if client.options else ""
        lines.append(f"- **{client.label}** (`{client.spec}`): {client.kind.description}.{extra}")
    lines += [
        "",
        "Workloads: " + "; ".join(
            f"`{w}`: {WORKLOADS[w].title}" for w in meta["workloads"]
        ) + ". Each of N concurrent callers runs operations back to back, on 1,000 keys stored "
        "beforehand.",
        "",
        "Every figure is the median over rounds. A `x ref` column is the median of the per-round "
        f"ratios to **{_label(results, ref)}** measured in the same round (throughput: higher "
        "is better; latency, CPU and memory: lower is better). Latency covers the operations "
        "completed in the measurement window plus, as a lower bound, any still waiting that "
        "were already waiting when the window opened (*starved*: a client that lets a few "
        "callers monopolise its connections). CPU is the client process's user+system time in "
        "the window divided by its operations; memory is the client process's peak resident "
        "set size (VmHWM).",
        "",
    ]
    if not hasRef:
        lines += [f"(The reference client `{ref}` was not run: no ratios.)", ""]
    targets = _targets(results)
    if targets:
        lines += [
            "## Targets (`get`, MemCachePool with default settings)",
            "",
            "| target | ratio | |",
            "|---|---:|---|",
            *targets,
            "",
        ]
    cells = results.cells()
    workloads = list(dict.fromkeys(w for w, _ in cells))
    lines += ["## Throughput (operations per second, and x the reference)", ""]
    for workload in workloads:
        levels = [c for w, c in cells if w == workload]
        lines += [
            f"### {WORKLOADS[workload].title}",
            "",
            "| client | " + " | ".join(f"c={c}" for c in levels) + " |",
            "|---|" + "---:|" * len(levels),
        ]
        for client in results.clients:
            row = []
            for c in levels:
                ops = results.median("ops", workload, c, client.spec)
                ratio = results.ratio("ops", workload, c, client.spec)
                row.append(_ops(ops) + ("" if ratio is None else f" ({_ratio(ratio)}x)"))
            lines.append(f"| {client.label} | " + " | ".join(row) + " |")
        lines.append("")
    lines += ["## Details", ""]
    for workload in workloads:
        lines += [
            f"### {WORKLOADS[workload].title}",
            "",
            "| c | client | ops/s | x ref | p50 ms | x ref | p99 ms | x ref | CPU µs/op | x ref "
            "| peak RSS MiB | x ref | notes |",
            "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
        ]
        for c in (c for w, c in cells if w == workload):
            for client in results.clients:
                s = client.spec
                cell = (workload, c, s)
                notes = [
                    f"{name} {n}" for name, n in (
                        ("errors", results.count("errors", workload, c, s)),
                        ("misses", results.count("misses", workload, c, s)),
                    ) if n
                ]
                starved = results.count("starved", workload, c, s)
                if starved:
                    notes.append(f"starved {starved} of {c}")
                failed = sum(
                    1 for r in results.raw()
                    if r["workload"] == workload and r["concurrency"] == c
                    and r["client"] == s and "failed" in r
                )
                if failed:
                    notes.append(f"{failed} run(s) failed")
                figures = " | ".join(
                    _both(results, metric, fmt, *cell)
                    for metric, fmt in (
                        ("ops", _ops), ("p50", _ms), ("p99", _ms), ("cpu", _one), ("rss", _one)
                    )
                )
                lines.append(f"| {c} | {client.label} | {figures} | {', '.join(notes)} |")
        lines.append("")
    lines += [
        "Notes: *errors* and *misses* are the most operations failed or answered without the "
        "expected value in one round; *starved N of c*: the most callers, in one round, that "
        "waited through a whole measurement window for one operation. Each counts in the "
        "latency with the time it had waited so far, so a low p99 beside it means that fewer "
        "than 1% of the operations starved, not that nobody waited.",
        "",
    ]
    failures = results.failures()
    if failures:
        lines += ["## Failed measurements", "", *(f"- {f}" for f in failures), ""]
    return "\n".join(lines)


def plot(results: Results, meta: dict[str, Any], path: Path) -> None:
    """
    Draw throughput and p99 latency against concurrency, one panel per workload, one line
    per client (the band is the range over rounds), into a PNG.

    @raise ImportError: matplotlib is not installed.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cells = results.cells()
    workloads = list(dict.fromkeys(w for w, _ in cells))
    from matplotlib.ticker import FuncFormatter

    fig, axes = plt.subplots(
        2, len(workloads), figsize=(max(5.2 * len(workloads), 8.0), 8.5), squeeze=False
    )
    plain = FuncFormatter(lambda v, _: f"{v:g}")
    thousands = FuncFormatter(lambda v, _: f"{v / 1000:g}k" if v else "0")
    for col, workload in enumerate(workloads):
        levels = [c for w, c in cells if w == workload]
        for row, (metric, title) in enumerate(
            (("ops", "throughput (ops/s)"), ("p99", "p99 latency (ms)"))
        ):
            ax = axes[row][col]
            for client in results.clients:
                xs, mids, lows, highs = [], [], [], []
                for c in levels:
                    values = list(results.values(metric, workload, c, client.spec).values())
                    if values:
                        xs.append(c)
                        mids.append(statistics.median(values))
                        lows.append(min(values))
                        highs.append(max(values))
                if not xs:
                    continue
                isRef = client.spec == results.reference
                (line,) = ax.plot(
                    xs, mids, marker="o", label=client.label,
                    linestyle="--" if isRef else "-", linewidth=2.2 if isRef else 1.6,
                    color="black" if isRef else None,
                )
                ax.fill_between(xs, lows, highs, color=line.get_color(), alpha=0.12)
            ax.set_xscale("log")
            ax.set_xticks(levels)
            ax.set_xticklabels([str(c) for c in levels])
            ax.minorticks_off()
            if metric == "p99":
                ax.set_yscale("log")
                ax.yaxis.set_major_formatter(plain)
            else:
                ax.set_ylim(bottom=0)
                ax.yaxis.set_major_formatter(thousands)
            ax.set_xlabel("concurrent callers")
            ax.set_title(f"{WORKLOADS[workload].title}: {title}", fontsize=10)
            ax.grid(True, alpha=0.3)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(len(labels), 3), fontsize=9)
    fig.suptitle(
        f"memcached {meta['memcached']} clients on {meta['cpus']} CPUs\n"
        f"median of {meta['rounds']} round(s); band: range over rounds", fontsize=11,
    )
    fig.tight_layout(rect=(0, 0.08, 1, 0.95))
    fig.savefig(path, dpi=110)
    plt.close(fig)
