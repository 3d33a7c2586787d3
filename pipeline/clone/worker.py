"""A clone worker: holds one generator and its encoders for its whole life and runs units.

On a cluster each worker is a Ray actor with one GPU; locally, one CPU slot. Every output a unit
writes (a search result, a shard and its manifest record) is committed atomically and derives only
from (run seed, class, index), so redoing a unit after a crash rewrites identical bytes.
"""

from __future__ import annotations

import io
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
from pipeline.clone.manifest import Manifest
from pipeline.clone.plan import SearchUnit, ShardUnit
from pipeline.clone.shards import write_shard
from pipeline.errors import ConfigError
from pipeline.search.result import SearchProblem, SearchResult
from pipeline.seeding import derive_seed
from pipeline.storage import Storage

FORMATS = {"png": "PNG", "jpg": "JPEG", "webp": "WEBP"}


def search_path(cls: ClassInfo) -> str:
    return f"searches/{cls.id}.json"


def encode_image(image: Image.Image, fmt: str, quality: int) -> bytes:
    buf = io.BytesIO()
    if fmt == "png":
        image.save(buf, format="PNG")
    else:
        image.save(buf, format=FORMATS[fmt], quality=int(quality))
    return buf.getvalue()


class CloneWorker:
    def __init__(self, cfg: dict[str, Any], worker_id: int = 0) -> None:
        threads = cfg.get("cluster", {}).get("threads_per_worker")
        if threads:
            import torch

            torch.set_num_threads(int(threads))
        self.cfg = OmegaConf.create(cfg)
        self.worker_id = worker_id
        self.dataset = instantiate(self.cfg.dataset)
        self.stack = build_stack(self.cfg, class_names=[c.name for c in self.dataset.all_classes()])
        self.storage = Storage(self.cfg.paths.output_dir)
        self.manifest = Manifest(self.storage)
        c = self.cfg.clone
        self.seed, self.images_per_class = int(self.cfg.seed), int(c.images_per_class)
        self.image_format, self.quality = str(c.image_format), int(c.image_quality)
        self.margin, self.batch_size = float(c.candidate_margin), int(c.batch_size)
        self.keep_class = bool(c.keep_class_axis)
        if self.image_format not in FORMATS:
            raise ConfigError(f"clone.image_format must be one of {list(FORMATS)}, got '{self.image_format}'")

    def ping(self) -> dict[str, Any]:
        return {"worker": self.worker_id, "pid": os.getpid(), "model_id": self.stack.generator.model_id}

    # ------------------------------------------------------------------ units
    def search(self, unit: SearchUnit) -> dict[str, Any]:
        """Run the configured search from the class's input image; persist the result."""
        t0 = time.perf_counter()
        cls = unit.cls
        target = self.dataset.input_image(cls)
        seed = derive_seed(self.seed, "search", cls.id)
        env = make_env(self.stack, target, seed)
        result = self.stack.search.run(SearchProblem(env, seed=seed, class_name=cls.name))
        result.info.update(class_id=cls.id, class_name=cls.name, model_id=self.stack.generator.model_id)
        self.storage.write_bytes(search_path(cls), json.dumps(result.to_dict()).encode())
        return {"renders": result.renders, "best_reward": result.best.reward, "seconds": time.perf_counter() - t0}

    def generate(self, unit: ShardUnit) -> dict[str, Any]:
        """Render one shard's samples from the class's persisted search result and commit the shard."""
        t0 = time.perf_counter()
        cls = unit.cls
        result = SearchResult.from_dict(json.loads(self.storage.read_bytes(search_path(cls))))
        grammar = self.stack.grammar
        keep = [grammar.axis_index(grammar.class_axis)] if self.keep_class and grammar.class_axis else []
        picks = result.sample(self.images_per_class, seed=derive_seed(self.seed, "pick", cls.id), margin=self.margin, keep_axes=keep)
        indices = list(range(unit.start, unit.start + unit.count))
        seeds = [derive_seed(self.seed, "sample", cls.id, i) for i in indices]
        images, gen_seconds = [], 0.0
        for b in range(0, len(indices), self.batch_size):
            chunk = indices[b : b + self.batch_size]
            g0 = time.perf_counter()
            images += self.stack.generator.generate([picks[i].prompt for i in chunk], seeds[b : b + len(chunk)])
            gen_seconds += time.perf_counter() - g0
        samples = []
        for i, seed, image in zip(indices, seeds, images):
            pick = picks[i]
            meta = {
                "class_index": cls.index, "class_id": cls.id, "wnid": cls.wnid, "class_name": cls.name,
                "encoding": list(pick.encoding) if pick.encoding is not None else None, "prompt": pick.prompt,
                "seed": seed, "reward": round(pick.reward, 6), "model_id": self.stack.generator.model_id,
                "search": result.method, "pipeline_version": pipeline.__version__,
            }
            samples.append({
                "__key__": f"{cls.id}_{i:06d}",
                self.image_format: encode_image(image, self.image_format, self.quality),
                "cls": str(cls.index).encode(),
                "json": json.dumps(meta, sort_keys=True).encode(),
            })
        record = write_shard(self.storage, unit.shard, samples, [cls.id])
        self.manifest.add(record)
        return {
            "record": record.to_dict(), "images": len(samples), "seconds": time.perf_counter() - t0,
            "gen_seconds": gen_seconds, "worker": self.worker_id,
        }
