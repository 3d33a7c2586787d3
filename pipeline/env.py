"""The RLDF Markov decision process: a walk on the grammar's encoding grid, rewarded by rendered images.

States are encodings; action ``2k`` steps axis ``k`` down by one and ``2k + 1`` steps it up (clipped at
the borders), as in the paper's n-dimensional gridworld. A state is rendered through a
:class:`~pipeline.generators.Generator` at a fixed set of seeds and scored against the input image.

The contract between the env and the searches: the env owns the renders (each (prompt, seed) at most
once, handed to a renderer that batches them, with other searches' where a worker pools them), the render *budget* (:attr:`GridEnv.exhausted`) and the *trace* (every state it rendered,
keyed by encoding, with its reward and its class-consistency score). A search only chooses which states
to look at; it never touches the renderer or the cache.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Callable, Iterable, Sequence

import numpy as np
from PIL import Image

from pipeline.errors import ConfigError
from pipeline.grammar import Encoding, Grammar
from pipeline.images import to_host
from pipeline.rendering import Rendered, Renderer, RenderJob, RenderPool
from pipeline.seeding import derive_seed


class RewardMode(str, Enum):
    """``reward_only``: the agent sees only image rewards. ``goal``: it also knows the goal encoding."""

    REWARD_ONLY = "reward_only"
    GOAL = "goal"


@dataclass
class Evaluation:
    prompt: str
    reward: float  # mean image reward over the state's seeds
    score: float  # mean class-consistency score over the state's seeds (NaN without a class axis)
    images: list[Image.Image] = field(default_factory=list)


@dataclass
class Visit:
    """One entry of the trace: a state (or free-text prompt) the first time it was fully evaluated."""

    prompt: str
    encoding: Encoding | None  # None for a prompt that is not on the grid (class-name prompting)
    renders: int  # renders spent so far, this state's included
    reward: float
    score: float


class StateEvaluator:
    """Renders prompts at ``seeds`` through a renderer (:mod:`pipeline.rendering`: alone, or pooled with other
    searches into full generator calls), scores them against the input, and caches by (prompt, seed)."""

    def __init__(self, renderer: Renderer | RenderPool, target: Image.Image, seeds: Sequence[int], keep_images: bool = True,
                 prepared: dict[str, Any] | None = None, render_ahead: bool = False, per_state: bool = False) -> None:
        """``prepared``: the reward's precomputed input where the caller has it (:meth:`CompositeReward.prepare` of the
        inputs' reading), else prepared from ``target``. ``render_ahead``: a short generator call may render, in its
        free slots, what :attr:`lookahead` guesses (``env.render_ahead``); results never depend on it. ``per_state``
        (``env.state_seeds=per_state``): each prompt renders at seeds of its own, derived from ``seeds`` and the prompt,
        so no seed's composition (framing, an occluder) decides every state of a search; else every state renders
        at ``seeds``."""
        if not seeds:
            raise ConfigError("env.seeds_per_state must be >= 1")
        self.renderer = renderer
        self.prepared = prepared if prepared is not None else renderer.reward.prepare(target)
        self.seeds = [int(s) for s in seeds]
        self.per_state = bool(per_state)
        self._seeds_of: dict[str, list[int]] = {}
        self.keep_images = keep_images
        self._cache: dict[tuple[str, int], tuple[float, float, Image.Image | None]] = {}
        self.renders = 0
        #: renders ahead (:class:`~pipeline.rendering.AheadSource`): the prompts the search will likely ask next,
        #: likeliest first (its env sets it; None: no guesses), and whether a short call may render them
        self.lookahead: Callable[[], Iterable[str]] | None = None
        self.render_ahead = render_ahead
        self._ahead: dict[tuple[str, int], tuple[float, float, Image.Image | None]] = {}  # rendered, not asked yet
        self._taken: set[tuple[str, int]] = set()  # in a call now, as ahead jobs
        self._asking: set[tuple[str, int]] = set()  # in this evaluator's request now

    def seeds_of(self, prompt: str) -> list[int]:
        """The seeds ``prompt`` renders at (its own with ``per_state``, else the search's)."""
        if not self.per_state:
            return self.seeds
        seeds = self._seeds_of.get(prompt)
        if seeds is None:
            seeds = self._seeds_of[prompt] = [derive_seed(s, "state", prompt) for s in self.seeds]
        return seeds

    def evaluate(self, prompts: Sequence[str]) -> list[Evaluation]:
        """Mean reward and score of each prompt over its seeds; only unseen (prompt, seed) pairs are rendered."""
        todo = list(dict.fromkeys((p, s) for p in prompts for s in self.seeds_of(p) if (p, s) not in self._cache))
        if todo:
            fresh = [k for k in todo if k not in self._ahead]
            for key in todo:
                if key in self._ahead:  # rendered ahead: the same image and scores, no call
                    self._cache[key] = self._ahead.pop(key)
            if len(fresh) < len(todo):
                self.renderer.note_ahead_used(len(todo) - len(fresh))
            self.renders += len(todo)  # before the render: a lookahead run while it waits sees the budget after this step
            if fresh:
                self._asking = set(fresh)
                try:
                    out = self.renderer.render([RenderJob(p, s, self.prepared, "search") for p, s in fresh], source=self)
                finally:
                    self._asking = set()
                for key, r in zip(fresh, out):
                    self._cache[key] = (r.reward, r.score, to_host(r.image) if self.keep_images else None)
        out = []
        for p in prompts:
            entries = [self._cache[(p, s)] for s in self.seeds_of(p)]
            out.append(Evaluation(p, float(np.mean([e[0] for e in entries])), float(np.mean([e[1] for e in entries])),
                                  [e[2] for e in entries if e[2] is not None]))
        return out

    def ahead_jobs(self, n: int) -> list[RenderJob]:
        """Up to ``n`` renders of the lookahead's prompts not rendered, asked for or in a call yet (read while this
        evaluator's thread waits on its own render: :class:`~pipeline.rendering.AheadSource`)."""
        if not self.render_ahead or self.lookahead is None or n <= 0:
            return []
        jobs: list[RenderJob] = []
        for p in self.lookahead():
            for s in self.seeds_of(p):
                key = (p, s)
                if key in self._cache or key in self._ahead or key in self._taken or key in self._asking:
                    continue
                self._taken.add(key)
                jobs.append(RenderJob(p, s, self.prepared, "search", ahead=True))
                if len(jobs) == n:
                    return jobs
        return jobs

    def keep_ahead(self, job: RenderJob, rendered: Rendered | None) -> None:
        key = (job.prompt, job.seed)
        self._taken.discard(key)
        if rendered is not None and key not in self._cache:
            self._ahead[key] = (rendered.reward, rendered.score, to_host(rendered.image) if self.keep_images else None)

    def known(self, prompt: str) -> tuple[float, float] | None:
        """(mean reward, mean score) of a prompt whose every seed is rendered or rendered ahead, without rendering;
        None otherwise (read by a lookahead while this evaluator's thread waits, so nothing moves meanwhile)."""
        entries = [self._cache.get((prompt, s)) or self._ahead.get((prompt, s)) for s in self.seeds_of(prompt)]
        if any(e is None for e in entries):
            return None
        return float(np.mean([e[0] for e in entries])), float(np.mean([e[1] for e in entries]))

    def kept_renders(self, prompt: str) -> list[tuple[int, float, Image.Image]]:
        """(seed, class-consistency score, image) of each kept render of an evaluated prompt."""
        return [(s, e[1], e[2]) for s in self.seeds_of(prompt) if (e := self._cache.get((prompt, s))) is not None and e[2] is not None]

    def images(self, prompt: str) -> list[Image.Image]:
        """The kept renders of an evaluated prompt (empty if images are not kept)."""
        return [image for _, _, image in self.kept_renders(prompt)]


class GridEnv:
    """The MDP. ``reward_of`` adds, in goal mode, a term for closeness to the goal on the goal axes ``G``::

        r(s) = (r_img(s) + β · (1 - Σ_{a∈G} |s_a - g_a| / Σ_{a∈G} (k_a - 1))) / (1 + β)     (β = goal_weight)

    ``G`` is the class axis by default: the goal says which class, not which colour or scene. Episodes end
    after ``horizon`` steps, when the image reward reaches ``reward_threshold``, or (goal mode,
    ``end_at_goal``) on the goal's values of ``G``. A state is *accepted* when its class-consistency score
    reaches ``accept_threshold`` (τ). ``budget`` caps the renders a search may spend (checked between
    steps, so the last step may pass it by less than one batch).
    """

    def __init__(
        self,
        grammar: Grammar,
        evaluator: StateEvaluator,
        start: Encoding,
        *,
        goal: Encoding | None,
        mode: RewardMode | str,
        goal_weight: float,
        goal_axes: Sequence[str] | None,
        horizon: int,
        end_at_goal: bool,
        reward_threshold: float | None,
        budget: int | None,
        accept_threshold: float,
    ) -> None:
        self.mode = RewardMode(mode)  # env.mode's choices are checked by the schema (pipeline.config)
        if self.mode is RewardMode.GOAL and goal is None:
            raise ConfigError("env.mode=goal needs a goal encoding (from the semantic encoder)")
        self.grammar, self.evaluator = grammar, evaluator
        self.start = grammar.check(start)
        self.goal = grammar.check(goal) if goal is not None else None
        self.goal_weight = float(goal_weight)
        if goal_axes is None:
            goal_axes = [grammar.class_axis] if grammar.class_axis else [a.name for a in grammar.axes]
        self.goal_axes = [grammar.axis_index(a) for a in goal_axes]
        self.horizon, self.end_at_goal = int(horizon), bool(end_at_goal)
        self.reward_threshold, self.budget = reward_threshold, budget
        self.accept_threshold = float(accept_threshold)
        self.n_actions = 2 * len(grammar.axes)
        self._span = max(1, sum(grammar.shape[a] - 1 for a in self.goal_axes))
        #: every state (or free prompt) evaluated, in the order it was first rendered
        self.trace: list[Visit] = []
        self._visits: dict[Encoding | str, Visit] = {}

    @classmethod
    def from_settings(cls, grammar: Grammar, evaluator: StateEvaluator, start: Encoding, goal: Encoding | None,
                      env: Any) -> "GridEnv":
        """The MDP under the ``env`` settings (:class:`pipeline.config.EnvSettings`, ``conf/env/default.yaml``: the one
        place their defaults live)."""
        keys = ("mode", "goal_weight", "goal_axes", "horizon", "end_at_goal", "reward_threshold", "budget", "accept_threshold")
        return cls(grammar, evaluator, start, goal=goal, **{k: getattr(env, k) for k in keys})

    # ------------------------------------------------------------------ budget and trace
    @property
    def renders(self) -> int:
        return self.evaluator.renders

    @property
    def seeds_per_state(self) -> int:
        return len(self.evaluator.seeds)

    @property
    def exhausted(self) -> bool:
        """Whether the render budget is spent (never, without a budget)."""
        return self.budget is not None and self.renders >= self.budget

    def visit(self, state: Encoding) -> Visit | None:
        return self._visits.get(state)

    def accepted(self, state: Encoding) -> bool:
        v = self._visits.get(state)
        return v is not None and v.score >= self.accept_threshold

    def images(self, prompt: str) -> list[Image.Image]:
        """The kept renders of an evaluated prompt (:meth:`StateEvaluator.kept_renders` has their seeds and scores)."""
        return self.evaluator.images(prompt)

    def set_lookahead(self, states: Callable[[], Iterable[Encoding]]) -> None:
        """The search's guess of the states it asks for next, likeliest first: a short generator call renders them
        in its free slots (``env.render_ahead``). ``states`` is called only while the search waits on a render, so
        it may read the search's state; it must not change it. The trace, budget and results stay as without it."""
        self.evaluator.lookahead = lambda: (self.grammar.decode(s) for s in states())

    def _evaluate(self, prompts: Sequence[str], keys: Sequence[Encoding | str], encodings: Sequence[Encoding | None]) -> list[Visit]:
        evals = self.evaluator.evaluate(prompts)
        for key, enc, e in zip(keys, encodings, evals):
            if key not in self._visits:
                v = Visit(e.prompt, enc, self.renders, e.reward, e.score)
                self._visits[key] = v
                self.trace.append(v)
        return [self._visits[k] for k in keys]

    def observe(self, states: Sequence[Encoding]) -> list[Visit]:
        """Render (if new) and score grid states."""
        states = [self.grammar.check(s) for s in states]
        return self._evaluate([self.grammar.decode(s) for s in states], states, states)

    def observe_prompts(self, prompts: Sequence[str]) -> list[Visit]:
        """Render (if new) and score free-text prompts that are not grid states (class-name prompting)."""
        return self._evaluate(list(prompts), list(prompts), [None] * len(prompts))

    # ------------------------------------------------------------------ the MDP
    def move(self, state: Encoding, action: int) -> Encoding:
        axis, up = divmod(int(action), 2)
        s = list(state)
        s[axis] = min(max(s[axis] + (1 if up else -1), 0), self.grammar.shape[axis] - 1)
        return tuple(s)

    def actions(self, state: Encoding) -> list[int]:
        """The actions that change ``state`` (a step off the grid's border, or along a fixed axis, does not)."""
        return [a for a in range(self.n_actions) if self.move(state, a) != state]

    def image_rewards(self, states: Sequence[Encoding]) -> np.ndarray:
        return np.array([v.reward for v in self.observe(states)], dtype=np.float64)

    def scores(self, states: Sequence[Encoding]) -> np.ndarray:
        """Class-consistency scores (rendering states not seen yet)."""
        return np.array([v.score for v in self.observe(states)], dtype=np.float64)

    def closeness(self, state: Encoding) -> float:
        """1 at the goal's values of the goal axes, 0 at the far corner."""
        return 1 - sum(abs(state[a] - self.goal[a]) for a in self.goal_axes) / self._span

    def at_goal(self, state: Encoding) -> bool:
        return self.goal is not None and all(state[a] == self.goal[a] for a in self.goal_axes)

    def reward_of(self, states: Sequence[Encoding]) -> np.ndarray:
        return self._mix(states, self.image_rewards(states))

    def _mix(self, states: Sequence[Encoding], image_rewards: np.ndarray) -> np.ndarray:
        """The agent's reward of ``states`` from their image rewards (goal mode adds closeness to the goal)."""
        if self.mode is RewardMode.GOAL:
            closeness = np.array([self.closeness(s) for s in states])
            return (image_rewards + self.goal_weight * closeness) / (1 + self.goal_weight)
        return image_rewards

    def is_done(self, state: Encoding, t: int) -> bool:
        """Whether an episode that reached ``state`` at step ``t`` (0-based) ends there."""
        return self._ends(state, t, lambda: self.image_rewards([state])[0])

    def _ends(self, state: Encoding, t: int, image_reward: Callable[[], float]) -> bool:
        if t + 1 >= self.horizon:
            return True
        if self.end_at_goal and self.mode is RewardMode.GOAL and self.at_goal(state):
            return True
        return self.reward_threshold is not None and image_reward() >= self.reward_threshold

    def known(self, state: Encoding) -> tuple[float, float] | None:
        """(image reward, class-consistency score) of a state already rendered, or rendered ahead, without rendering
        anything; None if it is not (for a lookahead, :meth:`set_lookahead`)."""
        v = self._visits.get(state)
        return (v.reward, v.score) if v is not None else self.evaluator.known(self.grammar.decode(state))

    def outcome(self, state: Encoding, t: int, image_reward: float, score: float) -> tuple[float, bool, bool]:
        """What :meth:`step_many` and :meth:`accepted` would say of reaching ``state`` at step ``t`` had it these image
        reward and score: (reward, episode done, accepted), without rendering (for a lookahead)."""
        r = float(self._mix([state], np.array([image_reward], np.float64))[0])
        return r, self._ends(state, t, lambda: image_reward), score >= self.accept_threshold

    def step_many(self, states: Sequence[Encoding], actions: Sequence[int], ts: Sequence[int]) -> list[tuple[Encoding, float, bool]]:
        """One step of several episodes at once (episode ``i`` at its step ``ts[i]``): their next states are
        rendered in one batch."""
        nxt = [self.move(s, a) for s, a in zip(states, actions)]
        rewards = self.reward_of(nxt)
        return [(n, float(r), self.is_done(n, t)) for n, r, t in zip(nxt, rewards, ts)]

    def step(self, state: Encoding, action: int, t: int) -> tuple[Encoding, float, bool]:
        """Take ``action`` at step ``t`` of an episode: (next state, reward, episode done)."""
        return self.step_many([state], [action], [t])[0]
