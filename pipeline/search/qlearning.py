"""RLDF's agent: tabular Q-learning with ε-greedy exploration on the encoding grid (Watkins, 1989)."""

from __future__ import annotations

import copy
from collections import defaultdict
from dataclasses import dataclass
from typing import Iterator

import numpy as np

from pipeline.errors import ConfigError
from pipeline.grammar import Encoding
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
        env, rng = problem.env, rng_for("qlearning", problem.seed)
        grammar = env.grammar
        Q: dict[Encoding, np.ndarray] = defaultdict(lambda: np.full(env.n_actions, self.q_init))
        free_axes = [i for i, a in enumerate(grammar.axes) if a.name != grammar.class_axis and len(a) > 1]
        visits = [np.zeros(k) for k in grammar.shape]  # N_a(v): steps onto accepted states, per axis value
        accepted: list[Encoding] = []

        def bonus(s: Encoding) -> float:
            if not self.novelty or not free_axes:
                return 0.0
            v = env.visit(s)
            if np.isnan(v.score):  # no class-consistency term: there is no class region to explore inside
                return 0.0
            return self.novelty * v.score * float(np.mean([1 / np.sqrt(1 + visits[a][s[a]]) for a in free_axes]))

        stepping: list[tuple[_Agent, int]] = []  # the episodes and actions of the step being rendered

        def lookahead() -> Iterator[Encoding]:
            """The states the next step will likely render, likeliest first (env.set_lookahead; read-only): first
            each episode's next state as this search's random stream would draw it if no episode ends (the draw
            reads ε and the Q-row of the state being rendered, which this step's updates leave alone unless another
            episode stands on it), then the other greedy moves, then the rest. Before the first step: the start's
            neighbours."""
            if not stepping:
                yield from (env.move(env.start, a) for a in env.actions(env.start))
                return
            sim, later = copy.deepcopy(rng), []
            for ag, a in stepping:
                if ag.t + 1 >= env.horizon:  # the episode ends at this step's state
                    continue
                s2 = env.move(ag.state, a)
                valid = np.array(env.actions(s2) or range(env.n_actions))
                q = Q.get(s2)
                greedy = valid if q is None else valid[q[valid] == q[valid].max()]
                explore = sim.random() < ag.epsilon
                pick = int(sim.choice(valid if explore else greedy))
                yield env.move(s2, pick)
                later.append((s2, [int(x) for x in greedy if x != pick], [int(x) for x in valid if x != pick and x not in greedy]))
            for s2, others, _ in later:
                yield from (env.move(s2, x) for x in others)
            for s2, _, rest in later:
                yield from (env.move(s2, x) for x in rest)

        env.set_lookahead(lookahead)
        env.reward_of([env.start])  # the start state is rendered too
        parent: dict[Encoding, Encoding | None] = {env.start: None}  # first discovery, for the best path
        if env.accepted(env.start):
            accepted.append(env.start)
        best_state, best_reward, best_episode, started = env.start, -np.inf, 0, 0
        agents: list[_Agent] = []  # the episodes running now, one per slot

        def launch() -> None:  # exploring starts (our choice): often resume inside the accepted region
            nonlocal started
            e, started = started, started + 1
            if e > 0 and rng.random() < self.restart_from_accepted:
                s = accepted[int(rng.integers(len(accepted)))] if accepted else best_state
            else:
                s = env.start
            agents.append(_Agent(e, s, 0, env.accepted(s), max(self.epsilon_end, self.epsilon_start * self.epsilon_decay**e)))

        def may_launch() -> bool:
            patient = self.patience is None or started - 1 - best_episode < self.patience
            return started < self.episodes and patient and not env.exhausted

        while len(agents) < self.parallel and may_launch():
            launch()
        while agents:
            actions = []
            for ag in agents:
                valid = np.array(env.actions(ag.state) or range(env.n_actions))  # moves that change the state
                if rng.random() < ag.epsilon:
                    actions.append(int(rng.choice(valid)))
                else:  # greedy, ties broken at random
                    q = Q[ag.state][valid]
                    actions.append(int(rng.choice(valid[q == q.max()])))
            stepping[:] = zip(agents, actions)
            outcomes = env.step_many([ag.state for ag in agents], actions, [ag.t for ag in agents])
            running = []
            for ag, a, (s2, r, done) in zip(agents, actions, outcomes):
                s = ag.state
                if self.leave_ends_episode and ag.inside and not env.accepted(s2):
                    done = True  # stepped out of the class-consistent region: a terminal, like a cliff
                ag.inside = ag.inside or env.accepted(s2)
                r_agent = r + bonus(s2)
                if env.accepted(s2):
                    for ax in free_axes:
                        visits[ax][s2[ax]] += 1
                target = r_agent if done else r_agent + self.gamma * Q[s2].max()
                Q[s][a] += self.alpha * (target - Q[s][a])  # Q(s,a) ← Q(s,a) + α [r + γ max_a' Q(s',a') − Q(s,a)]
                if s2 not in parent:
                    parent[s2] = s
                    if env.accepted(s2):
                        accepted.append(s2)
                if r > best_reward:
                    best_state, best_reward, best_episode = s2, r, ag.episode
                ag.state, ag.t = s2, ag.t + 1
                if not done:
                    running.append(ag)
            if env.exhausted:
                break
            agents = running
            while len(agents) < self.parallel and may_launch():  # a slot whose episode ended starts the next one
                launch()
        path = [best_state]
        while parent[path[-1]] is not None:
            path.append(parent[path[-1]])
        return SearchResult.from_env(self.name, env, path[::-1], episodes=started, q_states=len(Q))
