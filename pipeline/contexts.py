"""Class-conditional contexts of a drawn world: each class's own distribution over each non-class axis.

Real classes have contexts. Backgrounds alone carry much of ImageNet's class signal (Xiao et al., "Noise or Signal:
The Role of Image Backgrounds in Object Recognition", ICLR 2021), and a tench is mostly a fish held up by an angler.
A world whose attributes are uniform and independent of the class cannot show whether a clone keeps what its inputs
show beyond the class: "class name + random attributes" *is* such a world's generative process.

With ``dataset.context`` = α, class ``c``'s distribution over the choices of non-class axis ``a`` is one draw from a
symmetric Dirichlet(α), seeded by (``dataset.context_seed``, ``c``, ``a``), names not positions: small α gives
peaked contexts (most of a class's images on one or two backgrounds), large α nearly uniform ones. ``None`` keeps
the uniform world, byte for byte. :meth:`WorldContexts.distributions` is the truth an evaluation scores a clone
against.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Mapping

import numpy as np

from pipeline.errors import ConfigError
from pipeline.grammar import Grammar
from pipeline.seeding import rng_for


class WorldContexts:
    """The per-class attribute distributions of a world over ``grammar`` (its class axis names the classes)."""

    def __init__(self, grammar: Grammar, concentration: float | None = None, seed: int = 0) -> None:
        if concentration is not None and not float(concentration) > 0:
            raise ConfigError(f"dataset.context must be > 0 (a Dirichlet concentration) or null, got {concentration}")
        self.grammar = grammar
        self.concentration = None if concentration is None else float(concentration)
        self.seed = int(seed)
        self.class_axis = grammar.class_axis or "object"
        self._classes = grammar.axis(self.class_axis).choices
        self._cache = lru_cache(maxsize=None)(self._draw)

    @property
    def uniform(self) -> bool:
        return self.concentration is None

    def _draw(self, cls: str) -> dict[str, np.ndarray]:
        out = {}
        for a in self.grammar.axes:
            if a.name == self.class_axis:
                continue
            if self.concentration is None:
                out[a.name] = np.full(len(a), 1.0 / len(a))
            else:
                out[a.name] = rng_for("world-context", self.seed, cls.lower(), a.name).dirichlet(np.full(len(a), self.concentration))
        return out

    def distributions(self, cls: str) -> dict[str, np.ndarray]:
        """Class ``cls``'s true distribution over each non-class axis's choices (grammar order): what a real image of
        the class shows."""
        return self._cache(cls)

    def all_distributions(self) -> dict[str, dict[str, np.ndarray]]:
        """Every class's :meth:`distributions`."""
        return {c: self.distributions(c) for c in self._classes}

    def sample_attributes(self, namespace: str, seed: int, cls: str | None = None) -> dict[str, str]:
        """One terminal per axis, reproducible from (``namespace``, ``seed``): the class (``cls``, else drawn evenly)
        and, for every other axis, a choice drawn from the class's context. A uniform world draws exactly what it
        drew before contexts existed (the class drawn too, then replaced by ``cls``)."""
        rng = rng_for(namespace, seed)
        if self.concentration is None:
            attrs = {a.name: a.choices[int(rng.integers(len(a)))] for a in self.grammar.axes}
            if cls is not None:
                attrs[self.class_axis] = cls
            return attrs
        if cls is None:
            cls = self._classes[int(rng.integers(len(self._classes)))]
        context = self.distributions(cls)
        attrs = {}
        for a in self.grammar.axes:
            attrs[a.name] = cls if a.name == self.class_axis else a.choices[int(rng.choice(len(a), p=context[a.name]))]
        return attrs


def total_variation(counts: Mapping[str, np.ndarray], truth: Mapping[str, np.ndarray]) -> float:
    """Mean over axes of the total-variation distance between the empirical distribution of ``counts`` (axis -> choice
    counts) and ``truth`` (axis -> probabilities)."""
    tv = []
    for axis, p in truth.items():
        c = np.asarray(counts[axis], np.float64)
        tv.append(0.5 * float(np.abs(c / max(c.sum(), 1) - np.asarray(p)).sum()))
    return float(np.mean(tv)) if tv else 0.0
