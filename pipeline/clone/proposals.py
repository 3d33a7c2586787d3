"""Which state each dataset image of a class renders: variety around the search's accepted states.

A search spends its budget where its reward leads, so its accepted states cluster (near the input's colour, its
background): images drawn only from them vary less than the class name with random attributes. With
``clone.propose=random`` (the default) image ``i``'s attempt ``a`` keeps the class of an accepted state (its class
axis, and any axis the grammar fixes) and takes a fresh combination of the non-class axes; every image is verified
at its own seed as before, so a combination the class does not survive is replaced by the next attempt. The values
of each non-class axis are drawn in blocks: each block of ``k`` consecutive proposals (``k`` the axis's choices)
holds every choice once, in a seeded order, so a class's images spread over each axis as evenly as their count
allows, and the axes combine at random. The last attempt renders the accepted state itself (it passed at the
search's seed), so a class whose proposals fail falls back to what its search found.

``clone.propose=accepted`` renders the accepted states as they are (balanced over the non-class axes as far as the
accepted set allows; the behaviour before proposals).
"""

from __future__ import annotations

from typing import Sequence

from pipeline.grammar import Grammar
from pipeline.search.result import Candidate
from pipeline.seeding import rng_for


def propose(grammar: Grammar, base: Candidate, axes: Sequence[int], j: int, seed: int) -> Candidate:
    """Proposal ``j`` of a class: ``base``'s encoding in ``grammar`` with each of ``axes`` (the non-class axes with a
    choice) set to the ``j``-th value of that axis's blocked sequence (seeded by ``seed``, the class's). Its reward
    and score are unknown (NaN): the search never rendered it."""
    enc = list(base.encoding)
    for m in axes:
        k = len(grammar.axes[m])
        block, pos = divmod(int(j), k)
        enc[m] = int(rng_for("propose", seed, m, block).permutation(k)[pos])
    state = tuple(enc)
    return Candidate(grammar.decode(state), float("nan"), state, float("nan"))
