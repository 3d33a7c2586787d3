"""Baselines to compare RLDF against: class-name prompting, random search and exhaustive enumeration."""

from __future__ import annotations

from pipeline.errors import ConfigError
from pipeline.search.result import SearchProblem, SearchResult
from pipeline.seeding import rng_for


class ClassNamePrompt:
    """No search: prompt the class name (``template`` with ``{name}``). Needs the class's text name."""

    name = "class_name"

    def __init__(self, template: str = "a photo of a {name}") -> None:
        if "{name}" not in template:
            raise ConfigError(f"search.template must contain '{{name}}', got '{template}'")
        self.template = template

    def run(self, problem: SearchProblem) -> SearchResult:
        if not problem.class_name:
            raise ConfigError("search=class_name needs the input's class name (pass class_name=...)")
        problem.env.evaluator.evaluate([self.template.format(name=problem.class_name)])
        return SearchResult.from_env(self.name, problem.env)


class RandomSearch:
    """Uniformly random distinct encodings, ``budget`` renders in all (seeds per state included)."""

    name = "random"

    def __init__(self, budget: int = 400, batch_states: int = 16) -> None:
        if budget < 1:
            raise ConfigError(f"search.budget must be >= 1, got {budget}")
        self.budget, self.batch_states = int(budget), int(batch_states)

    def run(self, problem: SearchProblem) -> SearchResult:
        env = problem.env
        rng = rng_for("random-search", problem.seed)
        per_state = len(env.evaluator.seeds)
        n_states = min(max(1, self.budget // per_state), env.grammar.size)
        shape = env.grammar.shape
        seen: set = set()
        states = []
        while len(states) < n_states:  # rejection sampling: the grid may be too large to enumerate
            s = tuple(int(rng.integers(k)) for k in shape)
            if s not in seen:
                seen.add(s)
                states.append(s)
        for i in range(0, len(states), self.batch_states):
            env.reward_of(states[i : i + self.batch_states])
        return SearchResult.from_env(self.name, env)


class Exhaustive:
    """Every encoding of the grid: the reference optimum, at the cost of ``grid size × seeds`` renders."""

    name = "exhaustive"

    def __init__(self, batch_states: int = 64, max_states: int = 100_000) -> None:
        self.batch_states, self.max_states = int(batch_states), int(max_states)

    def run(self, problem: SearchProblem) -> SearchResult:
        env = problem.env
        if env.grammar.size > self.max_states:
            raise ConfigError(f"search=exhaustive: grid has {env.grammar.size} states (> max_states={self.max_states})")
        batch: list = []
        for s in env.grammar.grid():
            batch.append(s)
            if len(batch) == self.batch_states:
                env.reward_of(batch)
                batch = []
        if batch:
            env.reward_of(batch)
        return SearchResult.from_env(self.name, env)
