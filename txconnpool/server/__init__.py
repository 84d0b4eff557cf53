"""
Protecting a server: limits on simultaneous inbound connections that queue excess clients
instead of dropping them, idle and slow-request timeouts, and reaping of idle keep-alive
connections when clients wait.

Wrap any protocol factory::

    from twisted.web.server import Site
    from txconnpool.server import LimitConnectionsFactory, ServiceUnavailableFactory

    factory = LimitConnectionsFactory(
        Site(resource),
        100,
        maxQueued=1000,
        queueTimeout=30,
        idleTimeout=60,
        requestTimeout=10,
        reapIdleAfter=2,
        overflowFactory=ServiceUnavailableFactory(retryAfter=5),
    )
    reactor.listenTCP(8080, factory)
"""

from ._fd import checkDescriptorBudget, descriptorLimit
from ._limiter import LimitConnectionsFactory
from ._overflow import ServiceUnavailableFactory, ServiceUnavailableProtocol
from ._probe import HTTPChannelProbe, IConnectionProbe, TurnTakingProbe
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
