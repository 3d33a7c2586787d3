"""RLDF's agent: tabular Q-learning with ε-greedy exploration on the encoding grid (Watkins, 1989)."""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from pipeline.env import RewardMode
from pipeline.errors import ConfigError
from pipeline.grammar import Encoding
from pipeline.search.result import SearchProblem, SearchResult
from pipeline.seeding import rng_for


class QLearning:
    """ε-greedy tabular Q-learning. ε decays per episode: ε_e = max(ε_end, ε_start · decay^e).

    Stops after ``episodes``, after ``patience`` episodes without a new best reward, once
    ``max_renders`` renders are spent, or (goal mode, ``stop_at_goal``) when an episode reaches the goal.
    Renders are cached, so revisiting a state costs nothing: the budget measures distinct states seen.

    ``parallel_episodes`` agents run their episodes in lockstep on one shared Q-table (like vectorised
    environments), so each step renders up to that many states in one generator batch: what keeps a
    GPU busy. With 1 it is the textbook sequential algorithm.
    """

    name = "qlearning"

    def __init__(
        self,
        episodes: int = 200,
        alpha: float = 0.5,
        gamma: float = 0.9,
        epsilon_start: float = 1.0,
        epsilon_end: float = 0.05,
        epsilon_decay: float = 0.97,
        q_init: float = 0.0,
        restart_from_best: float = 0.0,
        patience: int | None = None,
        stop_at_goal: bool = True,
        max_renders: int | None = None,
        parallel_episodes: int = 1,
    ) -> None:
        for key, value in (("alpha", alpha), ("gamma", gamma), ("epsilon_start", epsilon_start), ("epsilon_end", epsilon_end)):
            if not 0 <= value <= 1:
                raise ConfigError(f"search.{key} must be in [0, 1], got {value}")
        if episodes < 1:
            raise ConfigError(f"search.episodes must be >= 1, got {episodes}")
        self.episodes, self.alpha, self.gamma = int(episodes), float(alpha), float(gamma)
        self.epsilon_start, self.epsilon_end, self.epsilon_decay = epsilon_start, epsilon_end, epsilon_decay
        if not 0 <= restart_from_best <= 1:
            raise ConfigError(f"search.restart_from_best must be in [0, 1], got {restart_from_best}")
        self.q_init, self.max_renders = float(q_init), max_renders
        self.restart_from_best = float(restart_from_best)
        self.patience, self.stop_at_goal = patience, bool(stop_at_goal)
        if parallel_episodes < 1:
            raise ConfigError(f"search.parallel_episodes must be >= 1, got {parallel_episodes}")
        self.parallel = int(parallel_episodes)

    def run(self, problem: SearchProblem) -> SearchResult:
        env, rng = problem.env, rng_for("qlearning", problem.seed)
        Q: dict[Encoding, np.ndarray] = defaultdict(lambda: np.full(env.n_actions, self.q_init))
        env.reward_of([env.start])  # the start state is rendered too
        parent: dict[Encoding, Encoding | None] = {env.start: None}  # first discovery, for the best path
        best_state, best_reward, best_episode, episode = env.start, -np.inf, 0, 0
        stop = False
        while episode < self.episodes and not stop:
            agents = list(range(episode, min(episode + self.parallel, self.episodes)))
            states = []
            for e in agents:  # exploring starts (our choice): often resume from the best state found so far
                states.append(best_state if e > 0 and rng.random() < self.restart_from_best else env.start)
            epsilon = {e: max(self.epsilon_end, self.epsilon_start * self.epsilon_decay**e) for e in agents}
            alive = list(range(len(agents)))
            for t in range(env.horizon):
                actions = []
                for i in alive:
                    if rng.random() < epsilon[agents[i]]:
                        actions.append(int(rng.integers(env.n_actions)))
                    else:  # greedy, ties broken at random
                        q = Q[states[i]]
                        actions.append(int(rng.choice(np.flatnonzero(q == q.max()))))
                outcomes = env.step_many([states[i] for i in alive], actions, t)
                still = []
                for i, a, (s2, r, done) in zip(alive, actions, outcomes):
                    s = states[i]
                    target = r if done else r + self.gamma * Q[s2].max()
                    Q[s][a] += self.alpha * (target - Q[s][a])  # Q(s,a) ← Q(s,a) + α [r + γ max_a' Q(s',a') − Q(s,a)]
                    parent.setdefault(s2, s)
                    if r > best_reward:
                        best_state, best_reward, best_episode = s2, r, agents[i]
                    states[i] = s2
                    if done and self.stop_at_goal and env.mode is RewardMode.GOAL and s2 == env.goal:
                        stop = True
                    if not done:
                        still.append(i)
                alive = still
                if not alive or self._spent(env):
                    break
            episode = agents[-1] + 1
            if self._spent(env) or (self.patience is not None and episode - 1 - best_episode >= self.patience):
                stop = True
        path = [best_state]
        while parent[path[-1]] is not None:
            path.append(parent[path[-1]])
        return SearchResult.from_env(self.name, env, path[::-1], episodes=episode, q_states=len(Q))

    def _spent(self, env) -> bool:
        return self.max_renders is not None and env.evaluator.renders >= self.max_renders
