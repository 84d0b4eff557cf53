"""
Finding the connection of a protocol handed to a caller: for checkouts given back with
C{release()} or C{discard()}, and for txconnpool 0.1.1's notifications (C{clientFree},
C{clientBusy}, C{clientGone}), which name connections by their protocol.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ._connections import Connections, isCheckout
from ._driver import ConnectionDriver
from ._records import Checkout, Connection, State


class Checkouts:
    """
    Connections named by their protocol.
    """

    def __init__(
        self,
        connections: Connections,
        driver: ConnectionDriver,
        describe: Callable[[], str],
        onCheckin: Callable[[Connection], None],
    ) -> None:
        """
        @param onCheckin: Told of a checked-out connection given back, before it is.
        """
        self._connections = connections
        self._driver = driver
        self._describe = describe
        self._onCheckin = onCheckin

    def checkedOut(self, protocol: Any) -> Connection | None:
        """
        Find the connection that C{protocol} was checked out on; L{None} when it was lost
        meanwhile and there is nothing to do.

        @raise ValueError: C{protocol} is not checked out.
        """
        connection = self._connections.byProtocol.get(protocol)
        if connection is not None and connection.state is State.GONE:
            self._connections.forget(protocol)
            return None
        if connection is None or not isCheckout(connection.holder):
            raise ValueError(f"{protocol!r} is not checked out from {self._describe()}")
        return connection

    def release(self, protocol: Any) -> None:
        """
        Give back the connection C{protocol} was checked out on.
        """
        connection = self.checkedOut(protocol)
        if connection is not None:
            self._onCheckin(connection)
            self._connections.release(connection)

    def discard(self, protocol: Any) -> None:
        """
        Close the connection C{protocol} was checked out on.
        """
        connection = self.checkedOut(protocol)
        if connection is not None:
            self._onCheckin(connection)
            self._connections.discard(connection)

    def clientBusy(self, protocol: Any) -> None:
        """
        Take an idle connection out of service as if checked out.
        """
        connection = self._connections.byProtocol.get(protocol)
        if connection is not None and connection.state is State.IDLE:
            self._connections.hold(connection, Checkout(None))

    def clientFree(self, protocol: Any) -> None:
        """
        A connecting connection is ready; a connection held for a checkout comes back.
        """
        connection = self._connections.byProtocol.get(protocol)
        if connection is None:
            return
        if connection.state is State.CONNECTING:
            if not connection.link.settled:
                self._driver.markReady(connection)
        elif connection.state is State.GONE:
            self._connections.forget(protocol)
        elif isCheckout(connection.holder):
            self.release(protocol)

    def clientGone(self, protocol: Any) -> None:
        """
        Remove a connection for good, closing it if it is still open.
        """
        connection = self._connections.forget(protocol)
        if connection is not None and connection.state is not State.GONE:
            self._onCheckin(connection)
            self._connections.discard(connection)
