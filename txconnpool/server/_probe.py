"""
What a connection limiter asks a served protocol about its state: is it between requests (so it
may be closed without cutting anything short), is a request still arriving, how long does it
intend to keep an idle connection open, and will it give up its connection at the next request
boundary when other clients wait.

L{IConnectionProbe} is looked up by adaptation of the served protocol, so an application can
give its own protocol exact answers by implementing the interface on it or by registering an
adapter.  Protocols without one get L{TurnTakingProbe}; C{twisted.web} channels get
L{HTTPChannelProbe<txconnpool.server.HTTPChannelProbe>}.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.interfaces import IProtocol
from zope.interface import Interface, implementer


class IConnectionProbe(Interface):
    """
    Answers a connection limiter's questions about one served protocol.

    C{isReceivingHead} and C{endTurn} were added after the others; a probe written without
    them is used as if it answered L{False} to both.
    """

    def bytesReceived() -> None:
        """
        Bytes from the client are about to be delivered to the protocol.
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

    def isReceivingHead() -> bool:
        """
        @return: L{True} while the head of a request (for HTTP, its request line and headers)
            has started to arrive and is not complete yet (so C{isReceivingRequest} is L{True}
            too; the limiter only asks then).  A protocol whose requests have no head answers
            L{False}.
        """

    def keepAliveTimeout() -> float | None:
        """
        @return: How many seconds the protocol intends to keep the connection open while it is
            idle, or L{None} if it does not say.
        """

    def endTurn() -> bool:
        """
        Other clients wait and this connection has had its turn: give up the connection at the
        next request boundary.  Called at most once per connection.

        The request in progress, if any, is finished and its response sent in full; the
        protocol tells the client, as far as the protocol allows, that the connection closes
        after it (HTTP: C{Connection: close}), and then closes the connection.  If no request
        is in progress, the same happens after the next one.

        @return: L{True} if the protocol will close the connection itself; L{False} if it
            cannot, and the limiter should close the connection once it is idle.
        """


@implementer(IConnectionProbe)
class TurnTakingProbe:
    """
    A probe for any protocol, assuming clients and server take turns: a request starts with
    the first byte received after the server last wrote, and ends when the server writes
    again.  The connection is idle when the server wrote last (or nothing was said yet); the
    limiter then decides from how long the connection has been silent.  Such a protocol cannot
    announce the end of its turn: the limiter closes it when it is idle.
    """

    def __init__(self) -> None:
        self._receiving = False

    def bytesReceived(self) -> None:
        self._receiving = True

    def bytesSent(self) -> None:
        self._receiving = False

    def isIdle(self) -> bool:
        return not self._receiving

    def isReceivingRequest(self) -> bool:
        return self._receiving

    def isReceivingHead(self) -> bool:
        return False

    def keepAliveTimeout(self) -> None:
        return None

    def endTurn(self) -> bool:
        return False


@implementer(IConnectionProbe)
class _CompletedProbe:
    """
    A probe written before C{isReceivingHead} and C{endTurn} existed, with the missing answers
    filled in as L{False}.
    """

    def __init__(self, probe: Any) -> None:
        self._probe = probe

    def bytesReceived(self) -> None:
        self._probe.bytesReceived()

    def bytesSent(self) -> None:
        self._probe.bytesSent()

    def isIdle(self) -> bool:
        return bool(self._probe.isIdle())

    def isReceivingRequest(self) -> bool:
        return bool(self._probe.isReceivingRequest())

    def isReceivingHead(self) -> bool:
        method = getattr(self._probe, "isReceivingHead", None)
        return False if method is None else bool(method())

    def keepAliveTimeout(self) -> float | None:
        timeout: float | None = self._probe.keepAliveTimeout()
        return timeout

    def endTurn(self) -> bool:
        method = getattr(self._probe, "endTurn", None)
        return False if method is None else bool(method())


def probeFor(protocol: IProtocol) -> IConnectionProbe:
    """
    Find the probe for a served protocol: the protocol itself if it provides
    L{IConnectionProbe}, else a registered adapter, else a new L{TurnTakingProbe}.
    """
    probe: IConnectionProbe | None = IConnectionProbe(protocol, None)
    if probe is None:
        return TurnTakingProbe()
    if not (hasattr(probe, "isReceivingHead") and hasattr(probe, "endTurn")):
        return _CompletedProbe(probe)
    return probe
