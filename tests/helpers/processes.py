"""Ports for the servers tests start, and clones to crash."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Callable

from helpers import ROOT


def free_port() -> int:
    """A TCP port nothing listens on right now (for the servers the tests start on 127.0.0.1)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def crash_when(cmd: list[str], ready: Callable[[], bool], timeout: float = 600) -> None:
    """Start ``cmd`` (a clone) and SIGKILL it with its whole process family (driver, Ray and its workers: the
    machine "crashes") as soon as ``ready()`` holds."""
    import psutil

    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None and not ready():
        time.sleep(0.05)
    for p in [proc] + psutil.Process(proc.pid).children(recursive=True):
        try:
            os.kill(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.wait()


def count(folder: Path, pattern: str) -> int:
    return len(list(folder.glob(pattern))) if folder.exists() else 0
