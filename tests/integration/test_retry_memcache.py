"""
L{txconnpool.retry} over real sockets: a MemCachePool reaching a real memcached through a
proxy that breaks the first connections in the middle of a reply.
"""

from __future__ import annotations

from typing import Any

import pytest_twisted
from twisted.internet import reactor
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.protocol import Protocol, ServerFactory, connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure

from txconnpool import ConnectionLostError
from txconnpool.memcache import MemCachePool
from txconnpool.memcache.testing import MemcachedProcess
from txconnpool.retry import retry


class _Upstream(Protocol):
    """
    The proxy's connection to memcached, passing replies back to its client side.
    """

    def __init__(self, client: _CuttingProxy) -> None:
        self.client = client

    def dataReceived(self, data: bytes) -> None:
        self.client.fromServer(data)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.client.transport.loseConnection()  # type: ignore[union-attr]


class _CuttingProxy(Protocol):
    """
    One client connection of the proxy. If it is among the first C{factory.cutFirst}
    connections, the client gets the first 6 bytes of memcached's reply and then the
    connection is closed, as when a server dies while answering.
    """

    factory: _ProxyFactory

    def connectionMade(self) -> None:
        self.factory.accepted += 1
        self.cut = self.factory.accepted <= self.factory.cutFirst
        self.pending = b""
        self.upstream: _Upstream | None = None
        endpoint = TCP4ClientEndpoint(reactor, self.factory.host, self.factory.port)
        connectProtocol(endpoint, _Upstream(self)).addCallbacks(
            self._connected,
            lambda f: self.transport.loseConnection(),  # type: ignore[union-attr]
        )

    def _connected(self, upstream: _Upstream) -> None:
        self.upstream = upstream
        if self.pending:
            self.dataReceived(b"")

    def dataReceived(self, data: bytes) -> None:
        self.pending += data
        if self.upstream is not None and self.pending:
            self.upstream.transport.write(self.pending)  # type: ignore[union-attr]
            self.pending = b""

    def fromServer(self, data: bytes) -> None:
        if not self.cut:
            self.transport.write(data)  # type: ignore[union-attr]
        elif not self.transport.disconnecting:  # type: ignore[union-attr]
            self.transport.write(data[:6])  # type: ignore[union-attr]
            self.transport.loseConnection()  # type: ignore[union-attr]

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        if self.upstream is not None:
            self.upstream.transport.loseConnection()  # type: ignore[union-attr]


class _ProxyFactory(ServerFactory):
    protocol = _CuttingProxy  # type: ignore[assignment]

    def __init__(self, host: str, port: int, cutFirst: int) -> None:
        self.host, self.port, self.cutFirst = host, port, cutFirst
        self.accepted = 0


@pytest_twisted.ensureDeferred
async def test_retriedGetSurvivesConnectionsCutMidReply(memcached: MemcachedProcess) -> None:
    """
    A retried MemCachePool.get succeeds on a new connection after the server side cut the
    connection it was using in the middle of the reply, which a plain get cannot survive.
    """
    assert memcached.host is not None and memcached.port is not None
    direct = MemCachePool(memcached.endpoint, maxClients=1)
    factory = _ProxyFactory(memcached.host, memcached.port, cutFirst=2)
    listening: Any = reactor.listenTCP(0, factory, interface="127.0.0.1")  # type: ignore[attr-defined]
    pool = MemCachePool(f"tcp:127.0.0.1:{listening.getHost().port}", maxClients=1)
    events: list[dict[str, Any]] = []
    try:
        assert await direct.set(b"retry-key", b"retry-value", flags=3) is True

        # The first connection is cut after "VALUE ": a reply had started, so the pool's own
        # resend of idempotent commands on stale connections does not apply.
        plain = pool.get(b"retry-key")
        lostError = None
        try:
            await plain
        except ConnectionLostError as e:
            lostError = e
        assert lostError is not None

        # The second connection is cut too; the retry runs on a third, which works.
        log = Logger(observer=events.append)  # type: ignore[arg-type]
        fetch = retry(maxFailures=3, logger=log)(pool.get)
        assert await fetch(b"retry-key") == (3, b"retry-value")
        assert factory.accepted == 3
        assert [(e["attempt"], e["delay"]) for e in events] == [(1, 0.0)]
        assert isinstance(events[0]["error"], ConnectionLostError)
        assert await fetch(b"retry-key") == (3, b"retry-value")
        assert factory.accepted == 3
    finally:
        await pool.close()
        await direct.close()
        await listening.stopListening()
