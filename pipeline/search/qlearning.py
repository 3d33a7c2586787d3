"""RLDF's agent: tabular Q-learning with ε-greedy exploration on the encoding grid (Watkins, 1989)."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from pipeline.errors import ConfigError
from pipeline.grammar import Encoding
from pipeline.search.lookahead import Lookahead
from pipeline.search.result import SearchProblem, SearchResult
from pipeline.seeding import rng_for


@dataclass
class _Agent:
    """One running episode: its index, state, steps taken, whether it has reached the accepted region, its ε."""

    episode: int
    state: Encoding
    t: int
    inside: bool
    epsilon: float


class QLearning:
    """ε-greedy tabular Q-learning. ε decays per episode: ε_e = max(ε_end, ε_start · decay^e).

    The agent's reward is the env's reward plus a count-based novelty bonus inside the class-consistent
    region, so that once it has the class it keeps walking the other axes instead of settling on a copy::

        r'(s) = r(s) + κ · c(s) · mean_{a ∉ class} 1 / sqrt(1 + N_a(s_a))

    with ``c(s)`` the state's class-consistency score and ``N_a(v)`` the number of steps so far that
    landed on an accepted state with value ``v`` on axis ``a`` (κ = ``novelty``; 0 gives plain RLDF).
    Every state the agent renders is a candidate for the dataset.

    Stops after ``episodes``, after ``patience`` episodes without a new best reward, or once the env's
    render budget is spent. Renders are cached, so revisiting a state costs nothing: the budget measures
    distinct states seen. ``restart_from_accepted`` is the probability that an episode starts at a random
    accepted state found so far (the best state while none is accepted) instead of the start state.
    With ``leave_ends_episode``, an episode that has reached an accepted state ends when it steps out of
    the accepted region (a terminal with that step's low reward), so an excursion costs one render
    instead of a walk through another class's states.

    ``parallel_episodes`` agents run their episodes in lockstep on one shared Q-table (like vectorised
    environments), so each step renders up to that many states in one generator batch: what keeps a
    GPU busy. A slot whose episode ends starts the next episode at once instead of waiting for the others
    (each episode keeps its own ε and step count). With 1 it is the textbook sequential algorithm.
    """

    name = "qlearning"

    def __init__(
        self,
        *,
        episodes: int,
        alpha: float,
        gamma: float,
        epsilon_start: float,
        epsilon_end: float,
        epsilon_decay: float,
        q_init: float,
        restart_from_accepted: float,
        novelty: float,
        patience: int | None,
        parallel_episodes: int,
        leave_ends_episode: bool,
    ) -> None:
        for key, value in (("alpha", alpha), ("gamma", gamma), ("epsilon_start", epsilon_start), ("epsilon_end", epsilon_end),
                           ("restart_from_accepted", restart_from_accepted)):
            if not 0 <= value <= 1:
                raise ConfigError(f"search.{key} must be in [0, 1], got {value}")
        if episodes < 1:
            raise ConfigError(f"search.episodes must be >= 1, got {episodes}")
        if novelty < 0:
            raise ConfigError(f"search.novelty must be >= 0, got {novelty}")
        if parallel_episodes < 1:
            raise ConfigError(f"search.parallel_episodes must be >= 1, got {parallel_episodes}")
        self.episodes, self.alpha, self.gamma = int(episodes), float(alpha), float(gamma)
        self.epsilon_start, self.epsilon_end, self.epsilon_decay = epsilon_start, epsilon_end, epsilon_decay
        self.q_init, self.restart_from_accepted, self.novelty = float(q_init), float(restart_from_accepted), float(novelty)
        self.patience, self.parallel = patience, int(parallel_episodes)
        self.leave_ends_episode = bool(leave_ends_episode)

    def run(self, problem: SearchProblem) -> SearchResult:
        env = problem.env
        walk = _Walk(self, env, rng_for("qlearning", problem.seed))
        stepping: list[tuple[_Agent, int]] = []  # the episodes and actions of the step being rendered
        env.set_lookahead(Lookahead(walk, stepping))  # renders ahead in a call's free slots (pipeline/search/lookahead.py)
        walk.begin()
        while walk.agents:
            stepping[:] = zip(walk.agents, walk.choose())
            outcomes = env.step_many([ag.state for ag, _ in stepping], [a for _, a in stepping], [ag.t for ag, _ in stepping])
            walk.learn(stepping, [(s2, r, done, env.accepted(s2), env.visit(s2).score) for s2, r, done in outcomes])
            if env.exhausted:
                break
            walk.refill()
        path = [walk.best_state]
        while walk.parent[path[-1]] is not None:
            path.append(walk.parent[path[-1]])
        return SearchResult.from_env(self.name, env, path[::-1], episodes=walk.started, q_states=len(walk.Q))


class _Walk:
    """A Q-learning search's state between steps (Q-table, random stream, running episodes, what it found), and its
    step in three parts: :meth:`choose` the actions, :meth:`learn` from their outcomes, :meth:`refill` the freed
    slots. (:class:`~pipeline.search.lookahead.Lookahead` runs the same three on a copy to guess the next steps.)"""

    def __init__(self, q: QLearning, env, rng: np.random.Generator) -> None:
        self.q, self.env, self.rng = q, env, rng
        grammar = env.grammar
        self.Q: dict[Encoding, np.ndarray] = defaultdict(self._fresh_row)
        self.free_axes = [i for i, a in enumerate(grammar.axes) if a.name != grammar.class_axis and len(a) > 1]
        self.class_pos = grammar.axis_index(grammar.class_axis) if grammar.class_axis else None
        self.visits = [np.zeros(k) for k in grammar.shape]  # N_a(v): steps onto accepted states, per axis value
        self.accepted: list[Encoding] = []
        self.parent: dict[Encoding, Encoding | None] = {env.start: None}  # first discovery, for the best path
        self.best_state, self.best_reward, self.best_episode, self.started = env.start, -np.inf, 0, 0
        self.agents: list[_Agent] = []  # the episodes running now, one per slot

    def begin(self) -> None:
        """Render the start state (it is a candidate too) and start the first episodes."""
        self.env.reward_of([self.env.start])
        if self.env.accepted(self.env.start):
            self.accepted.append(self.env.start)
        self.refill()

    def _fresh_row(self) -> np.ndarray:
        return np.full(self.env.n_actions, self.q.q_init)

    def bonus(self, score: float, s: Encoding) -> float:
        if not self.q.novelty or not self.free_axes:
            return 0.0
        if np.isnan(score):  # no class-consistency term: there is no class region to explore inside
            return 0.0
        return self.q.novelty * score * float(np.mean([1 / np.sqrt(1 + self.visits[a][s[a]]) for a in self.free_axes]))

    def choose(self) -> list[int]:
        """Each running episode's action: ε-greedy over the moves that change its state, ties broken at random."""
        actions = []
        for ag in self.agents:
            valid = np.array(self.env.actions(ag.state) or range(self.env.n_actions))
            if self.rng.random() < ag.epsilon:
                actions.append(int(self.rng.choice(valid)))
            else:
                q = self.Q[ag.state][valid]
                actions.append(int(self.rng.choice(valid[q == q.max()])))
        return actions

    def learn(self, stepping: Sequence[tuple[_Agent, int]], outcomes: Sequence[tuple[Encoding, float, bool, bool, float]]) -> None:
        """The Q-updates of one step: ``outcomes[i]`` = (next state, reward, done, next state accepted, its score)."""
        q, running = self.q, []
        for (ag, a), (s2, r, done, accepted, score) in zip(stepping, outcomes):
            s = ag.state
            if q.leave_ends_episode and ag.inside and not accepted:
                done = True  # stepped out of the class-consistent region: a terminal, like a cliff
            ag.inside = ag.inside or accepted
            r_agent = r + self.bonus(score, s2)
            if accepted:
                for ax in self.free_axes:
                    self.visits[ax][s2[ax]] += 1
            target = r_agent if done else r_agent + q.gamma * self.Q[s2].max()
            self.Q[s][a] += q.alpha * (target - self.Q[s][a])  # Q(s,a) ← Q(s,a) + α [r + γ max_a' Q(s',a') − Q(s,a)]
            if s2 not in self.parent:
                self.parent[s2] = s
                if accepted:
                    self.accepted.append(s2)
            if r > self.best_reward:
                self.best_state, self.best_reward, self.best_episode = s2, r, ag.episode
            ag.state, ag.t = s2, ag.t + 1
            if not done:
                running.append(ag)
        self.agents = running

    def refill(self) -> None:
        """Start episodes in the free slots (a slot whose episode ended starts the next one at once)."""
        q = self.q
        while len(self.agents) < q.parallel:
            patient = q.patience is None or self.started - 1 - self.best_episode < q.patience
            if not (self.started < q.episodes and patient and not self.env.exhausted):
                return
            e, self.started = self.started, self.started + 1
            # exploring starts (our choice): often resume inside the accepted region
            if e > 0 and self.rng.random() < q.restart_from_accepted:
                s = self.accepted[int(self.rng.integers(len(self.accepted)))] if self.accepted else self.best_state
            else:
                s = self.env.start
            self.agents.append(_Agent(e, s, 0, self.env.accepted(s), max(q.epsilon_end, q.epsilon_start * q.epsilon_decay**e)))
