"""
A TCP fault proxy for the fault-injection tests.

L{FaultProxy} listens on a free port of 127.0.0.1 and forwards every connection it accepts to
a target server (a real memcached). On command it misbehaves the way a network or a server
can: it delays replies, slices them into one-byte writes or splits them at a given byte,
stalls, resets or closes connections (at once, or after part of a reply), answers a request
with bytes of its choice (garbage, a reply of the wrong type), sends unsolicited bytes, and
drops new connections. It counts the client connections it has open, which is how the tests
check that a pool leaks no socket, and it reports what happens through L{Deferred}s, so that
tests wait on events rather than on the clock.

Time passes only through the reactor's C{callLater}.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any

from twisted.internet import reactor as globalReactor
from twisted.internet.defer import Deferred, DeferredList
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.python.failure import Failure


class _Upstream(Protocol):
    """
    The proxy's connection to the target server, on behalf of one client connection.
    """

    def __init__(self, client: _Client) -> None:
        self.client = client

    def dataReceived(self, data: bytes) -> None:
        self.client.proxy._fromServer(self.client, data)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.client.upstreamLost()


class _Client(Protocol):
    """
    One client connection accepted by the proxy, with its queue of bytes to send back.
    """

    proxy: FaultProxy

    def __init__(self) -> None:
        self.upstream: _Upstream | None = None
        self.held: list[bytes] = []  # client -> server, held until upstream is ready
        self.outgoing: deque[tuple[float, bytes]] = deque()  # server -> client: (due, bytes)
        self.pump: Any = None
        self.silenced = False
        self.closeWhenFlushed = False
        self.open = False
        self.done: Deferred[None] = Deferred()

    def connectionMade(self) -> None:
        self.open = True
        self.transport.setTcpNoDelay(True)  # type: ignore[union-attr]
        self.proxy._clientMade(self)

    def dataReceived(self, data: bytes) -> None:
        self.proxy._fromClient(self, data)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.open = False
        if self.pump is not None and self.pump.active():
            self.pump.cancel()
        self.pump = None
        self.outgoing.clear()
        if self.upstream is not None and self.upstream.transport is not None:
            self.upstream.transport.abortConnection()  # type: ignore[attr-defined]
        self.proxy._clientLost(self)
        self.done.callback(None)

    def connectUpstream(self) -> None:
        endpoint = TCP4ClientEndpoint(
            self.proxy.reactor, self.proxy.targetHost, self.proxy.targetPort, timeout=5
        )
        upstream = _Upstream(self)
        attempt = endpoint.connect(Factory.forProtocol(lambda: upstream))
        attempt.addCallbacks(self._upstreamMade, self._upstreamFailed)

    def _upstreamMade(self, upstream: _Upstream) -> None:
        if not self.open:
            upstream.transport.abortConnection()  # type: ignore[union-attr]
            return
        self.upstream = upstream
        self.flushToServer()

    def _upstreamFailed(self, reason: Failure) -> None:
        if self.open:
            self.transport.loseConnection()  # type: ignore[union-attr]

    def upstreamLost(self) -> None:
        if not self.open:
            return
        if self.outgoing:
            self.closeWhenFlushed = True
        else:
            self.transport.loseConnection()  # type: ignore[union-attr]

    def flushToServer(self) -> None:
        if self.upstream is None or self.proxy.stalled or not self.open:
            return
        held, self.held = self.held, []
        for data in held:
            self.upstream.transport.write(data)  # type: ignore[union-attr]

    def send(self, data: bytes, delay: float = 0.0) -> None:
        """
        Queue bytes for the client, due after C{delay} seconds (and after those queued
        before); with the proxy's C{sliceReplies}, one byte per write.
        """
        if not data or not self.open:
            return
        due = self.proxy.reactor.seconds() + delay
        if self.outgoing:
            due = max(due, self.outgoing[-1][0])
        if self.proxy.sliceReplies:
            for i in range(len(data)):
                self.outgoing.append((due, data[i : i + 1]))
        else:
            self.outgoing.append((due, data))
        self._schedule()

    def _schedule(self, turns: int = 1) -> None:
        if self.pump is not None or not self.outgoing or self.proxy.stalled:
            return
        wait = max(0.0, self.outgoing[0][0] - self.proxy.reactor.seconds())
        self.pump = self.proxy.reactor.callLater(wait, self._pumpOne, turns)

    def _pumpOne(self, turns: int) -> None:
        """
        Write the next due chunk and schedule the following one; when slicing, wait
        C{turns} reactor turns first, so that the client has read the previous byte (one
        turn to send it, one for the client to read it).
        """
        self.pump = None
        if turns > 1:
            self.pump = self.proxy.reactor.callLater(0, self._pumpOne, turns - 1)
            return
        if not self.open or self.proxy.stalled or not self.outgoing:
            return
        _, data = self.outgoing.popleft()
        self.transport.write(data)  # type: ignore[union-attr]
        self.proxy.delivered += len(data)
        if self.outgoing:
            self._schedule(3 if self.proxy.sliceReplies else 1)
        elif self.closeWhenFlushed:
            self.transport.loseConnection()  # type: ignore[union-attr]
        self.proxy._changed()


class _ProxyFactory(Factory):
    noisy = False

    def __init__(self, proxy: FaultProxy) -> None:
        self.proxy = proxy

    def buildProtocol(self, addr: Any) -> _Client:
        client = _Client()
        client.proxy = self.proxy
        return client


class FaultProxy:
    """
    A TCP proxy in front of one server, with faults switched on and off by the test.

    Settings that stay until changed:

    @ivar latency: Seconds added before each chunk of reply bytes reaches the client.
    @ivar sliceReplies: Send replies one byte per write, each in its own reactor turn (the
        client side has C{TCP_NODELAY}), so that the client reads them in many pieces.
    @ivar dropNew: Reset every new client connection as soon as it is accepted.
    @ivar stalled: Forward nothing in either direction (see L{stall} and L{resume}).

    Counters:

    @ivar accepted: Client connections accepted so far.
    @ivar requests: Chunks of bytes received from clients so far.
    @ivar delivered: Reply bytes written to clients so far.
    """

    def __init__(
        self, targetPort: int, targetHost: str = "127.0.0.1", reactor: Any = None
    ) -> None:
        self.reactor: Any = globalReactor if reactor is None else reactor
        self.targetHost = targetHost
        self.targetPort = targetPort
        self.latency = 0.0
        self.sliceReplies = False
        self.dropNew = False
        self.stalled = False
        self.accepted = 0
        self.requests = 0
        self.delivered = 0
        self.clients: list[_Client] = []
        self._port: Any = None
        self._lastPort = 0
        self._watchers: list[tuple[Callable[[], bool], Deferred[None]]] = []
        self._closeAfter: int | None = None
        self._silenceAfter: int | None = None
        self._splitAt: tuple[int, float] | None = None
        self._replyWith: bytes | None = None
        self._resetOnRequest = False

    # Lifecycle

    def listen(self) -> int:
        """
        Start listening on a free port of 127.0.0.1.

        @return: The port.
        """
        self._port = self.reactor.listenTCP(0, _ProxyFactory(self), interface="127.0.0.1")
        return self.port

    @property
    def port(self) -> int:
        """
        The port the proxy listens on (or listened on, after L{stopListening}).
        """
        if self._port is None:
            return self._lastPort
        port: int = self._port.getHost().port
        return port

    @property
    def endpoint(self) -> str:
        """
        The client endpoint description of the proxy.
        """
        return f"tcp:127.0.0.1:{self.port}"

    def stopListening(self) -> Deferred[None]:
        """
        Stop accepting connections (new ones are refused), keeping those open.

        @return: A L{Deferred} firing once the port is closed.
        """
        port, self._port = self._port, None
        self._lastPort = port.getHost().port
        stopped: Deferred[None] = port.stopListening()
        return stopped

    def close(self) -> Deferred[Any]:
        """
        Stop listening and reset every connection.

        @return: A L{Deferred} firing once the port and every client connection are closed.
        """
        waits: list[Deferred[Any]] = []
        if self._port is not None:
            waits.append(self._port.stopListening())
            self._port = None
        for client in list(self.clients):
            waits.append(client.done)
            client.transport.abortConnection()  # type: ignore[union-attr]
        for _, d in self._watchers:
            if not d.called:
                d.cancel()
        self._watchers = []
        return DeferredList(waits, consumeErrors=True)

    # Observation

    @property
    def openClients(self) -> int:
        """
        Client connections open right now.
        """
        return len(self.clients)

    def until(self, predicate: Callable[[], bool]) -> Deferred[None]:
        """
        @return: A L{Deferred} that fires once C{predicate()} is true (at once if it is):
            it is checked whenever a connection opens or closes and whenever bytes pass.
        """
        d: Deferred[None] = Deferred()
        if predicate():
            d.callback(None)
        else:
            self._watchers.append((predicate, d))
        return d

    def nextRequest(self) -> Deferred[None]:
        """
        @return: A L{Deferred} that fires when the proxy next receives bytes from a client.
        """
        seen = self.requests
        return self.until(lambda: self.requests > seen)

    def _changed(self) -> None:
        watchers = self._watchers
        ready = [(p, d) for p, d in watchers if p()]
        if not ready:
            return
        self._watchers = [(p, d) for p, d in watchers if (p, d) not in ready]
        for _, d in ready:
            if not d.called:
                d.callback(None)

    # Faults acting at once

    def stall(self) -> None:
        """
        Stop forwarding, in both directions, until L{resume}: bytes are held, not lost
        (those of L{replyWith} and L{inject} too).
        """
        self.stalled = True

    def resume(self) -> None:
        """
        Forward again, starting with what was held.
        """
        self.stalled = False
        for client in list(self.clients):
            client.flushToServer()
            client._schedule()

    def resetAll(self) -> None:
        """
        Reset every client connection (an RST: C{abortConnection}).
        """
        for client in list(self.clients):
            client.transport.abortConnection()  # type: ignore[union-attr]

    def closeAll(self) -> None:
        """
        Close every client connection cleanly (a FIN), as a server restarting or reaping idle
        connections does.
        """
        for client in list(self.clients):
            client.transport.loseConnection()  # type: ignore[union-attr]

    def inject(self, data: bytes) -> None:
        """
        Send C{data} to every client now, as if the server had sent it unasked.
        """
        for client in list(self.clients):
            client.send(data)

    # Faults armed for the next request or reply (on whichever connection comes first)

    def closeAfter(self, count: int) -> None:
        """
        Pass on only the first C{count} bytes of the next reply, then close that client
        connection.
        """
        self._closeAfter = count

    def silenceAfter(self, count: int) -> None:
        """
        Pass on only the first C{count} bytes of the next reply, then nothing more on that
        connection, which stays open.
        """
        self._silenceAfter = count

    def splitNextReply(self, at: int, gap: float) -> None:
        """
        Send the next reply in two writes: its first C{at} bytes at once, the rest C{gap}
        seconds later.
        """
        self._splitAt = (at, gap)

    def replyWith(self, data: bytes) -> None:
        """
        Answer the next request with C{data} instead of forwarding it to the server.
        """
        self._replyWith = data

    def resetOnRequest(self) -> None:
        """
        Reset the connection that next sends a request, without forwarding it.
        """
        self._resetOnRequest = True

    # Forwarding

    def _clientMade(self, client: _Client) -> None:
        self.accepted += 1
        if self.dropNew:
            client.open = False
            client.transport.abortConnection()  # type: ignore[union-attr]
            return
        self.clients.append(client)
        client.connectUpstream()
        self._changed()

    def _clientLost(self, client: _Client) -> None:
        if client in self.clients:
            self.clients.remove(client)
        self._changed()

    def _fromClient(self, client: _Client, data: bytes) -> None:
        self.requests += 1
        if self._resetOnRequest:
            self._resetOnRequest = False
            client.transport.abortConnection()  # type: ignore[union-attr]
        elif self._replyWith is not None:
            reply, self._replyWith = self._replyWith, None
            client.send(reply)
        else:
            client.held.append(data)
            client.flushToServer()
        self._changed()

    def _fromServer(self, client: _Client, data: bytes) -> None:
        if client.silenced or not client.open:
            return
        if self._closeAfter is not None:
            data, self._closeAfter = data[: self._closeAfter], None
            client.silenced = True
            client.closeWhenFlushed = True
            client.send(data, self.latency)
            if not client.outgoing:
                client.transport.loseConnection()  # type: ignore[union-attr]
        elif self._silenceAfter is not None:
            data, self._silenceAfter = data[: self._silenceAfter], None
            client.silenced = True
            client.send(data, self.latency)
        elif self._splitAt is not None:
            (at, gap), self._splitAt = self._splitAt, None
            client.send(data[:at], self.latency)
            client.send(data[at:], self.latency + gap)
        else:
            client.send(data, self.latency)
        self._changed()
