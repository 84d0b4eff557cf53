"""
Statistics snapshots of a L{MemCacheCluster}: one per node, and the cluster's totals.
"""

from __future__ import annotations

from attrs import frozen

from ..stats import PoolStats


@frozen
class NodeStats:
    """
    A snapshot of one node of a cluster.

    @ivar name: The node's name: the name given with its server, else C{host:port}.
    @ivar weight: Its weight.
    @ivar ejected: Whether it is out of the continuum now.
    @ivar consecutiveFailures: Requests failed in a row because its server was unreachable
        (counted only when ejection is on).
    @ivar ejections: How many times it was ejected.
    @ivar readmissions: How many times it came back after an ejection.
    @ivar pool: The statistics of its L{MemCachePool}.
    """

    name: str
    weight: int
    ejected: bool
    consecutiveFailures: int
    ejections: int
    readmissions: int
    pool: PoolStats


@frozen
class ClusterStats:
    """
    A snapshot of a L{MemCacheCluster}: its nodes, and the sums of their pools' counters.

    @ivar nodes: Each node's L{NodeStats}, in the order the servers were given.
    @ivar liveNodes: Nodes in the continuum.
    @ivar ejectedNodes: Nodes out of it.
    @ivar ejections: Ejections of all nodes together.
    @ivar readmissions: Re-admissions of all nodes together.
    @ivar busy: Busy connections, all pools together.
    @ivar idle: Idle connections, all pools together.
    @ivar connecting: Connection attempts in progress, all pools together.
    @ivar waiting: Requests waiting for a connection, all pools together.
    @ivar requests: Requests accepted by the pools.
    @ivar failedRequests: Requests the pools failed.
    """

    nodes: tuple[NodeStats, ...]
    liveNodes: int
    ejectedNodes: int
    ejections: int
    readmissions: int
    busy: int
    idle: int
    connecting: int
    waiting: int
    requests: int
    failedRequests: int

    @classmethod
    def of(cls, nodes: tuple[NodeStats, ...]) -> ClusterStats:
        """
        Sum the snapshots of the nodes.
        """
        pools = [node.pool for node in nodes]
        ejected = sum(node.ejected for node in nodes)
        return cls(
            nodes=nodes,
            liveNodes=len(nodes) - ejected,
            ejectedNodes=ejected,
            ejections=sum(node.ejections for node in nodes),
            readmissions=sum(node.readmissions for node in nodes),
            busy=sum(p.busy for p in pools),
            idle=sum(p.idle for p in pools),
            connecting=sum(p.connecting for p in pools),
            waiting=sum(p.waiting for p in pools),
            requests=sum(p.requests for p in pools),
            failedRequests=sum(p.failedRequests for p in pools),
        )

    def node(self, name: str) -> NodeStats:
        """
        @return: The snapshot of the node called C{name}.
        @raise KeyError: No node has that name.
        """
        for node in self.nodes:
            if node.name == name:
                return node
        raise KeyError(name)
