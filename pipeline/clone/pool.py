"""The clone's Ray workers: requested without waiting, joined when their ping answers, replaced when lost, grown
with the cluster (``cluster.num_workers=auto``), and the dispatch of units across them with backpressure.

:class:`~pipeline.clone.driver.CloneDriver` runs the loop; this holds the actors it hands units to.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Callable

import ray
from ray.exceptions import RayActorError, RayTaskError

from pipeline.clone.identity import check_weights
from pipeline.clone.plan import SearchUnit
from pipeline.clone.progress import PROGRESS_GROUP
from pipeline.clone.worker import CloneWorker
from pipeline.errors import ConfigError, PipelineError
from pipeline.storage import Storage

if TYPE_CHECKING:
    from pipeline.clone.driver import CloneSummary, Schedule, Unit

ELASTIC_CHECK_S = 2.0  # cluster.num_workers=auto: how often the pool looks for capacity that joined


def _resources(res: dict[str, float]) -> str:
    return ", ".join(f"{res.get(k, 0):g} {k}" for k in ("CPU", "GPU"))


def short_error(exc: BaseException) -> str:
    """The last meaningful line of a (possibly remote) exception."""
    cause = getattr(exc, "cause", None)
    if isinstance(cause, BaseException) and not isinstance(cause, RayTaskError):
        return f"{type(cause).__name__}: {cause}".splitlines()[0]
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    errs = [ln for ln in lines if "Error" in ln.split(":", 1)[0]]
    return (errs[-1] if errs else (lines[-1] if lines else type(exc).__name__))[:300]


def worker_count(cluster: Any, res: dict[str, float]) -> int:
    """Workers to run on a Ray cluster with resources ``res``: ``cluster.num_workers`` when it is a number, else one
    per ``gpus_per_worker`` GPUs (GPU workers), else one per ``cpus_per_worker`` CPUs."""
    n = cluster["num_workers"]
    if n and n != "auto":
        return int(n)
    gpus = float(cluster["gpus_per_worker"] or 0)
    if gpus:
        count = int(res.get("GPU", 0) // gpus)
        if count < 1 and n != "auto":
            raise ConfigError(f"cluster.gpus_per_worker={gpus:g} but the Ray cluster has {res.get('GPU', 0):g} GPUs")
        return max(count, 0 if n == "auto" else 1)
    cpus = float(cluster["cpus_per_worker"])
    return max(1, int(res.get("CPU", 1) // cpus)) if cpus else max(1, int(res.get("CPU", 1)))


def _alive_nodes() -> set[str]:
    return {n["NodeID"] for n in ray.nodes() if n.get("Alive")}


def _remote_worker() -> Any:
    """The clone worker as a Ray actor class; its progress is answered in a concurrency group of its own, so the
    driver's poll never waits behind the units it runs (:mod:`pipeline.clone.progress`)."""
    return ray.remote(concurrency_groups={PROGRESS_GROUP: 1})(CloneWorker)


