"""
Pooling a multiplexing protocol: Twisted's AMP, whose answers carry the id of their request
and can come in any order.

The pool class says so with C{multiplexed = True}: a request cancelled or timed out while in
flight then leaves its connection in service (AMP matches the late answer to the request's
own Deferred, which the pool no longer listens to), where for an in-order protocol such as
Redis the connection would be dropped.

The program starts an AMP server of its own on a free loopback port whose responder holds
each request until C{batch} of them have come on the connection, then answers them in the
reverse order, and shows, on one pooled connection:

  - five requests answered in the reverse order they were sent;
  - a request cancelled while in flight, and one timed out, each leaving the connection in
    service, their late answers dropped.

Run it with C{python examples/amp_pool.py}.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.protocol import Factory
from twisted.internet.task import react
from twisted.protocols import amp

from txconnpool import Pool, PooledClientFactory, RequestTimeoutError


class Hold(amp.Command):
    """
    Answer with C{tag} once C{batch} requests have come on the connection.
    """

    arguments = [(b"tag", amp.Unicode()), (b"batch", amp.Integer())]
    response = [(b"tag", amp.Unicode())]


class ReversingServer(amp.AMP):
    """
    Holds the requests of its connection and answers each batch last first.
    """

    def __init__(self, clock: Any) -> None:
        super().__init__()
        self.clock = clock
        self.held: list[tuple[str, Deferred[dict[str, str]]]] = []

    @Hold.responder
    def hold(self, tag: str, batch: int) -> Deferred[dict[str, str]]:
        answer: Deferred[dict[str, str]] = Deferred()
        self.held.append((tag, answer))
        if len(self.held) >= batch:
            held, self.held = self.held, []
            # Answer once this responder has returned, so that the last request's answer
            # goes first too.
            self.clock.callLater(0, self.answer, held)
        return answer

    def answer(self, held: list[tuple[str, Deferred[dict[str, str]]]]) -> None:
        for tag, answer in reversed(held):
            answer.callback({"tag": tag})


class AMPFactory(PooledClientFactory):
    protocol = amp.AMP


class AMPPool(Pool[amp.AMP]):
    """
    A pool of AMP connections, several requests in flight on each.
    """

    clientFactory = AMPFactory
    multiplexed = True
    defaultMaxRequestsPerClient = 100

    def callRemote(self, command: type[amp.Command], **arguments: Any) -> Deferred[Any]:
        """
        Call C{command} on a pooled connection.

        @return: A L{Deferred} firing with the command's answer as a C{dict}.
        """
        return self.performRequest("callRemote", command, **arguments)


async def main(reactor: Any) -> None:
    server = Factory.forProtocol(lambda: ReversingServer(reactor))
    listening = reactor.listenTCP(0, server, interface="127.0.0.1")
    address = f"tcp:127.0.0.1:{listening.getHost().port}"
    pool = AMPPool(address, maxClients=1, reactor=reactor, requestTimeout=0.5)
    try:
        tags = ["a", "b", "c", "d", "e"]
        answered: list[str] = []
        calls = [pool.callRemote(Hold, tag=tag, batch=len(tags)) for tag in tags]
        for call in calls:
            call.addCallback(lambda answer: answered.append(answer["tag"]) or answer)
        await gatherResults(calls)
        print("sent in order:", " ".join(tags))
        print("answered in order:", " ".join(answered))

        first = pool.callRemote(Hold, tag="kept-1", batch=3)
        cancelled = pool.callRemote(Hold, tag="cancelled", batch=3)
        cancelled.addErrback(lambda failure: print("cancelled in flight:", failure.type.__name__))
        cancelled.cancel()
        last = pool.callRemote(Hold, tag="kept-2", batch=3)
        print("answers after the cancel:", [a["tag"] for a in await gatherResults([first, last])])
        stats = pool.poolStats()
        print(f"connections opened: {stats.created}, closed: {stats.closed}")

        try:
            await pool.callRemote(Hold, tag="timed-out", batch=2)
        except RequestTimeoutError as e:
            print("timed out in flight:", type(e).__name__)
        late = await pool.callRemote(Hold, tag="after-timeout", batch=2)
        print("answer after the timeout:", late["tag"])
        stats = pool.poolStats()
        print(f"connections opened: {stats.created}, closed: {stats.closed}")
    finally:
        await pool.close()
        await listening.stopListening()


if __name__ == "__main__":
    react(lambda reactor: Deferred.fromCoroutine(main(reactor)))
