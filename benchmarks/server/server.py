"""
The server the benchmark loads: a twisted.web hello-world, bare or behind the limiter.

It prints C{PORT <n>} once listening, and answers the line C{stats} on stdin with C{STATS
<json>} (the limiter's counters; empty for the bare site).

Usage: python server.py bare
       python server.py limited MAX_CONNECTIONS [OPTIONS]

OPTIONS is a JSON object of keyword arguments for the limiter (C{{"minTurn": 0.02}}); the
limiter's defaults apply to the others.
"""

from __future__ import annotations

import json
import sys

import attrs
from twisted.internet import reactor, stdio
from twisted.protocols.basic import LineReceiver
from twisted.web.resource import Resource
from twisted.web.server import Request, Site

from txconnpool.server import LimitConnectionsFactory


class Hello(Resource):
    isLeaf = True

    def render_GET(self, request: Request) -> bytes:
        request.setHeader(b"content-type", b"text/plain")
        return b"Hello, world!\n"


class Control(LineReceiver):
    delimiter = b"\n"

    def __init__(self, limiter: LimitConnectionsFactory | None) -> None:
        self.limiter = limiter

    def lineReceived(self, line: bytes) -> None:
        if line.strip() == b"stats":
            stats = {} if self.limiter is None else attrs.asdict(self.limiter.stats())
            stats.pop("peers", None)
            self.sendLine(b"STATS " + json.dumps(stats).encode())


def main(argv: list[str]) -> None:
    site = Site(Hello())
    site.noisy = False
    limiter = None
    factory: object = site
    if argv[0] == "limited":
        options = json.loads(argv[2]) if len(argv) > 2 else {}
        limiter = LimitConnectionsFactory(site, int(argv[1]), **options)
        factory = limiter
    port = reactor.listenTCP(0, factory, backlog=1024, interface="127.0.0.1")  # type: ignore[attr-defined]
    stdio.StandardIO(Control(limiter))
    sys.stdout.write(f"PORT {port.getHost().port}\n")
    sys.stdout.flush()
    reactor.run()  # type: ignore[attr-defined]


if __name__ == "__main__":
    main(sys.argv[1:])
