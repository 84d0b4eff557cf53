"""
Keep-alive load for the turn-taking tests, run as a subprocess.

C{CLIENTS} clients each open a connection and send requests on it back to back, one at a time,
for C{SECONDS} seconds: HTTP/1.1 C{GET} requests (mode C{http}) or lines (mode C{line}).  When
the server announces that it closes the connection after an answer (C{Connection: close}, or a
line ending in C{BYE}), the client reads that whole answer, closes and connects again: that is
the end of one turn.  At the end every client closes whatever it has open.

Every answer is checked against its request (the server echoes the client's number and the
request's number).  Reported, as one JSON object:

    - C{responses}, C{turns}, C{connections}: per client, answers received, connections that
      got at least one answer, and connections opened;
    - C{firstAnswer}: per client, seconds from the start until its first answer (L{None} if
      none came);
    - C{resets}: connections reset under a client (C{ECONNRESET}, C{EPIPE});
    - C{truncated}: connections closed in the middle of an answer;
    - C{unannounced}: connections closed without warning while a request was outstanding;
    - C{wrong}: answers that did not match their request.

Usage: python turnload.py HOST PORT CLIENTS SECONDS MODE
"""

from __future__ import annotations

import errno
import json
import selectors
import socket
import sys
import time


class Client:
    """
    One client: its current connection and what it has seen.
    """

    def __init__(self, number: int, mode: str) -> None:
        self.number = number
        self.mode = mode
        self.sock: socket.socket | None = None
        self.buffer = b""
        self.sent = 0
        self.outstanding = False
        self.answered = False
        self.responses = 0
        self.turns = 0
        self.connections = 0
        self.firstAnswer: float | None = None

    def request(self) -> bytes:
        self.sent += 1
        tag = f"{self.number}.{self.sent}"
        if self.mode == "http":
            return f"GET /?tag={tag} HTTP/1.1\r\nHost: load\r\n\r\n".encode()
        return f"{tag}\n".encode()

    def parse(self) -> tuple[bytes, bool] | None:
        """
        Take one complete answer from the buffer.

        @return: Its body and whether the server announced a close, or L{None} if no answer
            is complete yet.
        """
        if self.mode == "line":
            line, newline, rest = self.buffer.partition(b"\n")
            if not newline:
                return None
            self.buffer = rest
            closing = line.endswith(b" BYE")
            return (line[: -len(b" BYE")] if closing else line), closing
        head, separator, rest = self.buffer.partition(b"\r\n\r\n")
        if not separator:
            return None
        headers = {}
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            headers[name.strip().lower()] = value.strip().lower()
        size = int(headers[b"content-length"])
        if len(rest) < size:
            return None
        self.buffer = rest[size:]
        return rest[:size], headers.get(b"connection") == b"close"

    def expected(self) -> bytes:
        tag = f"{self.number}.{self.sent}".encode()
        return (b"hello " if self.mode == "http" else b"OK ") + tag


def main(host: str, port: int, clients: int, seconds: float, mode: str) -> dict[str, object]:
    selector = selectors.DefaultSelector()
    everyone = [Client(i, mode) for i in range(clients)]
    report: dict[str, list[object]] = {
        "resets": [],
        "truncated": [],
        "unannounced": [],
        "wrong": [],
    }
    started = time.monotonic()
    deadline = started + seconds

    def connect(client: Client) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.connect((host, port))
        sock.setblocking(False)
        client.sock = sock
        client.buffer = b""
        client.answered = False
        client.connections += 1
        selector.register(sock, selectors.EVENT_READ, client)
        try:
            send(client)
        except OSError as e:
            fail(client, "resets", e)

    def send(client: Client) -> None:
        assert client.sock is not None
        client.outstanding = True
        client.sock.sendall(client.request())

    def close(client: Client) -> None:
        sock, client.sock = client.sock, None
        if sock is not None:
            selector.unregister(sock)
            sock.close()
        client.outstanding = False

    def fail(client: Client, kind: str, detail: object) -> None:
        report[kind].append([client.number, client.sent, str(detail)])
        close(client)
        if time.monotonic() < deadline:
            connect(client)

    for client in everyone:
        connect(client)
    while time.monotonic() < deadline:
        for key, _ in selector.select(timeout=max(0.0, deadline - time.monotonic())):
            client = key.data
            sock = client.sock
            if sock is None or key.fileobj is not sock:
                continue
            try:
                chunk = sock.recv(65536)
            except OSError as e:
                if e.errno in (errno.ECONNRESET, errno.EPIPE):
                    fail(client, "resets", e)
                    continue
                raise
            if not chunk:
                if client.buffer:
                    fail(client, "truncated", client.buffer[:200])
                elif client.outstanding:
                    fail(client, "unannounced", "closed before answering")
                else:
                    close(client)
                continue
            client.buffer += chunk
            while client.sock is not None:
                answer = client.parse()
                if answer is None:
                    break
                body, closing = answer
                client.outstanding = False
                if body != client.expected():
                    report["wrong"].append([client.number, client.sent, body.decode("latin-1")])
                client.responses += 1
                if client.firstAnswer is None:
                    client.firstAnswer = round(time.monotonic() - started, 3)
                if not client.answered:
                    client.answered = True
                    client.turns += 1
                if time.monotonic() >= deadline:
                    close(client)
                elif closing:
                    if client.buffer:
                        fail(client, "wrong", b"bytes after a closing answer")
                        break
                    close(client)
                    connect(client)
                else:
                    try:
                        send(client)
                    except OSError as e:
                        fail(client, "resets", e)
    for client in everyone:
        close(client)
    return {
        "responses": [c.responses for c in everyone],
        "turns": [c.turns for c in everyone],
        "connections": [c.connections for c in everyone],
        "firstAnswer": [c.firstAnswer for c in everyone],
        **report,
    }


if __name__ == "__main__":
    host, port, clients, seconds, mode = sys.argv[1:6]
    result = main(host, int(port), int(clients), float(seconds), mode)
    sys.stdout.write(json.dumps(result) + "\n")
