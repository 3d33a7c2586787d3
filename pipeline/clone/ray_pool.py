"""The clone's workers as Ray actors (``cluster.backend=ray``: ``cluster=local`` and ``cluster=ray``): requested
without waiting, joined when their ping answers, replaced when lost, grown with the cluster
(``cluster.num_workers=auto``)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Callable

import ray
from ray.exceptions import RayActorError, RayTaskError

from pipeline.clone.plan import SearchUnit
from pipeline.clone.pool import UnitError, WorkerLost, WorkerPool, worker_count
from pipeline.clone.progress import PROGRESS_GROUP
from pipeline.clone.worker import CloneWorker
from pipeline.errors import InputError
from pipeline.storage import Storage

if TYPE_CHECKING:
    from pipeline.config import CloneApp
    from pipeline.clone.plan import Unit

ELASTIC_CHECK_S = 2.0  # cluster.num_workers=auto: how often the pool looks for capacity that joined


def _resources(res: dict[str, float]) -> str:
    return ", ".join(f"{res.get(k, 0):g} {k}" for k in ("CPU", "GPU"))


def _remote_worker() -> Any:
    """The clone worker as a Ray actor class; its progress is answered in a concurrency group of its own, so the
    driver's poll never waits behind the units it runs (:mod:`pipeline.clone.progress`)."""
    return ray.remote(concurrency_groups={PROGRESS_GROUP: 1})(CloneWorker)


class RayPool(WorkerPool):
    def __init__(self, cfg: CloneApp, identity_hash: str, storage: Storage, event: Callable[..., None]) -> None:
        super().__init__(cfg, identity_hash, storage, event)
        cluster = cfg.cluster
        self._grown_at = 0.0
        self.actor_options = {"num_cpus": float(cluster.cpus_per_worker), "num_gpus": float(cluster.gpus_per_worker or 0),
                              "max_restarts": 0, "max_concurrency": self.units_per_worker}

    def resources(self) -> dict[str, float]:
        return ray.cluster_resources()

    def _spawn(self, wid: int) -> tuple[Any, Any]:
        actor = _remote_worker().options(**self.actor_options).remote(self.cfg, wid, self.identity_hash)
        return actor, actor.ping.remote()

    def _submit(self, worker: Any, unit: Unit) -> Any:
        return worker.search.remote(unit) if isinstance(unit, SearchUnit) else worker.generate.remote(unit)

    def wait(self, refs: list, timeout: float) -> list:
        return ray.wait(refs, num_returns=len(refs) if timeout == 0 else 1, timeout=timeout)[0] if refs else []

    def get(self, ref: Any) -> Any:
        return ray.get(ref)

    def result(self, ref: Any) -> Any:
        try:
            return ray.get(ref)
        except RayActorError as e:
            raise WorkerLost(self.failure(e)) from e
        except RayTaskError as e:
            raise UnitError(self.failure(e), permanent=isinstance(e, InputError)) from e  # Ray's error is also its cause's class

    def ask_progress(self, wid: int, worker: Any) -> Any:
        return worker.progress.options(concurrency_group=PROGRESS_GROUP).remote()

    def _kill(self, worker: Any) -> None:
        ray.kill(worker)

    def none_started(self) -> str:
        return (f"{super().none_started()}; each needs {self.actor_options['num_cpus']:g} CPU and "
                f"{self.actor_options['num_gpus']:g} GPU, and the Ray cluster has {_resources(ray.available_resources())} free")

    def node_left(self, node: str | None) -> bool:
        return node not in {n["NodeID"] for n in ray.nodes() if n.get("Alive")}

    def follow_cluster(self, pending: int) -> None:
        """``cluster.num_workers=auto``: every few seconds, request workers for capacity that joined the cluster
        (while there is work for them); capacity that left is not replaced."""
        if not self.elastic:
            return
        now = time.perf_counter()
        if now - self._grown_at < ELASTIC_CHECK_S:
            return
        self._grown_at = now
        res = ray.cluster_resources()
        want = min(worker_count(self.cfg.cluster, res), pending)
        have = len(self.workers) + len(self.starting)
        if want > have:
            self.event("workers_requested", count=want - have, why="the cluster has room for more", resources=_resources(res))
            self.request(want - have)
