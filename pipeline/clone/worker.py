"""A clone worker: holds one generator and its encoders for its whole life and runs units.

On a cluster each worker is a Ray actor with one GPU; locally, one CPU slot. It runs up to
``cluster.units_per_worker`` units at once (a threaded actor), and every render of every unit goes through one
:class:`~pipeline.rendering.RenderPool`, so concurrent searches, and the shards being generated, share full
generator calls. Every output a unit writes (a search result, a shard and its manifest record) is committed
atomically and derives only from (run seed, class, index, attempt), never from what shared a call, so redoing
a unit after a crash rewrites identical bytes.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import sys
import threading
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, NamedTuple

from hydra.utils import instantiate
from omegaconf import OmegaConf

import pipeline
from pipeline.assembly import build_stack, make_env, prepare, read
from pipeline.clone.context_prior import on_grammar, posterior, propose_from_context, reading as context_reading
from pipeline.clone.dataset import ClassInfo
from pipeline.clone.layout import LAYOUT
from pipeline.clone.manifest import Manifest
from pipeline.clone.proposals import propose
from pipeline.clone.plan import SearchDone, SearchUnit, ShardDone, ShardUnit
from pipeline.clone.search_renders import SearchRender, assign, read_render, reuse_limit, write_renders
from pipeline.clone.shards import asks_for_label, encode_image, write_shard
from pipeline.config import CloneApp
from pipeline.errors import ConfigError
from pipeline.images import to_host
from pipeline.reading import InputReading, check_seeds, choose_by_renders, rendered_candidates, settle
from pipeline.rendering import Renderer, RenderJob, RenderPool
from pipeline.grammar import Grammar
from pipeline.search.result import Candidate, SearchProblem, SearchResult
from pipeline.seeding import derive_seed
from pipeline.storage import Storage
from pipeline.torch_device import check_worker_device, describe_device

#: clone.fill=best, a class whose search accepted no state: its images draw from this many best-scored states
FALLBACK_STATES = 16
CLASS_CACHE = 1024  # classes whose search result, sequence and prepared input a worker keeps (no image bytes)
ENCODE_THREADS = 2  # PNG/JPEG encoding of one call's images overlaps the next call


@dataclass(frozen=True)
class ClassSource:
    """What rendering one class's images needs, from its persisted search result."""

    result: SearchResult
    grammar: Grammar  # the class's search grammar (its group's, the class axis as the search cut it)
    full: Grammar  # the full grammar, whose encodings the samples record
    seq: list[Candidate]  # the balanced sequence of accepted states the images draw from (clone.fill=best: else the best scored)
    prepared: dict[str, Any] | None  # the reward's prepared input (verification), None without
    reused: dict[int, tuple[Candidate, SearchRender]]  # image index -> its state and the search render it is (clone.reuse_search_renders)
    free: list[int]  # the non-class axes of :attr:`grammar` with a choice: what proposals vary
    propose_seed: int  # the class's proposals' seed (pipeline.clone.proposals)
    contexts: dict[int, Any] | None = None  # clone.propose=inputs: each of :attr:`free` -> the class's context estimate on it


class Kept(NamedTuple):
    """An image of a shard: its state, seed, encoded bytes (or their future), score, attempt and whether it passed
    acceptance (None: not verified; False: clone.fill=best kept the best of its failed attempts)."""

    pick: Candidate
    seed: int
    image: bytes | Future
    score: float
    attempt: int
    passed: bool | None = True


def _rounded(x: float) -> float:
    """A sample's reward or score as its ``json`` records it: NaN where there is none (a proposal's state, which no
    search rendered; an image not scored), never null, so every sample's field has one type and a loader that infers
    the schema from the first samples (Hugging Face's generic webdataset loader) reads every later one."""
    return float("nan") if x is None or math.isnan(x) else round(x, 6)


def image_seed(run_seed: int, cls: ClassInfo, index: int, attempt: int) -> int:
    """The render seed of image ``index``'s ``attempt``-th candidate (attempt 0 keeps the historic seed)."""
    if attempt == 0:
        return derive_seed(run_seed, "sample", cls.id, index)
    return derive_seed(run_seed, "sample", cls.id, index, attempt)


