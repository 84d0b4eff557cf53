"""
Draw docs/_static/lifecycle-timeline.png, the picture of docs/lifecycle.rst: the life of a
pooled connection on a time axis, from its connection attempt to its retirement.

Nothing in the picture is drawn by hand. Each lane is recorded from a real txconnpool Pool,
driven on a twisted.internet.task.Clock through txconnpool.testing.FakeEndpoint, with a
protocol whose handshake, replies and pings take a set time; the picture shows what the code
did. Run it again after changing the pool's behaviour:

    .venv/bin/python docs/_scripts/lifecycle_timeline.py [output.png]

It needs matplotlib (not a dependency of txconnpool or of the docs build).
"""

from __future__ import annotations

import os
import random
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

here = os.path.dirname(os.path.abspath(__file__))
root = os.path.dirname(os.path.dirname(here))
sys.path.insert(0, root)

from twisted.internet.defer import Deferred  # noqa: E402
from twisted.internet.protocol import Protocol  # noqa: E402
from twisted.internet.task import Clock  # noqa: E402
from twisted.logger import globalLogPublisher  # noqa: E402

from txconnpool import Pool, PooledClientFactory  # noqa: E402
from txconnpool._upkeep import LIFETIME_VARIATION  # noqa: E402
from txconnpool.testing import FakeEndpoint  # noqa: E402

OUTPUT = os.path.join(os.path.dirname(here), "_static", "lifecycle-timeline.png")

# The example settings, shared by every lane.
OPTIONS: dict[str, Any] = dict(
    maxClients=1,
    connectTimeout=5.0,
    idleTimeout=90.0,
    maxLifetime=240.0,
    keepaliveInterval=30.0,
    validateAfterIdle=20.0,
    pingTimeout=5.0,
)
CONNECT_TIME = 2.0  # the endpoint's connection attempt
HANDSHAKE_TIME = 2.0  # prepareConnection
REQUEST_TIME = 5.0
PING_TIME = 1.0
LIFETIME_DRAW = 0.5  # the random part of maxLifetime, as a fraction of LIFETIME_VARIATION
END = 262.0


# Recording one scenario


@dataclass
class Life:
    """
    What happened to one connection, in clock seconds.
    """

    attempt: float
    connected: float | None = None
    ready: float | None = None
    spans: list[tuple[str, float, float]] = field(default_factory=list)
    gone: float | None = None
    reason: str | None = None


@dataclass
class Recording:
    lives: list[Life] = field(default_factory=list)
    ready: float | None = None  # when whenReady() fired


