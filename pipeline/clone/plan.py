"""The work of a clone, as units: one search per class, then shard-sized generation units.

Two shard orders (``clone.shard_order``):

* ``class``: a shard holds consecutive images of one class; class ``c``'s shards are numbered from
  ``c.index × shards_per_class``, so they have the same names in every run and with any ``dataset.only``.
* ``shuffled``: every (class, image index) sample of the run has a place in one global pseudo-random
  order drawn from the run seed, and shard ``j`` holds places ``j·shard_size …``: each shard mixes many
  classes, so a trainer reading shards with an ordinary shuffle buffer sees the class mix of the dataset.
  The order depends on the run seed and the classes being cloned, nothing else, so a resumed shard is the
  same bytes. With ``clone.shuffle_classes`` = B the classes are taken in blocks of B (in the dataset's order) and
  each block's samples are shuffled among themselves: a shard mixes the classes of one block, so a worker that renders
  a block's shards keeps those classes' sources in memory (``CLASS_CACHE``) instead of rebuilding each class for every
  shard, as it would when every shard draws from 21,841 classes.

The plan holds the order as one integer array (1.3 M samples of ImageNet: 10 MB) and makes units on demand.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import asdict, dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any

import numpy as np

from pipeline.clone.dataset import ClassInfo
from pipeline.clone.layout import Layout
from pipeline.clone.shards import ShardRecord
from pipeline.errors import ConfigError
from pipeline.seeding import derive_seed

if TYPE_CHECKING:
    from pipeline.rendering import CallStats


@dataclass(frozen=True)
class SearchUnit:
    cls: ClassInfo

    @property
    def id(self) -> str:
        return f"search:{self.cls.id}"


@dataclass(frozen=True, eq=False)
class ShardUnit:
    """One shard to write: its file name, the classes it draws from, and its samples in shard order as
    ``members[k] = (position in classes, image index within that class)``."""

    shard: str
    classes: tuple[ClassInfo, ...]
    members: np.ndarray  # int64 [count, 2]

    @property
    def id(self) -> str:
        return f"shard:{self.shard}"

    @property
    def count(self) -> int:
        return len(self.members)

    def indices(self, k: int) -> list[int]:
        """Image indices of ``classes[k]`` in this shard, in shard order."""
        return self.members[self.members[:, 0] == k, 1].tolist()


@dataclass(frozen=True)
class SearchDone:
    """What a worker's search unit returns across Ray (the result itself is persisted in ``searches/``)."""

    renders: int
    best_reward: float
    seconds: float
    found_class: bool  # the best state names the input's own class
    read_class: str | None  # what the semantic encoder read in the class's input image(s), and with what probability
    read_prob: float | None
    class_source: str  # env.class_source the search ran under
    calls: dict[str, CallStats]  # the worker's generator-call statistics so far (cumulative), per phase
    oom_backoffs: list[int]  # the worker's batch sizes after each CUDA out-of-memory back-off so far
    context: dict[str, Any] | None = None  # clone.propose=inputs: the class's context reading (pipeline.clone.context_prior)
    skipped_inputs: tuple[dict[str, str], ...] = ()  # input files passed over (unreadable, empty, not images), with why

    def log_fields(self) -> dict[str, Any]:
        """What the ``search_done`` event records."""
        return {k: v for k, v in asdict(self).items() if k not in ("calls", "oom_backoffs", "context") and (v or k != "skipped_inputs")}


@dataclass(frozen=True)
class ShardDone:
    """What a worker's shard unit returns across Ray (the shard and its record are committed)."""

    record: ShardRecord
    images: int
    missing: int
    renders: int
    from_search: int  # images that are reused search renders
    seconds: float
    worker: int
    calls: dict[str, CallStats]
    oom_backoffs: list[int]


