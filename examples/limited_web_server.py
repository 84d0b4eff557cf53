"""
A twisted.web server protected by txconnpool's connection limiter.

At most --max-connections clients are served at once; up to --max-queued more wait, paused,
and are served in order of arrival; beyond that, or after waiting 30 seconds (the limiter's
default queueTimeout), a client gets "503 Service Unavailable" with Retry-After.  The other
protections are the limiter's defaults: silent connections are closed after 75 seconds, a
request's headers must arrive within 10 seconds, and while clients wait, served keep-alive
clients take turns (each gives up its slot at a request boundary after --min-turn seconds,
by default the limiter's minTurn) and idle ones make room.

Serve until interrupted, on any endpoint description:

    python examples/limited_web_server.py --listen tcp:8080
    python examples/limited_web_server.py --listen tcp6:8080:interface=\\:\\:1

Or run a short demonstration that starts the server on a free port, sends it more concurrent
requests than it has slots, prints what happened and exits:

    python examples/limited_web_server.py --demo
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from twisted.internet import defer, task
from twisted.internet.endpoints import serverFromString
from twisted.internet.interfaces import IReactorTime
from twisted.logger import globalLogBeginner, textFileLogObserver
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request, Site

from txconnpool.server import LimitConnectionsFactory, ServiceUnavailableFactory


class Slow(Resource):
    """
    Answers after a short pause, like a page that waits on a database.
    """

    isLeaf = True

    def __init__(self, reactor: IReactorTime, delay: float) -> None:
        super().__init__()
        self.reactor = reactor
        self.delay = delay

    def render_GET(self, request: Request) -> int:
        def answer() -> None:
            request.setHeader(b"content-type", b"text/plain")
            request.write(b"Hello from a protected server.\n")
            request.finish()

        call = self.reactor.callLater(self.delay, answer)
        request.notifyFinish().addErrback(lambda _: call.cancel() if call.active() else None)
        return NOT_DONE_YET


def makeFactory(reactor: Any, options: argparse.Namespace) -> LimitConnectionsFactory:
    """
    The site, wrapped in the limiter configured by C{options}; the other options keep the
    limiter's protective defaults.
    """
    site = Site(Slow(reactor, options.delay))
    turns = {} if options.min_turn is None else {"minTurn": options.min_turn}
    return LimitConnectionsFactory(
        site,
        options.max_connections,
        maxQueued=options.max_queued,
        overflowFactory=ServiceUnavailableFactory(retryAfter=2, reactor=reactor),
        reactor=reactor,
        **turns,
    )


async def demo(reactor: Any, options: argparse.Namespace) -> None:
    """
    Start the server on a free port, send it concurrent requests, print the outcome.
    """
    import treq
    from twisted.web.client import Agent, HTTPConnectionPool

    factory = makeFactory(reactor, options)
    port = await serverFromString(reactor, "tcp:0:interface=127.0.0.1").listen(factory)
    pool = HTTPConnectionPool(reactor, persistent=False)
    client = treq.client.HTTPClient(Agent(reactor, pool=pool))
    url = f"http://127.0.0.1:{port.getHost().port}/"

    async def fetch() -> int:
        response = await client.get(url)
        await response.content()
        return int(response.code)

    try:
        codes = await defer.gatherResults(
            [defer.ensureDeferred(fetch()) for _ in range(options.demo_requests)]
        )
    finally:
        await pool.closeCachedConnections()
        await port.stopListening()
    print(f"{codes.count(200)} requests served (200), {codes.count(503)} refused (503)")
    print(factory.stats())


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--listen", default="tcp:8080", help="an endpoint description")
    parser.add_argument("--max-connections", type=int, default=10)
    parser.add_argument("--max-queued", type=int, default=20)
    parser.add_argument(
        "--min-turn", type=float, default=None, help="seconds (default: the limiter's default)"
    )
    parser.add_argument("--delay", type=float, default=0.05)
    parser.add_argument("--demo", action="store_true")
    parser.add_argument("--demo-requests", type=int, default=50)
    options = parser.parse_args(argv)

    if options.demo:
        task.react(lambda reactor: defer.ensureDeferred(demo(reactor, options)))
        return

    from twisted.internet import reactor

    globalLogBeginner.beginLoggingTo([textFileLogObserver(sys.stdout)])
    serverFromString(reactor, options.listen).listen(makeFactory(reactor, options))
    reactor.run()  # type: ignore[attr-defined]


if __name__ == "__main__":
    main(sys.argv[1:])
