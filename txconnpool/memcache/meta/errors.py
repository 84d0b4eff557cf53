"""
The exceptions specific to memcached's meta protocol, on top of those of
L{txconnpool.memcache.errors} (which the meta client raises for the same reasons as the text
client).
"""

from __future__ import annotations

from txconnpool.memcache.errors import MemCacheError

__all__ = ["LeaseTimeoutError", "MetaProtocolUnsupportedError"]


class MetaProtocolUnsupportedError(MemCacheError):
    """
    The server does not speak memcached's meta protocol as the meta client needs it, so the
    connection was closed as soon as it was made. This is the case of memcached before 1.6
    (which answers C{ERROR} to the meta commands), of proxies that only pass the text protocol
    on, and of memcached 1.6.0 to 1.6.9 (ElastiCache's 1.6.6 among them), whose early meta
    protocol differs: its C{ms} takes the value's length as an C{S<size>} flag, it answers
    C{OK} where later servers answer C{HD}, and it has no base64 keys.

    @ivar serverVersion: What the server answered to C{version}, when it did (e.g.
        C{b"1.6.6"}); C{None} otherwise.
    """

    def __init__(self, message: str, serverVersion: bytes | None = None) -> None:
        super().__init__(message)
        self.serverVersion = serverVersion


class LeaseTimeoutError(MemCacheError):
    """
    L{getOrCompute<txconnpool.memcache.meta.MetaMemCachePool.getOrCompute>} waited longer than
    its C{waitTimeout} for another client to compute a missing value, and gave up.
    """