class ClonePlan:
    """Every class gets ``images_per_class`` samples, ``shard_size`` samples per shard, in ``order``."""

    def __init__(self, classes: list[ClassInfo], images_per_class: int, shard_size: int, order: str, seed: int,
                 shuffle_classes: int | None = None) -> None:
        """The arguments are the clone's settings (``clone.images_per_class``, ``clone.shard_size``, ``clone.shard_order``,
        ``seed``, ``clone.shuffle_classes``), whose ranges and choices the schema checks (:mod:`pipeline.config`)."""
        if not classes:
            raise ConfigError("the dataset has no classes to clone")
        self.classes = classes
        self.images_per_class, self.shard_size = int(images_per_class), int(shard_size)
        self.order, self.seed = order, int(seed)
        self.shuffle_classes = None if shuffle_classes is None or shuffle_classes >= len(classes) else int(shuffle_classes)
        self.shards_per_class = math.ceil(self.images_per_class / self.shard_size)

    @property
    def total_images(self) -> int:
        return len(self.classes) * self.images_per_class

    @property
    def num_shards(self) -> int:
        if self.order == "class":
            return len(self.classes) * self.shards_per_class
        return math.ceil(self.total_images / self.shard_size)

    # ------------------------------------------------------------------ class order
    def _class_shard(self, cls: ClassInfo, part: int) -> ShardUnit:
        start = part * self.shard_size
        count = min(self.shard_size, self.images_per_class - start)
        members = np.stack([np.zeros(count, np.int64), np.arange(start, start + count, dtype=np.int64)], axis=1)
        return ShardUnit(Layout.shard_name(cls.index * self.shards_per_class + part), (cls,), members)

    # ------------------------------------------------------------------ shuffled order
    @cached_property
    def _permutation(self) -> np.ndarray:
        """Sample ``p`` of the global order is class ``p // images_per_class``, index ``p % images_per_class``."""
        if self.shuffle_classes is None:
            rng = np.random.default_rng(derive_seed(self.seed, "shard-order", *(c.id for c in self.classes)))
            return rng.permutation(self.total_images).astype(np.int64)
        n, blocks = self.images_per_class, []
        for start in range(0, len(self.classes), self.shuffle_classes):
            block = self.classes[start : start + self.shuffle_classes]
            rng = np.random.default_rng(derive_seed(self.seed, "shard-order-block", *(c.id for c in block)))
            blocks.append(start * n + rng.permutation(len(block) * n).astype(np.int64))
        return np.concatenate(blocks)

    def _shuffled_shard(self, j: int) -> ShardUnit:
        places = self._permutation[j * self.shard_size : (j + 1) * self.shard_size]
        cls_pos, index = np.divmod(places, self.images_per_class)
        used, local = np.unique(cls_pos, return_inverse=True)
        return ShardUnit(Layout.shard_name(j), tuple(self.classes[int(k)] for k in used), np.stack([local, index], axis=1))

    # ------------------------------------------------------------------ queries
    def shard_units(self) -> list[ShardUnit]:
        """Every shard of the plan, in shard order."""
        if self.order == "class":
            return [self._class_shard(c, part) for c in self.classes for part in range(self.shards_per_class)]
        return [self._shuffled_shard(j) for j in range(self.num_shards)]


Unit = SearchUnit | ShardUnit  # what the driver queues and a worker runs


@dataclass
class Schedule:
    """The scheduling loop's state: units queued and in flight, shards waiting for their classes' searches (or, held,
    for every search), retries, and per-worker throughput."""

    queue: deque  # units ready to dispatch, in order
    waiting: dict[str, int]  # shard -> classes whose search it still waits for
    by_class: dict[str, list[ShardUnit]]  # class -> shards waiting for its search
    held: list[ShardUnit] = field(default_factory=list)  # shards that wait for every search (released by the driver)
    searches_pending: int = 0  # searches queued or in flight
    searches_failed: set[str] = field(default_factory=set)  # classes whose search was given up
    released: bool = False  # the held shards were released
    in_flight: dict[Any, tuple[Unit, int]] = field(default_factory=dict)  # call ref -> (unit, worker id)
    attempts: dict[str, int] = field(default_factory=dict)  # unit id -> failed tries
    busy: dict[int, list[float]] = field(default_factory=dict)  # worker id -> [images, seconds]
    calls: dict[int, dict[str, CallStats]] = field(default_factory=dict)  # worker id -> its latest call statistics
    backoffs: dict[int, int] = field(default_factory=dict)  # worker id -> out-of-memory back-offs logged
    alone_since: float | None = None  # since when no worker has been alive

    @classmethod
    def of(cls, searches: list[SearchUnit], shards: list[ShardUnit], hold: bool = False) -> "Schedule":
        """Searches first; a shard is ready once every class it draws from has its search persisted, or, with ``hold``
        (what every class's search gives its images: ``clone.propose=inputs``'s prior), held until :meth:`release`."""
        if hold and searches:
            return cls(deque(searches), {}, {}, list(shards), len(searches))
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
        return cls(deque(searches + ready), waiting, by_class, searches_pending=len(searches))

    def release(self) -> None:
        """The held shards join the queue (every search is persisted or given up), but those drawing from a class whose
        search was given up, which stay held (left undone, as an unsearched class's shards are)."""
        if not self.searches_failed:  # every search done: one pass, no per-class test of 28,000 shards x 500 classes
            self.queue.extend(self.held)
            self.held, self.released = [], True
            return
        blocked = []
        for u in self.held:
            (blocked if any(c.id in self.searches_failed for c in u.classes) else self.queue).append(u)
        self.held, self.released = blocked, True

    def search_failed(self, class_id: str) -> None:
        """A class's search was given up: it is no longer pending."""
        self.searches_pending -= 1
        self.searches_failed.add(class_id)

    def searched(self, class_id: str) -> None:
        """A class's search is persisted: the shards it completes go first (short units, early committed
        output, finer-grained resume)."""
        self.searches_pending -= 1
        ready = []
        for u in self.by_class.pop(class_id, []):
            self.waiting[u.shard] -= 1
            if self.waiting[u.shard] == 0:
                ready.append(u)
        self.queue.extendleft(reversed(ready))

    def left(self) -> int:
        return len(self.queue) + len(self.in_flight) + len(self.held) + sum(1 for n in self.waiting.values() if n > 0)
