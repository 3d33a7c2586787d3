"""A clone worker: holds one generator and its encoders for its whole life and runs units.

On a cluster each worker is a Ray actor with one GPU; locally, one CPU slot. Every output a unit
writes (a search result, a shard and its manifest record) is committed atomically and derives only
from (run seed, class, index), so redoing a unit after a crash rewrites identical bytes.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

from hydra.utils import instantiate
from omegaconf import OmegaConf
from PIL import Image

import pipeline
from pipeline.assembly import build_stack, make_env
from pipeline.clone.dataset import ClassInfo
from pipeline.clone.layout import LAYOUT
from pipeline.clone.manifest import Manifest
from pipeline.clone.plan import SearchUnit, ShardUnit
from pipeline.clone.search_renders import SearchRender, assign, read_render, write_renders
from pipeline.clone.shards import encode_image, write_shard
from pipeline.search.result import SearchProblem, SearchResult
from pipeline.seeding import derive_seed
from pipeline.storage import Storage

CLASS_CACHE = 1024  # classes whose search result, sequence and prepared input a worker keeps (no image bytes)


class CloneWorker:
    def __init__(self, cfg: dict[str, Any], worker_id: int = 0) -> None:
        threads = cfg["cluster"]["threads_per_worker"]
        if threads:
            import torch

            torch.set_num_threads(int(threads))
        self.cfg = OmegaConf.create(cfg)
        self.worker_id = worker_id
        self.dataset = instantiate(self.cfg.dataset)
        self.stack = build_stack(self.cfg, class_names=[c.prompt for c in self.dataset.all_classes()])
        self.storage = Storage(self.cfg.paths.output_dir)
        self.manifest = Manifest(self.storage)
        c = self.cfg.clone
        self.seed, self.images_per_class = int(self.cfg.seed), int(c.images_per_class)
        self.image_format, self.quality = str(c.image_format), int(c.image_quality)
        self.batch_size, self.verify, self.max_tries = int(c.batch_size), bool(c.verify_images), int(c.max_tries)
        self.reuse = bool(c.reuse_search_renders)
        self._sources: dict[ClassInfo, dict[str, Any]] = {}

    def ping(self) -> dict[str, Any]:
        return {"worker": self.worker_id, "pid": os.getpid(), "model_id": self.stack.generator.model_id}

    # ------------------------------------------------------------------ units
    def search(self, unit: SearchUnit) -> dict[str, Any]:
        """Run the configured search from the class's input image; persist the result."""
        t0 = time.perf_counter()
        cls = unit.cls
        target = self.dataset.input_image(cls)
        seed = derive_seed(self.seed, "search", cls.id)
        env = make_env(self.stack, target, seed, cls.group)
        result = self.stack.search.run(SearchProblem(env, seed=seed, class_name=cls.prompt))
        class_axis = env.grammar.class_axis
        candidates = list(env.grammar.axis(class_axis).choices)
        result.info.update(class_id=cls.id, class_name=cls.name, class_prompt=cls.prompt, group=cls.group,
                           model_id=self.stack.generator.model_id)
        if len(candidates) < len(self.stack.grammar.axis(class_axis)):  # env.class_candidates cut the class axis
            result.info["class_candidates"] = candidates
        if self.reuse:  # the accepted states' renders, committed before the result that marks the search done
            reusable = [(c.prompt, s, float(score), encode_image(img, self.image_format, self.quality), self.image_format)
                        for c in result.accepted for s, score, img in env.evaluator.kept_renders(c.prompt) if score >= result.accept_threshold]
            result.info["reusable_renders"] = [r.to_dict() for r in write_renders(self.storage, cls.id, reusable)]
        self.storage.write_bytes(LAYOUT.search(cls.id), json.dumps(result.to_dict()).encode())
        best = env.grammar.describe(result.best.encoding)[class_axis] if result.best.encoding is not None else None
        return {"renders": result.renders, "best_reward": result.best.reward, "seconds": time.perf_counter() - t0,
                "found_class": best is not None and best.lower() == cls.prompt.lower()}

    def _render(self, prompts: list[str], seeds: list[int]) -> tuple[list[Image.Image], float]:
        images, seconds = [], 0.0
        for b in range(0, len(prompts), self.batch_size):
            g0 = time.perf_counter()
            images += self.stack.generator.generate(prompts[b : b + self.batch_size], seeds[b : b + self.batch_size])
            seconds += time.perf_counter() - g0
        return images, seconds

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
        """The render seed of image ``index``'s ``attempt``-th candidate (attempt 0 keeps the historic seed)."""
        if attempt == 0:
            return derive_seed(self.seed, "sample", cls.id, index)
        return derive_seed(self.seed, "sample", cls.id, index, attempt)

    def _verified(self, cls: ClassInfo, seq: list, prepared: Any, indices: list[int], tau: float,
                  reused: dict[int, SearchRender] | None = None) -> tuple[dict, int, float]:
        """Image ``i`` takes its search render where ``reused`` has one (already scored at its seed); otherwise its
        attempt ``k`` renders, at its own seed, the first candidate from ``seq[i + k·n]`` on (``n`` images per
        class) that this image has not tried yet, and the first render whose class-consistency score reaches τ
        is kept (all first renders, without ``clone.verify_images``). Returns (index -> (candidate, seed, image
        or encoded bytes, score, attempt), renders, seconds in the generator)."""
        n = self.images_per_class
        kept: dict[int, tuple[Any, int, Image.Image | bytes, float, int]] = {}
        for i in indices:
            if reused and i in reused:
                r = reused[i]
                kept[i] = (seq[i], r.seed, read_render(self.storage, cls.id, r), r.score, 0)
        tried: dict[int, set[str]] = {i: set() for i in indices}
        gen_seconds, renders = 0.0, 0
        for attempt in range(self.max_tries if seq else 0):
            todo = [i for i in indices if i not in kept]
            if not todo:
                break
            picks = [self._next_candidate(seq, i + attempt * n, tried[i]) for i in todo]
            for i, pick in zip(todo, picks):
                tried[i].add(pick.prompt)
            seeds = [self.image_seed(cls, i, attempt) for i in todo]
            images, seconds = self._render([p.prompt for p in picks], seeds)
            gen_seconds, renders = gen_seconds + seconds, renders + len(images)
            scores = self.stack.reward.acceptance_score(images, prepared) if self.verify else [float("nan")] * len(images)
            for i, pick, seed, image, score in zip(todo, picks, seeds, images, scores):
                if not self.verify or score >= tau:
                    kept[i] = (pick, seed, image, float(score), attempt)
            if not self.verify:
                break
        return kept, renders, gen_seconds

    def _class_source(self, cls: ClassInfo) -> dict[str, Any]:
        """What rendering class ``cls``'s images needs, from its persisted search result: the balanced sequence
        of accepted states, its grammars, τ and the input's prepared reward target. Kept for the last
        :data:`CLASS_CACHE` classes (a shuffled shard draws from hundreds)."""
        if cls in self._sources:
            self._sources[cls] = self._sources.pop(cls)  # most recently used last
            return self._sources[cls]
        result = SearchResult.from_dict(json.loads(self.storage.read_bytes(LAYOUT.search(cls.id))))
        grammar, full = self.stack.grammars(cls.group, result.info.get("class_candidates"))
        free = [i for i, a in enumerate(grammar.axes) if a.name != grammar.class_axis and len(a) > 1]
        seq = result.sample(self.images_per_class * self.max_tries, seed=derive_seed(self.seed, "pick", cls.id), axes=free)
        prepared = self.stack.reward.prepare(self.dataset.input_image(cls)) if self.verify and seq else None
        index = [SearchRender(**r) for r in result.info.get("reusable_renders", [])] if self.reuse else []
        reused = assign(seq, index, self.images_per_class)
        source = {"result": result, "grammar": grammar, "full": full, "seq": seq, "prepared": prepared, "reused": reused}
        self._sources[cls] = source
        while len(self._sources) > CLASS_CACHE:
            self._sources.pop(next(iter(self._sources)))
        return source

    def generate(self, unit: ShardUnit) -> dict[str, Any]:
        """Render one shard's samples from its classes' persisted search results and commit the shard: each
        class's accepted states in a balanced sequence over the non-class axes, each image verified at its
        own seed (:meth:`_verified`). Everything depends on (run seed, class, index) only, so a shard is the
        same bytes whichever worker renders it, and when; samples are written in the plan's order."""
        t0 = time.perf_counter()
        made: dict[tuple[int, int], dict[str, Any]] = {}
        gen_seconds, renders = 0.0, 0
        counts: dict[str, int] = {}
        short: dict[str, int] = {}
        from_search = 0  # images that are search renders
        for k, cls in enumerate(unit.classes):
            src = self._class_source(cls)
            result = src["result"]
            indices = unit.indices(k)
            kept, n, seconds = self._verified(cls, src["seq"], src["prepared"], indices, result.accept_threshold, src["reused"])
            from_search += sum(1 for i in kept if i in src["reused"])
            gen_seconds, renders = gen_seconds + seconds, renders + n
            counts[cls.id] = len(kept)
            if len(kept) < len(indices):
                short[cls.id] = len(indices) - len(kept)
            for i, (pick, seed, image, score, attempt) in kept.items():
                enc = src["full"].translate(pick.encoding, src["grammar"]) if pick.encoding is not None else None
                meta = {
                    "class_index": cls.index, "class_id": cls.id, "wnid": cls.wnid, "class_name": cls.name,
                    "class_prompt": cls.prompt, "encoding": list(enc) if enc is not None else None, "prompt": pick.prompt,
                    "seed": seed, "reward": round(pick.reward, 6), "state_score": round(pick.score, 6),
                    "score": round(score, 6) if self.verify or i in src["reused"] else None, "attempt": attempt,
                    "from_search": i in src["reused"],
                    "model_id": self.stack.generator.model_id, "search": result.method, "pipeline_version": pipeline.__version__,
                }
                made[(k, i)] = {
                    "__key__": f"{cls.id}_{i:06d}",
                    self.image_format: image if isinstance(image, bytes) else encode_image(image, self.image_format, self.quality),
                    "cls": str(cls.index).encode(),
                    "json": json.dumps(meta, sort_keys=True).encode(),
                }
        samples = [made[(int(k), int(i))] for k, i in unit.members if (int(k), int(i)) in made]
        record = write_shard(self.storage, unit.shard, samples, [c.id for c in unit.classes], missing=unit.count - len(samples),
                             class_counts={c: n for c, n in counts.items() if n}, missing_by_class=short)
        self.manifest.add(record)
        return {
            "record": record.to_dict(), "images": len(samples), "missing": record.missing, "renders": renders,
            "from_search": from_search,
            "seconds": time.perf_counter() - t0, "gen_seconds": gen_seconds, "worker": self.worker_id,
        }
