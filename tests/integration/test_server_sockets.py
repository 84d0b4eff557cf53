"""
The limiter on real loopback sockets: queued data, departures, timeouts, overflow, per-peer
limits, over TCP on IPv4 and IPv6, TLS and UNIX sockets.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Generator
from pathlib import Path
from typing import Any

import pytest_twisted
from twisted.internet import defer, reactor
from twisted.internet.endpoints import UNIXClientEndpoint, connectProtocol, serverFromString
from twisted.internet.error import ConnectionDone, ConnectionLost

from tests.server_support.net import (
    ClientProtocol,
    ObservedLimiter,
    ServedFactory,
    arrive,
    closeClient,
    limiterEvents,
    tcpClient,
)
from txconnpool.server import LimitConnectionsFactory

Gen = Generator[Any, Any, Any]


@pytest_twisted.inlineCallbacks
def test_queuedClientDataReachesServedProtocolIntact() -> Gen:
    """
    Bytes a client sends while queued are not read until it is served, and then reach the
    served protocol intact and in order.
    """
    served = ServedFactory()
    limiter = ObservedLimiter(served, 1)
    port = reactor.listenTCP(0, limiter, interface="127.0.0.1")
    try:
        number = port.getHost().port
        first = yield arrive(limiter, tcpClient("127.0.0.1", number))
        second = yield arrive(limiter, tcpClient("127.0.0.1", number))
        assert limiter.stats().queued == 1
        message = bytes(range(256)) * 64
        second.transport.write(message)
        echoed = second.receivedAtLeast(len(message))
        made = served.nextMade
        yield closeClient(first)
        yield made
        assert (yield echoed) == message
        assert served.madeCalls[1].received == message
        yield closeClient(second)
    finally:
        yield port.stopListening()


@pytest_twisted.inlineCallbacks
def test_queuedClientsThatCloseOrResetAreRemoved() -> Gen:
    """
    Queued clients that close or reset their connection are noticed while still queued,
    removed and never served; the next live one gets the slot.
    """
    served = ServedFactory()
    limiter = ObservedLimiter(served, 1)
    port = reactor.listenTCP(0, limiter, interface="127.0.0.1")
    try:
        number = port.getHost().port
        with limiterEvents() as waitFor:
            holder = yield arrive(limiter, tcpClient("127.0.0.1", number))
            closer = yield arrive(limiter, tcpClient("127.0.0.1", number))
            resetter = yield arrive(limiter, tcpClient("127.0.0.1", number))
            patient = yield arrive(limiter, tcpClient("127.0.0.1", number))
            closer.transport.write(b"never read")
            left = waitFor("left", 2)
            closer.transport.loseConnection()
            resetter.transport.getHandle().setsockopt(
                socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
            )
            resetter.transport.loseConnection()
            yield left
        stats = limiter.stats()
        assert (stats.active, stats.queued, stats.leftQueued) == (1, 1, 2)
        made = served.nextMade
        yield closeClient(holder)
        servedProtocol = yield made
        patient.transport.write(b"me")
        assert (yield patient.receivedAtLeast(2)) == b"me"
        assert len(served.madeCalls) == 2 and served.madeCalls[1] is servedProtocol
        assert b"never read" not in servedProtocol.received
        yield closeClient(patient)
        yield closer.lost
        yield resetter.lost
        yield servedProtocol.lost
        stats = limiter.stats()
        assert (stats.active, stats.queued, stats.served, stats.leftQueued) == (0, 0, 2, 2)
    finally:
        yield port.stopListening()


@pytest_twisted.inlineCallbacks
def test_idleTimeoutClosesSilentClient() -> Gen:
    """
    A served client that sends nothing for idleTimeout seconds is disconnected.
    """
    limiter = ObservedLimiter(ServedFactory(), 5, idleTimeout=0.2)
    port = reactor.listenTCP(0, limiter, interface="127.0.0.1")
    try:
        client = yield arrive(limiter, tcpClient("127.0.0.1", port.getHost().port))
        yield client.lost
        assert client.reason.check(ConnectionDone, ConnectionLost)
        assert limiter.stats().idleClosed == 1
    finally:
        yield port.stopListening()


@pytest_twisted.inlineCallbacks
def test_slowlorisClientCutOffAtRequestDeadline() -> Gen:
    """
    A client trickling a byte every 20 ms, which an idle timeout never catches, is cut off
    when its request has taken requestTimeout seconds.
    """
    from twisted.web.resource import Resource
    from twisted.web.server import Site

    limiter = ObservedLimiter(Site(Resource()), 5, idleTimeout=5, requestTimeout=0.3)
    port = reactor.listenTCP(0, limiter, interface="127.0.0.1")
    try:
        client = yield arrive(limiter, tcpClient("127.0.0.1", port.getHost().port))
        started = reactor.seconds()
        client.transport.write(b"GET / HTTP/1.1\r\nX-Slow: ")

        def trickle() -> None:
            if not client.lost.called:
                client.transport.write(b"a")
                reactor.callLater(0.02, trickle)

        trickle()
        yield client.lost
        elapsed = reactor.seconds() - started
        assert 0.3 <= elapsed < 3
        stats = limiter.stats()
        assert (stats.requestTimedOut, stats.idleClosed) == (1, 0)
    finally:
        yield port.stopListening()


@pytest_twisted.inlineCallbacks
def test_maxPerPeerOverIPv4AndIPv6() -> Gen:
    """
    With maxPerPeer=1, a second client from 127.0.0.1 waits while clients from 127.0.0.2 and
    ::1 are served at once; it is served when the first from its address leaves.
    """
    served = ServedFactory()
    limiter = ObservedLimiter(served, 10, maxPerPeer=1)
    port4 = reactor.listenTCP(0, limiter, interface="127.0.0.1")
    port6 = reactor.listenTCP(0, limiter, interface="::1")
    try:
        n4, n6 = port4.getHost().port, port6.getHost().port
        first = yield arrive(limiter, tcpClient("127.0.0.1", n4, "127.0.0.1"))
        second = yield arrive(limiter, tcpClient("127.0.0.1", n4, "127.0.0.1"))
        other = yield arrive(limiter, tcpClient("127.0.0.1", n4, "127.0.0.2"))
        six = yield arrive(limiter, tcpClient("::1", n6))
        sixAgain = yield arrive(limiter, tcpClient("::1", n6))
        peers = limiter.stats().peers
        assert (peers["127.0.0.1"].active, peers["127.0.0.1"].queued) == (1, 1)
        assert (peers["127.0.0.2"].active, peers["127.0.0.2"].queued) == (1, 0)
        assert (peers["::1"].active, peers["::1"].queued) == (1, 1)
        assert limiter.stats().active == 3
        made = served.nextMade
        yield closeClient(first)
        yield made
        second.transport.write(b"v4")
        assert (yield second.receivedAtLeast(2)) == b"v4"
        made = served.nextMade
        yield closeClient(six)
        yield made
        sixAgain.transport.write(b"v6")
        assert (yield sixAgain.receivedAtLeast(2)) == b"v6"
        for client in (second, other, sixAgain):
            yield closeClient(client)
        for protocol in served.madeCalls:
            yield protocol.lost
        assert limiter.stats().active == 0
    finally:
        yield port4.stopListening()
        yield port6.stopListening()


@pytest_twisted.inlineCallbacks
def test_unixSocketQueueing(tmp_path: Path) -> Gen:
    """
    On a UNIX socket, a queued client's bytes reach the served protocol once a slot frees.
    """
    served = ServedFactory()
    limiter = ObservedLimiter(served, 1)
    path = str(tmp_path / "limited.sock")
    port = reactor.listenUNIX(path, limiter)
    try:
        first = yield arrive(
            limiter, connectProtocol(UNIXClientEndpoint(reactor, path), ClientProtocol())
        )
        second = yield arrive(
            limiter, connectProtocol(UNIXClientEndpoint(reactor, path), ClientProtocol())
        )
        second.transport.write(b"over unix")
        assert limiter.stats().queued == 1
        yield closeClient(first)
        assert (yield second.receivedAtLeast(9)) == b"over unix"
        yield closeClient(second)
    finally:
        yield port.stopListening()


@pytest_twisted.inlineCallbacks
def test_tlsQueueing(tmp_path: Path) -> Gen:
    """
    Behind a TLS server endpoint, a queued client's encrypted bytes are decrypted and reach
    the served protocol once a slot frees.
    """
    from twisted.internet import ssl
    from twisted.internet.endpoints import SSL4ClientEndpoint

    from tests.server_support.tls import selfSignedPem

    pem = tmp_path / "server.pem"
    pem.write_bytes(selfSignedPem())
    served = ServedFactory()
    limiter = ObservedLimiter(served, 1)
    endpoint = serverFromString(
        reactor, f"ssl:0:interface=127.0.0.1:privateKey={pem}:certKey={pem}"
    )
    port = yield endpoint.listen(limiter)
    try:
        number = port.getHost().port
        options = ssl.CertificateOptions(verify=False)

        def client() -> defer.Deferred[Any]:
            endpoint = SSL4ClientEndpoint(reactor, "127.0.0.1", number, options)
            return connectProtocol(endpoint, ClientProtocol())

        first = yield arrive(limiter, client())
        second = yield arrive(limiter, client())
        second.transport.write(b"secret bytes")
        assert limiter.stats().queued == 1
        yield closeClient(first)
        assert (yield second.receivedAtLeast(12)) == b"secret bytes"
        yield closeClient(second)
    finally:
        yield port.stopListening()


def test_limiterWrapsAnyFactoryType() -> None:
    """
    The limiter is itself a protocol factory that can be listened on.
    """
    from twisted.internet.interfaces import IProtocolFactory

    assert IProtocolFactory.providedBy(LimitConnectionsFactory(ServedFactory(), 1))
