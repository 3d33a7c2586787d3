"""What every search takes (:class:`SearchProblem`) and returns (:class:`SearchResult`)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Sequence

import numpy as np

from pipeline.env import GridEnv
from pipeline.errors import ConfigError
from pipeline.grammar import Encoding


@dataclass
class SearchProblem:
    """One input image's search: the MDP, the class name (used only by the class-name baseline), a seed."""

    env: GridEnv
    seed: int = 0
    class_name: str | None = None


@dataclass
class Candidate:
    """An evaluated state: its prompt, mean image reward and class-consistency score over the state's
    seeds, and its grid encoding (None for a free-text prompt)."""

    prompt: str
    reward: float
    encoding: Encoding | None = None
    score: float = float("nan")


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
    accept_threshold: float = field(kw_only=True)  # τ (env.accept_threshold): a candidate is accepted when its score reaches it

    @classmethod
    def from_env(cls, method: str, env: GridEnv, best_trajectory: Sequence[Encoding] = (), **info: Any) -> "SearchResult":
        cands, trace, best = [], [], -np.inf
        for v in env.trace:
            cands.append(Candidate(v.prompt, v.reward, v.encoding, v.score))
            best = max(best, v.reward)
            trace.append((v.renders, float(best)))
        return cls(method, cands, env.renders, trace, env.start, env.goal, list(best_trajectory), dict(info),
                   accept_threshold=env.accept_threshold)

    # ------------------------------------------------------------------ queries
    @property
    def best(self) -> Candidate:
        if not self.candidates:
            raise ConfigError(f"search '{self.method}' evaluated no state")
        return max(self.candidates, key=lambda c: c.reward)

    def top(self, k: int) -> list[Candidate]:
        return sorted(self.candidates, key=lambda c: -c.reward)[:k]

    @property
    def accepted(self) -> list[Candidate]:
        """Candidates whose class-consistency score reaches τ, in discovery order."""
        return [c for c in self.candidates if c.score >= self.accept_threshold]

    def renders_to_reach(self, reward: float) -> int | None:
        """Renders spent when the best reward first reached ``reward`` (None if never)."""
        return next((n for n, r in self.trace if r >= reward), None)

    def sample(self, n: int, seed: int, axes: Sequence[int] = (), fallback: int = 0) -> list[Candidate]:
        """A deterministic sequence of ``n`` accepted candidates that covers ``axes`` (the non-class axes)
        as evenly as the accepted set allows (:func:`pipeline.search.sampling.balanced_sequence`).
        Empty if no candidate is accepted, unless ``fallback``: then drawn from the ``fallback`` grid states with the
        highest class-consistency score (then reward), whose images are verified like any other."""
        from pipeline.search.sampling import balanced_sequence

        pool = self.accepted or (self.best_scored(fallback) if fallback else [])
        return [pool[i] for i in balanced_sequence([c.encoding for c in pool], n, axes, seed)]

    def best_scored(self, k: int) -> list[Candidate]:
        """The ``k`` grid states with the highest class-consistency score (ties: higher reward, then discovery order)."""
        on_grid = [c for c in self.candidates if c.encoding is not None and c.score == c.score]
        return sorted(on_grid, key=lambda c: (-c.score, -c.reward))[: int(k)]

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
            candidates=[Candidate(c["prompt"], c["reward"], tup(c["encoding"]), c.get("score", float("nan"))) for c in d["candidates"]],
            renders=d["renders"],
            trace=[tuple(t) for t in d["trace"]],
            start=tup(d.get("start")),
            goal=tup(d.get("goal")),
            best_trajectory=[tuple(e) for e in d.get("best_trajectory", [])],
            info=d.get("info", {}),
            accept_threshold=d["accept_threshold"],
        )
