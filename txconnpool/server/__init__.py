"""
Protecting a server: limits on simultaneous inbound connections that queue excess clients
instead of dropping them, turns among clients while some wait, and idle and slow-request
timeouts.

Wrap any protocol factory; the defaults protect (see the "Protecting a server" page)::

    from twisted.internet.endpoints import serverFromString
    from twisted.web.server import Site
    from txconnpool.server import LimitConnectionsFactory, ServiceUnavailableFactory

    factory = LimitConnectionsFactory(
        Site(resource),
        100,
        maxQueued=1000,
        overflowFactory=ServiceUnavailableFactory(retryAfter=5),
    )
    serverFromString(reactor, "tcp:8080").listen(factory)
"""

from ._fd import checkDescriptorBudget, descriptorLimit
from ._httpprobe import HTTPChannelProbe
from ._limiter import LimitConnectionsFactory
from ._overflow import ServiceUnavailableFactory, ServiceUnavailableProtocol
from ._probe import IConnectionProbe, TurnTakingProbe
from ._protocol import LimitedProtocol
from ._stats import LimiterStats, PeerStats

__all__ = [
    "HTTPChannelProbe",
    "IConnectionProbe",
    "LimitConnectionsFactory",
    "LimitedProtocol",
    "LimiterStats",
    "PeerStats",
    "ServiceUnavailableFactory",
    "ServiceUnavailableProtocol",
    "TurnTakingProbe",
    "checkDescriptorBudget",
    "descriptorLimit",
]
