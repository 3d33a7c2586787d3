"""Cost estimates for ``--dry-run``: renders a search may spend and the GPU-hours of a plan."""

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


def plan_report(plan: ClonePlan, search_renders: int, throughput: float, workers: int, source: str,
                inputs_read: int = 1) -> dict[str, Any]:
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
    }
