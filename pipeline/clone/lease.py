"""The output folder's lease: one run writes a clone folder at a time, however two launches overlap.

A run takes the folder before it writes anything and holds it until it ends. The lease is a numbered
file, ``lease/<generation>.json``, naming its holder (host, pid, run id, start time, the run identity's
hash) and a heartbeat the holder rewrites every ``clone.lease_heartbeat_s``. The holder is the highest
generation present. Taking the folder is creating the next generation with an exclusive create
(:meth:`~pipeline.storage.Storage.create_bytes`: a hard link on a local disk, ``If-None-Match: *`` on
S3), so of two runs racing for it exactly one wins, whether the folder was free or its holder dead:

* free (no lease file): create generation 1;
* held, heartbeat younger than ``clone.lease_timeout_s`` and the holder alive: refuse in one line
  naming the holder;
* held by a dead holder (heartbeat too old, or a pid of this host that no longer runs — a SIGKILLed
  driver): create the next generation, log the takeover.

A holder checks at every heartbeat that its generation is still the highest and still its own; a run
whose lease was taken over (it was paused past the timeout) stops. Heartbeat ages compare the holder's
clock with the reader's, so hosts sharing a folder need clocks that agree to well within the timeout
(NTP). On a store without a conditional create two runs starting in the same instant can both take a
free folder; the run identity in every record (:mod:`pipeline.clone.identity`) still keeps their outputs
apart.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
import uuid
from dataclasses import asdict, dataclass
from typing import Any

from pipeline.errors import ConfigError, PipelineError
from pipeline.storage import Storage

log = logging.getLogger("rldf.clone")

FOLDER = "lease"


class FolderHeld(ConfigError):
    """Another live run holds the output folder."""


@dataclass(frozen=True)
class Holder:
    run_id: str
    host: str
    pid: int
    started: float
    identity: str
    generation: int
    heartbeat: float

    def describe(self, now: float) -> str:
        started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.started))
        return (f"pid {self.pid} on {self.host}, started {started}, last heartbeat {now - self.heartbeat:.0f} s ago, "
                f"settings {self.identity[:12]}")


def _name(generation: int) -> str:
    return f"{FOLDER}/{generation:06d}.json"


def _alive_here(holder: Holder) -> bool | None:
    """Whether the holder's process still runs, where that can be known (it ran on this host); else None."""
    if holder.host != socket.gethostname():
        return None
    try:
        os.kill(holder.pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it runs, as another user
        return True
    return True


class Lease:
    """Hold ``storage``'s folder for a run of settings ``identity`` (a hash). Use as a context manager, or
    :meth:`acquire` / :meth:`release`; :attr:`lost` says why the lease was lost mid-run (None while held)."""

    def __init__(self, storage: Storage, identity: str, timeout_s: float, heartbeat_s: float) -> None:
        if heartbeat_s <= 0 or timeout_s <= heartbeat_s:
            raise ConfigError(f"clone.lease_timeout_s ({timeout_s:g}) must exceed clone.lease_heartbeat_s ({heartbeat_s:g}) > 0")
        self.storage, self.identity = storage, identity
        self.timeout_s, self.heartbeat_s = float(timeout_s), float(heartbeat_s)
        self.run_id = uuid.uuid4().hex
        self.started = time.time()
        self.generation: int | None = None
        self.lost: str | None = None
        self.took_over: Holder | None = None  # the dead holder this run replaced
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ reading
    def _generations(self) -> list[int]:
        out = []
        for rel in self.storage.list(FOLDER, ".json"):
            stem = rel.rsplit("/", 1)[-1][: -len(".json")]
            if stem.isdigit():
                out.append(int(stem))
        return sorted(out)

    def _read(self, generation: int) -> Holder | None:
        try:
            return Holder(**json.loads(self.storage.read_bytes(_name(generation))))
        except FileNotFoundError:
            return None
        except (ValueError, TypeError):  # a torn or foreign file: its writer is not a live holder of ours
            return Holder("?", "?", -1, 0.0, "?", generation, 0.0)

    def _body(self, generation: int) -> bytes:
        holder = Holder(self.run_id, socket.gethostname(), os.getpid(), self.started, self.identity, generation, time.time())
        return json.dumps(asdict(holder)).encode()

    # ------------------------------------------------------------------ taking and holding
    def acquire(self) -> "Lease":
        for _ in range(8):  # each pass ends in a win, a refusal, or a lost race that the next pass re-reads
            gens = self._generations()
            top = gens[-1] if gens else 0
            holder = self._read(top) if top else None
            if top and holder is None:  # released between the listing and the read
                continue
            now = time.time()
            if holder is not None and holder.run_id == self.run_id:  # a retried create whose first try went through
                self.generation = top
                self._start_heartbeat()
                return self
            if holder is not None:
                alive = _alive_here(holder)
                stale = alive is False or now - holder.heartbeat > self.timeout_s
                if not stale:
                    raise FolderHeld(
                        f"{self.storage.url} is being written by another run ({holder.describe(now)}): wait for it to end, "
                        f"or use another paths.output_dir (a holder that died is taken over {self.timeout_s:g} s after its "
                        f"last heartbeat, at once when it ran on this host)")
            if self.storage.create_bytes(_name(top + 1), self._body(top + 1)):
                self.generation = top + 1
                if holder is not None:
                    self.took_over = holder
                    log.warning("took over %s from a run that is gone (%s)", self.storage.url, holder.describe(now))
                for g in gens:  # earlier generations are history now
                    self._remove(g)
                self._start_heartbeat()
                return self
        raise PipelineError(f"could not take the lease on {self.storage.url}: other runs keep taking it")

    def _remove(self, generation: int) -> None:
        try:
            self.storage.remove(_name(generation))
        except (OSError, PipelineError):
            pass

    def renew(self) -> bool:
        """Rewrite the heartbeat if the lease is still this run's; returns False (and sets :attr:`lost`) if not."""
        if self.generation is None or self.lost:
            return False
        gens = self._generations()
        mine = self._read(self.generation)
        if mine is None or mine.run_id != self.run_id or (gens and gens[-1] > self.generation):
            newer = self._read(gens[-1]) if gens and gens[-1] > self.generation else None
            self.lost = ("another run took over the output folder" + (f" ({newer.describe(time.time())})" if newer else "")
                         + f": this run was silent for more than clone.lease_timeout_s={self.timeout_s:g} s")
            return False
        self.storage.write_bytes(_name(self.generation), self._body(self.generation))
        return True

    def _start_heartbeat(self) -> None:
        def beat() -> None:
            while not self._stop.wait(self.heartbeat_s):
                try:
                    if not self.renew():
                        return
                except (OSError, PipelineError) as e:  # the store hiccups: the next beat tries again
                    log.warning("lease heartbeat on %s failed (%s); retrying", self.storage.url, e)

        self._thread = threading.Thread(target=beat, name="lease-heartbeat", daemon=True)
        self._thread.start()

    def release(self) -> None:
        """Stop the heartbeat and remove this run's lease file (a run that still held the folder frees it)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        if self.generation is not None:  # a lost lease's file is below the new holder's: history either way
            mine = self._read(self.generation)
            if mine is not None and mine.run_id == self.run_id:
                self._remove(self.generation)
        self.generation = None

    def __enter__(self) -> "Lease":
        return self.acquire()

    def __exit__(self, *exc: Any) -> None:
        self.release()
