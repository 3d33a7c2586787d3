"""One clone worker in the driver's own process (``cluster=inline``): for one GPU, profiling and debugging, and
for nodes without Ray (an offline GPU node installed from ``make wheelhouse`` with ``RAY=0``).

The worker is the same :class:`~pipeline.clone.worker.CloneWorker` a Ray actor wraps; its units run in
``cluster.units_per_worker`` threads, as in a threaded actor, so concurrent searches and shards still share full
generator calls. Its models load when the run starts. A unit that raises is retried like any other; there is no
worker to lose (a crash of the process is a crash of the run, which resumes like any other).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_futures
from typing import TYPE_CHECKING, Any, Callable

from pipeline.clone.plan import SearchUnit
from pipeline.clone.pool import UnitError, WorkerPool
from pipeline.clone.worker import CloneWorker
from pipeline.errors import ConfigError, InputError
from pipeline.storage import Storage

if TYPE_CHECKING:
    from pipeline.config import CloneApp
    from pipeline.clone.plan import Unit


def _done(fn: Callable[[], Any]) -> Future:
    """A future that already holds ``fn()``'s value, or its exception."""
    f: Future = Future()
    try:
        f.set_result(fn())
    except Exception as e:  # noqa: BLE001 - handed to whoever reads the future
        f.set_exception(e)
    return f


def local_resources() -> dict[str, float]:
    """This process's CPUs and CUDA GPUs."""
    import torch

    return {"CPU": float(os.cpu_count() or 1), "GPU": float(torch.cuda.device_count() if torch.cuda.is_available() else 0)}


class InlinePool(WorkerPool):
    def __init__(self, cfg: CloneApp, identity_hash: str, storage: Storage, event: Callable[..., None]) -> None:
        n = cfg.cluster.num_workers
        if n not in (None, 1):
            raise ConfigError(f"cluster.backend=inline runs one worker in this process; got cluster.num_workers={n} "
                              "(use cluster=local for several)")
        super().__init__(cfg, identity_hash, storage, event)
        self._threads: dict[int, ThreadPoolExecutor] = {}

    def resources(self) -> dict[str, float]:
        return local_resources()

    def _spawn(self, wid: int) -> tuple[Any, Any]:
        if self.workers or self.starting:
            raise ConfigError("cluster.backend=inline holds one worker; a second was asked for")
        self._threads[wid] = ThreadPoolExecutor(self.units_per_worker, thread_name_prefix=f"unit-{wid}")
        handle = _Handle(wid)

        def load() -> dict[str, Any]:  # models load now, in this process; a failure is the ping's error
            handle.worker = CloneWorker(self.cfg, wid, self.identity_hash)
            return handle.worker.ping()

        return handle, _done(load)

    def _submit(self, worker: Any, unit: Unit) -> Any:
        w = worker.worker
        return self._threads[worker.wid].submit(w.search if isinstance(unit, SearchUnit) else w.generate, unit)

    def wait(self, refs: list, timeout: float) -> list:
        if not refs:
            return []
        done, _ = wait_futures(refs, timeout=timeout, return_when=FIRST_COMPLETED)
        return list(done)

    def get(self, ref: Any) -> Any:
        return ref.result()

    def result(self, ref: Any) -> Any:
        try:
            return ref.result()
        except Exception as e:  # noqa: BLE001 - a unit's own error, retried by the driver
            raise UnitError(self.failure(e), permanent=isinstance(e, InputError)) from e

    def failure(self, exc: BaseException) -> str:
        return f"{type(exc).__name__}: {exc}".splitlines()[0][:300]

    def ask_progress(self, wid: int, worker: Any) -> Any:
        return _done(worker.worker.progress)

    def _kill(self, worker: Any) -> None:
        """Units already running finish in their threads (their commits are atomic); queued ones are dropped."""
        pool = self._threads.pop(worker.wid, None)
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)


@dataclass
class _Handle:
    """The inline worker as the pool holds it (None until its models have loaded)."""

    wid: int
    worker: CloneWorker | None = None
