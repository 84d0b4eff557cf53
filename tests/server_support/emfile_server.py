"""
A limited server run as a subprocess under a lowered descriptor limit, for the EMFILE test.

It lowers its soft C{RLIMIT_NOFILE}, listens on 127.0.0.1 behind a L{LimitConnectionsFactory}
and prints C{PORT <n>}.  Then it takes commands on stdin:

    - C{hog}: open descriptors until the process has none left but C{spare}, as an application
      leaking descriptors would; prints C{HOGGED <count>};
    - C{release}: close them again; prints C{RELEASED};
    - C{notify <n>}: print C{REACHED <n>} once C{n} clients have been served;
    - C{stats}: print C{STATS <json>} (the limiter's counters, how many accept failures were
      logged, and the CPU seconds used);
    - C{quit}: stop.

It prints C{ACCEPT-FAILED} the first time a failed accept is logged.  It counts accept
failures (each time a port found no descriptor for a pending client) apart from the clients
Twisted's port then accepted and closed to clear its backlog.  Each client sends
C{REQ <i> <size>} and a body, and is answered C{OK <i>}.

Usage: python emfile_server.py LIMIT SLOTS SPARE
"""

from __future__ import annotations

import json
import os
import resource
import sys
from collections.abc import Callable

from twisted.internet import reactor, stdio
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import LogEvent, globalLogPublisher
from twisted.protocols.basic import LineReceiver

from txconnpool.server import LimitConnectionsFactory

failures = 0
dropped = 0
served: list[Answer] = []
milestones: list[tuple[int, Callable[[], None]]] = []


def observe(event: LogEvent) -> None:
    """
    Count the episodes of failed accepts Twisted's ports log, and the clients they dropped.
    """
    global failures, dropped
    text = event.get("log_format") or ""
    if text.startswith("EMFILE recovery: Closed socket"):
        dropped += 1
    elif text.startswith("EMFILE encountered") or event.get("acceptError") in ("EMFILE", "ENFILE"):
        failures += 1
        if failures == 1:
            sys.stdout.write("ACCEPT-FAILED\n")
            sys.stdout.flush()


def checkMilestones() -> None:
    for entry in list(milestones):
        if len(served) >= entry[0]:
            milestones.remove(entry)
            entry[1]()


class Answer(Protocol):
    def __init__(self) -> None:
        self.buffer = b""

    def connectionMade(self) -> None:
        served.append(self)
        checkMilestones()

    def dataReceived(self, data: bytes) -> None:
        self.buffer += data
        head, newline, body = self.buffer.partition(b"\n")
        if newline and len(body) >= int(head.split()[2]):
            self.transport.write(b"OK %s\n" % head.split()[1])  # type: ignore[union-attr]
            self.transport.loseConnection()  # type: ignore[union-attr]


class Commands(LineReceiver):
    delimiter = b"\n"

    def __init__(self, limiter: LimitConnectionsFactory, spare: int) -> None:
        self.limiter = limiter
        self.spare = spare
        self.hogged: list[int] = []

    def say(self, line: str) -> None:
        self.transport.write(line.encode() + b"\n")  # type: ignore[union-attr]

    def lineReceived(self, line: bytes) -> None:
        command = line.strip().decode()
        if command == "hog":
            while True:
                try:
                    self.hogged.append(os.open(os.devnull, os.O_RDONLY))
                except OSError:
                    break
            for _ in range(self.spare):
                os.close(self.hogged.pop())
            self.say(f"HOGGED {len(self.hogged)}")
        elif command == "release":
            while self.hogged:
                os.close(self.hogged.pop())
            self.say("RELEASED")
        elif command.startswith("notify "):
            count = int(command.split()[1])
            milestones.append((count, lambda: self.say(f"REACHED {count}")))
            checkMilestones()
        elif command == "stats":
            stats = self.limiter.stats()
            usage = resource.getrusage(resource.RUSAGE_SELF)
            report = {
                "served": stats.served,
                "active": stats.active,
                "queued": stats.queued,
                "acceptPauses": stats.acceptPauses,
                "acceptFailures": failures,
                "droppedByPort": dropped,
                "cpuSeconds": usage.ru_utime + usage.ru_stime,
            }
            self.say("STATS " + json.dumps(report))
        elif command == "quit":
            reactor.stop()  # type: ignore[attr-defined]


def main(limit: int, slots: int, spare: int) -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (limit, hard))
    globalLogPublisher.addObserver(observe)
    limiter = LimitConnectionsFactory(Factory.forProtocol(Answer), slots)
    port = reactor.listenTCP(0, limiter, backlog=1024, interface="127.0.0.1")  # type: ignore[attr-defined]
    stdio.StandardIO(Commands(limiter, spare))
    sys.stdout.write(f"PORT {port.getHost().port}\n")
    sys.stdout.flush()
    reactor.run()  # type: ignore[attr-defined]


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:4]))
