"""Baselines to compare RLDF against.

* :class:`ClassNamePrompt` — prompt the class name; needs the class's text name.
* :class:`ClassNameRandomAttributes` — the class name with uniformly random non-class attributes (the
  strong text baseline of ImageNet-SD-style pipelines); needs the class name, RLDF does not.
* :class:`GoalEncoding` — render the semantic encoder's goal encoding of the input: zero search, a copy.
* :class:`RandomSearch` — uniformly random distinct encodings, the env's render budget.
* :class:`Exhaustive` — every encoding of the grid (the reference optimum).
"""

from __future__ import annotations

from typing import Iterable

from pipeline.env import GridEnv
from pipeline.errors import ConfigError
from pipeline.grammar import Encoding
from pipeline.search.result import SearchProblem, SearchResult
from pipeline.seeding import rng_for


def _states_in_budget(env: GridEnv, what: str) -> int:
    if env.budget is None:
        raise ConfigError(f"search={what} needs a render budget (env.budget)")
    return max(1, env.budget // env.seeds_per_state)


def _random_states(env: GridEnv, n: int, seed: int, fixed: dict[int, int] | None = None) -> list[Encoding]:
    """``n`` distinct uniformly random states (at most the grid, or the slice with ``fixed`` axes)."""
    fixed = fixed or {}
    shape = env.grammar.shape
    size = 1
    for i, k in enumerate(shape):
        size *= 1 if i in fixed else k
    rng = rng_for("random-search", seed)
    seen: set = set()
    states = []
    while len(states) < min(n, size):  # rejection sampling: the grid may be too large to enumerate
        s = tuple(fixed[i] if i in fixed else int(rng.integers(k)) for i, k in enumerate(shape))
        if s not in seen:
            seen.add(s)
            states.append(s)
    return states


def _observe_in_batches(env: GridEnv, states: Iterable[Encoding], batch: int) -> None:
    chunk: list[Encoding] = []
    for s in states:
        chunk.append(s)
        if len(chunk) == batch:
            env.observe(chunk)
            chunk = []
            if env.exhausted:
                return
    if chunk:
        env.observe(chunk)


class ClassNamePrompt:
    """No search: prompt the class name (``template`` with ``{name}``). Needs the class's text name."""

    name = "class_name"

    def __init__(self, *, template: str) -> None:
        if "{name}" not in template:
            raise ConfigError(f"search.template must contain '{{name}}', got '{template}'")
        self.template = template

    def run(self, problem: SearchProblem) -> SearchResult:
        if not problem.class_name:
            raise ConfigError("search=class_name needs the input's class name (pass class_name=...)")
        problem.env.observe_prompts([self.template.format(name=problem.class_name)])
        return SearchResult.from_env(self.name, problem.env)


class ClassNameRandomAttributes:
    """The class-axis choice named by the class name, every other axis uniformly random: the env's budget
    of distinct states of that class's slice of the grid. Needs the class name."""

    name = "class_name_random"

    def __init__(self, *, batch_states: int) -> None:
        self.batch_states = int(batch_states)

    def run(self, problem: SearchProblem) -> SearchResult:
        env, grammar = problem.env, problem.env.grammar
        if not problem.class_name or not grammar.class_axis:
            raise ConfigError("search=class_name_random needs the input's class name and a grammar with a class_axis")
        axis = grammar.axis_index(grammar.class_axis)
        choice = grammar.encode_choice(grammar.class_axis, problem.class_name)
        states = _random_states(env, _states_in_budget(env, self.name), problem.seed, {axis: choice})
        _observe_in_batches(env, states, self.batch_states)
        return SearchResult.from_env(self.name, env)


class GoalEncoding:
    """Zero search: render the goal encoding (the semantic encoder's reading of the input image)."""

    name = "goal_encoding"

    def run(self, problem: SearchProblem) -> SearchResult:
        env = problem.env
        if env.goal is None:
            raise ConfigError("search=goal_encoding needs a goal encoding (a semantic encoder)")
        env.observe([env.goal])
        return SearchResult.from_env(self.name, env, [env.goal])


class RandomSearch:
    """Uniformly random distinct encodings: the env's render budget (seeds per state included)."""

    name = "random"

    def __init__(self, *, batch_states: int) -> None:
        self.batch_states = int(batch_states)

    def run(self, problem: SearchProblem) -> SearchResult:
        env = problem.env
        states = _random_states(env, _states_in_budget(env, self.name), problem.seed)
        _observe_in_batches(env, states, self.batch_states)
        return SearchResult.from_env(self.name, env)


class Exhaustive:
    """Every encoding of the grid: the reference optimum, at the cost of ``grid size × seeds`` renders
    (or until the env's budget, if one is set)."""

    name = "exhaustive"

    def __init__(self, *, batch_states: int, max_states: int) -> None:
        self.batch_states, self.max_states = int(batch_states), int(max_states)

    def run(self, problem: SearchProblem) -> SearchResult:
        env = problem.env
        if env.grammar.size > self.max_states:
            raise ConfigError(f"search=exhaustive: grid has {env.grammar.size} states (> max_states={self.max_states})")
        _observe_in_batches(env, env.grammar.grid(), self.batch_states)
        return SearchResult.from_env(self.name, env)
