"""Each class's context, read from its inputs (``clone.propose=inputs``): what the class's images show beyond the class.

The semantic encoder reads every input image of a class (``dataset.context_inputs`` of them) into a distribution over
each non-class axis; the class's *reading* on an axis is their mean ``p̂_c``. Few inputs read noisily, so the estimate
is smoothed towards the axis's prior, a Dirichlet with mean ``μ`` and strength ``s`` (a pseudo-count of inputs)::

    θ_c = (n_c · p̂_c + s · μ) / (n_c + s)

``clone.context_prior=empirical`` (the default) learns ``μ`` and ``s`` from every class's readings (empirical Bayes,
method of moments): ``μ`` is the classes' mean reading, and ``s`` follows from how far the classes' readings spread
beyond what ``n`` inputs drawn from one distribution would (a Dirichlet-multinomial's variance,
``Var p̂ = μ(1-μ)/n · (n+s)/(1+s)``). In a world whose classes share one distribution the spread is sampling noise and
``s`` is large (every class takes ``μ``); where classes differ, ``s`` is small and each class keeps its own reading.
A number instead fixes ``s`` (and ``μ`` is still the classes' mean). Classes are pooled by the axis's vocabulary, so a
class group's own scenes (``grammar.groups``) get a prior of their own.

A class's images then follow ``θ_c``, stratified (:func:`stratified_values`): image counts per choice match ``N · θ_c``
as closely as whole images allow (largest remainders), in a seeded order, each axis on its own.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from pipeline.errors import ConfigError
from pipeline.grammar import Grammar
from pipeline.search.result import Candidate
from pipeline.seeding import rng_for

#: where a vocabulary is read in fewer than two classes, the spread between classes cannot be measured: this strength
FALLBACK_STRENGTH = 2.0
#: the strength of a prior the classes do not differ from (their spread is all sampling noise): every class takes μ
MAX_STRENGTH = 1e6


def reading(encoder: Any, grammar: Grammar, images: Sequence[Any]) -> dict[str, Any]:
    """A class's context reading, as its search result records it: the number of inputs read and, per non-class axis
    of ``grammar`` (the class's full grammar, its group's vocabulary), the choices and the mean of ``encoder``'s
    distributions over them."""
    probs = encoder.probabilities(list(images))
    axes = {}
    for a, p in zip(grammar.axes, probs):
        if a.name != grammar.class_axis:
            axes[a.name] = {"choices": list(a.choices), "mean": [round(float(v), 6) for v in np.asarray(p, np.float64).mean(0)]}
    return {"inputs": len(images), "axes": axes}


@dataclass(frozen=True)
class AxisPrior:
    """The prior of one vocabulary of one axis: mean ``mean`` over ``choices``, strength ``strength`` (pseudo-inputs),
    learned from ``classes`` classes."""

    axis: str
    choices: tuple[str, ...]
    mean: tuple[float, ...]
    strength: float
    classes: int

    def to_dict(self) -> dict[str, Any]:
        return {"axis": self.axis, "choices": list(self.choices), "mean": [round(v, 6) for v in self.mean],
                "strength": round(self.strength, 6), "classes": self.classes}


def _strength(means: np.ndarray, n: float) -> float:
    """Method of moments for a Dirichlet-multinomial: the strength ``s`` whose variance of a class's mean reading
    (``n`` inputs) matches the spread of ``means`` ``[classes, k]``."""
    mu = means.mean(0)
    between = float(means.var(0, ddof=1).sum())
    bound = float((mu * (1 - mu)).sum())
    if bound <= 0:  # every class reads one choice only: nothing to smooth
        return 0.0
    r = between / bound  # (n + s) / (n (1 + s)): 1/n for a shared distribution, 1 for classes that never share a choice
    if n * r <= 1:
        return MAX_STRENGTH
    if r >= 1:
        return 0.0
    return float(min(MAX_STRENGTH, n * (1 - r) / (n * r - 1)))


def estimate_prior(readings: Iterable[Mapping[str, Any]], strength: float | str = "empirical") -> list[AxisPrior]:
    """The prior of each (axis, vocabulary) from every class's context reading; ``strength``: ``"empirical"`` or a
    fixed pseudo-count (``clone.context_prior``)."""
    pools: dict[tuple[str, tuple[str, ...]], list[tuple[list[float], int]]] = {}
    for r in readings:
        for axis, a in r["axes"].items():
            pools.setdefault((axis, tuple(a["choices"])), []).append((a["mean"], int(r["inputs"])))
    out = []
    for (axis, choices), rows in sorted(pools.items()):
        means = np.array([m for m, _ in rows], np.float64)
        if strength == "empirical":
            s = _strength(means, float(np.mean([n for _, n in rows]))) if len(rows) >= 2 else FALLBACK_STRENGTH
        else:
            s = float(strength)
        out.append(AxisPrior(axis, choices, tuple(float(v) for v in means.mean(0)), s, len(rows)))
    return out


def check_strength(value: Any) -> float | str:
    """``clone.context_prior``: ``empirical`` or a pseudo-count >= 0."""
    if value == "empirical":
        return value
    try:
        s = float(value)
    except (TypeError, ValueError):
        s = -1.0
    if not s >= 0 or math.isinf(s):
        raise ConfigError(f"clone.context_prior must be 'empirical' or a pseudo-count >= 0, got {value!r}")
    return s


def posterior(context: Mapping[str, Any], priors: Sequence[AxisPrior | Mapping[str, Any]]) -> dict[str, list[float]]:
    """A class's context estimate: per non-class axis, its reading smoothed towards the prior of its vocabulary."""
    by_key = {}
    for p in priors:
        p = p if isinstance(p, AxisPrior) else AxisPrior(p["axis"], tuple(p["choices"]), tuple(p["mean"]), float(p["strength"]), int(p["classes"]))
        by_key[(p.axis, p.choices)] = p
    n = float(context["inputs"])
    out = {}
    for axis, a in context["axes"].items():
        prior = by_key.get((axis, tuple(a["choices"])))
        mean = np.asarray(a["mean"], np.float64)
        if prior is not None:
            mean = (n * mean + prior.strength * np.asarray(prior.mean)) / (n + prior.strength)
        out[axis] = [float(v) for v in mean / mean.sum()]
    return out


