"""Cost estimates for ``--dry-run``: renders a search may spend, the GPU-hours of a plan, and what its workers need
besides their GPU (CPUs, host memory for the renders they hold, disk)."""

from __future__ import annotations

import itertools
import time
from typing import Any, Mapping

from pipeline.clone.plan import ClonePlan
from pipeline.generators.base import Generator
from pipeline.grammar import Grammar
from pipeline.torch_device import describe_device
from pipeline.search import (
    ClassNamePrompt, ClassNameRandomAttributes, Exhaustive, GoalEncoding, NoisyGradient, QLearning, RandomSearch,
)


def search_render_bound(search: Any, env_cfg: Mapping[str, Any], grammar: Grammar) -> int:
    """An upper bound on one search's renders: the env's budget (plus the last step's overshoot of at most
    one batch), or what the search can render at most; cached revisits cost nothing."""
    per_state = int(env_cfg.seeds_per_state)
    if isinstance(search, QLearning):
        bound = min(search.episodes * int(env_cfg.horizon) + 1, grammar.size) * per_state
    elif isinstance(search, NoisyGradient):
        bound = min(search.steps * search.samples_per_step + 2, grammar.size) * per_state
    elif isinstance(search, (RandomSearch, ClassNameRandomAttributes, Exhaustive)):
        bound = grammar.size * per_state
    elif isinstance(search, (ClassNamePrompt, GoalEncoding)):
        return per_state
    else:
        return 0
    cap = env_cfg.budget
    return min(bound, int(cap) + int(env_cfg.batch_size)) if cap else bound


def measure_throughput(generator: Generator, grammar: Grammar, images: int, batch_size: int) -> tuple[float, str]:
    """Images/s of ``generator`` on this machine at the run's batch profile (calls of ``batch_size`` images, or of
    the generator's fixed call size), over states of ``grammar``, after one untimed warm-up call; and a line
    saying so."""
    batch = int(getattr(generator, "call_size", None) or batch_size)
    prompts = [grammar.decode(e) for e in itertools.islice(grammar.grid(), batch)]
    images = max(int(images), batch)
    generator.generate([prompts[i % len(prompts)] for i in range(batch)], list(range(batch)))
    t0 = time.perf_counter()
    done = 0
    while done < images:
        n = min(batch, images - done)
        generator.generate([prompts[(done + i) % len(prompts)] for i in range(n)], list(range(1000 + done, 1000 + done + n)))
        done += n
    device = getattr(generator, "device", None)
    where = describe_device(device, getattr(generator, "dtype", None))["device_name"] if device is not None else "cpu"
    return done / (time.perf_counter() - t0), f"measured here ({where}): {done} images in calls of {batch} after a warm-up call"


#: encoded size of a photograph-like image, in bits per pixel, by clone.image_format: assumptions, not measured here
#: (JPEG at quality 95 about 2.5, lossless PNG about 12, WebP at quality 95 about 1.5); the procedural worlds'
#: flat-coloured images compress far smaller
BITS_PER_PIXEL = {"jpg": 2.5, "png": 12.0, "webp": 1.5}


def image_pixels(model_cfg: Mapping[str, Any]) -> int:
    """Pixels of one render: the model's ``height`` x ``width``, or ``image_size`` squared (the procedural worlds)."""
    if model_cfg.get("height") and model_cfg.get("width"):
        return int(model_cfg["height"]) * int(model_cfg["width"])
    return int(model_cfg.get("image_size") or 512) ** 2


def resources(plan: ClonePlan, search_renders: int, pixels: int, image_format: str, workers: int, cpus_per_worker: float,
              gpus_per_worker: float, units_per_worker: int) -> dict[str, Any]:
    """What the plan's workers need besides their GPU: CPUs, host memory for the renders a worker's running searches
    hold (RGB, until each search ends, for clone.reuse_search_renders), and disk for the shards and the searches'
    reusable renders, at :data:`BITS_PER_PIXEL`."""
    per_image = pixels * BITS_PER_PIXEL[image_format] / 8
    shards = plan.total_images * per_image
    renders = search_renders * len(plan.classes) * per_image
    return {
        "workers": workers,
        "per_worker": {"gpus": gpus_per_worker, "cpus": cpus_per_worker,
                       "host_memory_gb_for_renders": round(min(units_per_worker, len(plan.classes)) * search_renders * pixels * 3 / 1e9, 1)},
        "cpus": workers * cpus_per_worker,
        "host_memory_gb_for_renders": round(workers * min(units_per_worker, len(plan.classes)) * search_renders * pixels * 3 / 1e9, 1),
        "disk_gb": {"shards": round(shards / 1e9, 1), "search_renders": round(renders / 1e9, 1),
                    "total": round((shards + renders) / 1e9, 1)},
        "disk_assumes": f"{BITS_PER_PIXEL[image_format]} bits per pixel ({image_format}, photographs), {pixels} pixels per image",
    }


def plan_report(plan: ClonePlan, search_renders: int, throughput: float, workers: int, source: str,
                inputs_read: int = 1, needs: dict[str, Any] | None = None) -> dict[str, Any]:
    """``inputs_read``: input images the semantic encoder reads per class (the class's, and with clone.propose=inputs
    its context's): one encoder pass each, no renders."""
    renders = plan.total_images + search_renders * len(plan.classes)
    hours = renders / throughput / 3600 if throughput > 0 else float("inf")
    return {
        "classes": len(plan.classes),
        "images_per_class": plan.images_per_class,
        "total_images": plan.total_images,
        "units": {"searches": len(plan.classes), "shards": plan.num_shards},
        "shards": plan.num_shards,
        "shard_order": plan.order,
        "search_renders_per_class_max": search_renders,
        "input_images_read_per_class": inputs_read,
        "input_images_read": inputs_read * len(plan.classes),
        "renders_total_max": renders,
        "throughput_images_per_s_per_worker": round(throughput, 3),
        "throughput_source": source,
        "device_hours_max": round(hours, 3),
        "wall_hours_max": round(hours / max(1, workers), 3),
        "workers": workers,
        **({"resources": needs} if needs is not None else {}),
    }
