"""Balanced sampling of accepted states: a dataset's images spread evenly over the non-class attributes."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from pipeline.grammar import Encoding
from pipeline.seeding import rng_for


def balanced_sequence(encodings: Sequence[Encoding | None], n: int, axes: Sequence[int], seed: int) -> list[int]:
    """Indices into ``encodings`` (length ``n``, repeats allowed) that cover each axis in ``axes`` as evenly
    as the pool allows. Greedy: each pick minimises, over the pool,

        cost(j) = Σ_a k_a · count_a(value of j on a)      then, among equal costs, the least-used state

    where ``k_a`` is the number of values axis ``a`` takes in the pool (each axis term then grows like the
    pick number under an even sequence, whatever the axis's size). Axis evenness comes first: a state that
    alone holds a rare value is reused (each image has its own seed, so a reused state is another image);
    among states with equally rare values the least used wins, and remaining ties break by a seeded
    permutation, so the sequence is deterministic per ``seed``. Encodings that are None (free-text
    prompts) take part through the ``uses`` term only: round robin.
    """
    size = len(encodings)
    if size == 0 or n <= 0:
        return []
    axes = list(axes)
    known = np.array([e is not None for e in encodings])
    values = np.array([[e[a] for a in axes] if e is not None else [0] * len(axes) for e in encodings], dtype=np.int64)
    values = values.reshape(size, len(axes))
    counts, weights = [], []
    for j in range(len(axes)):
        col = values[known, j]
        counts.append(np.zeros(int(values[:, j].max()) + 1 if size else 1))
        weights.append(float(len(np.unique(col))) if len(col) else 0.0)
    uses = np.zeros(size)
    jitter = rng_for("balanced-sample", seed).permutation(size) / (size + 1.0)  # < 1: breaks ties only
    picks = []
    for _ in range(n):
        cost = (uses + jitter) / (n + 2)  # < 1: orders states of equal axis cost (an integer)
        for j in range(len(axes)):
            cost += np.where(known, weights[j] * counts[j][values[:, j]], 0.0)
        i = int(np.argmin(cost))
        picks.append(i)
        uses[i] += 1
        if known[i]:
            for j in range(len(axes)):
                counts[j][values[i, j]] += 1
    return picks
