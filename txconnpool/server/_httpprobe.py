"""
The probe for C{twisted.web}'s HTTP/1.x channel, registered as the L{IConnectionProbe} adapter
of L{HTTPChannel<twisted.web.http.HTTPChannel>} (and of the channel a
L{Site<twisted.web.server.Site>} builds, which may later switch to HTTP/2).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from twisted.python.components import registerAdapter
from twisted.web.http import HTTPChannel, Request, _GenericHTTPChannelProtocol
from zope.interface import implementer

from ._probe import IConnectionProbe

_TIMEOUT = re.compile(rb"(?:^|[\s,;])timeout\s*=\s*(\d+(?:\.\d+)?)", re.IGNORECASE)
_BARE = re.compile(rb"^\s*(\d+(?:\.\d+)?)\s*$")


def parseKeepAlive(values: Sequence[bytes] | None) -> float | None:
    """
    Read the duration out of C{Keep-Alive} header values (C{timeout=5, max=100}, or the
    older bare C{300}).

    @return: The duration in seconds, or L{None} if no value states one.
    """
    for value in values or ():
        match = _TIMEOUT.search(value) or _BARE.match(value)
        if match is not None:
            return float(match.group(1))
    return None


def _closeAfter(request: Request) -> None:
    request.responseHeaders.setRawHeaders(b"connection", [b"close"])


@implementer(IConnectionProbe)
class HTTPChannelProbe:
    """
    A probe for C{twisted.web}'s HTTP/1.x channel.

    The channel is idle when it holds no request (none being received, processed or answered)
    and no partial data.  A request is arriving from the first byte of its request line until
    its body is complete; its head, until its headers are complete.  The keep-alive duration
    is the one the last response announced (C{Keep-Alive: timeout=N}), else the one the last
    request asked for, else the channel's own idle timeout (the C{timeout} of
    L{Site<twisted.web.server.Site>}).

    At the end of its turn the channel answers with C{Connection: close} and closes the
    connection once that response is sent: the response of the request in progress if it has
    not started yet, else the response of the next request.  (It decides this the way the
    channel decides for a client that asked for C{Connection: close}, through the channel's
    C{checkPersistence}.)

    After an upgrade to HTTP/2 the channel is no longer an
    L{HTTPChannel<twisted.web.http.HTTPChannel>}; the probe then answers like
    L{TurnTakingProbe<txconnpool.server.TurnTakingProbe>}.
    """

    def __init__(self, protocol: HTTPChannel | _GenericHTTPChannelProtocol) -> None:
        self._protocol = protocol
        self._generic = isinstance(protocol, _GenericHTTPChannelProtocol)
        self._http: HTTPChannel | None = None
        self._receiving = False
        self._answering: Request | None = None
        self._turnEnded = False

    def _channel(self) -> HTTPChannel | None:
        """
        @return: The HTTP/1.x channel, or L{None} once the connection speaks HTTP/2.
        """
        if not self._generic:
            return self._protocol
        channel = self._protocol._channel  # type: ignore[union-attr]
        if channel is self._http:
            return channel
        self._http = channel if isinstance(channel, HTTPChannel) else None
        return self._http

    # Without a channel (after an upgrade to HTTP/2), the answers are TurnTakingProbe's, from
    # the same flag.

    def bytesReceived(self) -> None:
        self._receiving = True

    def bytesSent(self) -> None:
        self._receiving = False
        channel = self._channel()
        if channel is not None and channel.requests:
            self._answering = channel.requests[0]

    def isIdle(self) -> bool:
        channel = self._channel()
        if channel is None:
            return not self._receiving
        return not channel.requests and not channel._buffer

    def isReceivingRequest(self) -> bool:
        channel = self._channel()
        if channel is None:
            return self._receiving
        if channel._handlingRequest:
            return False
        return bool(channel.requests) or bool(channel._buffer)

    def isReceivingHead(self) -> bool:
        channel = self._channel()
        if channel is None or channel._handlingRequest or not channel.line_mode:
            return False
        return bool(channel.requests) or bool(channel._buffer)

    def keepAliveTimeout(self) -> float | None:
        request = self._answering
        if request is not None:
            announced = parseKeepAlive(request.responseHeaders.getRawHeaders(b"keep-alive"))
            if announced is None:
                announced = parseKeepAlive(request.requestHeaders.getRawHeaders(b"keep-alive"))
            if announced is not None:
                return announced
        channel = self._channel()
        if channel is None:
            return None
        timeOut = channel.timeOut
        return None if timeOut is None else float(timeOut)

    def endTurn(self) -> bool:
        channel = self._channel()
        if channel is None:
            return False
        if not self._turnEnded:
            self._turnEnded = True
            decide = channel.checkPersistence

            def checkPersistence(request: Request, version: bytes) -> bool:
                decide(request, version)  # type: ignore[no-untyped-call]
                _closeAfter(request)
                return False

            channel.checkPersistence = checkPersistence  # type: ignore[method-assign]
        if channel.requests:
            request = channel.requests[-1]
            if not getattr(request, "startedWriting", True):
                _closeAfter(request)
                channel.persistent = False
        return True


registerAdapter(HTTPChannelProbe, HTTPChannel, IConnectionProbe)  # type: ignore[no-untyped-call]
registerAdapter(  # type: ignore[no-untyped-call]
    HTTPChannelProbe, _GenericHTTPChannelProtocol, IConnectionProbe
)