class WorkerPool:
    """The workers of one run. ``event`` logs (the driver's ``clone.log``); ``storage``: the output folder, whose
    recorded weights each joining worker's are checked against."""

    def __init__(self, cfg: dict[str, Any], identity_hash: str, storage: Storage, event: Callable[..., None]) -> None:
        cluster = cfg["cluster"]
        self.cfg, self.identity_hash, self.storage, self.event = cfg, identity_hash, storage, event
        #: auto: one worker per GPU or slot the cluster has now, requested as nodes join (cluster.num_workers=auto)
        self.elastic = cluster["num_workers"] == "auto"
        self._grown_at = 0.0
        units_per_worker = int(cluster["units_per_worker"])
        self.max_in_flight = units_per_worker - 1 + int(cluster["max_in_flight"])  # units a worker holds
        self.max_worker_restarts = int(cluster["max_worker_restarts"])
        self.worker_start_timeout = float(cluster["worker_start_timeout_s"])
        self.actor_options = {"num_cpus": float(cluster["cpus_per_worker"]), "num_gpus": float(cluster["gpus_per_worker"] or 0),
                              "max_restarts": 0, "max_concurrency": units_per_worker}
        self.workers: dict[int, Any] = {}
        self.starting: dict[Any, tuple[int, Any]] = {}  # ping ref -> (worker id, actor) of workers not yet up
        self.worker_nodes: dict[int, str | None] = {}  # worker id -> the Ray node it runs on
        self._next_worker = 0

    def kill_all(self) -> None:
        for actor in [*self.workers.values(), *(a for _, a in self.starting.values())]:
            ray.kill(actor)
        self.workers.clear()
        self.starting.clear()

    def request(self, n: int) -> None:
        """Ask Ray for ``n`` workers without waiting: each joins when its ping answers (:meth:`joined`)."""
        for _ in range(n):
            wid = self._next_worker
            self._next_worker += 1
            actor = _remote_worker().options(**self.actor_options).remote(self.cfg, wid, self.identity_hash)
            self.starting[actor.ping.remote()] = (wid, actor)

    def joined(self, ref: Any, summary: CloneSummary, first_start: bool) -> None:
        """A starting worker answered: it joins, or (it failed to load) the run stops at the first start, where
        a failure is a configuration error, and later counts as a lost worker that is replaced."""
        wid, actor = self.starting.pop(ref)
        try:
            info = ray.get(ref)
        except (RayActorError, RayTaskError) as e:
            ray.kill(actor)
            if first_start:
                raise PipelineError(f"worker failed to start: {short_error(e)}") from None
            summary.workers_lost += 1
            self.event("worker_start_failed", worker=wid, error=short_error(e))
            self.check_restarts(summary, e)
            self.request(1)
            return
        summary.worker_devices[str(wid)] = {k: info.get(k) for k in ("device", "device_name", "dtype", "torch", "cuda", "diffusers", "weights")}
        self.event("worker_started", **info)
        try:
            changed = check_weights(self.storage, info.get("weights"), self.cfg["clone"]["on_config_change"])
        except ConfigError:
            ray.kill(actor)
            raise
        if changed:
            self.event("config_changed", changes=[changed])
        self.workers[wid] = actor
        self.worker_nodes[wid] = info.get("node")

    def start(self, n: int, summary: CloneSummary) -> None:
        """The first start: ask for ``n`` workers and wait until all have loaded their models, or, once the
        worker start timeout has passed, go on with those that did (the rest join when Ray places them)."""
        self.request(n)
        deadline = time.perf_counter() + self.worker_start_timeout
        while self.starting and (left := deadline - time.perf_counter()) > 0:
            done, _ = ray.wait(list(self.starting), num_returns=1, timeout=min(1.0, left))
            for ref in done:
                self.joined(ref, summary, first_start=True)
        if not self.workers:
            raise PipelineError(
                f"no worker started within cluster.worker_start_timeout_s={self.worker_start_timeout:g} s; each needs "
                f"{self.actor_options['num_cpus']:g} CPU and {self.actor_options['num_gpus']:g} GPU, and the Ray cluster has "
                f"{_resources(ray.available_resources())} free")
        if self.starting:
            self.event("workers_pending", count=len(self.starting))

    def dispatch(self, sched: Schedule) -> None:
        load = {wid: 0 for wid in self.workers}
        for _, wid in sched.in_flight.values():
            load[wid] = load.get(wid, 0) + 1
        while sched.queue:
            wid = min(load, key=load.get, default=None)
            if wid is None or load[wid] >= self.max_in_flight:
                return
            unit = sched.queue.popleft()
            actor = self.workers[wid]
            ref = actor.search.remote(unit) if isinstance(unit, SearchUnit) else actor.generate.remote(unit)
            sched.in_flight[ref] = (unit, wid)
            load[wid] += 1

    def follow_cluster(self, sched: Schedule) -> None:
        """``cluster.num_workers=auto``: every few seconds, request workers for capacity that joined the cluster
        (while there is work for them); capacity that left is not replaced."""
        now = time.perf_counter()
        if now - self._grown_at < ELASTIC_CHECK_S:
            return
        self._grown_at = now
        res = ray.cluster_resources()
        want = min(worker_count(self.cfg["cluster"], res), len(sched.queue) + len(sched.in_flight))
        have = len(self.workers) + len(self.starting)
        if want > have:
            self.event("workers_requested", count=want - have, why="the cluster has room for more", resources=_resources(res))
            self.request(want - have)

    def lost(self, wid: int, unit: Unit, sched: Schedule, summary: CloneSummary, err: Exception) -> None:
        sched.queue.appendleft(unit)
        if wid in self.workers:  # first news of this death: re-queue its other units, replace it
            del self.workers[wid]
            for ref, (u, w) in list(sched.in_flight.items()):
                if w == wid:
                    del sched.in_flight[ref]
                    sched.queue.appendleft(u)
            node = self.worker_nodes.pop(wid, None)
            if self.elastic and node is not None and node not in _alive_nodes():  # capacity left: not a failure
                summary.nodes_left += 1
                self.event("node_left", worker=wid, node=node, unit=unit.id)
                return
            summary.workers_lost += 1
            self.event("worker_lost", worker=wid, unit=unit.id, error=short_error(err))
            self.check_restarts(summary, err)
            self.request(1)

    def check_restarts(self, summary: CloneSummary, err: Exception) -> None:
        if summary.workers_lost > self.max_worker_restarts:
            raise PipelineError(f"{summary.workers_lost} workers lost (> cluster.max_worker_restarts): {short_error(err)}")