class CloneWorker:
    def __init__(self, cfg: CloneApp, worker_id: int = 0, identity: str | None = None) -> None:
        """``cfg``: the run's typed settings (:class:`pipeline.config.CloneApp`, as ``OmegaConf.to_object`` makes them);
        ``identity``: the run identity's hash, carried by every search result and manifest record this worker writes."""
        self.identity = identity
        self.threads = cfg.cluster.threads_per_worker
        self._set_threads()
        check_worker_device(float(cfg.cluster.gpus_per_worker or 0), cfg.model.get("device"))
        self.cfg = OmegaConf.create(cfg)
        self.worker_id = worker_id
        self.dataset = instantiate(self.cfg.dataset)
        self.stack = build_stack(self.cfg, class_names=[c.prompt for c in self.dataset.all_classes()])
        self.storage = Storage(self.cfg.paths.output_dir, self.cfg.clone.storage_retry_s)
        self.manifest = Manifest(self.storage)
        c = self.cfg.clone
        self.seed, self.images_per_class = int(self.cfg.seed), int(c.images_per_class)
        self.image_format, self.quality = str(c.image_format), int(c.image_quality)
        self.verify, self.max_tries = bool(c.verify_images), int(c.max_tries)
        self.fill, self.propose = str(c.fill), str(c.propose)
        self.reuse = bool(c.reuse_search_renders)
        self.reuse_limit = reuse_limit(float(c.reuse_max_share), self.images_per_class)
        self.class_source = str(self.cfg.env.class_source)
        self.rendered_candidates, self.rendered_seeds = int(self.cfg.env.rendered_candidates), int(self.cfg.env.rendered_seeds)
        self.class_pos = self.stack.full_grammar.axis_index(self.stack.full_grammar.class_axis)  # a clone's grammar has one
        if self.verify and self.stack.reward.acceptance is None:
            raise ConfigError("clone.verify_images needs a reward with a class-consistency term "
                              "(a semantic encoder over a grammar with a class axis); or set clone.verify_images=false")
        #: every render of every unit of this worker: concurrent units share full generator calls
        self.pool = RenderPool(Renderer(self.stack.generator, self.stack.reward, int(c.batch_size)))
        self._encoder = ThreadPoolExecutor(ENCODE_THREADS, thread_name_prefix="encode")
        self._sources: dict[ClassInfo, ClassSource] = {}
        self._sources_lock = threading.Lock()
        self._priors: list[dict[str, Any]] | None = None  # clone.propose=inputs: contexts.json's priors, read once
        self._group_classes: dict[str | None, list[str]] = {}  # class group -> its classes' prompts (a group's context reader)
        for k in self.dataset.all_classes():
            self._group_classes.setdefault(k.group, []).append(k.prompt)
        if c.worker_warmup:  # the device's set-up (CUDA context, cuBLAS, kernels of the call size) before the first unit
            prompt = self.stack.full_grammar.decode(next(iter(self.stack.full_grammar.grid())))  # one any generator reads
            self.pool.renderer.warm_up(prompt)

    def _set_threads(self) -> None:
        """torch's thread count, in the thread that runs a unit (Ray runs a threaded actor's calls in its own threads)."""
        if self.threads:
            import torch

            if torch.get_num_threads() != int(self.threads):
                torch.set_num_threads(int(self.threads))

    def ping(self) -> dict[str, Any]:
        gen = self.stack.generator
        ray = sys.modules.get("ray")  # a Ray actor's node; none for cluster=inline (Ray may not be installed)
        node = ray.get_runtime_context().get_node_id() if ray is not None and ray.is_initialized() else None
        return {"worker": self.worker_id, "pid": os.getpid(), "node": node, "model_id": gen.model_id, "weights": getattr(gen, "weights", None),
                **describe_device(getattr(gen, "device", None), getattr(gen, "dtype", None))}

    def _backed_off_to(self) -> int | None:
        """The call size after this worker's CUDA out-of-memory back-offs, None when it has had none."""
        backoffs = self.pool.renderer.backoffs
        return backoffs[-1] if backoffs else None

    def progress(self) -> int:
        """Renders this worker's units have taken so far, every phase (the driver's progress bar): its generator calls'
        renders, less those made ahead in free slots that no search has asked for (yet)."""
        return sum(s.taken for s in self.pool.call_stats().values())

    # ------------------------------------------------------------------ units
    def search(self, unit: SearchUnit) -> SearchDone:
        """Run the configured search from the class's input image; persist the result. Its renders go through
        the worker's pool, merged with those of the other units running on this worker."""
        self._set_threads()
        t0 = time.perf_counter()
        cls = unit.cls
        seed = derive_seed(self.seed, "search", cls.id)
        # a client from before its input is read: the pool waits for this search's first step, and every next
        # one, before it makes a short call (searches that arrive together start in one call)
        with self.pool.client():
            inputs = self.dataset.inputs(cls)
            reading = self._read(cls, inputs)
            env = make_env(self.stack, reading, seed, cls.group, renderer=self.pool)
            result = self.stack.search.run(SearchProblem(env, seed=seed, class_name=cls.prompt))
        class_axis = env.grammar.class_axis
        candidates = list(env.grammar.axis(class_axis).choices)
        result.info.update(class_id=cls.id, class_name=cls.name, class_prompt=cls.prompt, group=cls.group,
                           model_id=self.stack.generator.model_id, identity=self.identity,
                           inputs=[i.ref for i in inputs], **reading.describe())
        if reading.rendered is not None:  # class_source=rendered: the candidates, their divergences and renders
            result.info["rendered"] = reading.rendered
        if len(candidates) < len(self.stack.grammar.axis(class_axis)):  # env.class_candidates cut the class axis
            result.info["class_candidates"] = candidates
        if self.reuse:  # the accepted states' renders, committed before the result that marks the search done
            reusable = [(c.prompt, s, float(score), encode_image(img, self.image_format, self.quality), self.image_format)
                        for c in result.accepted for s, score, img in env.evaluator.kept_renders(c.prompt) if score >= result.accept_threshold]
            result.info["reusable_renders"] = [r.to_dict() for r in write_renders(self.storage, cls.id, reusable)]
        if self._backed_off_to() is not None:  # its renders may not be the pixels of a run without the back-off
            result.info["backed_off_to"] = self._backed_off_to()
        if self.propose == "inputs":  # what the class's inputs show beyond the class (no renders)
            result.info["context"] = self._read_context(cls, inputs)
        skipped = self.dataset.skipped(cls)  # files a real tree holds that cannot be read, each passed over once
        if skipped:
            result.info["skipped_inputs"] = skipped
        self.storage.write_bytes(LAYOUT.search(cls.id), json.dumps(result.to_dict()).encode())
        best = env.grammar.describe(result.best.encoding)[class_axis] if result.best.encoding is not None else None
        checked = reading.rendered["renders"] if reading.rendered else 0  # class_source=rendered: the candidates' renders
        return SearchDone(result.renders + checked, result.best.reward, time.perf_counter() - t0,
                          best is not None and best.lower() == cls.prompt.lower(), **reading.describe(),
                          calls=self.pool.call_stats(), oom_backoffs=list(self.pool.renderer.backoffs),
                          context=result.info.get("context"), skipped_inputs=tuple(skipped))

    def _read_context(self, cls: ClassInfo, inputs: list) -> dict[str, Any]:
        """The class's context reading (:func:`pipeline.clone.context_prior.reading`): its inputs and the next ones up to
        ``dataset.context_inputs``, read over its group's vocabulary."""
        encoder, grammar = self.stack.context_reader(cls.group, self._group_classes.get(cls.group))
        images = [i.image for i in inputs] + [i.image for i in self.dataset.context_extra(cls)]
        return context_reading(encoder, grammar, images)

    def _context_priors(self) -> list[dict[str, Any]]:
        """contexts.json's priors, which the driver writes once every search is persisted (before any shard unit)."""
        if self._priors is None:
            self._priors = json.loads(self.storage.read_bytes(LAYOUT.contexts))["priors"]
        return self._priors

    def _read(self, cls: ClassInfo, inputs: list | None = None, recorded: dict[str, Any] | None = None) -> InputReading:
        """The semantic encoder's reading of the class's input images, anchored on its label with env.class_source=label.
        With env.class_source=rendered the reading's likeliest classes are rendered in the worker's pool (search phase,
        the same seeds for each) and the one whose renders read like the inputs fixes the class
        (:func:`pipeline.reading.choose_by_renders`); ``recorded`` (the search result's info) gives the class the
        search chose, so nothing is rendered again."""
        images = [i.image for i in (inputs if inputs is not None else self.dataset.inputs(cls))]
        if self.class_source != "rendered":
            return read(self.stack, images, cls.prompt if self.class_source == "label" else None)
        reading, grammar = read(self.stack, images), self.stack.full_grammar
        if recorded is not None:
            return settle(grammar, reading, recorded["read_class"], recorded["rendered"])
        candidates = rendered_candidates(grammar, reading, self.rendered_candidates)
        seeds = check_seeds(self.seed, cls.id, self.rendered_seeds)
        out = self.pool.render([RenderJob(prompt, s, None, "search") for _, prompt in candidates for s in seeds])
        n = len(seeds)
        renders = {name: [r.image for r in out[i * n : (i + 1) * n]] for i, (name, _) in enumerate(candidates)}
        chosen = choose_by_renders(self.stack.semantic_encoder, grammar, reading, renders)
        chosen.rendered["renders"] = len(out)
        return chosen

    @staticmethod
    def _next_candidate(seq: list, pos: int, tried: set[str]):
        """The first candidate from ``seq[pos]`` on (cyclically) that this image has not tried yet, else ``seq[pos]``
        (the same state again, at another seed)."""
        for k in range(len(seq)):
            cand = seq[(pos + k) % len(seq)]
            if cand.prompt not in tried:
                return cand
        return seq[pos % len(seq)]

    def image_seed(self, cls: ClassInfo, index: int, attempt: int) -> int:
        return image_seed(self.seed, cls, index, attempt)

    def _pick(self, src: ClassSource, i: int, attempt: int, tried: set[str]) -> Candidate:
        """The state image ``i``'s ``attempt``-th candidate renders: an accepted state (from ``seq[i + a·n]`` on, the
        first this image has not tried) and, with clone.propose=random, a fresh combination of its non-class axes
        (:mod:`pipeline.clone.proposals`), except on the last of several attempts, which renders the state itself.
        ``tried``: the states this image's attempts took so far (updated)."""
        j = i + attempt * self.images_per_class
        base = self._next_candidate(src.seq, j, tried)
        tried.add(base.prompt)  # the next attempt starts from another accepted state where there is one
        last = attempt > 0 and attempt == self.max_tries - 1
        if self.propose == "accepted" or not src.free or base.encoding is None or last:
            return base
        if src.contexts is not None:  # clone.propose=inputs
            return propose_from_context(src.grammar, base, src.contexts, self.images_per_class, j, src.propose_seed)
        return propose(src.grammar, base, src.free, j, src.propose_seed)

    def _render_shard(self, unit: ShardUnit, sources: list[ClassSource]) -> tuple[dict[tuple[int, int], Kept], int]:
        """Every image of the shard, all classes together, in full calls of the worker's pool.

        Image ``i`` of class ``k`` takes its search render where the class has one (already scored at its seed);
        otherwise its attempt ``a`` renders, at its own seed, the candidate :meth:`_pick` gives, and the first render
        whose class-consistency score reaches τ is kept (all first renders, without ``clone.verify_images``). An image
        none of whose ``clone.max_tries`` renders passes keeps the best of them with clone.fill=best (marked as not
        passed), and is left out with clone.fill=strict. A retry joins the queue behind the renders already waiting,
        so every call is full until the queue runs dry; what an image becomes depends on its own attempts only.
        Returns ((k, i) -> :class:`Kept`, renders)."""
        kept: dict[tuple[int, int], Kept] = {}
        queue: deque[tuple[int, int, int]] = deque()  # (class position, image index, attempt)
        tried: dict[tuple[int, int], set[str]] = {}
        best: dict[tuple[int, int], tuple[tuple[float, float], Kept, Any]] = {}  # its best failed render so far
        for k, (cls, src) in enumerate(zip(unit.classes, sources)):
            for i in unit.indices(k):
                if i in src.reused:
                    state, r = src.reused[i]
                    kept[(k, i)] = Kept(state, r.seed, read_render(self.storage, cls.id, r), r.score, 0)
                elif src.seq and self.max_tries > 0:
                    queue.append((k, i, 0))
                    tried[(k, i)] = set()
        renders = 0
        with self.pool.client():
            while queue:
                todo = [queue.popleft() for _ in range(min(self.pool.batch_size, len(queue)))]
                picks, jobs = [], []
                for k, i, attempt in todo:
                    src = sources[k]
                    pick = self._pick(src, i, attempt, tried[(k, i)])
                    picks.append(pick)
                    jobs.append(RenderJob(pick.prompt, self.image_seed(unit.classes[k], i, attempt),
                                          src.prepared if self.verify else None, "generation"))
                out = self.pool.render(jobs)
                renders += len(out)
                for (k, i, attempt), pick, job, r in zip(todo, picks, jobs, out):
                    if not self.verify or r.score >= sources[k].result.accept_threshold:
                        encoded = self._encoder.submit(encode_image, r.image, self.image_format, self.quality)
                        kept[(k, i)] = Kept(pick, job.seed, encoded, r.score, attempt, True if self.verify else None)
                        continue
                    rank = (float(r.score), float(r.reward))
                    if self.fill == "best" and ((k, i) not in best or rank > best[(k, i)][0]):
                        best[(k, i)] = (rank, Kept(pick, job.seed, b"", r.score, attempt, False), to_host(r.image))
                    if attempt + 1 < self.max_tries:
                        queue.append((k, i, attempt + 1))
                    elif (k, i) in best:  # clone.fill=best: the best of its failed renders, marked as not passed
                        _, fail, image = best.pop((k, i))
                        kept[(k, i)] = fail._replace(image=self._encoder.submit(encode_image, image, self.image_format, self.quality))
        return kept, renders

    def _class_source(self, cls: ClassInfo) -> ClassSource:
        """What rendering class ``cls``'s images needs, from its persisted search result: the balanced sequence
        of accepted states, its grammars, τ and the input's prepared reward target. Kept for the last
        :data:`CLASS_CACHE` classes (a shuffled shard draws from hundreds)."""
        with self._sources_lock:
            if cls in self._sources:
                self._sources[cls] = self._sources.pop(cls)  # most recently used last
                return self._sources[cls]
        result = SearchResult.from_dict(json.loads(self.storage.read_bytes(LAYOUT.search(cls.id))))
        grammar, full = self.stack.grammars(cls.group, result.info.get("class_candidates"))
        free = [i for i, a in enumerate(grammar.axes) if a.name != grammar.class_axis and len(a) > 1]
        seq = result.sample(self.images_per_class * self.max_tries, seed=derive_seed(self.seed, "pick", cls.id), axes=free,
                            fallback=FALLBACK_STATES if self.fill == "best" else 0)
        prepared = prepare(self.stack, self._read(cls, recorded=result.info)) if self.verify and seq else None
        index = [SearchRender(**r) for r in result.info.get("reusable_renders", [])] if self.reuse else []
        contexts = None
        if self.propose == "inputs" and "context" in result.info:
            estimate = posterior(result.info["context"], self._context_priors())
            contexts = {m: on_grammar(estimate, result.info["context"], grammar, m) for m in free}
        source = ClassSource(result, grammar, full, seq, prepared, {}, free, derive_seed(self.seed, "propose", cls.id), contexts)
        firsts = seq  # the states the images' first attempts render: search renders of the same states are reused
        if contexts is not None and seq:  # proposals: an image reuses a search render of the very state proposed
            accepted = {c.prompt: c for c in result.accepted}
            firsts = [accepted.get(p.prompt, p) for p in (self._pick(source, i, 0, set()) for i in range(self.images_per_class))]
        reused = {i: (firsts[i], r) for i, r in assign(firsts, index, self.images_per_class, self.reuse_limit).items()}
        source = dataclasses.replace(source, reused=reused)
        with self._sources_lock:
            self._sources[cls] = source
            while len(self._sources) > CLASS_CACHE:
                self._sources.pop(next(iter(self._sources)))
        return source

    def generate(self, unit: ShardUnit) -> ShardDone:
        """Render one shard's samples from its classes' persisted search results and commit the shard: each
        class's accepted states in a balanced sequence over the non-class axes, each image verified at its
        own seed (:meth:`_render_shard`, every class of the shard in the same full calls). Everything depends
        on (run seed, class, index, attempt) only, so a shard is the same bytes whichever worker renders it,
        when, and with what; samples are written in the plan's order."""
        self._set_threads()
        t0 = time.perf_counter()
        sources = [self._class_source(cls) for cls in unit.classes]
        kept, renders = self._render_shard(unit, sources)
        counts: dict[str, int] = {}
        short: dict[str, int] = {}
        for k, cls in enumerate(unit.classes):
            want = len(unit.indices(k))
            got = sum(1 for i in unit.indices(k) if (k, i) in kept)
            counts[cls.id] = got
            if got < want:
                short[cls.id] = want - got
        from_search = 0  # images that are search renders
        label_ok: dict[str, int] = {}  # class id -> samples whose prompt asks for their label's class
        failed: dict[str, int] = {}  # class id -> samples that did not pass acceptance (clone.fill=best)
        samples = []
        for k, i in unit.members.tolist():
            if (k, i) not in kept:
                continue
            cls, src = unit.classes[k], sources[k]
            pick, seed, image, score, attempt, passed = kept[(k, i)]
            reused = i in src.reused
            failed[cls.id] = failed.get(cls.id, 0) + (passed is False)
            from_search += reused
            enc = src.full.translate(pick.encoding, src.grammar) if pick.encoding is not None else None
            meta = {
                "class_index": cls.index, "class_id": cls.id, "wnid": cls.wnid, "class_name": cls.name,
                "class_prompt": cls.prompt, "encoding": list(enc) if enc is not None else None, "prompt": pick.prompt,
                "seed": seed, "reward": _rounded(pick.reward), "state_score": _rounded(pick.score),
                "score": _rounded(score if self.verify or reused else None), "attempt": attempt,
                "from_search": reused, "accepted": passed, "proposed": math.isnan(pick.reward),
                "model_id": self.stack.generator.model_id, "search": src.result.method, "pipeline_version": pipeline.__version__,
            }
            label_ok[cls.id] = label_ok.get(cls.id, 0) + asks_for_label(meta, self.class_pos)
            samples.append({
                "__key__": f"{cls.id}_{i:06d}",
                self.image_format: image.result() if isinstance(image, Future) else image,
                "cls": str(cls.index).encode(),
                "json": json.dumps(meta, sort_keys=True).encode(),
            })
        record = write_shard(self.storage, unit.shard, samples, [c.id for c in unit.classes], missing=unit.count - len(samples),
                             class_counts={c: n for c, n in counts.items() if n}, missing_by_class=short,
                             identity=self.identity, label_ok={c: n for c, n in label_ok.items() if n},
                             failed_by_class={c: n for c, n in failed.items() if n}, backed_off_to=self._backed_off_to())
        try:
            self.manifest.add(record)
        except BaseException:  # a shard without its record is not committed: leave no orphan (and free its space)
            try:
                self.storage.remove(unit.shard)
            except Exception:  # noqa: BLE001 - the record's error is the one to report
                pass  # a resume rebuilds the record from a whole orphan shard (inventory)
            raise
        return ShardDone(record, len(samples), record.missing, renders, from_search, time.perf_counter() - t0, self.worker_id,
                         self.pool.call_stats(), list(self.pool.renderer.backoffs))
