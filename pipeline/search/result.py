"""What every search takes (:class:`SearchProblem`) and returns (:class:`SearchResult`)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Sequence

import numpy as np

from pipeline.env import GridEnv
from pipeline.errors import ConfigError
from pipeline.grammar import Encoding
from pipeline.seeding import rng_for


@dataclass
class SearchProblem:
    """One input image's search: the MDP, the class name (used only by the class-name baseline), a seed."""

    env: GridEnv
    seed: int = 0
    class_name: str | None = None


@dataclass
class Candidate:
    """An evaluated state: its prompt, mean image reward over the state's seeds, and grid encoding."""

    prompt: str
    reward: float
    encoding: Encoding | None = None


@dataclass
class SearchResult:
    method: str
    candidates: list[Candidate]  # every evaluated state, in the order it was first rendered
    renders: int  # diffusion calls spent
    trace: list[tuple[int, float]]  # (renders so far, best reward so far) after each new state
    start: Encoding | None = None
    goal: Encoding | None = None
    best_trajectory: list[Encoding] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_env(cls, method: str, env: GridEnv, best_trajectory: Sequence[Encoding] = (), **info: Any) -> "SearchResult":
        grammar, cands, trace, best = env.grammar, [], [], -np.inf
        for renders, prompt, reward in env.evaluator.trace:
            try:
                enc: Encoding | None = grammar.parse(prompt)
            except ConfigError:
                enc = None
            cands.append(Candidate(prompt, reward, enc))
            best = max(best, reward)
            trace.append((renders, float(best)))
        return cls(method, cands, env.evaluator.renders, trace, env.start, env.goal, list(best_trajectory), dict(info))

    # ------------------------------------------------------------------ queries
    @property
    def best(self) -> Candidate:
        if not self.candidates:
            raise ConfigError(f"search '{self.method}' evaluated no state")
        return max(self.candidates, key=lambda c: c.reward)

    def top(self, k: int) -> list[Candidate]:
        return sorted(self.candidates, key=lambda c: -c.reward)[:k]

    def renders_to_reach(self, reward: float) -> int | None:
        """Renders spent when the best reward first reached ``reward`` (None if never)."""
        return next((n for n, r in self.trace if r >= reward), None)

    def sample(self, n: int, seed: int, margin: float = 0.05, keep_axes: Sequence[int] = ()) -> list[Candidate]:
        """``n`` diverse high-reward candidates: the pool is every state within ``margin`` (relative) of
        the best reward that agrees with the best state on ``keep_axes`` (e.g. the class axis, so a
        class's images keep its class while the other axes vary); the pool is shuffled
        deterministically and cycled, so each member is used about equally often."""
        best_c = self.best
        best = best_c.reward

        def agrees(c: Candidate) -> bool:
            if not keep_axes or best_c.encoding is None:
                return True
            return c.encoding is not None and all(c.encoding[a] == best_c.encoding[a] for a in keep_axes)

        pool = [c for c in self.candidates if c.reward >= best - margin * abs(best) and agrees(c)]
        rng = rng_for("sample-candidates", seed)
        order: list[Candidate] = []
        while len(order) < n:
            order.extend(pool[i] for i in rng.permutation(len(pool)))
        return order[:n]

    # ------------------------------------------------------------------ serialisation
    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["best"] = asdict(self.best) if self.candidates else None
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "SearchResult":
        tup = lambda e: tuple(e) if e is not None else None  # noqa: E731
        return cls(
            method=d["method"],
            candidates=[Candidate(c["prompt"], c["reward"], tup(c["encoding"])) for c in d["candidates"]],
            renders=d["renders"],
            trace=[tuple(t) for t in d["trace"]],
            start=tup(d.get("start")),
            goal=tup(d.get("goal")),
            best_trajectory=[tuple(e) for e in d.get("best_trajectory", [])],
            info=d.get("info", {}),
        )
