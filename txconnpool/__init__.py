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
    "ServerUnavailableError",
    "__version__",
]