def record(
    minClients: int,
    requestTimes: list[float],
    requestLength: Callable[[float], float],
    answersPing: Callable[[int, float], bool],
) -> Recording:
    """
    Run one scenario on a clock and record the life of each connection.

    @param requestTimes: When requests are made.
    @param requestLength: How long the request made at a given time takes.
    @param answersPing: Whether the server answers a ping on connection C{n} at a time.
    """
    clock = Clock()
    recording = Recording()
    lives: dict[Any, Life] = {}

    class DemoProtocol(Protocol):
        def connectionMade(self) -> None:
            life = recording.lives[-1]
            life.connected = clock.seconds()
            lives[self] = life

        def query(self, seconds: float) -> Deferred[None]:
            d: Deferred[None] = Deferred()
            start = clock.seconds()
            clock.callLater(seconds, d.callback, None)
            lives[self].spans.append(("request", start, start + seconds))
            return d

        def ping(self) -> Deferred[None]:
            life = lives[self]
            start = clock.seconds()
            purpose = "validation" if pool.poolStats().waiting else "keepalive"
            d: Deferred[None] = Deferred(
                lambda d: life.spans.append(("failedPing", start, clock.seconds()))
            )
            if answersPing(recording.lives.index(life), start):
                clock.callLater(PING_TIME, d.callback, None)
                life.spans.append((purpose, start, start + PING_TIME))
            return d

        def connectionLost(self, reason: object = None) -> None:
            lives[self].gone = clock.seconds()

    class DemoFactory(PooledClientFactory):
        protocol = DemoProtocol

        def prepareConnection(self, protocol: Any) -> Deferred[object]:
            d: Deferred[object] = Deferred()
            clock.callLater(HANDSHAKE_TIME, d.callback, None)

            def ready(result: object) -> object:
                lives[protocol].ready = clock.seconds()
                return result

            return d.addCallback(ready)

    class DemoPool(Pool[DemoProtocol]):
        clientFactory = DemoFactory

    class DemoEndpoint(FakeEndpoint):
        def connect(self, protocolFactory: Any) -> Deferred[Any]:
            recording.lives.append(Life(attempt=clock.seconds()))
            d = FakeEndpoint.connect(self, protocolFactory)
            clock.callLater(CONNECT_TIME, self.attempts[-1].succeed)
            return d

    def observe(event: dict[str, Any]) -> None:
        if event.get("txconnpoolEvent") == "discard":
            discards.append(event["reason"])

    discards: list[str] = []
    globalLogPublisher.addObserver(observe)
    realRandom = random.random
    random.random = lambda: LIFETIME_DRAW
    try:
        pool = DemoPool(DemoEndpoint(clock), reactor=clock, minClients=minClients, **OPTIONS)
        pool.whenReady().addCallback(lambda _: setattr(recording, "ready", clock.seconds()))
        for at in requestTimes:
            clock.callLater(at, pool.performRequest, "query", requestLength(at))
        # Step from one timed call to the next, so that each runs at its own time.
        while clock.seconds() < END:
            due = [call.getTime() for call in clock.getDelayedCalls()]
            step = min([*due, END]) - clock.seconds()
            clock.advance(max(step, 0.0))
            for life in recording.lives:
                if life.gone is not None and life.reason is None and discards:
                    life.reason = discards.pop(0)
    finally:
        random.random = realRandom
        globalLogPublisher.removeObserver(observe)
    return recording


def lanes() -> list[tuple[str, Recording]]:
    early = [0.0, 15.0]
    used = [*early, 105.0, 155.0, 230.0]
    return [
        (
            "Used regularly:\nretired by\nmaxLifetime",
            record(0, used, lambda at: 15.0 if at == 230.0 else REQUEST_TIME, lambda n, t: True),
        ),
        (
            "Left unused:\nretired by\nidleTimeout",
            record(0, early, lambda at: REQUEST_TIME, lambda n, t: True),
        ),
        (
            "Broken silently\n(minClients=1):\nretired by a\nfailed ping",
            record(1, early[1:], lambda at: REQUEST_TIME, lambda n, t: n > 0 or t < 60.0),
        ),
    ]


# Drawing

ZOOM_UNTIL = 10.0
ZOOM = 3.0


def x(t: float) -> float:
    """
    The first seconds, where the connection is made, are drawn wider.
    """
    if t <= ZOOM_UNTIL:
        return t * ZOOM
    return ZOOM_UNTIL * ZOOM + (t - ZOOM_UNTIL)


COLOURS = {
    "connecting": "#c7c7c7",
    "handshake": "#8c8c8c",
    "idle": "#b7e4b0",
    "request": "#2f6fbf",
    "keepalive": "#f0a030",
    "validation": "#9a5fc7",
    "failedPing": "#d62728",
}
LABELS = {
    "connecting": "connecting: connection attempt",
    "handshake": "connecting: handshake (prepareConnection)",
    "idle": "idle",
    "request": "busy: request",
    "keepalive": "busy: keepalive ping",
    "validation": "busy: validation ping",
    "failedPing": "busy: ping unanswered",
}
PINGS = ("keepalive", "validation", "failedPing")


