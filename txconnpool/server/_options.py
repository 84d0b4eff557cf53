"""
The options of a connection limiter, validated once at construction, and their defaults.
"""

from __future__ import annotations

from typing import Any

from attrs import field, frozen
from twisted.internet.interfaces import IProtocolFactory

from .._options import _count, _seconds

DEFAULT_QUEUE_TIMEOUT = 30.0
"""
Seconds a connection may wait for a slot.  Long enough to ride out a burst; shorter than the
60 seconds after which proxies in front commonly give up waiting for a response (nginx's
C{proxy_read_timeout}, the C{timeout queue} of HAProxy's own anti-DoS example), so a client
behind one hears from this server first.
"""

DEFAULT_IDLE_TIMEOUT = 75.0
"""
Seconds a served connection may stay silent: nginx's C{keepalive_timeout}.  It is longer than
the 60-second idle timeout of the usual load balancers, so that one in front closes an idle
connection before this server does and never sends a request on a connection being closed.
"""

DEFAULT_HEADER_TIMEOUT = 10.0
"""
Seconds the head of a request may take to arrive, from its first byte: HAProxy's usual
C{timeout http-request}, and the first step of Apache's C{RequestReadTimeout header=10-20}
(nginx waits 60 seconds).  A legitimate client sends its headers in one round trip; a client
trickling them (slowloris) holds a slot for at most this long.
"""

DEFAULT_REAP_IDLE_AFTER = 0.5
"""
Seconds of silence after which an idle connection gives way to a waiting client.  Long enough
that a client sending requests back to back, whose next request may already be on the wire, is
not cut off between two of them (it ends its turn at a request boundary instead); short enough
that idle keep-alive connections make room within a second.
"""

DEFAULT_MIN_TURN = 0.05
"""
Seconds a served connection keeps its slot before it gives way to waiting clients; chosen from
the benchmark on the "Protecting a server" page.
"""


def _protocolFactory(optional: bool) -> Any:
    def check(instance: Any, attribute: Any, value: Any) -> None:
        if value is None and optional:
            return
        if not IProtocolFactory.providedBy(value):
            raise TypeError(f"{attribute.name} must provide IProtocolFactory, not {value!r}")

    return check


@frozen
class LimiterOptions:
    """
    The options of a L{txconnpool.server.LimitConnectionsFactory}; see it for their meaning.
    """

    wrappedFactory: IProtocolFactory = field(validator=_protocolFactory(optional=False))
    maxConnections: int = field(validator=_count(1, optional=False))
    maxQueued: int | None = field(default=None, validator=_count(0, optional=True))
    queueTimeout: float | None = field(
        default=DEFAULT_QUEUE_TIMEOUT, validator=_seconds(optional=True)
    )
    idleTimeout: float | None = field(
        default=DEFAULT_IDLE_TIMEOUT, validator=_seconds(optional=True)
    )
    headerTimeout: float | None = field(
        default=DEFAULT_HEADER_TIMEOUT, validator=_seconds(optional=True)
    )
    requestTimeout: float | None = field(default=None, validator=_seconds(optional=True))
    maxPerPeer: int | None = field(default=None, validator=_count(1, optional=True))
    reapIdleAfter: float | None = field(
        default=DEFAULT_REAP_IDLE_AFTER, validator=_seconds(optional=True)
    )
    minTurn: float | None = field(default=DEFAULT_MIN_TURN, validator=_seconds(optional=True))
    minTurnRequests: int | None = field(default=None, validator=_count(1, optional=True))
    overflowFactory: IProtocolFactory | None = field(
        default=None, validator=_protocolFactory(optional=True)
    )
