"""The clone driver: plans units, dispatches them to workers (Ray actors, or one in this process) with backpressure,
survives failures.

* A search unit per class whose result is not yet persisted; a shard unit per shard that is missing,
  corrupt or unlisted. Resume is the same code: list what is done, do the rest, after checking that the
  settings the output depends on are those it was started with (:mod:`pipeline.clone.identity`).
* Each worker runs ``cluster.units_per_worker`` units at once (their renders share full generator calls,
  :mod:`pipeline.rendering`) and has at most ``cluster.max_in_flight - 1`` more queued, so work goes where
  capacity is. The summary, ``clone.log`` and the progress bar say how full the generator calls were.
* A worker that dies (actor crash, node loss) is replaced and its units are re-queued; a unit whose own
  code keeps failing is given up after ``clone.max_attempts`` tries, reported, and the run exits non-zero.
* Nothing waits on a worker that cannot be placed: a replacement is requested and joins when Ray places
  it, while the surviving workers keep going. When no worker is alive and none has started within
  ``cluster.worker_start_timeout_s``, the run stops with its summary (every committed shard is valid) and
  the same command resumes it.
* SIGTERM or Ctrl-C (preemption, a scheduler's time limit) stops dispatching and lets the units in flight
  finish for ``cluster.stop_grace_s``; the manifest and log are written and the run exits non-zero with a
  resume line. A second signal stops at once. Either way every committed shard is valid.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import tempfile
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Callable

from pipeline.clone.card import CardFacts, dataset_card, timm_info
from pipeline.clone.identity import check_identity, folder_identities, identity_hash, run_identity
from pipeline.clone.inventory import output_tags, take_inventory
from pipeline.clone.lease import Lease
from pipeline.clone.manifest import Manifest
from pipeline.clone.plan import ClonePlan, SearchUnit, ShardUnit
from pipeline.clone.layout import LAYOUT
from pipeline.clone.pool import UnitError, WorkerLost, make_pool, worker_count
from pipeline.clone.progress import RenderProgress, render_estimate
from pipeline.clone.worker import image_seed
from pipeline.errors import ConfigError, InputError, Interrupted, PipelineError
from pipeline.rendering import summarise_calls
from pipeline.storage import Storage

log = logging.getLogger("rldf.clone")
Unit = SearchUnit | ShardUnit


@dataclass
class CloneSummary:
    classes: int
    shards_total: int
    shards_written: int = 0
    shards_reused: int = 0
    searches_run: int = 0
    searches_reused: int = 0
    #: searches of this run whose best state names the input's own class (with env.class_candidates, the
    #: share of classes the cut class axis still found)
    searches_found_class: int = 0
    search_renders: int = 0  # renders the searches of this run spent
    images_written: int = 0
    images_from_search: int = 0  # of images_written, search renders reused (clone.reuse_search_renders)
    #: class -> image indices left out because no candidate passed verification (whole run, reused shards too)
    shortfall: dict[str, int] = field(default_factory=dict)
    #: class -> images written that did not pass acceptance (clone.fill=best kept the best of their tries)
    not_passed: dict[str, int] = field(default_factory=dict)
    images_requested: int = 0  # classes × clone.images_per_class
    #: why the clone falls short of clone.max_shortfall (None: it does not): missing or unpassed images, which classes
    incomplete: str | None = None
    #: the share of the clone's samples (every committed shard) whose prompt asks for the class of their label, and
    #: per class: on a procedural world, the share whose image shows its label (None: no record counts it)
    label_accuracy: float | None = None
    label_accuracy_by_class: dict[str, float] = field(default_factory=dict)
    #: class id -> {label, read, prob}: classes whose input image(s) the semantic encoder read as another class
    #: (with env.class_source=read their images show the class read, with rendered the class chosen; rerun them with dataset.only=[...])
    misread: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: committed shards rendered after a CUDA out-of-memory back-off (their records say at which call size): same prompts,
    #: seeds and noise as without it, pixels possibly not (kernels follow the batch size)
    shards_after_oom_backoff: int = 0
    corrupt_redone: dict[str, str] = field(default_factory=dict)
    failures: list[dict[str, Any]] = field(default_factory=list)
    workers_lost: int = 0
    nodes_left: int = 0  # cluster.num_workers=auto: workers whose node left the cluster (not failures)
    #: why the run stopped before its queue was empty (None: it ran to the end), and units left undone
    stopped: str | None = None
    units_left: int = 0
    wall_s: float = 0.0
    startup_s: float = 0.0  # starting workers (model loading), part of wall_s
    #: worker id -> what it ran on: device, device name, dtype, torch / CUDA / diffusers versions
    worker_devices: dict[str, dict[str, Any]] = field(default_factory=dict)
    worker_images_per_s: dict[str, float] = field(default_factory=dict)
    generator_images_per_s: float = 0.0  # generation renders per second inside generator calls
    #: per phase (search, generation): generator calls, renders, renders per call, share of calls below the
    #: batch size, seconds in calls, renders made ahead in short calls' free slots and how many of those were
    #: asked for later (env.render_ahead; all workers of this run)
    generator_calls: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """The run ended without failures or a stop, and made its dataset (clone.max_shortfall)."""
        return not self.failures and self.stopped is None and self.incomplete is None

    def to_dict(self) -> dict[str, Any]:
        d = dict(self.__dict__)
        d["images_per_s"] = round(self.images_written / self.wall_s, 3) if self.wall_s else 0.0
        work = self.wall_s - self.startup_s
        d["images_per_s_after_startup"] = round(self.images_written / work, 3) if work > 0 else 0.0
        d["ok"] = self.ok
        return d


def incompleteness(summary: CloneSummary, max_shortfall: float) -> str | None:
    """One line saying why the clone is not the dataset asked for, when more than ``max_shortfall`` (a fraction;
    ``clone.max_shortfall``) of the requested images are missing or did not pass acceptance; else None."""
    missing, unpassed = sum(summary.shortfall.values()), sum(summary.not_passed.values())
    want = summary.images_requested
    if not want or missing + unpassed <= max_shortfall * want:
        return None
    short = {c: summary.shortfall.get(c, 0) + summary.not_passed.get(c, 0) for c in {*summary.shortfall, *summary.not_passed}}
    worst = sorted(short, key=lambda c: (-short[c], c))
    named = ", ".join(f"{c} ({short[c]})" for c in worst[:5]) + (f" and {len(worst) - 5} more" if len(worst) > 5 else "")
    why = []
    if missing:
        why.append(f"{missing} missing (no render passed and clone.fill=strict, or the class had no state to render)")
    if unpassed:
        why.append(f"{unpassed} written without passing acceptance (the best of clone.max_tries renders, clone.fill=best)")
    return (f"{missing + unpassed} of {want} requested images ({(missing + unpassed) / want:.1%}) fall short, over "
            f"clone.max_shortfall={max_shortfall:g}: {'; '.join(why)}; in {len(worst)} classes: {named}")


@dataclass
class Schedule:
    """The scheduling loop's state: units queued and in flight, shards waiting for their classes' searches,
    retries, and per-worker throughput."""

    queue: deque  # units ready to dispatch, in order
    waiting: dict[str, int]  # shard -> classes whose search it still waits for
    by_class: dict[str, list[ShardUnit]]  # class -> shards waiting for its search
    in_flight: dict[Any, tuple[Unit, int]] = field(default_factory=dict)  # call ref -> (unit, worker id)
    attempts: dict[str, int] = field(default_factory=dict)  # unit id -> failed tries
    busy: dict[int, list[float]] = field(default_factory=dict)  # worker id -> [images, seconds]
    calls: dict[int, dict[str, Any]] = field(default_factory=dict)  # worker id -> its latest call statistics
    backoffs: dict[int, int] = field(default_factory=dict)  # worker id -> out-of-memory back-offs logged
    alone_since: float | None = None  # since when no worker has been alive

    @classmethod
    def of(cls, searches: list[SearchUnit], shards: list[ShardUnit]) -> "Schedule":
        """Searches first; a shard is ready once every class it draws from has its search persisted."""
        unsearched = {u.cls.id for u in searches}
        waiting: dict[str, int] = {}
        by_class: dict[str, list[ShardUnit]] = {}
        ready = []
        for u in shards:
            missing = [c.id for c in u.classes if c.id in unsearched]
            if not missing:
                ready.append(u)
            waiting[u.shard] = len(missing)
            for c in missing:
                by_class.setdefault(c, []).append(u)
        return cls(deque(searches + ready), waiting, by_class)

    def searched(self, class_id: str) -> None:
        """A class's search is persisted: the shards it completes go first (short units, early committed
        output, finer-grained resume)."""
        ready = []
        for u in self.by_class.pop(class_id, []):
            self.waiting[u.shard] -= 1
            if self.waiting[u.shard] == 0:
                ready.append(u)
        self.queue.extendleft(reversed(ready))

    def left(self) -> int:
        return len(self.queue) + len(self.in_flight) + sum(1 for n in self.waiting.values() if n > 0)


class CloneDriver:
    def __init__(self, cfg: dict[str, Any], plan: ClonePlan, on_event: Callable[[dict], None] | None = None,
                 identity_changes: list[str] | None = None, lease: Lease | None = None,
                 identity: dict[str, Any] | None = None, class_pos: int | None = None, card: CardFacts | None = None) -> None:
        """``identity_changes``: the result of a :func:`check_identity` the caller already ran (the CLI checks
        before starting Ray); ``None`` makes :meth:`run` check. ``lease``: the output folder's lease the caller
        holds (:mod:`pipeline.clone.lease`); ``None`` makes :meth:`run` take it. ``identity``: :func:`run_identity`
        of ``cfg`` where the caller has it. ``class_pos``: the class axis's position in a sample's encoding (a record
        rebuilt from its shard then counts label accuracy). ``card``: what the folder's dataset card says of the run
        (:mod:`pipeline.clone.card`; ``None``: the dataset's classes are the plan's, no command)."""
        self.cfg, self.plan = cfg, plan
        self.card = card or CardFacts.of(cfg, plan.classes)
        self.identity_changes = identity_changes
        self.identity = identity if identity is not None else run_identity(cfg)
        self.identity_hash = identity_hash(self.identity)
        self.lease = lease
        cluster, clone = cfg["cluster"], cfg["clone"]
        self.max_attempts = int(clone["max_attempts"])
        self.verify_mode = str(clone["verify"])
        self.class_pos = class_pos
        self._readings: dict[str, tuple[str | None, float | None]] = {}  # class id -> what its search read (inventory, then this run)
        self.stop_grace = float(cluster["stop_grace_s"])
        self._stop_signal: str | None = None  # the first SIGTERM / SIGINT received
        self._stop_at = 0.0
        self.storage = Storage(cfg["paths"]["output_dir"], cfg["clone"]["storage_retry_s"])
        self._log_failed = False
        self._log_checked = False
        self.manifest = Manifest(self.storage)
        self.on_event = on_event or (lambda e: None)
        # the event log lives beside the shards; on an object store (no appends) it is kept in a local file
        # and uploaded, after what earlier runs logged, when the run ends
        if self.storage.is_local:
            self.log_path = os.path.join(self.storage.root, LAYOUT.log)
        else:
            fd, self.log_path = tempfile.mkstemp(prefix="clone-", suffix=".log")
            os.close(fd)
        self.pool = make_pool(cfg, self.identity_hash, self.storage, self.event)

    # ------------------------------------------------------------------ bookkeeping
    def event(self, kind: str, **fields: Any) -> None:
        e = {"t": round(time.time(), 3), "event": kind, **fields}
        try:
            with open(self.log_path, "a+b") as f:
                if f.tell() and not self._log_checked:  # a line cut short (a kill mid-write, junk appended): end it first
                    f.seek(-1, os.SEEK_END)
                    if f.read(1) != b"\n":
                        f.write(b"\n")
                self._log_checked = True
                f.write((json.dumps(e, default=str) + "\n").encode())
        except OSError as err:  # a full disk must not take the run down with it: the shards say what is done
            if not self._log_failed:
                print(f"warning: cannot append to {self.log_path} ({err.strerror or err}); events are no longer logged",
                      file=sys.stderr)
            self._log_failed = True
        self.on_event(e)

    def _todo(self, summary: CloneSummary) -> tuple[list[SearchUnit], list[ShardUnit]]:
        """Searches not yet persisted that some unfinished shard needs, and the shards not validly committed
        (:mod:`pipeline.clone.inventory`). Output of another run's settings is refused, or redone under
        ``clone.on_config_change=allow``; damaged bookkeeping is redone or rebuilt, and logged."""
        removed = self.storage.clean_tmp() + self.storage.clean_tmp(LAYOUT.searches) + self.storage.clean_tmp(LAYOUT.records)
        if removed:
            self.event("removed_temporary_files", count=removed)
        t0 = time.perf_counter()
        units = self.plan.shard_units()
        known = folder_identities(self.storage) | {self.identity_hash}
        inv = take_inventory(self.storage, units, [c.id for c in self.plan.classes], known, self.verify_mode,
                             bool(self.cfg["clone"]["reuse_search_renders"]), partial(image_seed, int(self.cfg["seed"])),
                             self.identity_hash, self.class_pos)
        self.event("verified", mode=self.verify_mode, shards=len(inv.valid) + len(inv.damaged), invalid=len(inv.damaged),
                   foreign=len(inv.foreign), rebuilt=len(inv.rebuilt), seconds=round(time.perf_counter() - t0, 3))
        if inv.foreign:
            tags = sorted(set(inv.foreign.values()))
            if self.cfg["clone"]["on_config_change"] != "allow":
                raise ConfigError(
                    f"{self.storage.url} holds {len(inv.foreign)} files made by a run of other settings (identity "
                    f"{', '.join(tags[:3])}; this run's is {self.identity_hash}), e.g. {sorted(inv.foreign)[0]}: another run wrote "
                    "into this folder. Use a new paths.output_dir, or pass clone.on_config_change=allow to redo them")
            self.event("foreign_redone", files=sorted(inv.foreign), identities=tags)
        for rel in [*inv.foreign, *inv.damaged]:  # a shard, a search result, or an unreadable record
            if rel.endswith(".tar"):  # the record too: a shard left without its record would be rebuilt
                self.manifest.remove(rel)
            self.storage.remove(rel)
        for rel, why in inv.damaged.items():
            self.event("shard_invalid" if rel.endswith(".tar") else "bookkeeping_damaged", file=rel, why=why,
                       **({"shard": rel} if rel.endswith(".tar") else {}))
        for shard in inv.rebuilt:
            self.event("record_rebuilt", shard=shard)
        summary.corrupt_redone = {k: v for k, v in inv.damaged.items() if k.endswith(".tar")}
        self._readings = dict(inv.readings)
        shards = [u for u in units if u.shard not in inv.valid]
        summary.shards_reused = len(units) - len(shards)
        needed = {c.id for u in shards for c in u.classes}
        searches = []
        for cls in self.plan.classes:
            redo = LAYOUT.search(cls.id) in inv.damaged or LAYOUT.search(cls.id) in inv.foreign  # redone even if no shard needs it
            if cls.id not in needed and not redo:
                continue
            if cls.id in inv.searches_done:
                summary.searches_reused += 1
            else:
                searches.append(SearchUnit(cls))
        return searches, shards

    # ------------------------------------------------------------------ signals
    def _on_signal(self, signum: int, frame: Any) -> None:
        name = signal.Signals(signum).name
        if self._stop_signal is not None:  # the second signal: stop now
            raise Interrupted(f"stopped at once by a second signal ({name}); every committed shard is valid, "
                              "run the same command again to resume")
        self._stop_signal, self._stop_at = name, time.perf_counter()

    def _install_signal_handlers(self) -> dict[int, Any]:
        if threading.current_thread() is not threading.main_thread():
            return {}
        return {sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}

    # ------------------------------------------------------------------ the loop
    def run(self) -> CloneSummary:
        previous = self._install_signal_handlers()
        try:
            return self._run()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _run(self) -> CloneSummary:
        if self.lease is not None:
            return self._run_leased()
        clone = self.cfg["clone"]
        with Lease(self.storage, self.identity_hash, clone["lease_timeout_s"], clone["lease_heartbeat_s"]) as self.lease:
            try:
                return self._run_leased()
            finally:
                self.lease = None

    def _run_leased(self) -> CloneSummary:
        t0 = time.perf_counter()
        summary = CloneSummary(classes=len(self.plan.classes), shards_total=self.plan.num_shards)
        if self.lease.took_over is not None:
            self.event("lease_taken_over", previous=self.lease.took_over.describe(time.time()))
        changes = self.identity_changes
        if changes is None:
            changes = check_identity(self.storage, self.cfg, self.cfg["clone"]["on_config_change"], self.identity,
                                     lambda: output_tags(self.storage))
        if changes:
            self.event("config_changed", changes=changes)
        searches, shards = self._todo(summary)
        self.event("plan", searches=len(searches), shards=len(shards), reused_shards=summary.shards_reused)
        sched = Schedule.of(searches, shards)
        bar = None
        try:
            if sched.queue:
                wanted = worker_count(self.cfg["cluster"], self.pool.resources())
                self.pool.start(max(1, min(wanted, len(sched.queue))), summary)
            summary.startup_s = round(time.perf_counter() - t0, 3)
            # from here, not before the models load: its rate, and so its ETA, is the work's
            bar = RenderProgress([*searches, *shards], render_estimate(self.cfg["env"], self.cfg["clone"]),
                                 self.cfg["clone"]["progress"], images_done=summary.images_written)
            while (sched.queue or sched.in_flight) and not self._should_stop(sched, summary):
                if self._stop_signal is None:
                    self.pool.dispatch(sched)
                    self.pool.follow_cluster(sched)
                done = self.pool.wait(list(sched.in_flight) + list(self.pool.starting), 1.0)
                bar.poll(self.pool)
                for ref in done:
                    if ref in self.pool.starting:
                        self.pool.joined(ref, summary, first_start=False)
                    elif ref in sched.in_flight:  # else: a unit of a worker already declared lost
                        self._collect(ref, sched, summary, bar, t0)
        except BaseException:
            self._upload_log()
            raise
        finally:
            if bar is not None:
                bar.close()
            self.pool.kill_all()
        return self._finish(summary, sched, t0)

    def _should_stop(self, sched: Schedule, summary: CloneSummary) -> bool:
        """After a signal, once the units in flight are done or the grace period is over; with no worker alive,
        once none has started within the worker start timeout (a replacement is requested meanwhile)."""
        if self.lease is not None and self.lease.lost:  # another run holds the folder now: stop writing into it
            summary.stopped = self.lease.lost
        elif self._stop_signal is not None:  # a signal: dispatch nothing more, let the units in flight finish
            if not sched.in_flight or time.perf_counter() - self._stop_at > self.stop_grace:
                late = (f" ({len(sched.in_flight)} units still in flight after cluster.stop_grace_s={self.stop_grace:g} s)"
                        if sched.in_flight else "")
                summary.stopped = f"stopped by {self._stop_signal}{late}"
        elif self.pool.workers:
            sched.alone_since = None
        else:  # every worker is lost: wait for a replacement, but not forever
            sched.alone_since = sched.alone_since or time.perf_counter()
            if not self.pool.starting:
                self.pool.request(1)
            if time.perf_counter() - sched.alone_since > self.pool.worker_start_timeout:
                summary.stopped = (f"no worker alive and none started within cluster.worker_start_timeout_s="
                                   f"{self.pool.worker_start_timeout:g} s")
        return summary.stopped is not None

    def _collect(self, ref: Any, sched: Schedule, summary: CloneSummary, bar: RenderProgress, t0: float) -> None:
        """A unit's call returned: record its outcome, or re-queue it (lost worker) or retry it (its own error)."""
        unit, wid = sched.in_flight.pop(ref)
        try:
            out = self.pool.result(ref)
        except WorkerLost as e:
            self.pool.lost(wid, unit, sched, summary, str(e))
            return
        except UnitError as e:
            self._unit_failed(unit, sched, summary, str(e))
            return
        bar.finished(unit, out.renders, out.images if isinstance(unit, ShardUnit) else 0)
        total = lambda stats: sum(c["calls"] for c in stats.values())  # noqa: E731
        if total(out.calls) >= total(sched.calls.get(wid, {})):  # cumulative per worker; units may return out of order
            sched.calls[wid] = out.calls
        for size in out.oom_backoffs[sched.backoffs.get(wid, 0):]:  # CUDA ran out of memory: the worker halved its batch
            self.event("oom_backoff", worker=wid, batch_size=size)
        sched.backoffs[wid] = max(sched.backoffs.get(wid, 0), len(out.oom_backoffs))
        if isinstance(unit, SearchUnit):
            summary.searches_run += 1
            summary.searches_found_class += out.found_class
            summary.search_renders += out.renders
            self._readings[unit.cls.id] = (out.read_class, out.read_prob)
            sched.searched(unit.cls.id)
            self.event("search_done", cls=unit.cls.id, worker=wid, **out.log_fields())
        else:
            summary.shards_written += 1
            summary.images_written += out.images
            summary.images_from_search += out.from_search
            b = sched.busy.setdefault(wid, [0.0, 0.0])
            b[0] += out.images
            b[1] += out.seconds
            self.event("shard_done", shard=unit.shard, worker=wid, images=out.images, missing=out.missing,
                       renders=out.renders, seconds=round(out.seconds, 4), sha256=out.record.sha256)
        elapsed = time.perf_counter() - t0
        calls = summarise_calls(list(sched.calls.values()))
        phase = "generation" if "generation" in calls else "search"
        per_call = ({f"{'gen' if phase == 'generation' else 'search'}_per_call": f"{calls[phase]['renders_per_call']:.1f}/{calls[phase]['batch_size']}"}
                    if calls else {})  # how full the generator calls of the phase running are
        bar.detail(searched=summary.searches_run + summary.searches_reused,
                   shards=f"{summary.shards_written + summary.shards_reused}/{summary.shards_total}",
                   img_s=f"{summary.images_written / max(elapsed, 1e-9):.1f}", **per_call)

    def _finish(self, summary: CloneSummary, sched: Schedule, t0: float) -> CloneSummary:
        """Units left, speeds, ``manifest.json``, the shortfall; the summary logged and written beside the shards."""
        if summary.stopped:
            summary.units_left = sched.left()
            self.event("stopped", why=summary.stopped, units_left=summary.units_left)
        summary.wall_s = round(time.perf_counter() - t0, 3)
        summary.worker_images_per_s = {str(w): round(i / s, 3) for w, (i, s) in sched.busy.items() if s > 0}
        summary.generator_calls = summarise_calls(list(sched.calls.values()))
        gen = summary.generator_calls.get("generation", {})
        summary.generator_images_per_s = round(gen["renders"] / gen["seconds"], 3) if gen.get("seconds") else 0.0
        for phase, c in summary.generator_calls.items():
            self.event("generator_calls", phase=phase, **c)
        if self.lease is not None and self.lease.lost:  # the folder's files are the new holder's to write
            self._upload_log()
            return summary
        try:
            self.manifest.consolidate({"classes": [c.id for c in self.plan.classes],
                                       "class_labels": {c.id: c.index for c in self.plan.classes}})
        except InputError as err:  # manifest.json is an index of manifest/*.json: the next run rebuilds it
            summary.failures.append({"unit": LAYOUT.manifest, "attempts": 1, "error": str(err)})
        records = list(self.manifest.records().values())
        for rec in records:
            if rec.missing:
                for c, n in (rec.missing_by_class or {c: rec.missing for c in rec.classes}).items():
                    summary.shortfall[c] = summary.shortfall.get(c, 0) + n
            for c, n in (rec.failed_by_class or {}).items():
                summary.not_passed[c] = summary.not_passed.get(c, 0) + n
            summary.shards_after_oom_backoff += rec.backed_off_to is not None
        if summary.shortfall:
            self.event("shortfall", classes=summary.shortfall)
        summary.images_requested = len(self.plan.classes) * int(self.cfg["clone"]["images_per_class"])
        summary.incomplete = incompleteness(summary, float(self.cfg["clone"]["max_shortfall"]))
        if summary.incomplete:
            self.event("incomplete", why=summary.incomplete)
        self._label_report(summary, records)
        self.event("summary", **summary.to_dict())
        try:
            self.storage.write_bytes(LAYOUT.summary, json.dumps(summary.to_dict(), indent=1).encode())
        except (OSError, PipelineError) as err:  # a full disk: the shards and the log say what is done
            print(f"warning: {LAYOUT.summary} could not be written ({err})", file=sys.stderr)
        self._write_card(records, summary)
        self._upload_log()
        return summary

    def _write_card(self, records: list, summary: CloneSummary) -> None:
        """The folder's dataset card and timm's _info.json, rewritten from every committed shard after each run."""
        root = self.storage.root  # a local folder is shown from the working directory where it lies below it
        shown = (str(self.storage.url) if not self.storage.is_local
                 else os.path.relpath(root) if root.startswith(os.getcwd() + os.sep) else root)
        try:
            text = dataset_card(self.card, sorted(records, key=lambda r: r.shard), summary.to_dict(), shown)
            self.storage.write_bytes(LAYOUT.card, text.encode())
            self.storage.write_bytes(LAYOUT.timm_info, json.dumps(timm_info(self.card, records), indent=1).encode())
        except (OSError, PipelineError) as err:
            print(f"warning: {LAYOUT.card} could not be written ({err})", file=sys.stderr)

    def _label_report(self, summary: CloneSummary, records: list) -> None:
        """Label accuracy from the records that count it, and the classes whose input reading is not their label."""
        per: dict[str, list[int]] = {}
        for rec in records:
            if rec.label_ok is None:  # a record older than the count (those that have it have class_counts too)
                continue
            for c, n in (rec.class_counts or {}).items():
                tally = per.setdefault(c, [0, 0])
                tally[0] += rec.label_ok.get(c, 0)
                tally[1] += n
        total = sum(n for _, n in per.values())
        if total:
            summary.label_accuracy = round(sum(ok for ok, _ in per.values()) / total, 6)
            summary.label_accuracy_by_class = {c: round(ok / n, 6) for c, (ok, n) in sorted(per.items()) if n}
        for cls in self.plan.classes:
            read, prob = self._readings.get(cls.id, (None, None))
            if read is not None and read.lower() != cls.prompt.lower():
                summary.misread[cls.id] = {"label": cls.prompt, "read": read, "prob": prob}
        if summary.misread:
            self.event("misread", classes=summary.misread)

    def _upload_log(self) -> None:
        """Object stores: append this run's events to the stored ``clone.log`` (local storage appends as it goes)."""
        if self.storage.is_local or not os.path.exists(self.log_path):
            return
        try:
            with open(self.log_path, "rb") as f:
                new = f.read()
            old = self.storage.read_bytes(LAYOUT.log) if self.storage.exists(LAYOUT.log) else b""
            self.storage.write_bytes(LAYOUT.log, old + new)
            os.remove(self.log_path)
        except (OSError, PipelineError) as err:  # never hide the run's own outcome behind the log's
            print(f"warning: {LAYOUT.log} could not be uploaded ({err}); this run's events are in {self.log_path}", file=sys.stderr)

    def _unit_failed(self, unit: Unit, sched: Schedule, summary: CloneSummary, msg: str) -> None:
        sched.attempts[unit.id] = sched.attempts.get(unit.id, 0) + 1
        self.event("unit_error", unit=unit.id, attempt=sched.attempts[unit.id], error=msg)
        if sched.attempts[unit.id] < self.max_attempts:
            sched.queue.append(unit)
        else:
            summary.failures.append({"unit": unit.id, "attempts": sched.attempts[unit.id], "error": msg})
