"""
txconnpool: connection pools for Twisted clients, and connection limits for Twisted servers.
"""

from ._version import __version__
from .errors import (
    ConnectionLostError,
    NoSuchCommand,
    PoolClosedError,
    PoolError,
    PoolFullError,
    PoolTimeoutError,
    ProtocolError,
    RequestTimeoutError,
    ServerUnavailableError,
)
from .pool import Pool, PooledClientFactory
from .retry import RETRYABLE_ERRORS, RetryPolicy
from .stats import DiscardCounts, LatencySummary, PoolStats

__all__ = [
    "RETRYABLE_ERRORS",
    "ConnectionLostError",
    "DiscardCounts",
    "LatencySummary",
    "NoSuchCommand",
    "Pool",
    "PoolClosedError",
    "PoolError",
    "PoolFullError",
    "PoolStats",
    "PoolTimeoutError",
    "PooledClientFactory",
    "ProtocolError",
    "RequestTimeoutError",
    "RetryPolicy",
    "ServerUnavailableError",
    "__version__",
]
