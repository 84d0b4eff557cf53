"""
memcached's meta protocol: L{MetaMemCachePool}, a pool with the methods of
L{MemCachePool<txconnpool.memcache.MemCachePool>} whose replies are matched to their requests
by opaque tokens, and which protects against cache stampedes with memcached's leases
(L{MetaMemCachePool.getOrCompute}, L{MetaMemCachePool.invalidate}); its protocol
L{MetaMemCacheProtocol}; and their errors.
"""

from ._pool import MetaMemCacheClientFactory, MetaMemCachePool
from ._probe import ServerInfo
from ._requests import LeaseReply
from .errors import LeaseTimeoutError, MetaProtocolUnsupportedError
from .protocol import MetaMemCacheProtocol

__all__ = [
    "LeaseReply",
    "LeaseTimeoutError",
    "MetaMemCacheClientFactory",
    "MetaMemCachePool",
    "MetaMemCacheProtocol",
    "MetaProtocolUnsupportedError",
    "ServerInfo",
]
