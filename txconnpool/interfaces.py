"""
The interfaces through which protocols tell a pool how they behave.
"""

from __future__ import annotations

from zope.interface import Interface

__all__ = ["ICancellableRequests"]


class ICancellableRequests(Interface):
    """
    A client protocol whose request methods keep their own promises: every
    L{Deferred<twisted.internet.defer.Deferred>} one of them returns fires exactly once, with
    the reply or a failure, including when the connection is lost; and it can be cancelled,
    which fails it with C{CancelledError} and, if the reply might still arrive, closes the
    connection (or, for a protocol that matches replies by request id, drops the late
    reply).

    A pool whose factory's protocol class declares this interface
    (C{@implementer(ICancellableRequests)}) hands the protocol's own
    L{Deferred<twisted.internet.defer.Deferred>} to the caller of a request sent at once,
    instead of a second one of its own: one fewer object and callback per request.
    Everything else (timeouts, cancellation, the retry of requests that found a stale
    connection, the statistics) works as for any protocol.
    """
