"""
Load generator for the server tests, run as a subprocess.

It opens C{clients} connections one after the other (each connect completes before the next
starts, so the server accepts them in that order), sends each one's whole request at once, then
reads every answer until the server closes.  It prints one JSON object: how many answers were
as expected, and the ones that were not.

The request of client C{i} is C{"REQ <i> <size>\\n"} followed by L{payload}C{(i, size)}; the
server is expected to answer C{"OK <i>\\n"} and close.

With C{retry}, a client whose connection ends without its answer (a server short of file
descriptors may accept and close at once) connects again and resends, until the timeout.

Usage: python loadgen.py HOST PORT CLIENTS SIZE TIMEOUT [retry]
"""

from __future__ import annotations

import json
import selectors
import socket
import sys
import time


def payload(i: int, size: int) -> bytes:
    """
    The deterministic body client C{i} sends.
    """
    seed = f"{i:08d}-".encode()
    return (seed * (size // len(seed) + 1))[:size]


def request(i: int, size: int) -> bytes:
    return f"REQ {i} {size}\n".encode() + payload(i, size)


def main(
    host: str, port: int, clients: int, size: int, timeout: float, retry: bool = False
) -> dict[str, object]:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    selector = selectors.DefaultSelector()
    answers: dict[int, bytearray] = {}
    started = time.monotonic()
    retries = 0

    def start(i: int) -> None:
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        sock.connect((host, port))
        try:
            sock.sendall(request(i, size))
        except ConnectionError:
            pass
        sock.setblocking(False)
        answers[i] = bytearray()
        selector.register(sock, selectors.EVENT_READ, i)

    for i in range(clients):
        start(i)
    connected = time.monotonic() - started
    open_ = clients
    deadline = started + timeout
    while open_ and time.monotonic() < deadline:
        for key, _ in selector.select(timeout=1.0):
            sock = key.fileobj
            assert isinstance(sock, socket.socket)
            try:
                chunk = sock.recv(4096)
            except ConnectionError:
                chunk = b""
            if chunk:
                answers[key.data].extend(chunk)
            else:
                selector.unregister(sock)
                sock.close()
                i = key.data
                if retry and answers[i] != b"OK %d\n" % i and time.monotonic() < deadline:
                    retries += 1
                    start(i)
                else:
                    open_ -= 1
    bad = {i: bytes(a).decode("latin-1") for i, a in answers.items() if a != b"OK %d\n" % i}
    return {
        "clients": clients,
        "ok": clients - len(bad),
        "bad": dict(list(bad.items())[:20]),
        "badCount": len(bad),
        "unfinished": open_,
        "retries": retries,
        "connectSeconds": round(connected, 3),
        "totalSeconds": round(time.monotonic() - started, 3),
    }


if __name__ == "__main__":
    host, port, clients, size, timeout = sys.argv[1:6]
    retry = sys.argv[6:7] == ["retry"]
    result = main(host, int(port), int(clients), int(size), float(timeout), retry)
    sys.stdout.write(json.dumps(result) + "\n")