def on_grammar(estimate: Mapping[str, Sequence[float]], context: Mapping[str, Any], grammar: Grammar, axis: int) -> np.ndarray:
    """The estimate of ``grammar.axes[axis]`` over that axis's choices (a search grammar: env.fix / env.exclude may have
    removed some), by name; uniform where the estimate gives them nothing or does not cover the axis."""
    a = grammar.axes[axis]
    if a.name not in estimate:
        return np.full(len(a), 1.0 / len(a))
    names = [c.lower() for c in context["axes"][a.name]["choices"]]
    p = np.array([estimate[a.name][names.index(c.lower())] if c.lower() in names else 0.0 for c in a.choices], np.float64)
    return p / p.sum() if p.sum() > 0 else np.full(len(a), 1.0 / len(a))


def stratified_counts(p: np.ndarray, n: int) -> np.ndarray:
    """Whole counts summing to ``n`` closest to ``n · p``: floors, then the largest remainders (lower index on ties)."""
    want = np.asarray(p, np.float64) * n
    counts = np.floor(want).astype(np.int64)
    order = np.argsort(-(want - counts), kind="stable")
    counts[order[: n - int(counts.sum())]] += 1
    return counts


def stratified_values(p: np.ndarray, n: int, j: int, seed: Any) -> int:
    """The choice of proposal ``j`` on an axis whose estimate is ``p``: proposals come in blocks of ``n`` (a class's
    images), each block a seeded order of :func:`stratified_counts` ``(p, n)``, so the class's first attempts follow
    ``p`` as closely as ``n`` images can, and each retry block does again."""
    block, pos = divmod(int(j), int(n))
    return _block(tuple(float(v) for v in p), int(n), seed, block)[pos]


@lru_cache(maxsize=4096)
def _block(p: tuple[float, ...], n: int, seed: Any, block: int) -> tuple[int, ...]:
    """One block of :func:`stratified_values` (kept: a class's n images each ask for their place in it)."""
    values = np.repeat(np.arange(len(p)), stratified_counts(np.array(p), n))
    return tuple(int(v) for v in values[rng_for("propose-context", seed, block).permutation(len(values))])


def write_contexts(storage: Any, readings: Mapping[str, Mapping[str, Any]], setting: Any) -> list[AxisPrior]:
    """``contexts.json`` in ``storage``: the prior learned from ``readings`` (class id -> its context reading) under
    ``clone.context_prior`` = ``setting``, and each class's estimate (axis -> choice -> share); returns the prior."""
    from pipeline.clone.layout import LAYOUT

    strength = check_strength(setting)
    priors = estimate_prior(readings.values(), strength)
    doc = {"context_prior": strength, "priors": [p.to_dict() for p in priors],
           "classes": {cid: {axis: dict(zip(r["axes"][axis]["choices"], (round(v, 6) for v in p))) for axis, p in posterior(r, priors).items()}
                       for cid, r in readings.items()}}
    storage.write_bytes(LAYOUT.contexts, json.dumps(doc, indent=1).encode())
    return priors


def propose_from_context(grammar: Grammar, base: Candidate, contexts: Mapping[int, np.ndarray], n: int, j: int, seed: int) -> Candidate:
    """Proposal ``j`` of a class under ``clone.propose=inputs``: ``base``'s encoding with each axis of ``contexts`` (the
    non-class axes with a choice -> the class's estimate on it) set by :func:`stratified_values`. Its reward and score
    are unknown (NaN): the search never rendered it."""
    enc = list(base.encoding)
    for m, p in contexts.items():
        enc[m] = stratified_values(p, n, j, (seed, m))
    state = tuple(enc)
    return Candidate(grammar.decode(state), float("nan"), state, float("nan"))
