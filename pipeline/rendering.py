"""Rendering in full generator calls: render jobs of any search or shard, batched, scored, counted.

A GPU renders a batch of 16 in little more time than one image, so what the device does per call decides
the clone's speed. Three pieces keep the calls full:

* :class:`Renderer` runs jobs in generator calls of ``batch_size`` images and scores each call's images in
  one reward call, each image against *its own* input (:meth:`CompositeReward.score_many`), so the renders
  of many classes share a call. It counts, per phase (search, generation), the calls and how full they were.
* :class:`RenderPool` lets several threads (a worker's concurrent searches and shards) hand their jobs to
  one renderer: jobs wait until a full call can be made, or until every thread using the pool is waiting
  (nothing more can come), and whichever thread finds the call ready runs it for all of them.
* A call that is still short takes, in its free slots, renders the waiting searches will likely ask for next
  (:class:`AheadSource`, ``env.render_ahead``): a padded call renders those slots anyway, a guess that is asked
  for later costs no call, and one that is not is dropped with its search.

An image depends only on (prompt, seed, model settings), never on what shared its call: generators that
need it run every call at one fixed size (``DiffusersGenerator``'s ``pad_batches``; CPU and GPU kernels pick
other code paths for other batch sizes), and a neural reward's call is padded to that size, or to the batch size
where the generator has none (its scores moved in the 7th digit with the call's size and company); a reward whose
models all read image by image (numpy readers, ``per_image``) scores only the call's images.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator, Protocol, Sequence

from pipeline.encoders.base import per_image
from pipeline.errors import ConfigError, PipelineError
from pipeline.generators.base import Generator
from pipeline.rewards import CompositeReward

PHASES = ("search", "generation")
log = logging.getLogger("rldf.render")


@dataclass(frozen=True)
class RenderJob:
    """One image to render: its prompt and seed, the prepared input it is scored against (None: not scored),
    and the phase whose call statistics it counts in."""

    prompt: str
    seed: int
    target: Any = None
    phase: str = "search"
    ahead: bool = False  # rendered ahead of its search's asking, in a short call's free slots (:class:`AheadSource`)


class AheadSource(Protocol):
    """A search that can fill a short call's free slots with renders it is likely to ask for next
    (:class:`~pipeline.env.StateEvaluator`). A call would render copies of its last image there anyway
    (padded calls), so a guess that is never asked for costs nothing, and one that is saves a call. The
    renderer asks only while the source's thread waits on a render, so the source reads its search's state
    unchanged."""

    def ahead_jobs(self, n: int) -> list[RenderJob]:
        """Up to ``n`` jobs (``ahead=True``) not rendered or asked for yet, likeliest first."""

    def keep_ahead(self, job: RenderJob, rendered: "Rendered | None") -> None:
        """The result of an ahead job (None: not rendered, its call failed or its slot went to another guess)."""


@dataclass
class Rendered:
    image: Any  # a [3, H, W] tensor on the generator's device (DiffusersGenerator.render), else a PIL image
    reward: float  # NaN when the job had no target
    score: float  # class consistency (NaN without a target or an acceptance term)


@dataclass
class CallStats:
    """Generator calls that held at least one render of a phase: how many, the phase's renders (those made
    ahead included), and the size (renders of every phase) and time of those calls. Workers hand them to the driver
    as they are; the summary holds their :meth:`to_dict`."""

    calls: int = 0
    renders: int = 0
    call_images: int = 0
    partial_calls: int = 0  # calls below the batch size
    seconds: float = 0.0  # this phase's share of the calls' time (by images)
    ahead: int = 0  # of the renders, those made ahead in a call's free slots (:class:`AheadSource`)
    ahead_used: int = 0  # of those, the ones the search asked for later
    batch_size: int = 0  # the renderer's batch size (the largest, added over workers)

    def add(self, other: "CallStats") -> None:
        for k in self.__dataclass_fields__:
            if k != "batch_size":
                setattr(self, k, getattr(self, k) + getattr(other, k))
        self.batch_size = max(self.batch_size, other.batch_size)

    @property
    def taken(self) -> int:
        """Renders units asked for: those made ahead that no search asked for (yet) left out (the progress bar's count)."""
        return self.renders - self.ahead + self.ahead_used

    def to_dict(self) -> dict[str, Any]:
        return {"calls": self.calls, "renders": self.renders, "seconds": round(self.seconds, 3),
                "renders_per_call": round(self.call_images / self.calls, 2) if self.calls else 0.0,
                "partial_call_share": round(self.partial_calls / self.calls, 3) if self.calls else 0.0,
                "ahead": self.ahead, "ahead_used": self.ahead_used, "batch_size": self.batch_size}


def summarise_calls(per_worker: Sequence[dict[str, CallStats]]) -> dict[str, dict[str, Any]]:
    """Per phase, the call statistics of several workers added up (each a :meth:`Renderer.call_stats`), as the summary
    records them."""
    out = {}
    for phase in PHASES:
        total = CallStats()
        for w in per_worker:
            if phase in w:
                total.add(w[phase])
        if total.calls:
            out[phase] = total.to_dict()
    return out


class Renderer:
    """Renders :class:`RenderJob` s in generator calls of ``batch_size`` (capped by the generator's
    ``max_batch_size``) and scores every call's images in one reward call."""

    def __init__(self, generator: Generator, reward: CompositeReward, batch_size: int) -> None:
        if batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
        self.generator, self.reward = generator, reward
        self._pad_rewards = not per_image(reward)  # a neural reward: its calls padded to one size (render_call)
        self.batch_size = min(int(batch_size), int(getattr(generator, "max_batch_size", batch_size)))
        self._stats = {p: CallStats() for p in PHASES}
        self._lock = threading.Lock()
        #: batch sizes this renderer fell back to after CUDA ran out of memory, in order
        self.backoffs: list[int] = []

    @property
    def call_size(self) -> int | None:
        """A generator whose calls all have one size: the reward calls are padded to it too."""
        return getattr(self.generator, "call_size", None)

    def _call_size(self) -> int:
        """What one generator call holds on the device: the padded call size, else the batch size."""
        return int(self.call_size or self.batch_size)

    def _generate(self, prompts: list[str], seeds: list[int]) -> list[Any]:
        """The generator's images (``[3, H, W]`` device tensors from a generator that has ``render``, else PIL images).

        On CUDA out-of-memory the call size is halved, from the size the call held on the device (the padded call
        size, else the batch size: never the call's own count, which depends on timing), for the rest of this
        renderer's life (the generator's own ``max_batch_size``, and so its padding, too); the cache is emptied and the
        call redone in calls of the new size. Halving stops at one image, which fails the call with what to change.
        So the sizes a run backs off to are the configured size halved, whatever calls happened to run out."""
        import torch

        if len(prompts) > self.batch_size:  # a call split before a back-off (here or in another thread): re-split
            return self._split(prompts, seeds)
        size = self._call_size()  # before the call: a back-off by another thread meanwhile is not repeated
        try:
            if hasattr(self.generator, "render"):  # a device tensor: scored there, encoded only if it becomes a sample
                return list(self.generator.render(prompts, seeds))
            return self.generator.generate(prompts, seeds)
        except torch.OutOfMemoryError as e:
            if size <= 1:
                raise PipelineError(f"CUDA out of memory rendering one image ({str(e).splitlines()[0][:160]}): "
                                    "use a smaller model.height/width, model.dtype=float16, or a GPU with more memory") from None
            torch.cuda.empty_cache()
            with self._lock:
                if self._call_size() >= size:  # not lowered since this call began
                    self.batch_size = min(self.batch_size, size // 2)
                    if hasattr(self.generator, "max_batch_size"):  # its call_size (padding) follows
                        self.generator.max_batch_size = min(int(self.generator.max_batch_size), size // 2)
                    self.backoffs.append(size // 2)
                    log.warning("oom_backoff: CUDA out of memory in a call of %d; batch size now %d", size, size // 2)
        return self._split(prompts, seeds)

    def _split(self, prompts: list[str], seeds: list[int]) -> list[Any]:
        """``prompts`` in calls of the batch size now (each call re-splits if a back-off lowers it meanwhile)."""
        out: list[Any] = []
        step = self.batch_size
        for i in range(0, len(prompts), step):
            out += self._generate(prompts[i : i + step], seeds[i : i + step])
        return out

    def warm_up(self, prompt: str) -> None:
        """One call of the full call size (the device's set-up: CUDA context, cuBLAS, the kernels of that size) before
        the first unit, through the same back-off as every call: a size that does not fit is halved here."""
        n = self.batch_size
        self._generate([prompt] * n, list(range(n)))

    def render(self, jobs: Sequence[RenderJob], source: AheadSource | None = None) -> list[Rendered]:
        """``jobs`` in calls of ``batch_size``; a last, short call takes ``source``'s ahead jobs in its free slots."""
        out: list[Rendered] = []
        for i in range(0, len(jobs), self.batch_size):
            call = list(jobs[i : i + self.batch_size])
            ahead = source.ahead_jobs(self.batch_size - len(call)) if source is not None and len(call) < self.batch_size else []
            try:
                rendered = self.render_call(call + ahead)
            except BaseException:
                for job in ahead:
                    source.keep_ahead(job, None)  # type: ignore[union-attr]
                raise
            for job, r in zip(ahead, rendered[len(call) :]):
                source.keep_ahead(job, r)  # type: ignore[union-attr]
            out += rendered[: len(call)]
        return out

    def note_ahead_used(self, n: int, phase: str = "search") -> None:
        """``n`` renders made ahead were asked for (:class:`AheadSource`)."""
        with self._lock:
            self._stats.setdefault(phase, CallStats()).ahead_used += n

    def render_call(self, jobs: Sequence[RenderJob]) -> list[Rendered]:
        """One generator call (at most ``batch_size`` jobs) and one reward call for its images."""
        if not jobs:
            return []
        t0 = time.perf_counter()
        images = self._generate([j.prompt for j in jobs], [j.seed for j in jobs])
        scored = [j.target for j in jobs if j.target is not None]
        rewards, scores = [float("nan")] * len(jobs), [float("nan")] * len(jobs)
        if scored:
            targets = [j.target if j.target is not None else scored[0] for j in jobs]
            batch = list(images)
            # a neural reward's call has one size, the generator call's fixed size (else the batch size), so a score
            # never depends on what shared its call (its kernels follow the batch size); numpy readers read image by image
            pad = max(0, (self.call_size or self.batch_size) - len(batch)) if self._pad_rewards else 0
            r, s = self.reward.score_many(batch + [batch[-1]] * pad, targets + [targets[-1]] * pad)
            rewards, scores = [float(x) for x in r[: len(jobs)]], [float(x) for x in s[: len(jobs)]]
        self._count(jobs, time.perf_counter() - t0)
        return [Rendered(img, r, s) for img, r, s in zip(images, rewards, scores)]

    def _count(self, jobs: Sequence[RenderJob], seconds: float) -> None:
        with self._lock:
            for phase in {j.phase for j in jobs}:
                n = sum(1 for j in jobs if j.phase == phase)
                st = self._stats.setdefault(phase, CallStats())
                st.calls += 1
                st.renders += n
                st.call_images += len(jobs)
                st.partial_calls += len(jobs) < self.batch_size
                st.ahead += sum(1 for j in jobs if j.phase == phase and j.ahead)
                st.seconds += seconds * n / len(jobs)

    def call_stats(self) -> dict[str, CallStats]:
        """Per phase with calls so far, a copy of its statistics (with the batch size now)."""
        with self._lock:
            return {p: dataclasses.replace(s, batch_size=self.batch_size) for p, s in self._stats.items() if s.calls}


class _Request:
    def __init__(self, jobs: Sequence[RenderJob], source: AheadSource | None = None) -> None:
        self.jobs, self.source = list(jobs), source
        self.results: list[Rendered | None] = [None] * len(jobs)
        self.left = len(jobs)
        self.error: BaseException | None = None


class RenderPool:
    """Merges the render jobs of the threads that use it into full calls of one :class:`Renderer`.

    A thread that will hand jobs over again and again (a search) holds :meth:`client` while it runs, so the
    pool waits for its next jobs before it makes a call that is not full; a thread that calls :meth:`render`
    outside it counts as a client for that call only."""

    def __init__(self, renderer: Renderer) -> None:
        self.renderer, self.reward = renderer, renderer.reward
        self._cv = threading.Condition()
        self._pending: list[tuple[_Request, int]] = []  # (request, job index), in arrival order
        self._clients = 0
        self._open: dict[int, _Request] = {}  # requests with jobs not yet rendered (their threads wait)
        self._busy = False  # a call is being rendered
        self._local = threading.local()

    @contextmanager
    def client(self) -> Iterator[None]:
        """Re-entrant: a thread is one client however deep it nests (it can only wait once)."""
        outer = not getattr(self._local, "client", 0)
        if outer:
            with self._cv:
                self._clients += 1
        self._local.client = getattr(self._local, "client", 0) + 1
        try:
            yield
        finally:
            self._local.client -= 1
            if outer:
                with self._cv:
                    self._clients -= 1
                    self._cv.notify_all()  # the others may be all that is left: their call is ready now

    @property
    def batch_size(self) -> int:
        return self.renderer.batch_size  # smaller after an out-of-memory back-off

    def call_stats(self) -> dict[str, CallStats]:
        return self.renderer.call_stats()

    def _ready(self) -> bool:
        # a short call only when every client waits: a served thread leaves the count at once, not when it wakes
        return not self._busy and bool(self._pending) and (len(self._pending) >= self.batch_size or len(self._open) >= self._clients)

    def note_ahead_used(self, n: int, phase: str = "search") -> None:
        self.renderer.note_ahead_used(n, phase)

    def render(self, jobs: Sequence[RenderJob], source: AheadSource | None = None) -> list[Rendered]:
        """Render ``jobs`` in calls shared with the other clients' jobs; while this waits, a short call may take
        ``source``'s ahead jobs in its free slots."""
        if not jobs:
            return []
        req = _Request(jobs, source)
        guest = not getattr(self._local, "client", 0)
        with self._cv:
            self._clients += guest
            self._pending += [(req, j) for j in range(len(jobs))]
            self._open[id(req)] = req
            try:
                while req.left and req.error is None:
                    if self._ready():
                        self._run_call()
                    else:
                        self._cv.wait()
            finally:
                self._open.pop(id(req), None)
                self._clients -= guest
                self._cv.notify_all()
        if req.error is not None:
            raise req.error
        return req.results  # type: ignore[return-value]

    def _run_call(self) -> None:
        """Take one call's jobs and render them outside the lock (called with the lock held)."""
        batch, self._pending = self._pending[: self.batch_size], self._pending[self.batch_size :]
        ahead = self._ahead_jobs(self.batch_size - len(batch))
        self._busy = True
        self._cv.release()
        try:
            out = self.renderer.render_call([r.jobs[j] for r, j in batch] + [job for _, job in ahead])
            error = None
        except BaseException as e:  # every request in the call fails with it; the pool goes on
            out, error = None, e
        finally:
            self._cv.acquire()
            self._busy = False
        for k, (src, job) in enumerate(ahead):  # delivered before any waiting thread wakes
            src.keep_ahead(job, out[len(batch) + k] if out is not None else None)
        if error is not None:
            failed = {id(r): r for r, _ in batch}
            for r in failed.values():
                r.error = error
                self._open.pop(id(r), None)
            self._pending = [(r, j) for r, j in self._pending if id(r) not in failed]
        else:
            for (r, j), res in zip(batch, out[: len(batch)]):
                r.results[j] = res
                r.left -= 1
                if not r.left:
                    self._open.pop(id(r), None)
        self._cv.notify_all()

    def _ahead_jobs(self, free: int) -> list[tuple[AheadSource, RenderJob]]:
        """A short call's free slots, shared in turn among the sources of the waiting requests (called with the lock
        held: a short call is made only while every client waits, so no source's search moves meanwhile)."""
        if free <= 0:
            return []
        sources = list({id(r.source): r.source for r in self._open.values() if r.source is not None}.values())
        # each source is asked once (a Q-learning guess takes a copy of its search two steps), then the slots go round
        # the sources one guess at a time: every source's likeliest guess before any second; the rest are handed back
        offered = [[(src, job) for job in src.ahead_jobs(free)] for src in sources]
        ranked = [pair for turn in itertools.zip_longest(*offered) for pair in turn if pair is not None]
        out, unused = ranked[:free], ranked[free:]
        for src, job in unused:
            src.keep_ahead(job, None)
        return out
