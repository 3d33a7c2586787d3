"""Types and ranges of the clone's settings, checked once when the config is composed, before anything starts.

A wrong value (``clone.shard_size=abc``, ``cluster.max_in_flight=0``) ends the run in one line naming the
key, instead of failing inside a worker after Ray has started. The defaults stay in ``conf/``; this table
only says what a value may be.
"""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig, OmegaConf

from pipeline.clone.plan import SHARD_ORDERS
from pipeline.clone.shards import VERIFY_MODES
from pipeline.errors import ConfigError

# key -> (kind, lower bound or None, upper bound or None, may be null)
INT, NUMBER, BOOL = "an integer", "a number", "true or false"
RULES: dict[str, tuple[str, float | None, float | None, bool]] = {
    "seed": (INT, None, None, False),
    "clone.images_per_class": (INT, 1, None, False),
    "clone.shard_size": (INT, 1, None, False),
    "clone.image_quality": (INT, 1, 100, False),
    "clone.verify_images": (BOOL, None, None, False),
    "clone.reuse_search_renders": (BOOL, None, None, False),
    "clone.max_tries": (INT, 1, None, False),
    "clone.batch_size": (INT, 1, None, False),
    "clone.max_attempts": (INT, 1, None, False),
    "clone.progress": (BOOL, None, None, False),
    "clone.dry_run": (BOOL, None, None, False),
    "clone.throughput": (NUMBER, 0, None, True),
    "clone.warmup_images": (INT, 1, None, False),
    "cluster.num_cpus": (INT, 1, None, True),
    "cluster.num_workers": (INT, 1, None, True),
    "cluster.cpus_per_worker": (NUMBER, 0, None, False),
    "cluster.gpus_per_worker": (NUMBER, 0, None, False),
    "cluster.threads_per_worker": (INT, 1, None, True),
    "cluster.max_in_flight": (INT, 1, None, False),
    "cluster.max_worker_restarts": (INT, 0, None, False),
    "cluster.worker_start_timeout_s": (NUMBER, 0, None, False),
    "cluster.stop_grace_s": (NUMBER, 0, None, False),
    "cluster.connect_timeout_s": (NUMBER, 0, None, False),
    "env.budget": (INT, 1, None, True),
    "env.horizon": (INT, 1, None, False),
    "env.accept_threshold": (NUMBER, 0, 1, False),
    "env.seeds_per_state": (INT, 1, None, False),
    "env.batch_size": (INT, 1, None, False),
    "env.goal_weight": (NUMBER, 0, None, False),
    "env.class_candidates": (INT, 1, None, True),
}
# key -> the values it may take
CHOICES: dict[str, tuple[str, ...]] = {
    "clone.verify": VERIFY_MODES,
    "clone.shard_order": SHARD_ORDERS,
}


def _ok(kind: str, value: Any) -> bool:
    if kind == BOOL:
        return isinstance(value, bool)
    if isinstance(value, bool):
        return False
    return isinstance(value, int) if kind == INT else isinstance(value, (int, float))


def check_clone_config(cfg: DictConfig) -> None:
    """Raise :class:`ConfigError` on the first setting of the wrong type or out of range."""
    for key, (kind, low, high, nullable) in RULES.items():
        value = OmegaConf.select(cfg, key, default=None, throw_on_missing=False)
        if value is None:
            if nullable or OmegaConf.select(cfg, key, default="<absent>") == "<absent>":
                continue
            raise ConfigError(f"{key} must be {kind}, got null")
        if not _ok(kind, value):
            raise ConfigError(f"{key} must be {kind}, got {value!r}")
        if (low is not None and value < low) or (high is not None and value > high):
            bounds = f">= {low:g}" if high is None else f"in [{low:g}, {high:g}]"
            raise ConfigError(f"{key} must be {bounds}, got {value!r}")
    for key, allowed in CHOICES.items():
        value = OmegaConf.select(cfg, key, default=None, throw_on_missing=False)
        if value is not None and value not in allowed:
            raise ConfigError(f"{key} must be one of {', '.join(allowed)}, got {value!r}")
