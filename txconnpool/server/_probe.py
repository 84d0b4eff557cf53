"""
What a connection limiter asks a served protocol about its state: is it between requests (so it
may be closed without cutting anything short), is a request still arriving, and how long does it
intend to keep an idle connection open.

L{IConnectionProbe} is looked up by adaptation of the served protocol, so an application can
give its own protocol exact answers by implementing the interface on it or by registering an
adapter.  Protocols without one get L{TurnTakingProbe}; C{twisted.web} channels get
L{HTTPChannelProbe}.
"""

from __future__ import annotations

import re

from twisted.internet.interfaces import IProtocol
from twisted.python.components import registerAdapter
from twisted.web.http import HTTPChannel, _GenericHTTPChannelProtocol
from zope.interface import Interface, implementer


class IConnectionProbe(Interface):
    """
    Answers a connection limiter's questions about one served protocol.
    """

    def bytesReceived() -> None:
        """
        Bytes from the client were just delivered to the protocol.
        """

    def bytesSent() -> None:
        """
        The protocol just wrote bytes to the client.
        """

    def isIdle() -> bool:
        """
        @return: L{True} if the connection is between requests: closing it now interrupts
            neither a request nor a response.
        """

    def isReceivingRequest() -> bool:
        """
        @return: L{True} while a request has started to arrive and is not complete yet.
        """

    def keepAliveTimeout() -> float | None:
        """
        @return: How many seconds the protocol intends to keep the connection open while it is
            idle, or L{None} if it does not say.
        """


@implementer(IConnectionProbe)
class TurnTakingProbe:
    """
    A probe for any protocol, assuming clients and server take turns: a request starts with
    the first byte received after the server last wrote, and ends when the server writes
    again.  Such a protocol is always considered idle; the limiter decides from how long the
    connection has been silent.
    """

    def __init__(self) -> None:
        self._receiving = False

    def bytesReceived(self) -> None:
        self._receiving = True

    def bytesSent(self) -> None:
        self._receiving = False

    def isIdle(self) -> bool:
        return True

    def isReceivingRequest(self) -> bool:
        return self._receiving

    def keepAliveTimeout(self) -> None:
        return None


_TIMEOUT = re.compile(rb"(?:^|[\s,;])timeout\s*=\s*(\d+(?:\.\d+)?)", re.IGNORECASE)
_BARE = re.compile(rb"^\s*(\d+(?:\.\d+)?)\s*$")


def parseKeepAlive(values: list[bytes] | None) -> float | None:
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


@implementer(IConnectionProbe)
class HTTPChannelProbe:
    """
    A probe for C{twisted.web}'s HTTP/1.x channel.

    The channel is idle when it holds no request (none being received, processed or answered)
    and no partial data.  A request is arriving from the first byte of its request line until
    its body is complete.  The keep-alive duration is the one the last response announced
    (C{Keep-Alive: timeout=N}), else the one the last request asked for, else the channel's
    own idle timeout (the C{timeout} of L{Site<twisted.web.server.Site>}).

    After an upgrade to HTTP/2 the channel is no longer an
    L{HTTPChannel<twisted.web.http.HTTPChannel>}; the probe then
    answers like L{TurnTakingProbe}.
    """

    def __init__(self, protocol: HTTPChannel | _GenericHTTPChannelProtocol) -> None:
        self._protocol = protocol
        self._fallback = TurnTakingProbe()
        self._seenRequest: object = None
        self._keepAlive: float | None = None

    def _channel(self) -> HTTPChannel | None:
        channel = getattr(self._protocol, "_channel", self._protocol)
        return channel if isinstance(channel, HTTPChannel) else None

    def bytesReceived(self) -> None:
        self._fallback.bytesReceived()

    def bytesSent(self) -> None:
        self._fallback.bytesSent()
        channel = self._channel()
        if channel is None or not channel.requests:
            return
        request = channel.requests[0]
        if request is self._seenRequest:
            return
        self._seenRequest = request
        announced = parseKeepAlive(request.responseHeaders.getRawHeaders(b"keep-alive"))
        if announced is None:
            announced = parseKeepAlive(request.requestHeaders.getRawHeaders(b"keep-alive"))
        self._keepAlive = announced

    def isIdle(self) -> bool:
        channel = self._channel()
        if channel is None:
            return self._fallback.isIdle()
        return not channel.requests and not getattr(channel, "_buffer", b"")

    def isReceivingRequest(self) -> bool:
        channel = self._channel()
        if channel is None:
            return self._fallback.isReceivingRequest()
        if channel._handlingRequest:
            return False
        return bool(channel.requests) or bool(getattr(channel, "_buffer", b""))

    def keepAliveTimeout(self) -> float | None:
        if self._keepAlive is not None:
            return self._keepAlive
        channel = self._channel()
        if channel is None:
            return None
        timeOut = channel.timeOut
        return None if timeOut is None else float(timeOut)


registerAdapter(HTTPChannelProbe, HTTPChannel, IConnectionProbe)  # type: ignore[no-untyped-call]
registerAdapter(  # type: ignore[no-untyped-call]
    HTTPChannelProbe, _GenericHTTPChannelProtocol, IConnectionProbe
)


def probeFor(protocol: IProtocol) -> IConnectionProbe:
    """
    Find the probe for a served protocol: the protocol itself if it provides
    L{IConnectionProbe}, else a registered adapter, else a new L{TurnTakingProbe}.
    """
    probe: IConnectionProbe = IConnectionProbe(protocol, None)
    if probe is None:
        probe = TurnTakingProbe()
    return probe
