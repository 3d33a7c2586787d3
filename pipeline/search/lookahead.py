"""Render-ahead for Q-learning (``env.render_ahead``): the states the walk will likely ask for next, rendered in a
generator call's free slots while the walk waits on its own renders. A guess that is asked for later costs no call;
one that is not is dropped. The search's results never depend on it (its random stream and Q-table are copied), so a
reader of :mod:`pipeline.search.qlearning` can skip this module."""

from __future__ import annotations

import copy
import dataclasses
from collections import defaultdict
from typing import TYPE_CHECKING, Iterator, Sequence

import numpy as np

from pipeline.grammar import Encoding

if TYPE_CHECKING:
    from pipeline.search.qlearning import _Agent, _Walk

#: steps a lookahead simulates: the likeliest guesses of each, before the alternatives
LOOKAHEAD_STEPS = 2


class Lookahead:
    """Called by the env (``env.set_lookahead``) while ``stepping``'s states (the walk's current step: its agents and
    actions, updated in place by the walk) are rendered; yields the states to render ahead, likeliest first."""

    def __init__(self, walk: "_Walk", stepping: Sequence[tuple["_Agent", int]]) -> None:
        self.walk, self.stepping = walk, stepping

    def __call__(self) -> Iterator[Encoding]:
        return lookahead(self.walk, self.stepping)


def fork(walk: "_Walk") -> "_Walk":
    """A copy of ``walk`` whose steps leave it (and its random stream) untouched."""
    w = copy.copy(walk)
    w.rng = copy.deepcopy(walk.rng)
    w.Q = defaultdict(w._fresh_row, {s: row.copy() for s, row in walk.Q.items()})
    w.visits = [v.copy() for v in walk.visits]
    w.accepted, w.parent = list(walk.accepted), dict(walk.parent)
    w.agents = [dataclasses.replace(ag) for ag in walk.agents]
    return w


def _guess(walk: "_Walk", s: Encoding, s2: Encoding, known: tuple[float, float]) -> tuple[float, float]:
    """(image reward, score) of ``s2``, not rendered yet, stepped onto from ``s`` (whose are ``known``): those of
    ``s``, except that a step along the class axis is guessed to leave the class (score 0)."""
    reward, score = known
    if walk.class_pos is not None and s2[walk.class_pos] != s[walk.class_pos]:
        score = 0.0
    return reward, score


def lookahead(walk: "_Walk", stepping: Sequence[tuple["_Agent", int]]) -> Iterator[Encoding]:
    """The states the next steps will likely render, likeliest first (read-only), while ``stepping``'s states are
    rendered: a copy of the walk takes the next :data:`LOOKAHEAD_STEPS` steps, from the outcomes rendered so far and a
    guess of the others (:func:`_guess`), and yields each step's states; then each episode's other greedy moves at the
    next step, then its other moves. Before the first step: the start's neighbours."""
    env = walk.env
    if not stepping:
        yield from (env.move(env.start, a) for a in env.actions(env.start))
        return
    if env.exhausted:  # the search ends with this step
        return
    w = fork(walk)
    step = [(copy_ag, a) for copy_ag, (_, a) in zip(w.agents, stepping)]  # stepping holds the walk's agents, in order
    guessed: dict[Encoding, tuple[float, float]] = {}
    renders, later = env.renders, []
    for depth in range(LOOKAHEAD_STEPS):
        outcomes = []
        for ag, a in step:
            s2 = env.move(ag.state, a)
            value = env.known(s2) or guessed.get(s2)
            if value is None:
                value = guessed[s2] = _guess(w, ag.state, s2, env.known(ag.state) or guessed.get(ag.state) or (0.0, 0.0))
                renders += env.seeds_per_state if depth else 0  # the first step's are counted already
            r, done, accepted = env.outcome(s2, ag.t, *value)
            outcomes.append((s2, r, done, accepted, value[1]))
        w.learn(step, outcomes)
        if depth and env.budget is not None and renders >= env.budget:
            break
        w.refill()
        step = list(zip(w.agents, w.choose()))
        yield from (env.move(ag.state, a) for ag, a in step)
        if not depth:  # the alternatives at the next step: its other greedy moves first, then the rest
            for ag in w.agents:
                valid = np.array(env.actions(ag.state) or range(env.n_actions))
                q = w.Q[ag.state][valid]
                greedy = [int(x) for x in valid[q == q.max()]]
                later.append((ag.state, greedy, [int(x) for x in valid if x not in greedy]))
    for s2, greedy, _ in later:
        yield from (env.move(s2, x) for x in greedy)
    for s2, _, rest in later:
        yield from (env.move(s2, x) for x in rest)
