"""The RLDF Markov decision process: a walk on the grammar's encoding grid, rewarded by rendered images.

States are encodings; action ``2k`` steps axis ``k`` down by one and ``2k + 1`` steps it up (clipped at
the borders), as in the paper's n-dimensional gridworld. A state is rendered through a
:class:`~pipeline.generators.Generator` at a fixed set of seeds and scored against the input image;
:class:`StateEvaluator` renders every (prompt, seed) at most once and counts renders, because on a
cluster each render is a diffusion call.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Sequence

import numpy as np
from PIL import Image

from pipeline.errors import ConfigError
from pipeline.generators.base import Generator
from pipeline.grammar import Encoding, Grammar
from pipeline.rewards import Reward


class RewardMode(str, Enum):
    """``reward_only``: the agent sees only image rewards. ``goal``: it also knows the goal encoding."""

    REWARD_ONLY = "reward_only"
    GOAL = "goal"


@dataclass
class Evaluation:
    prompt: str
    reward: float  # mean image reward over the state's seeds
    images: list[Image.Image] = field(default_factory=list)


class StateEvaluator:
    """Renders prompts at ``seeds`` in batches, scores them, and caches by (prompt, seed)."""

    def __init__(
        self,
        generator: Generator,
        reward: Reward,
        target: Image.Image,
        seeds: Sequence[int],
        batch_size: int = 16,
        keep_images: bool = True,
    ) -> None:
        if not seeds:
            raise ConfigError("env.seeds_per_state must be >= 1")
        if batch_size < 1:
            raise ConfigError(f"env.batch_size must be >= 1, got {batch_size}")
        self.generator, self.reward = generator, reward
        self.prepared: Any = reward.prepare(target)
        self.seeds = [int(s) for s in seeds]
        self.batch_size = batch_size
        self.keep_images = keep_images
        self._cache: dict[tuple[str, int], tuple[float, Image.Image | None]] = {}
        self.renders = 0
        #: (renders so far, prompt, reward) each time a prompt is first fully evaluated
        self.trace: list[tuple[int, str, float]] = []

    def evaluate(self, prompts: Sequence[str]) -> list[Evaluation]:
        """Mean reward of each prompt over the seeds; only unseen (prompt, seed) pairs are rendered."""
        todo = list(dict.fromkeys((p, s) for p in prompts for s in self.seeds if (p, s) not in self._cache))
        new_prompts = list(dict.fromkeys(p for p, _ in todo))
        for i in range(0, len(todo), self.batch_size):
            chunk = todo[i : i + self.batch_size]
            images = self.generator.generate([p for p, _ in chunk], [s for _, s in chunk])
            scores = self.reward.score(images, self.prepared)
            for key, img, r in zip(chunk, images, scores):
                self._cache[key] = (float(r), img if self.keep_images else None)
            self.renders += len(chunk)
        out = []
        for p in prompts:
            entries = [self._cache[(p, s)] for s in self.seeds]
            out.append(Evaluation(p, float(np.mean([e[0] for e in entries])), [e[1] for e in entries if e[1] is not None]))
        for p in new_prompts:
            self.trace.append((self.renders, p, next(e.reward for e in out if e.prompt == p)))
        return out

    def is_cached(self, prompt: str) -> bool:
        return all((prompt, s) in self._cache for s in self.seeds)

    def images(self, prompt: str) -> list[Image.Image]:
        """The kept renders of an evaluated prompt (empty if images are not kept)."""
        return [img for s in self.seeds if (img := self._cache.get((prompt, s), (0, None))[1]) is not None]


class GridEnv:
    """The MDP. ``reward_of`` adds, in goal mode, a term for closeness to the goal encoding::

        r(s) = (r_img(s) + β · (1 - ‖s - g‖₁ / ‖shape - 1‖₁)) / (1 + β)        (β = goal_weight)

    Episodes end after ``horizon`` steps, when the image reward reaches ``reward_threshold``, or (goal
    mode) at the goal.
    """

    def __init__(
        self,
        grammar: Grammar,
        evaluator: StateEvaluator,
        start: Encoding,
        goal: Encoding | None = None,
        mode: RewardMode | str = RewardMode.REWARD_ONLY,
        goal_weight: float = 1.0,
        horizon: int = 30,
        reward_threshold: float | None = None,
    ) -> None:
        try:
            self.mode = RewardMode(mode)
        except ValueError:
            raise ConfigError(f"env.mode must be 'reward_only' or 'goal', got '{mode}'") from None
        if self.mode is RewardMode.GOAL and goal is None:
            raise ConfigError("env.mode=goal needs a goal encoding (from the semantic encoder)")
        if horizon < 1:
            raise ConfigError(f"env.horizon must be >= 1, got {horizon}")
        self.grammar, self.evaluator = grammar, evaluator
        self.start = grammar.check(start)
        self.goal = grammar.check(goal) if goal is not None else None
        self.goal_weight = float(goal_weight)
        self.horizon = int(horizon)
        self.reward_threshold = reward_threshold
        self.n_actions = 2 * len(grammar.axes)
        self._span = max(1, sum(k - 1 for k in grammar.shape))

    def move(self, state: Encoding, action: int) -> Encoding:
        axis, up = divmod(int(action), 2)
        s = list(state)
        s[axis] = min(max(s[axis] + (1 if up else -1), 0), self.grammar.shape[axis] - 1)
        return tuple(s)

    def image_rewards(self, states: Sequence[Encoding]) -> np.ndarray:
        evals = self.evaluator.evaluate([self.grammar.decode(s) for s in states])
        return np.array([e.reward for e in evals], dtype=np.float64)

    def reward_of(self, states: Sequence[Encoding]) -> np.ndarray:
        r = self.image_rewards(states)
        if self.mode is RewardMode.GOAL:
            closeness = np.array([1 - sum(abs(a - b) for a, b in zip(s, self.goal)) / self._span for s in states])
            r = (r + self.goal_weight * closeness) / (1 + self.goal_weight)
        return r

    def is_done(self, state: Encoding, t: int) -> bool:
        """Whether an episode that reached ``state`` at step ``t`` (0-based) ends there."""
        if t + 1 >= self.horizon:
            return True
        if self.mode is RewardMode.GOAL and state == self.goal:
            return True
        return self.reward_threshold is not None and self.image_rewards([state])[0] >= self.reward_threshold

    def step_many(self, states: Sequence[Encoding], actions: Sequence[int], t: int) -> list[tuple[Encoding, float, bool]]:
        """One step of several episodes at once: their next states are rendered in one batch."""
        nxt = [self.move(s, a) for s, a in zip(states, actions)]
        rewards = self.reward_of(nxt)
        return [(n, float(r), self.is_done(n, t)) for n, r in zip(nxt, rewards)]

    def step(self, state: Encoding, action: int, t: int) -> tuple[Encoding, float, bool]:
        """Take ``action`` at step ``t`` of an episode: (next state, reward, episode done)."""
        return self.step_many([state], [action], t)[0]
