"""The clone's workers, whatever runs them: started, joined once their models load, handed units with
backpressure, replaced when lost. :class:`~pipeline.clone.driver.CloneDriver` runs the loop; a pool holds the
workers it hands units to and answers for them in the driver's terms (a unit's result, :class:`WorkerLost`,
:class:`UnitError`), so the driver never imports Ray.

Two backends (``cluster.backend``):

* ``ray`` (:mod:`pipeline.clone.ray_pool`, ``cluster=local`` and ``cluster=ray``): Ray actors, one per GPU or CPU
  slot, on one machine or a cluster;
* ``inline`` (:mod:`pipeline.clone.inline_pool`, ``cluster=inline``): one worker in the driver's own process, for
  one GPU, profiling and debugging, and nodes without Ray.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping

from pipeline.clone.identity import check_weights
from pipeline.errors import ConfigError, PipelineError
from pipeline.storage import Storage

if TYPE_CHECKING:
    from pipeline.config import CloneApp
    from pipeline.clone.plan import Unit
    from pipeline.clone.summary import CloneSummary

class WorkerLost(Exception):
    """The worker that ran a unit is gone (actor crash, node loss): the unit is re-queued, the worker replaced."""


class UnitError(Exception):
    """A unit's own code raised: the unit is retried up to ``clone.max_attempts`` times, unless the error is
    ``permanent`` (an :class:`~pipeline.errors.InputError`: a class with no readable input fails the same way every time)."""

    def __init__(self, message: str, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent


def worker_count(cluster: Any, res: dict[str, float]) -> int:
    """Workers to run on resources ``res``: ``cluster.num_workers`` when it is a number, else one per
    ``gpus_per_worker`` GPUs (GPU workers), else one per ``cpus_per_worker`` CPUs."""
    n = cluster.num_workers
    if n and n != "auto":
        return int(n)
    gpus = float(cluster.gpus_per_worker or 0)
    if gpus:
        count = int(res.get("GPU", 0) // gpus)
        if count < 1 and n != "auto":
            raise ConfigError(f"cluster.gpus_per_worker={gpus:g} but the cluster has {res.get('GPU', 0):g} GPUs")
        return max(count, 0 if n == "auto" else 1)
    cpus = float(cluster.cpus_per_worker)
    return max(1, int(res.get("CPU", 1) // cpus)) if cpus else max(1, int(res.get("CPU", 1)))


def make_pool(cfg: CloneApp, identity_hash: str, storage: Storage, event: Callable[..., None]) -> "WorkerPool":
    """The pool of ``cluster.backend``; Ray is imported only for ``ray``."""
    backend = cfg.cluster.backend
    if backend == "inline":
        from pipeline.clone.inline_pool import InlinePool

        return InlinePool(cfg, identity_hash, storage, event)
    from pipeline.clone.ray_pool import RayPool

    return RayPool(cfg, identity_hash, storage, event)


class WorkerPool:
    """The workers of one run. ``event`` logs (the driver's ``clone.log``); ``storage``: the output folder, whose
    recorded weights each joining worker's are checked against. A backend fills in how workers start, how a unit
    is handed over, waited for and read back, and how a worker's progress is asked."""

    def __init__(self, cfg: CloneApp, identity_hash: str, storage: Storage, event: Callable[..., None]) -> None:
        cluster = cfg.cluster
        self.cfg, self.identity_hash, self.storage, self.event = cfg, identity_hash, storage, event
        #: auto: one worker per GPU or slot the cluster has now, requested as nodes join (cluster.num_workers=auto)
        self.elastic = cluster.num_workers == "auto"
        self.units_per_worker = int(cluster.units_per_worker)
        self.max_in_flight = self.units_per_worker - 1 + int(cluster.max_in_flight)  # units a worker holds
        self.max_worker_restarts = int(cluster.max_worker_restarts)
        self.worker_start_timeout = float(cluster.worker_start_timeout_s)
        self.workers: dict[int, Any] = {}
        self.starting: dict[Any, tuple[int, Any]] = {}  # start ref -> (worker id, handle) of workers not yet up
        self.worker_nodes: dict[int, str | None] = {}  # worker id -> the node it runs on
        self._next_worker = 0

    # ------------------------------------------------------------------ what a backend provides
    def resources(self) -> dict[str, float]:
        """The CPUs and GPUs the workers can be placed on."""
        raise NotImplementedError

    def _spawn(self, wid: int) -> tuple[Any, Any]:
        """Start worker ``wid`` without waiting: (its handle, a ref that answers its ``ping`` once its models load)."""
        raise NotImplementedError

    def _submit(self, worker: Any, unit: Unit) -> Any:
        """Hand ``unit`` to ``worker``; a ref to its outcome."""
        raise NotImplementedError

    def wait(self, refs: list, timeout: float) -> list:
        """Those of ``refs`` ready within ``timeout`` seconds (at least one, unless the time runs out)."""
        raise NotImplementedError

    def ready(self, refs: list) -> list:
        """Those of ``refs`` ready now."""
        return self.wait(refs, 0) if refs else []

    def get(self, ref: Any) -> Any:
        """The value of a ready ref (an exception as raised)."""
        raise NotImplementedError

    def result(self, ref: Any) -> Any:
        """A unit's outcome, or :class:`WorkerLost` / :class:`UnitError`."""
        raise NotImplementedError

    def ask_progress(self, wid: int, worker: Any) -> Any:
        """A ref that answers the renders ``worker``'s units have taken (never queued behind its units)."""
        raise NotImplementedError

    def _kill(self, worker: Any) -> None:
        raise NotImplementedError

    def failure(self, exc: BaseException) -> str:
        """One line for a failed start or unit."""
        return short_error(exc)

    def follow_cluster(self, pending: int) -> None:
        """``cluster.num_workers=auto``: grow with the cluster while ``pending`` units are queued or running (a backend
        that cannot grow does nothing)."""

    def node_left(self, node: str | None) -> bool:
        """Whether ``node`` has left the cluster (a worker lost with it is capacity gone, not a failure)."""
        return False

    # ------------------------------------------------------------------ shared
    def kill_all(self) -> None:
        for worker in [*self.workers.values(), *(w for _, w in self.starting.values())]:
            self._kill(worker)
        self.workers.clear()
        self.starting.clear()

    def request(self, n: int) -> None:
        """Start ``n`` workers without waiting: each joins when its ping answers (:meth:`joined`)."""
        for _ in range(n):
            wid = self._next_worker
            self._next_worker += 1
            worker, ref = self._spawn(wid)
            self.starting[ref] = (wid, worker)

    def joined(self, ref: Any, summary: CloneSummary, first_start: bool) -> None:
        """A starting worker answered: it joins, or (it failed to load) the run stops at the first start, where
        a failure is a configuration error, and later counts as a lost worker that is replaced."""
        wid, worker = self.starting.pop(ref)
        try:
            info = self.get(ref)
        except Exception as e:  # noqa: BLE001 - whatever stopped its models loading
            self._kill(worker)
            if first_start:
                raise PipelineError(f"worker failed to start: {self.failure(e)}") from None
            summary.workers_lost += 1
            self.event("worker_start_failed", worker=wid, error=self.failure(e))
            self.check_restarts(summary, self.failure(e))
            self.request(1)
            return
        summary.worker_devices[str(wid)] = {k: info.get(k) for k in ("device", "device_name", "dtype", "torch", "cuda", "diffusers", "weights")}
        self.event("worker_started", **info)
        try:
            changed = check_weights(self.storage, info.get("weights"), self.cfg.clone.on_config_change)
        except ConfigError:
            self._kill(worker)
            raise
        if changed:
            self.event("config_changed", changes=[changed])
        self.workers[wid] = worker
        self.worker_nodes[wid] = info.get("node")

    def start(self, n: int, summary: CloneSummary) -> None:
        """The first start: ask for ``n`` workers and wait until all have loaded their models, or, once the
        worker start timeout has passed, go on with those that did (the rest join when they are placed)."""
        self.request(n)
        deadline = time.perf_counter() + self.worker_start_timeout
        while self.starting and (left := deadline - time.perf_counter()) > 0:
            for ref in self.wait(list(self.starting), min(1.0, left)):
                self.joined(ref, summary, first_start=True)
        if not self.workers:
            raise PipelineError(self.none_started())
        if self.starting:
            self.event("workers_pending", count=len(self.starting))

    def none_started(self) -> str:
        return f"no worker started within cluster.worker_start_timeout_s={self.worker_start_timeout:g} s"

    def dispatch(self, queue: Iterable[Unit], in_flight: Mapping[Any, tuple[Unit, int]]) -> list[tuple[Any, Unit, int]]:
        """Hand the first units of ``queue`` to the least loaded workers, each up to its ``max_in_flight`` (counting the
        units ``in_flight``: ref -> (unit, worker id)); (ref, unit, worker id) of each unit handed over, in queue order."""
        load = {wid: 0 for wid in self.workers}
        for _, wid in in_flight.values():
            load[wid] = load.get(wid, 0) + 1
        taken = []
        for unit in queue:
            wid = min(load, key=load.get, default=None)
            if wid is None or load[wid] >= self.max_in_flight:
                break
            taken.append((self._submit(self.workers[wid], unit), unit, wid))
            load[wid] += 1
        return taken

    def lost(self, wid: int, unit: Unit, summary: CloneSummary, err: str) -> bool:
        """Worker ``wid`` died running ``unit``. At the first news of it (True: its other units must be redone too) it
        leaves the pool and is replaced, unless its node left an elastic cluster (capacity gone, not a failure)."""
        if wid not in self.workers:
            return False
        del self.workers[wid]
        node = self.worker_nodes.pop(wid, None)
        if self.elastic and node is not None and self.node_left(node):
            summary.nodes_left += 1
            self.event("node_left", worker=wid, node=node, unit=unit.id)
            return True
        summary.workers_lost += 1
        self.event("worker_lost", worker=wid, unit=unit.id, error=err)
        self.check_restarts(summary, err)
        self.request(1)
        return True

    def check_restarts(self, summary: CloneSummary, err: str) -> None:
        if summary.workers_lost > self.max_worker_restarts:
            raise PipelineError(f"{summary.workers_lost} workers lost (> cluster.max_worker_restarts): {err}")


def short_error(exc: BaseException) -> str:
    """The last meaningful line of a (possibly remote) exception."""
    cause = getattr(exc, "cause", None)
    if isinstance(cause, BaseException) and type(cause).__name__ != "RayTaskError":
        return f"{type(cause).__name__}: {cause}".splitlines()[0]
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    errs = [ln for ln in lines if "Error" in ln.split(":", 1)[0]]
    return (errs[-1] if errs else (lines[-1] if lines else type(exc).__name__))[:300]
