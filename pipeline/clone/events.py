"""A run's event log, ``clone.log``: one JSON line per event, beside the shards.

Local storage appends as it goes (a line cut short by a kill is ended first); an object store has no appends, so the
events go to a local file that is uploaded after what earlier runs logged when the run ends. A full disk stops the
logging, never the run: the shards and their records say what is done."""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from typing import Any, Callable

from pipeline.clone.layout import LAYOUT
from pipeline.errors import PipelineError
from pipeline.storage import Storage


class EventLog:
    def __init__(self, storage: Storage, on_event: Callable[[dict], None] | None = None) -> None:
        """``on_event`` sees every event as it is logged."""
        self.storage, self.on_event = storage, on_event or (lambda e: None)
        self._failed = self._checked = False
        if storage.is_local:
            self.path = os.path.join(storage.root, LAYOUT.log)
        else:
            fd, self.path = tempfile.mkstemp(prefix="clone-", suffix=".log")
            os.close(fd)

    def __call__(self, kind: str, **fields: Any) -> None:
        e = {"t": round(time.time(), 3), "event": kind, **fields}
        try:
            with open(self.path, "a+b") as f:
                if f.tell() and not self._checked:  # a line cut short (a kill mid-write, junk appended): end it first
                    f.seek(-1, os.SEEK_END)
                    if f.read(1) != b"\n":
                        f.write(b"\n")
                self._checked = True
                f.write((json.dumps(e, default=str) + "\n").encode())
        except OSError as err:  # a full disk must not take the run down with it: the shards say what is done
            if not self._failed:
                print(f"warning: cannot append to {self.path} ({err.strerror or err}); events are no longer logged", file=sys.stderr)
            self._failed = True
        self.on_event(e)

    def upload(self) -> None:
        """Object stores: append this run's events to the stored ``clone.log`` (local storage appends as it goes)."""
        if self.storage.is_local or not os.path.exists(self.path):
            return
        try:
            with open(self.path, "rb") as f:
                new = f.read()
            old = self.storage.read_bytes(LAYOUT.log) if self.storage.exists(LAYOUT.log) else b""
            self.storage.write_bytes(LAYOUT.log, old + new)
            os.remove(self.path)
        except (OSError, PipelineError) as err:  # never hide the run's own outcome behind the log's
            print(f"warning: {LAYOUT.log} could not be uploaded ({err}); this run's events are in {self.path}", file=sys.stderr)
