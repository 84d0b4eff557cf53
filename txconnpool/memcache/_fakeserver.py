"""
The server side of L{FakeMemcached<txconnpool.memcache.testing.FakeMemcached>}: memcached's
text protocol, read and answered as memcached 1.6 does, over a L{FakeStore}.
"""

from __future__ import annotations

from collections.abc import Callable

from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.python.failure import Failure

from txconnpool.memcache._fakestore import FakeStore

MAX_KEY_LENGTH = 250
MAX_LINE = 2048
"""memcached closes a connection that sends a longer line (other than a get's)."""
MAX_GET_LINE = 1024 * 1024
"""The longest C{get} line the fake reads before closing the connection."""

_BAD_FORMAT = b"CLIENT_ERROR bad command line format"
_BAD_EXPTIME = b"CLIENT_ERROR invalid exptime argument"
_STORAGE = (b"set", b"add", b"replace", b"append", b"prepend", b"cas")


def _number(token: bytes, low: int, high: int) -> int | None:
    """
    Return C{token} as an C{int} from C{low} to C{high}, or L{None}.
    """
    text = token[1:] if token[:1] == b"-" else token
    if not text.isdigit() or len(text) > 20:
        return None
    value = int(token)
    return value if low <= value <= high else None


class FakeMemcacheServerProtocol(Protocol):
    """
    One client's connection to the fake server.
    """

    def __init__(self, store: FakeStore, connections: list[FakeMemcacheServerProtocol]) -> None:
        self.store = store
        self._connections = connections
        self._buffer = b""
        # A storage command waiting for its data block: (length + 2, finish), or None.
        self._awaiting: tuple[int, Callable[[bytes], None]] | None = None
        self._noreply = False

    def connectionMade(self) -> None:
        self._connections.append(self)
        self.store.counters["curr_connections"] += 1
        self.store.counters["total_connections"] += 1

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        if self in self._connections:
            self._connections.remove(self)
            self.store.counters["curr_connections"] -= 1

    def dataReceived(self, data: bytes) -> None:
        self._buffer += data
        while self.transport is not None and not getattr(self.transport, "disconnecting", False):
            if self._awaiting is not None:
                size, finish = self._awaiting
                if len(self._buffer) < size:
                    return
                block, self._buffer = self._buffer[:size], self._buffer[size:]
                self._awaiting = None
                finish(block)
                continue
            eol = self._buffer.find(b"\n")
            if eol < 0:
                limit = MAX_GET_LINE if self._buffer[:3] in (b"get", b"gat") else MAX_LINE
                if len(self._buffer) > limit:
                    self._reply(b"CLIENT_ERROR line too long")
                    self.transport.loseConnection()
                return
            line, self._buffer = self._buffer[:eol], self._buffer[eol + 1 :]
            if line.endswith(b"\r"):
                line = line[:-1]
            self._noreply = False
            self._command([token for token in line.split(b" ") if token])

    def _reply(self, *lines: bytes) -> None:
        if not self._noreply and self.transport is not None:
            self.transport.write(b"".join(line + b"\r\n" for line in lines))

    def _command(self, tokens: list[bytes]) -> None:
        if not tokens:
            self._reply(b"ERROR")
            return
        name, args = tokens[0], tokens[1:]
        if name in _STORAGE:
            self._storage(name.decode(), args)
        elif name in (b"get", b"gets"):
            self._get(args, name == b"gets", None)
        elif name in (b"gat", b"gats"):
            exptime = _number(args[0], -(2**31), 2**31 - 1) if args else None
            if exptime is None:
                self._reply(_BAD_EXPTIME if args else b"ERROR")
            else:
                self._get(args[1:], name == b"gats", exptime)
        elif name == b"delete":
            self._delete(args)
        elif name in (b"incr", b"decr"):
            self._delta(name.decode(), args)
        elif name == b"touch":
            self._touch(args)
        elif name == b"flush_all":
            self._flushAll(args)
        elif name == b"version" and not args:
            self._reply(b"VERSION " + self.store.version.encode())
        elif name == b"verbosity" and args:
            self._noreply = args[-1] == b"noreply"
            self._reply(b"OK")
        elif name == b"stats":
            self._stats(args)
        elif name == b"quit":
            self.transport.loseConnection()  # type: ignore[union-attr]
        else:
            self._reply(b"ERROR")

    def _get(self, keys: list[bytes], withCas: bool, touchTo: int | None) -> None:
        if not keys and touchTo is None:
            self._reply(b"ERROR")
            return
        lines: list[bytes] = []
        for key in keys:
            if len(key) > MAX_KEY_LENGTH:
                self._reply(_BAD_FORMAT)
                return
            item = self.store.get(key, touchTo)
            if item is not None:
                header = b"VALUE %s %d %d" % (key, item.flags, len(item.value))
                lines += [header + (b" %d" % (item.cas,) if withCas else b""), item.value]
        self._reply(*lines, b"END")

    def _storage(self, command: str, args: list[bytes]) -> None:
        count = 5 if command == "cas" else 4
        if len(args) not in (count, count + 1):
            self._reply(b"ERROR")
            return
        self._noreply = len(args) == count + 1 and args[-1] == b"noreply"
        key = args[0]
        flags = _number(args[1], 0, 2**32 - 1)
        exptime = _number(args[2], -(2**31), 2**31 - 1)
        length = _number(args[3], 0, 2**31 - 1)
        cas = _number(args[4], 0, 2**64 - 1) if command == "cas" else 0
        if (
            len(key) > MAX_KEY_LENGTH
            or flags is None
            or exptime is None
            or length is None
            or cas is None
        ):
            self._reply(_BAD_FORMAT)
            return
        noreply = self._noreply
        if self.store.tooLarge(key, length):
            self._reply(b"SERVER_ERROR object too large for cache")
            self._awaiting = (length + 2, lambda block: None)
            return

        def finish(block: bytes) -> None:
            self._noreply = noreply
            if block[-2:] != b"\r\n":
                self._reply(b"CLIENT_ERROR bad data chunk")
                return
            assert flags is not None and exptime is not None and cas is not None
            self._reply(self.store.store(command, key, block[:-2], flags, exptime, cas))

        self._awaiting = (length + 2, finish)

    def _delete(self, args: list[bytes]) -> None:
        if not args:
            self._reply(b"ERROR")
            return
        self._noreply = args[-1] == b"noreply"
        extra = [token for token in args[1:] if token != b"noreply"]
        if len(args[0]) > MAX_KEY_LENGTH:
            self._reply(_BAD_FORMAT)
        elif extra not in ([], [b"0"]):
            self._reply(_BAD_FORMAT + b".  Usage: delete <key> [noreply]")
        else:
            self._reply(self.store.delete(args[0]))

    def _delta(self, command: str, args: list[bytes]) -> None:
        if len(args) not in (2, 3):
            self._reply(b"ERROR")
            return
        self._noreply = len(args) == 3 and args[2] == b"noreply"
        amount = _number(args[1], 0, 2**64 - 1)
        if len(args[0]) > MAX_KEY_LENGTH:
            self._reply(_BAD_FORMAT)
        elif amount is None:
            self._reply(b"CLIENT_ERROR invalid numeric delta argument")
        else:
            self._reply(self.store.delta(command, args[0], amount))

    def _touch(self, args: list[bytes]) -> None:
        if len(args) not in (2, 3):
            self._reply(b"ERROR")
            return
        self._noreply = len(args) == 3 and args[2] == b"noreply"
        exptime = _number(args[1], -(2**31), 2**31 - 1)
        if len(args[0]) > MAX_KEY_LENGTH:
            self._reply(_BAD_FORMAT)
        elif exptime is None:
            self._reply(_BAD_EXPTIME)
        else:
            self._reply(self.store.touch(args[0], exptime))

    def _flushAll(self, args: list[bytes]) -> None:
        self._noreply = bool(args) and args[-1] == b"noreply"
        rest = args[:-1] if self._noreply else args
        delay = _number(rest[0], -(2**31), 2**31 - 1) if rest else 0
        if delay is None or len(rest) > 1:
            self._reply(_BAD_EXPTIME)
            return
        self.store.flushAll(delay)
        self._reply(b"OK")

    def _stats(self, args: list[bytes]) -> None:
        store = self.store
        if not args:
            lines = [b"STAT %s %s" % (n.encode(), v.encode()) for n, v in store.stats()]
            self._reply(*lines, b"END")
        elif args == [b"reset"]:
            store.resetStats()
            self._reply(b"RESET")
        elif args in ([b"detail", b"on"], [b"detail", b"off"]):
            self._reply(b"OK")
        elif args == [b"detail", b"dump"]:
            self._reply(b"END")
        elif args == [b"settings"]:
            self._reply(
                b"STAT maxbytes %d" % (64 * 1024 * 1024,),
                b"STAT item_size_max %d" % (store.maxItemSize,),
                b"END",
            )
        elif args == [b"sizes"]:
            self._reply(b"STAT sizes_status disabled", b"END")
        elif args == [b"items"]:
            count = store.itemCount()
            self._reply(*([b"STAT items:1:number %d" % (count,)] if count else []), b"END")
        elif args == [b"conns"]:
            lines = []
            for number, connection in enumerate(self._connections):
                peer = connection.transport.getPeer()  # type: ignore[union-attr]
                address = f"tcp:{getattr(peer, 'host', '?')}:{getattr(peer, 'port', 0)}"
                lines.append(b"STAT %d:addr %s" % (number, address.encode()))
                lines.append(b"STAT %d:state conn_parse_cmd" % (number,))
            self._reply(*lines, b"END")
        elif len(args) == 3 and args[0] == b"cachedump":
            limit = _number(args[2], 0, 2**32 - 1)
            if _number(args[1], 0, 63) is None or limit is None:
                self._reply(b"CLIENT_ERROR bad command line format")
                return
            dumped = store.cachedump(limit)
            lines = [b"ITEM %s [%d b; %d s]" % item for item in dumped]
            self._reply(*lines, b"END")
        else:
            self._reply(b"ERROR")


class FakeMemcacheServerFactory(Factory):
    """
    Builds a L{FakeMemcacheServerProtocol} over one L{FakeStore} for every connection.

    @ivar connections: The connections open now.
    """

    noisy = False

    def __init__(self, store: FakeStore) -> None:
        self.store = store
        self.connections: list[FakeMemcacheServerProtocol] = []

    def __repr__(self) -> str:
        return f"<FakeMemcacheServerFactory {self.store.version}>"

    def buildProtocol(self, addr: object) -> FakeMemcacheServerProtocol:
        protocol = FakeMemcacheServerProtocol(self.store, self.connections)
        protocol.factory = self
        return protocol
