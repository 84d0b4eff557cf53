"""
Running a real server process for tests and demonstrations: start it and wait for the line
that says it is ready, keep copying its output to a log so that its pipe never fills, and
stop it by its PID.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
from pathlib import Path
from typing import IO


def launch(
    args: list[str], logPath: Path, ready: bytes, name: str, mode: str
) -> subprocess.Popen[bytes]:
    """
    Start C{args} and return once a line of its output contains C{ready}.

    @param mode: C{"stdout"} to read the process's standard output (its standard error
        merged into it), C{"stderr"} to read its standard error (its standard output
        dropped).
    @raise RuntimeError: The process exited before it was ready.
    """
    if mode == "stdout":
        process = subprocess.Popen(
            args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        stream = process.stdout
    else:
        process = subprocess.Popen(
            args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        stream = process.stderr
    assert stream is not None
    log = logPath.open("ab")
    for line in stream:
        log.write(line)
        if ready in line:
            break
    else:
        log.close()
        code = process.wait()
        raise RuntimeError(f"{name} exited with {code} before it was ready; see {logPath}")
    threading.Thread(target=_drain, args=(stream, log), daemon=True).start()
    return process


def stop(process: subprocess.Popen[bytes] | None) -> None:
    """
    Stop a process started by L{launch} by its PID (resuming it first, in case it was
    paused), and wait for it to exit; SIGKILL if it does not within 10 seconds.
    """
    if process is None or process.poll() is not None:
        return
    os.kill(process.pid, signal.SIGCONT)
    os.kill(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        os.kill(process.pid, signal.SIGKILL)
        process.wait()


def _drain(stream: IO[bytes], log: IO[bytes]) -> None:
    """
    Copy what the process prints into its log, so its pipe never fills.
    """
    with log:
        for line in stream:
            log.write(line)
