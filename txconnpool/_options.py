"""
The keyword options of a pool, validated once at construction.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from attrs import field, frozen

from .backoff import backoffPolicy


def _seconds(optional: bool, positive: bool = False) -> Callable[[Any, Any, Any], None]:
    def check(instance: Any, attribute: Any, value: Any) -> None:
        if value is None and optional:
            return
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            kind = "a number of seconds or None" if optional else "a number of seconds"
            raise TypeError(f"{attribute.name} must be {kind}, not {value!r}")
        if positive and not value > 0:
            raise ValueError(f"{attribute.name} must be more than 0, not {value!r}")
        if not value >= 0:
            raise ValueError(f"{attribute.name} must be 0 or more, not {value!r}")

    return check


def _count(minimum: int, optional: bool) -> Callable[[Any, Any, Any], None]:
    def check(instance: Any, attribute: Any, value: Any) -> None:
        if value is None and optional:
            return
        if isinstance(value, bool) or not isinstance(value, int):
            kind = "an int or None" if optional else "an int"
            raise TypeError(f"{attribute.name} must be {kind}, not {value!r}")
        if value < minimum:
            raise ValueError(f"{attribute.name} must be at least {minimum}, not {value!r}")

    return check


def _boolean(instance: Any, attribute: Any, value: Any) -> None:
    if not isinstance(value, bool):
        raise TypeError(f"{attribute.name} must be True or False, not {value!r}")


def _callable(instance: Any, attribute: Any, value: Any) -> None:
    if not callable(value):
        raise TypeError(f"{attribute.name} must be callable, not {value!r}")


@frozen
class PoolOptions:
    """
    The options of a L{txconnpool.pool.Pool}; see its constructor for their meaning.
    """

    connectTimeout: float | None = field(
        default=5.0, validator=_seconds(optional=True, positive=True)
    )
    requestTimeout: float | None = field(
        default=None, validator=_seconds(optional=True, positive=True)
    )
    acquireTimeout: float | None = field(default=None, validator=_seconds(optional=True))
    maxWaiters: int | None = field(default=None, validator=_count(0, optional=True))
    failFastAfter: int = field(default=3, validator=_count(1, optional=False))
    retryPolicy: Callable[[int], float] = field(factory=backoffPolicy, validator=_callable)
    shutdownTimeout: float = field(default=5.0, validator=_seconds(optional=False))
    minClients: int = field(default=0, validator=_count(0, optional=False))
    maxRequestsPerClient: int = field(default=1, validator=_count(1, optional=False))
    idleTimeout: float | None = field(
        default=600.0, validator=_seconds(optional=True, positive=True)
    )
    maxLifetime: float | None = field(
        default=None, validator=_seconds(optional=True, positive=True)
    )
    tcpKeepAlive: bool = field(default=False, validator=_boolean)
    keepaliveInterval: float | None = field(
        default=None, validator=_seconds(optional=True, positive=True)
    )
    validateAfterIdle: float | None = field(default=None, validator=_seconds(optional=True))
    pingTimeout: float = field(default=5.0, validator=_seconds(optional=False, positive=True))
    leakDetectionThreshold: float | None = field(
        default=None, validator=_seconds(optional=True, positive=True)
    )


def checkMaxClients(maxClients: object) -> None:
    """
    @raise TypeError: C{maxClients} is not an C{int}.
    @raise ValueError: C{maxClients} is less than 1.
    """
    if isinstance(maxClients, bool) or not isinstance(maxClients, int):
        raise TypeError(f"maxClients must be an int, not {maxClients!r}")
    if maxClients < 1:
        raise ValueError(f"maxClients must be at least 1, not {maxClients!r}")


def checkTimeout(name: str, value: object, optional: bool = True) -> None:
    """
    @raise TypeError: C{value} is not a number of seconds (or L{None}, if C{optional}).
    @raise ValueError: C{value} is negative.
    """
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        kind = "a number of seconds or None" if optional else "a number of seconds"
        raise TypeError(f"{name} must be {kind}, not {value!r}")
    if not value >= 0:
        raise ValueError(f"{name} must be 0 or more, not {value!r}")
