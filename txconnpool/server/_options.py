"""
The options of a connection limiter, validated once at construction.
"""

from __future__ import annotations

from typing import Any

from attrs import field, frozen
from twisted.internet.interfaces import IProtocolFactory

from .._options import _count, _seconds


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
    queueTimeout: float | None = field(default=None, validator=_seconds(optional=True))
    idleTimeout: float | None = field(default=None, validator=_seconds(optional=True))
    requestTimeout: float | None = field(default=None, validator=_seconds(optional=True))
    maxPerPeer: int | None = field(default=None, validator=_count(1, optional=True))
    reapIdleAfter: float | None = field(default=None, validator=_seconds(optional=True))
    overflowFactory: IProtocolFactory | None = field(
        default=None, validator=_protocolFactory(optional=True)
    )
