"""The run's progress bar, counted in renders: the work a GPU does, which moves from the first generator call.

A unit (a class's search, a shard) takes minutes and many run at once on a worker, so a bar of units sits at 0 for the
first minutes and then promises hours. This bar counts the renders the workers' units have taken (their generator
calls' renders less those made ahead that no search asked for; polled from each worker every few seconds, without
waiting on it) against the renders the plan expects: a search its render budget
(``env.budget``, plus the candidates' renders with ``env.class_source=rendered``), a shard one render per image it does
not take from a search. When a unit ends, its estimate is replaced by the renders it took, so the total converges on the
truth; the ETA is tqdm's, from the renders done. The bar also shows the phase and the images written.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Mapping, Sequence

from tqdm import tqdm

from pipeline.clone.plan import SearchUnit

POLL_S = 2.0  # how often the workers' render counts are asked for
PROGRESS_GROUP = "progress"  # the workers' Ray concurrency group that answers it (pipeline.clone.pool)


def render_estimate(env: Mapping[str, Any], clone: Mapping[str, Any]) -> Callable[[Any], int]:
    """The renders the plan expects of a unit, from the run's env and clone settings."""
    search = int(env.budget or 0)
    if env.class_source == "rendered":
        search += int(env.rendered_candidates) * int(env.rendered_seeds)
    fresh = 1.0 - (float(clone.reuse_max_share) if clone.reuse_search_renders else 0.0)

    def estimate(unit: Any) -> int:
        return search if isinstance(unit, SearchUnit) else max(1, round(unit.count * fresh))

    return estimate


class RenderProgress:
    """A tqdm bar over renders. ``estimate(unit)``: the renders a unit is expected to take."""

    def __init__(self, units: Sequence[Any], estimate: Callable[[Any], int], enabled: bool, images_done: int = 0) -> None:
        self.estimate = {u.id: int(estimate(u)) for u in units}
        self.searches_left = sum(isinstance(u, SearchUnit) for u in units)
        self.images = images_done
        self.total = sum(self.estimate.values())
        self.seen: dict[int, int] = {}  # worker id -> renders its generator calls made (cumulative, the largest seen)
        self._asked: dict[Any, int] = {}  # progress ref -> worker id
        self._last = 0.0
        self._detail = ""
        self.bar = tqdm(total=self.total, desc="clone", unit="render", disable=not enabled, dynamic_ncols=True)
        self._show()

    @property
    def renders(self) -> int:
        return sum(self.seen.values())

    def poll(self, pool: Any) -> None:
        """Read the answers that came back and, every :data:`POLL_S`, ask each worker again, without waiting
        (``pool``: the run's :class:`~pipeline.clone.pool.WorkerPool`)."""
        for ref in pool.ready(list(self._asked)):
            wid = self._asked.pop(ref)
            try:
                self.seen[wid] = max(self.seen.get(wid, 0), int(pool.get(ref)))
            except Exception:  # noqa: BLE001 - a lost worker is the scheduler's to report; the bar keeps what it saw
                pass
        now = time.monotonic()
        if not self._asked and now - self._last >= POLL_S:
            self._last = now
            for wid, worker in pool.workers.items():  # never queued behind the units it runs
                self._asked[pool.ask_progress(wid, worker)] = wid
        self._show()

    def finished(self, unit: Any, renders: int, images: int = 0) -> None:
        """A unit ended, having taken ``renders`` (and written ``images``): its estimate becomes the truth."""
        self.total += int(renders) - self.estimate.pop(unit.id, int(renders))
        self.images += int(images)
        self.searches_left -= isinstance(unit, SearchUnit)
        self._show()

    def detail(self, **fields: Any) -> None:
        """More to show after the phase and the images written (shards done, generator call fill, …)."""
        self._detail = "".join(f", {k}={v}" for k, v in fields.items())
        self._show()

    def _show(self) -> None:
        self.bar.total = max(self.total, 1)
        self.bar.n = min(self.renders, self.bar.total)
        phase = ("searching" if not self.images else "searching and generating") if self.searches_left > 0 else "generating"
        self.bar.set_postfix_str(f"{phase}, {self.images} images" + self._detail, refresh=False)
        self.bar.refresh()

    def close(self) -> None:
        self.bar.close()
