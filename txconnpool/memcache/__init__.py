"""
memcached through a pool of connections: L{MemCachePool}, its hardened protocol
L{MemCacheProtocol}, and their errors; sharded over several servers, placed as
libmemcached and twemproxy place keys: L{MemCacheCluster}; and L{MetaMemCachePool}, which
speaks memcached's meta protocol (see L{txconnpool.memcache.meta}).
"""

from ._clustererrors import PartialResultError, UnsupportedCommandError
from ._clusterstats import ClusterStats, NodeStats
from ._pool import MemCacheClientFactory, MemCachePool
from .cluster import MemCacheCluster
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
    "ClusterStats",
    "InvalidArgumentError",
    "InvalidKeyError",
    "InvalidRequestError",
    "InvalidTypeError",
    "InvalidValueError",
    "MemCacheClientFactory",
    "MemCacheCluster",
    "MemCacheError",
    "MemCachePool",
    "MemCacheProtocol",
    "MetaMemCachePool",
    "NodeStats",
    "PartialResultError",
    "ServerError",
    "UnknownCommandError",
    "UnsupportedCommandError",
]
