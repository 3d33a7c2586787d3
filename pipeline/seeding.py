"""Deterministic seeds derived from named parts, so every random draw is reproducible in isolation."""

from __future__ import annotations

import hashlib

import numpy as np


def derive_seed(*parts: object) -> int:
    """A 63-bit seed that depends only on ``parts`` (e.g. run seed, class, index), never on call order."""
    digest = hashlib.blake2b(repr(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & 0x7FFF_FFFF_FFFF_FFFF


def rng_for(*parts: object) -> np.random.Generator:
    """A numpy generator seeded by :func:`derive_seed` of ``parts``."""
    return np.random.default_rng(derive_seed(*parts))
