"""Components composed from conf/ (:func:`pipeline.compose.load_config`, the one way a run builds them), and a
generator wrapper that records what it was asked to render."""

from __future__ import annotations

import dataclasses
import functools

from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import OmegaConf

from pipeline.compose import load_config
from pipeline.env import GridEnv

#: Reward 1's settings as conf/reward/pixel_stats.yaml gives them (rewards built from encoders use conf's values)
SEGMENTATION = OmegaConf.to_container(load_config("run_search", ["reward=pixel_stats"]).reward.segmentation)


def grid_env(grammar, evaluator, start=(0, 0, 0, 0, 0), goal=None, **overrides) -> GridEnv:
    """The MDP under conf/'s env settings (typed, as a search gets them), with ``overrides`` (e.g. ``mode="reward_only",
    budget=None``)."""
    return GridEnv.from_settings(grammar, evaluator, start, goal, dataclasses.replace(_env(), **overrides))


@functools.lru_cache(maxsize=1)
def _env():
    """conf/'s env settings, composed once (Hydra's compose is not thread-safe; tests build envs in threads)."""
    return OmegaConf.to_object(load_config("run_search").env)


def make_search(option: str, **params):
    """``search=<option>`` as conf/ composes it, with ``params`` as overrides; the constructor's own error is raised as is."""
    cfg = load_config("run_search", [f"search={option}", *(f"search.{k}={_value(v)}" for k, v in params.items())])
    try:
        return instantiate(cfg.search)
    except InstantiationException as e:
        raise (e.__cause__ or e) from None


def _value(v) -> str:
    return "null" if v is None else str(v).lower() if isinstance(v, bool) else str(v)


class CountingGenerator:
    """Wraps a generator and records every (prompt, seed) it is asked to render, and each batch's size."""

    def __init__(self, inner) -> None:
        self.inner, self.model_id, self.calls, self.batches = inner, inner.model_id, [], []

    def generate(self, prompts, seeds):
        self.calls.extend(zip(prompts, seeds))
        self.batches.append(len(prompts))
        return self.inner.generate(prompts, seeds)
