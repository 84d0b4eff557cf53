"""
What a client gets when the queue is full or it waited too long: by default the connection is
closed at once; L{ServiceUnavailableFactory} answers HTTP clients with
C{503 Service Unavailable} and C{Retry-After}.
"""

from __future__ import annotations

from typing import cast

from twisted.internet.interfaces import IAddress, IDelayedCall, IReactorTime
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.python.failure import Failure

_END_OF_HEADERS = b"\r\n\r\n"


class ServiceUnavailableProtocol(Protocol):
    """
    Reads the start of an HTTP request (up to the end of its headers), answers
    C{503 Service Unavailable} with C{Retry-After} and C{Connection: close}, and closes.

    It closes its writing side first and keeps discarding input for a short while, so that a
    request body still arriving does not make the kernel reset the connection before the client
    has read the answer.
    """

    factory: ServiceUnavailableFactory

    def __init__(self) -> None:
        self._received = 0
        self._tail = b""
        self._answered = False
        self._timer: IDelayedCall | None = None

    def connectionMade(self) -> None:
        self._timer = self.factory.reactor.callLater(self.factory.readTimeout, self._answer)

    def dataReceived(self, data: bytes) -> None:
        if self._answered:
            return
        self._received += len(data)
        window = self._tail + data
        if _END_OF_HEADERS in window or self._received >= self.factory.maxRequestBytes:
            self._answer()
        else:
            self._tail = window[-3:]

    def _answer(self) -> None:
        self._cancel()
        if self._answered or self.transport is None:
            return
        self._answered = True
        self.transport.write(self.factory.response)
        loseWrite = getattr(self.transport, "loseWriteConnection", None)
        if loseWrite is None:
            self.transport.loseConnection()
            return
        loseWrite()
        self._timer = self.factory.reactor.callLater(
            self.factory.lingerTimeout, self.transport.loseConnection
        )

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self._cancel()

    def _cancel(self) -> None:
        timer, self._timer = self._timer, None
        if timer is not None and timer.active():
            timer.cancel()


class ServiceUnavailableFactory(Factory[ServiceUnavailableProtocol]):
    """
    Builds L{ServiceUnavailableProtocol}, for the C{overflowFactory} of a limiter in front of an
    HTTP server.

    @ivar retryAfter: Seconds announced in C{Retry-After}.
    @ivar readTimeout: Seconds to wait for the request's headers before answering anyway.
    @ivar lingerTimeout: Seconds to keep discarding input after answering.
    @ivar maxRequestBytes: Bytes read at most before answering.
    @ivar response: The complete response sent.
    """

    protocol = ServiceUnavailableProtocol
    noisy = False

    def __init__(
        self,
        *,
        retryAfter: int = 5,
        body: bytes = b"Service Unavailable: the server is busy, please retry.\n",
        readTimeout: float = 5.0,
        lingerTimeout: float = 2.0,
        maxRequestBytes: int = 65536,
        reactor: IReactorTime | None = None,
    ) -> None:
        if isinstance(retryAfter, bool) or not isinstance(retryAfter, int) or retryAfter < 0:
            raise ValueError(f"retryAfter must be a whole number of seconds, not {retryAfter!r}")
        for name, value in (("readTimeout", readTimeout), ("lingerTimeout", lingerTimeout)):
            if not value >= 0:
                raise ValueError(f"{name} must be zero or more seconds, not {value!r}")
        if maxRequestBytes < 1:
            raise ValueError(f"maxRequestBytes must be positive, not {maxRequestBytes!r}")
        if reactor is None:
            from twisted.internet import reactor as globalReactor

            reactor = cast(IReactorTime, globalReactor)
        assert reactor is not None
        self.reactor = reactor
        self.retryAfter = retryAfter
        self.readTimeout = readTimeout
        self.lingerTimeout = lingerTimeout
        self.maxRequestBytes = maxRequestBytes
        self.response = (
            b"HTTP/1.1 503 Service Unavailable\r\n"
            b"Retry-After: %d\r\n"
            b"Content-Type: text/plain; charset=utf-8\r\n"
            b"Content-Length: %d\r\n"
            b"Connection: close\r\n"
            b"\r\n%s"
        ) % (retryAfter, len(body), body)

    def buildProtocol(self, addr: IAddress | None) -> ServiceUnavailableProtocol:
        protocol = self.protocol()
        protocol.factory = self
        return protocol
