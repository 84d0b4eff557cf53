"""
memcached through a pool of connections: L{MemCachePool}, its hardened protocol
L{MemCacheProtocol}, and their errors; L{MetaMemCachePool}, which speaks memcached's meta
protocol (see L{txconnpool.memcache.meta}).
"""

from ._pool import MemCacheClientFactory, MemCachePool
from .errors import (
    ClientError,
    InvalidArgumentError,
    InvalidKeyError,
    InvalidRequestError,
    InvalidTypeError,
    InvalidValueError,
    MemCacheError,
    ServerError,
    UnknownCommandError,
)
from .meta import MetaMemCachePool
from .protocol import MemCacheProtocol

__all__ = [
    "ClientError",
    "InvalidArgumentError",
    "InvalidKeyError",
    "InvalidRequestError",
    "InvalidTypeError",
    "InvalidValueError",
    "MemCacheClientFactory",
    "MemCacheError",
    "MemCachePool",
    "MemCacheProtocol",
    "MetaMemCachePool",
    "ServerError",
    "UnknownCommandError",
]
