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
from .stats import PoolStats

__all__ = [
    "ConnectionLostError",
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
    "ServerUnavailableError",
    "__version__",
]
