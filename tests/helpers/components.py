"""Components as conf/ builds them, and a generator wrapper that records what it was asked to render."""

from __future__ import annotations

from pipeline.compose import component, env_settings, group_settings
from pipeline.env import GridEnv

#: Reward 1's settings as conf/reward/pixel_stats.yaml gives them (rewards built by hand use conf's values)
SEGMENTATION = group_settings("reward", "pixel_stats")["segmentation"]


def grid_env(grammar, evaluator, start=(0, 0, 0, 0, 0), goal=None, **overrides) -> GridEnv:
    """The MDP under conf/'s env settings, with ``overrides`` (e.g. ``mode="reward_only", budget=None``)."""
    return GridEnv.from_settings(grammar, evaluator, start, goal, env_settings(**overrides))


def make_search(option: str, **params):
    """``search=<option>`` as conf/ builds it, with ``params`` replacing its values."""
    return component("search", option, **params)


class CountingGenerator:
    """Wraps a generator and records every (prompt, seed) it is asked to render, and each batch's size."""

    def __init__(self, inner) -> None:
        self.inner, self.model_id, self.calls, self.batches = inner, inner.model_id, [], []

    def generate(self, prompts, seeds):
        self.calls.extend(zip(prompts, seeds))
        self.batches.append(len(prompts))
        return self.inner.generate(prompts, seeds)