def draw(output: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    recorded = lanes()
    plt.rcParams.update({"font.size": 9, "font.family": "DejaVu Sans"})
    fig, ax = plt.subplots(figsize=(9.0, 7.0))
    height = 0.34
    laneY = [6.9, 4.1, 1.3]
    small = 8.5

    def bar(y: float, start: float, end: float, kind: str, thin: bool = False) -> None:
        h = height * (0.45 if thin else 1.0)
        left, right = x(start), x(end)
        if kind in PINGS:
            # Pings are short: at least wide enough to see.
            right = max(right, left + 2.5)
        ax.add_patch(
            plt.Rectangle(
                (left, y - h / 2),
                right - left,
                h,
                facecolor=COLOURS[kind],
                edgecolor="none",
                zorder=3 if kind in PINGS else 2,
            )
        )

    def span(y: float, start: float, end: float, text: str, **kw: Any) -> None:
        """
        A double-headed arrow over [start, end] with a label over it.
        """
        ax.annotate(
            "",
            xy=(x(start), y),
            xytext=(x(end), y),
            arrowprops=dict(arrowstyle="<|-|>", color="#333333", lw=0.9, shrinkA=0, shrinkB=0),
        )
        kw.setdefault("ha", "center")
        tx = kw.pop("tx", (x(start) + x(end)) / 2)
        ax.text(tx, y + 0.1, text, va="bottom", fontsize=small, **kw)

    def note(y: float, t: float, text: str, dy: float, dx: float = 0.0, **kw: Any) -> None:
        """
        A label pointing at the moment C{t} of the bar at C{y}.
        """
        kw.setdefault("ha", "center")
        ax.annotate(
            text,
            xy=(x(t), y + (height / 2 if dy > 0 else -height / 2)),
            xytext=(x(t) + dx, y + dy),
            va="bottom" if dy > 0 else "top",
            fontsize=small,
            arrowprops=dict(arrowstyle="-", color="#555555", lw=0.7, shrinkA=1, shrinkB=0),
            **kw,
        )

    def retired(y: float, t: float) -> None:
        ax.plot([x(t)], [y], marker="X", markersize=11, color="#111111", zorder=4)

    def connection(y: float, life: Life) -> None:
        assert life.connected is not None and life.ready is not None
        end = life.gone if life.gone is not None else END
        bar(y, life.attempt, life.connected, "connecting")
        bar(y, life.connected, life.ready, "handshake")
        bar(y, life.ready, end, "idle", thin=True)
        for kind, start, stop in life.spans:
            bar(y, start, min(stop, end), kind)
        if life.gone is not None:
            retired(y, life.gone)

    for y, (title, _) in zip(laneY, recorded):
        ax.text(-4, y, title, ha="right", va="center", fontsize=9, fontweight="bold")

    # Lane 1: connect, keepalive, validation, lifetime.
    y, rec = laneY[0], recorded[0][1]
    first = rec.lives[0]
    connection(y, first)
    # The lane titles say how each connection ends: check that the pool agrees.
    assert first.ready is not None and first.gone is not None and first.reason == "lifetime"
    span(
        y + 1.0,
        first.attempt,
        first.ready,
        "connectTimeout (5s)\nbounds connect + handshake",
        ha="left",
        tx=0,
    )
    note(y, first.ready, "ready: the first\nrequest is sent", -0.4, dx=-4, ha="left")
    requests = [s for s in first.spans if s[0] == "request"]
    pings = [s for s in first.spans if s[0] == "keepalive"]
    span(
        y + 0.45,
        requests[1][2],
        pings[0][1],
        "keepaliveInterval (30s)\nsince last request or ping",
    )
    validation = next(s for s in first.spans if s[0] == "validation")
    idleBefore = validation[1] - pings[1][2]
    note(
        y,
        validation[1],
        f"idle {idleBefore:.0f}s > validateAfterIdle (20s):\nvalidation ping, then the request",
        -0.4,
    )
    expiresAt = first.ready + OPTIONS["maxLifetime"] * (1 - LIFETIME_VARIATION * LIFETIME_DRAW)
    span(
        y + 1.0,
        first.ready,
        expiresAt,
        "maxLifetime (240s), less a random part of up to 5%",
        tx=x(150),
    )
    ax.plot([x(expiresAt)] * 2, [y - 0.25, y + 1.0], ls=":", color="#333333", lw=0.9)
    note(
        y,
        first.gone,
        f"expired while busy: retired\nwhen the request is done\n({first.reason})",
        -0.4,
        dx=2,
        ha="right",
    )

    # Lane 2: idleTimeout.
    y, rec = laneY[1], recorded[1][1]
    life = rec.lives[0]
    connection(y, life)
    assert life.gone is not None and life.reason == "idle"
    lastUse = max(stop for kind, start, stop in life.spans if kind == "request")
    span(
        y + 0.45,
        lastUse,
        life.gone,
        "idleTimeout (90s) since the last request:\npings do not count as use",
    )
    note(y, life.gone, f"closed, being above\nminClients ({life.reason})", -0.4, dx=6, ha="left")

    # Lane 3: minClients, whenReady, a failed ping, the replacement.
    y, rec = laneY[2], recorded[2][1]
    broken, replacement = rec.lives[0], rec.lives[1]
    connection(y, broken)
    connection(y - 0.75, replacement)
    assert broken.gone is not None and broken.reason == "keepalive" and rec.ready is not None
    note(y, broken.attempt, "pool made:\nminClients opened", 0.45, dx=1, ha="left")
    note(y, rec.ready, "whenReady() fires", -0.4, dx=2, ha="left")
    failed = next(s for s in broken.spans if s[0] == "failedPing")
    span(y + 0.45, failed[1], failed[2], "pingTimeout (5s)", tx=x(failed[1]) - 3, ha="right")
    note(
        y,
        broken.gone,
        f"no answer: discarded ({broken.reason}),\nreplacement opened at once",
        0.45,
        dx=5,
        ha="left",
    )
    note(y - 0.75, replacement.attempt, "the replacement", -0.35, dx=4, ha="left")

    # Axes.
    ax.axvspan(0, x(ZOOM_UNTIL), color="#f3f3f3", zorder=0)
    ax.text(
        x(ZOOM_UNTIL) / 2,
        -0.05,
        f"first {ZOOM_UNTIL:.0f}s\ndrawn {ZOOM:.0f}\u00d7 wider",
        ha="center",
        va="bottom",
        fontsize=7.5,
        color="#555555",
    )
    ticks = [0, 5, 10, 50, 100, 150, 200, 250]
    ax.set_xticks([x(t) for t in ticks], [str(t) for t in ticks])
    ax.set_xlim(0, x(END))
    ax.set_ylim(-0.1, 8.5)
    ax.set_yticks([])
    for side in ("left", "right", "top"):
        ax.spines[side].set_visible(False)
    settings = ", ".join(
        f"{name}={OPTIONS[name]:g}"
        for name in (
            "connectTimeout",
            "idleTimeout",
            "maxLifetime",
            "keepaliveInterval",
            "validateAfterIdle",
            "pingTimeout",
        )
    )
    ax.set_xlabel(f"seconds\n(settings: {settings})", fontsize=8)
    ax.legend(
        handles=[Patch(facecolor=COLOURS[k], label=LABELS[k]) for k in COLOURS]
        + [plt.Line2D([], [], marker="X", color="#111111", ls="none", markersize=8, label="gone")],
        loc="upper center",
        bbox_to_anchor=(0.4, -0.14),
        ncol=3,
        fontsize=8,
        frameon=False,
    )
    fig.subplots_adjust(left=0.155, right=0.985, top=0.995, bottom=0.2)
    fig.savefig(output, dpi=200, metadata={"Software": None})
    plt.close(fig)


if __name__ == "__main__":
    draw(sys.argv[1] if len(sys.argv) > 1 else OUTPUT)
