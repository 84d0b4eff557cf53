"""
The example of the txconnpool 0.1.1 README, ported to Python 3 (keys and values are bytes).

Run it with a memcached listening on 127.0.0.1 (the port defaults to 11211):

    python examples/legacy_readme.py [port]
"""

import sys

from twisted.internet import reactor
from twisted.internet.address import IPv4Address
from twisted.protocols.memcache import MemCacheProtocol

from txconnpool.pool import Pool, PooledClientFactory


class PooledMemCacheProtocol(MemCacheProtocol):
    """
    A MemCacheProtocol that will notify a connectionPool that it is ready
    to accept requests.

    @ivar factory: A L{MemCacheClientFactory} instance.
    """

    factory = None

    def connectionMade(self):
        """
        Notify our factory that we're ready to accept connections.
        """
        MemCacheProtocol.connectionMade(self)

        self.factory.connectionPool.clientFree(self)

        if self.factory.deferred is not None:
            self.factory.deferred.callback(self)
            self.factory.deferred = None


class MemCacheClientFactory(PooledClientFactory):
    protocol = PooledMemCacheProtocol


class MemCachePool(Pool):
    clientFactory = MemCacheClientFactory

    def get(self, *args, **kwargs):
        return self.performRequest("get", *args, **kwargs)

    def set(self, *args, **kwargs):
        return self.performRequest("set", *args, **kwargs)

    def delete(self, *args, **kwargs):
        return self.performRequest("delete", *args, **kwargs)

    def add(self, *args, **kwargs):
        return self.performRequest("add", *args, **kwargs)


port = int(sys.argv[1]) if len(sys.argv) > 1 else 11211
addr = IPv4Address("TCP", "127.0.0.1", port)
mc_pool = MemCachePool(addr, maxClients=20)

d = mc_pool.delete(b"cached-data")
d.addCallback(lambda _: mc_pool.get(b"cached-data"))


def gotCachedData(data):
    flags, value = data
    if value:
        print("Yay, we got a cache hit")
    else:
        print("Boo, it was a cache miss")


d.addCallback(gotCachedData)
d.addCallback(lambda _: mc_pool.set(b"cached-data", b"expensive result"))
d.addCallback(lambda _: mc_pool.get(b"cached-data"))
d.addCallback(gotCachedData)


def failed(failure):
    print("Request failed:", failure.getErrorMessage())
    global exitCode
    exitCode = 1


exitCode = 0
d.addErrback(failed)
d.addBoth(lambda _: reactor.stop())
reactor.run()
sys.exit(exitCode)
