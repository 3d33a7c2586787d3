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

import logging
import signal
import threading
import time
from functools import partial
from typing import Any, Callable

from pipeline.clone.card import CardFacts
from pipeline.clone.context_prior import write_contexts
from pipeline.clone.events import EventLog
from pipeline.clone.finish import finish
from pipeline.clone.identity import folder_identities, identity_hash
from pipeline.clone.inventory import take_inventory
from pipeline.clone.layout import LAYOUT
from pipeline.clone.lease import Lease
from pipeline.clone.manifest import Manifest
from pipeline.clone.plan import ClonePlan, Schedule, SearchUnit, ShardUnit, Unit
from pipeline.clone.pool import UnitError, WorkerLost, make_pool, worker_count
from pipeline.clone.progress import RenderProgress, render_estimate
from pipeline.clone.summary import CloneSummary
from pipeline.clone.worker import image_seed
from pipeline.config import CloneApp
from pipeline.errors import ConfigError, Interrupted
from pipeline.rendering import summarise_calls
from pipeline.storage import Storage

log = logging.getLogger("rldf.clone")


class CloneDriver:
    def __init__(self, cfg: CloneApp, plan: ClonePlan, *, lease: Lease, identity: dict[str, Any],
                 identity_changes: list[str], on_event: Callable[[dict], None] | None = None, class_pos: int | None = None,
                 card: CardFacts | None = None) -> None:
        """The caller (:func:`pipeline.clone.api.run`) holds the output folder's ``lease``, has computed the run's
        ``identity`` and checked it against the folder (``identity_changes``: what changed under
        ``clone.on_config_change=allow``). ``class_pos``: the class axis's position in a sample's encoding (a record
        rebuilt from its shard then counts label accuracy). ``card``: what the folder's dataset card says of the run
        (``None``: the dataset's classes are the plan's, no command)."""
        self.cfg, self.plan = cfg, plan
        self.card = card or CardFacts.of(cfg, plan.classes)
        self.lease, self.identity_changes = lease, identity_changes
        self.identity_hash = identity_hash(identity)
        cluster, clone = cfg.cluster, cfg.clone
        self.max_attempts = int(clone.max_attempts)
        self.verify_mode = str(clone.verify)
        self.class_pos = class_pos
        self._readings: dict[str, tuple[str | None, float | None]] = {}  # class id -> what its search read (this run)
        self._contexts: dict[str, dict] = {}  # class id -> its context reading (clone.propose=inputs)
        self._skipped: dict[str, list[dict[str, str]]] = {}  # class id -> input files its search passed over
        self.stop_grace = float(cluster.stop_grace_s)
        self._stop_signal: str | None = None  # the first SIGTERM / SIGINT received
        self._stop_at = 0.0
        self.storage = Storage(cfg.paths.output_dir, cfg.clone.storage_retry_s)
        self.manifest = Manifest(self.storage)
        self.event = EventLog(self.storage, on_event)
        self.pool = make_pool(cfg, self.identity_hash, self.storage, self.event)

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
                             bool(self.cfg.clone.reuse_search_renders), partial(image_seed, int(self.cfg.seed)),
                             self.identity_hash, self.class_pos)
        self.event("verified", mode=self.verify_mode, shards=len(inv.valid) + len(inv.damaged), invalid=len(inv.damaged),
                   foreign=len(inv.foreign), rebuilt=len(inv.rebuilt), seconds=round(time.perf_counter() - t0, 3))
        if inv.foreign:
            tags = sorted(set(inv.foreign.values()))
            if self.cfg.clone.on_config_change != "allow":
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
        self._contexts = dict(inv.contexts)
        self._skipped = dict(inv.skipped_inputs)
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
        """Plan what is left, start the workers, hand out units until none is left (or the run must stop), finish."""
        t0 = time.perf_counter()
        summary = CloneSummary(classes=len(self.plan.classes), shards_total=self.plan.num_shards)
        if self.lease.took_over is not None:
            self.event("lease_taken_over", previous=self.lease.took_over.describe(time.time()))
        if self.identity_changes:
            self.event("config_changed", changes=self.identity_changes)
        searches, shards = self._todo(summary)
        self.event("plan", searches=len(searches), shards=len(shards), reused_shards=summary.shards_reused)
        hold = self.cfg.clone.propose == "inputs"  # the prior of every class's context comes before any image
        sched = Schedule.of(searches, shards, hold)
        if hold and shards and not searches:
            self._write_contexts()
        bar = None
        try:
            if sched.queue:
                wanted = worker_count(self.cfg.cluster, self.pool.resources())
                self.pool.start(max(1, min(wanted, len(sched.queue))), summary)
            summary.startup_s = round(time.perf_counter() - t0, 3)
            # from here, not before the models load: its rate, and so its ETA, is the work's
            bar = RenderProgress([*searches, *shards], render_estimate(self.cfg.env, self.cfg.clone),
                                 self.cfg.clone.progress, images_done=summary.images_written)
            while (sched.queue or sched.in_flight) and not self._should_stop(sched, summary):
                if self._stop_signal is None:
                    self._dispatch(sched)
                done = self.pool.wait(list(sched.in_flight) + list(self.pool.starting), 1.0)
                bar.poll(self.pool)
                for ref in done:
                    if ref in self.pool.starting:
                        self.pool.joined(ref, summary, first_start=False)
                    elif ref in sched.in_flight:  # else: a unit of a worker already declared lost
                        self._collect(ref, sched, summary, bar, t0)
        except BaseException:
            self.event.upload()
            raise
        finally:
            if bar is not None:
                bar.close()
            self.pool.kill_all()
        return self._finish(summary, sched, t0)

    def _dispatch(self, sched: Schedule) -> None:
        """Units from the front of the queue to the workers with room (the pool says which took what)."""
        for ref, unit, wid in self.pool.dispatch(sched.queue, sched.in_flight):
            assert sched.queue[0] is unit
            sched.queue.popleft()
            sched.in_flight[ref] = (unit, wid)
        self.pool.follow_cluster(len(sched.queue) + len(sched.in_flight))

    def _should_stop(self, sched: Schedule, summary: CloneSummary) -> bool:
        """After a signal, once the units in flight are done or the grace period is over; with no worker alive,
        once none has started within the worker start timeout (a replacement is requested meanwhile)."""
        if self.lease.lost:  # another run holds the folder now: stop writing into it
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
            self._lost(wid, unit, sched, summary, str(e))
            return
        except UnitError as e:
            self._unit_failed(unit, sched, summary, str(e), e.permanent)
            return
        bar.finished(unit, out.renders, out.images if isinstance(unit, ShardUnit) else 0)
        total = lambda stats: sum(c.calls for c in stats.values())  # noqa: E731
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
            if out.context is not None:
                self._contexts[unit.cls.id] = out.context
            if out.skipped_inputs:
                self._skipped[unit.cls.id] = list(out.skipped_inputs)
            sched.searched(unit.cls.id)
            self._release_held(sched)
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

    def _release_held(self, sched: Schedule) -> None:
        """Once no search is pending (each persisted or given up), the context prior, then the held shards."""
        if sched.held and sched.searches_pending == 0 and not sched.released:
            self._write_contexts()
            sched.release()

    def _write_contexts(self) -> None:
        """``contexts.json``: the context prior learned from every class's reading and each class's estimate
        (:mod:`pipeline.clone.context_prior`), written before any shard unit is dispatched; the workers read the prior
        from it. Written once: a resume keeps it (the shards already written followed it), and a first write depends on
        the persisted search results only."""
        if self.storage.exists(LAYOUT.contexts):
            self.event("context_prior", reused=True)
            return
        readings = {c.id: self._contexts[c.id] for c in self.plan.classes if c.id in self._contexts}
        priors = write_contexts(self.storage, readings, self.cfg.clone.context_prior)
        self.event("context_prior", classes=len(readings), priors=[{"axis": p.axis, "choices": len(p.choices), "strength": round(p.strength, 3),
                                                                    "classes": p.classes} for p in priors])

    def _lost(self, wid: int, unit: Unit, sched: Schedule, summary: CloneSummary, err: str) -> None:
        """A worker died under ``unit``: the unit and, at the first news of it, the worker's other units go back to the
        front of the queue; the pool replaces the worker."""
        sched.queue.appendleft(unit)
        if self.pool.lost(wid, unit, summary, err):
            for ref, (u, w) in list(sched.in_flight.items()):
                if w == wid:
                    del sched.in_flight[ref]
                    sched.queue.appendleft(u)

    def _finish(self, summary: CloneSummary, sched: Schedule, t0: float) -> CloneSummary:
        """Units left and speeds from the loop; then, unless another run holds the folder now, the outputs the folder's
        records add up to (:mod:`pipeline.clone.finish`)."""
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
        if not self.lease.lost:  # else the folder's files are the new holder's to write
            summary.inputs_skipped = {cid: self._skipped[cid] for cid in sorted(self._skipped)}
            finish(summary, self.plan, self.cfg.clone, self.manifest, self.storage, self.card, self._readings, self.event)
        self.event.upload()
        return summary

    def _unit_failed(self, unit: Unit, sched: Schedule, summary: CloneSummary, msg: str, permanent: bool = False) -> None:
        """A unit's own error: retried up to ``clone.max_attempts`` times; a permanent one (unreadable inputs) not at all."""
        sched.attempts[unit.id] = sched.attempts.get(unit.id, 0) + 1
        self.event("unit_error", unit=unit.id, attempt=sched.attempts[unit.id], error=msg, **({"permanent": True} if permanent else {}))
        if sched.attempts[unit.id] < self.max_attempts and not permanent:
            sched.queue.append(unit)
        else:
            summary.failures.append({"unit": unit.id, "attempts": sched.attempts[unit.id], "error": msg,
                                     **({"retried": False} if permanent else {})})
            if isinstance(unit, SearchUnit):  # the other classes' shards need not wait for it
                sched.search_failed(unit.cls.id)
                self._release_held(sched)
