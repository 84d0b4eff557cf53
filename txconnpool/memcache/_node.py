"""
A node of a L{MemCacheCluster}: one server, the ordinary L{MemCachePool} that talks to it, and
its ejection counters.
"""

from __future__ import annotations

from ._clusterstats import NodeStats
from ._pool import MemCachePool
from ._servers import ServerSpec

__all__ = ["ClusterNode"]


class ClusterNode:
    """
    One server of a cluster and its pool. The cluster's L{Ejector<txconnpool.memcache._ejection.
    Ejector>} alone changes the ejection state.

    @ivar spec: The server.
    @ivar pool: Its pool.
    @ivar ejected: Whether it is out of the continuum.
    @ivar consecutiveFailures: Requests failed in a row because the server was unreachable.
    @ivar ejections: Times it was ejected.
    @ivar readmissions: Times it came back.
    """

    __slots__ = ("consecutiveFailures", "ejected", "ejections", "pool", "readmissions", "spec")

    def __init__(self, spec: ServerSpec, pool: MemCachePool) -> None:
        self.spec = spec
        self.pool = pool
        self.ejected = False
        self.consecutiveFailures = 0
        self.ejections = 0
        self.readmissions = 0

    @property
    def name(self) -> str:
        """
        The node's name: its server's name, else C{host:port}.
        """
        return self.spec.label

    def stats(self) -> NodeStats:
        """
        @return: A snapshot of the node.
        """
        return NodeStats(
            name=self.spec.label,
            weight=self.spec.weight,
            ejected=self.ejected,
            consecutiveFailures=self.consecutiveFailures,
            ejections=self.ejections,
            readmissions=self.readmissions,
            pool=self.pool.poolStats(),
        )

    def __repr__(self) -> str:
        state = "ejected" if self.ejected else "live"
        return f"<ClusterNode {self.spec.label} weight={self.spec.weight} {state}>"
