"""
L{PooledClientFactory}: the factory that builds the protocol of each pooled connection, with
txconnpool 0.1.1's readiness contract and the modern one.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.protocol import ReconnectingClientFactory
from twisted.python.failure import Failure

__all__ = ["PooledClientFactory"]


class PooledClientFactory(ReconnectingClientFactory):
    """
    Builds the protocol of each pooled connection; subclass it and set C{protocol}.

    The pool makes one factory per connection, calling the class with no arguments, and then
    sets C{connectionPool}. A connection is handed out once it is ready, which is one of:

      - the protocol fires C{self.factory.deferred} with itself (usually in C{connectionMade},
        which is the txconnpool 0.1.1 contract; calling
        C{self.factory.connectionPool.clientFree(self)} there is accepted too);
      - otherwise, when C{connectionMade} has run and L{prepareConnection} returned L{None}
        (the default), or once the L{Deferred} it returned has fired.

    It is a C{ReconnectingClientFactory}, as in txconnpool 0.1.1, so that protocols calling
    C{self.factory.resetDelay()} or C{stopTrying()} keep working; but the pool, not the
    factory, decides when to connect again (see C{retryPolicy}), so those methods change
    nothing, and L{retry} never reconnects.

    @ivar connectionPool: The L{Pool<txconnpool.pool.Pool>} this factory's connection
        belongs to.
    @ivar deferred: The readiness L{Deferred} of this factory's connection.
    """

    noisy = False
    connectionPool: Any = None
    deferred: Deferred[Any] | None = None
    _protocolInstance: Any = None

    def __init__(self) -> None:
        self.deferred = Deferred()

    def buildProtocol(self, addr: Any) -> Any:
        """
        Build the protocol and give it this factory as C{factory}. A protocol built earlier
        by this factory is first reported gone to the pool, as txconnpool 0.1.1 did.
        """
        previous = self._protocolInstance
        if previous is not None and self.connectionPool is not None:
            self.connectionPool.clientGone(previous)
        protocol = self.protocol()  # type: ignore[misc]
        protocol.factory = self
        self._protocolInstance = protocol
        return protocol

    def prepareConnection(self, protocol: Any) -> Deferred[object] | None:
        """
        Make a newly connected protocol ready for requests: the hook for protocols that must
        complete a handshake, select a database or authenticate first.

        Called once the protocol's C{connectionMade} has run, unless the protocol already
        signalled readiness through C{self.deferred}.

        @param protocol: The connected protocol.
        @return: L{None} when the protocol is ready at once, or a L{Deferred} that fires when it
            is ready; if that L{Deferred} fails, the connection is closed and counts as a failed
            connection attempt.
        """
        return None

    # txconnpool 0.1.1's ReconnectingClientFactory behaviour, with the pool in charge.

    def clientConnectionLost(self, connector: Any, reason: Failure) -> None:
        """
        Tell the pool that this factory's protocol can take no requests, as txconnpool 0.1.1
        did. The pool notices lost connections by itself and replaces them as it needs to;
        this does not reconnect.
        """
        self._notifyBusy()

    def clientConnectionFailed(self, connector: Any, reason: Failure) -> None:
        """
        Tell the pool that this factory's protocol can take no requests, as txconnpool 0.1.1
        did. The pool counts failed attempts and retries by itself; this does not reconnect.
        """
        self._notifyBusy()

    def retry(self, connector: Any = None) -> None:
        """
        Do nothing: the pool opens its connections itself, with its own backoff.
        """

    def _notifyBusy(self) -> None:
        pool = self.connectionPool
        if pool is not None and self._protocolInstance is not None:
            pool.clientBusy(self._protocolInstance)
