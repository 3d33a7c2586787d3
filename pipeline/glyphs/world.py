"""A 1000-class stand-in world for ImageNet-scale runs on a CPU: procedural glyphs with the shapes world's
nuisance axes (colour, background, size, pattern).

Class ``k`` is a 5×5 bitmap ("glyph 042" is bitmap 42) drawn from a fixed seed: every bitmap touches all
four sides of its grid (so its bounding box is its grid) and any two of the first :data:`DISTANT_GLYPHS` differ in
at least :data:`MIN_DISTANCE` cells, so a reader that samples the object's 5×5 cells tells them apart. A 5×5 grid
holds only about 14,600 such glyphs (drawn greedily: 14,646 after 2·10⁸ draws), so the glyphs after the first
10,000, which ImageNet-21k's 21,841 classes need, differ from every other in at least ``MIN_DISTANCE - 1`` cells
(50,000 of them in a few seconds). The seed of a render fixes what the grammar does not name: position and a small
colour jitter.

**Confusable families** (``family_size`` F > 1, the CLIP-like stand-in ``experiment=confusable1000``): classes
come in families of F near-identical glyphs, as ImageNet's dog breeds or mushrooms: a family's base bitmap
(any two bases differ in at least :data:`MIN_FAMILY_DISTANCE` cells) and F - 1 siblings that each flip one
interior cell of it. With ``occlusion`` > 0, that share of renders carries an occluder, a background-coloured
square :data:`OCCLUDER_CELLS` cells wide somewhere over the glyph's interior, which may hide the cell that tells
siblings apart: a reader then confuses siblings, never families, the way CLIP's misses fall among similar classes.
"""

from __future__ import annotations

import re
from functools import lru_cache
from itertools import combinations
from typing import Mapping

import numpy as np
from PIL import Image

from pipeline.contexts import WorldContexts
from pipeline.errors import ConfigError
from pipeline.grammar import Grammar
from pipeline.seeding import rng_for
from pipeline.shapes.world import BACKGROUNDS, COLOURS, PATTERNS, Rendering, check_drawable

GRID = 5
MIN_DISTANCE = 5  # cells in which any two of the first DISTANT_GLYPHS glyphs differ (later ones: MIN_DISTANCE - 1)
DISTANT_GLYPHS = 10_000
_DRAWS = 1 << 14  # candidates drawn at a time: part of the sequence's definition once past DISTANT_GLYPHS
MIN_FAMILY_DISTANCE = MIN_DISTANCE + 2  # cells in which any two family bases differ (siblings are 1 flip from theirs)
OCCLUDER_CELLS = 2.0  # the occluder's side, in glyph cells (its centre falls over the 3×3 interior)
INTERIOR = [(i, j) for i in range(1, GRID - 1) for j in range(1, GRID - 1)]  # flipping these keeps the bounding box
BITMAP_SEED = 20261201
SIZES: dict[str, float] = {"small": 0.45, "medium": 0.62, "large": 0.8}  # glyph side / image side
AXES = ("object", "colour", "background", "size", "pattern")
_SUPERSAMPLE = 4
_NAME = re.compile(r"^glyph (\d+)$")


def glyph_name(k: int) -> str:
    return f"glyph {k:03d}"


def glyph_index(name: str) -> int:
    m = _NAME.match(name)
    if m is None:
        raise ConfigError(f"the glyphs world has no class '{name}' (classes are 'glyph 000', 'glyph 001', …)")
    return int(m.group(1))


def _ball(radius: int) -> np.ndarray:
    """Every 25-bit mask of at most ``radius`` set bits: ``code ^ _ball(r)`` is the Hamming ball of radius r around code."""
    return np.array([sum(1 << b for b in c) for k in range(radius + 1) for c in combinations(range(GRID * GRID), k)], np.int64)


def _draw_codes(n: int, rng: np.random.Generator, min_sum: int, distance: int, switch_at: int | None = None) -> list[int]:
    """The first ``n`` candidate bitmaps (25-bit codes, cell (i, j) is bit 5i + j) drawn from ``rng`` that touch all four
    sides, have at least ``min_sum`` cells and differ from every earlier one in at least ``distance`` cells (``distance - 1``
    after the first ``switch_at``). Each accepted code blocks its Hamming ball in a 2²⁵ table: no all-pairs loop. The
    candidates are drawn :data:`_DRAWS` at a time from the same stream one-at-a-time draws would read, so the codes
    before ``switch_at`` are those of checking every candidate in turn against every earlier code."""
    weights = 1 << np.arange(GRID * GRID, dtype=np.int64)
    blocked = np.zeros(1 << (GRID * GRID), bool)
    ball = _ball(distance - 1)
    out: list[int] = []
    while len(out) < n:
        c = rng.random((_DRAWS, GRID, GRID)) < 0.5
        ok = c[:, 0].any(1) & c[:, -1].any(1) & c[:, :, 0].any(1) & c[:, :, -1].any(1) & (c.sum((1, 2)) >= min_sum)
        codes = (c.reshape(_DRAWS, -1).astype(np.int64) * weights).sum(1)
        for code in codes[ok & ~blocked[codes]].tolist():  # blocked only grows: those already blocked stay so
            if blocked[code]:
                continue
            out.append(code)
            blocked[code ^ ball] = True
            if len(out) == n:
                break
            if len(out) == switch_at:  # from here on one cell closer: rebuild the table at the smaller radius
                ball = _ball(distance - 2)
                blocked[:] = False
                for earlier in out:
                    blocked[earlier ^ ball] = True
                break  # the rest of these draws were checked at the larger distance: the next ones are drawn afresh
    return out


def _bitmaps(codes: list[int]) -> np.ndarray:
    bits = (np.array(codes, np.int64)[:, None] >> np.arange(GRID * GRID)) & 1
    return bits.astype(bool).reshape(len(codes), GRID, GRID)


@lru_cache(maxsize=8)
def glyph_bitmaps(n: int, family_size: int = 1) -> np.ndarray:
    """``[n, 5, 5]`` bool: the first ``n`` glyphs (the same for every ``n``: a prefix of one fixed sequence); with
    ``family_size`` F > 1, glyph ``k`` is sibling ``k % F`` of family ``k // F`` (sibling 0 is the family's base)."""
    if family_size < 1 or family_size > len(INTERIOR) + 1:
        raise ConfigError(f"glyphs world family_size must be in [1, {len(INTERIOR) + 1}], got {family_size}")
    if family_size > 1:
        return _families(-(-n // family_size), family_size)[:n]
    return _bitmaps(_draw_codes(n, np.random.default_rng(BITMAP_SEED), 8, MIN_DISTANCE, DISTANT_GLYPHS))


def _families(families: int, size: int) -> np.ndarray:
    """Family bases drawn one at a time, each followed by its siblings' draws from the same stream (so their order is
    part of the sequence), distinct bases found through the blocked-ball table as in :func:`_draw_codes`."""
    rng = np.random.default_rng(BITMAP_SEED + size)
    weights = 1 << np.arange(GRID * GRID, dtype=np.int64)
    blocked = np.zeros(1 << (GRID * GRID), bool)
    ball = _ball(MIN_FAMILY_DISTANCE - 1)
    out: list[np.ndarray] = []
    while len(out) < families * size:
        cand = rng.random((GRID, GRID)) < 0.5
        if not (cand[0].any() and cand[-1].any() and cand[:, 0].any() and cand[:, -1].any()) or cand.sum() < 9:
            continue
        code = int((cand.reshape(-1).astype(np.int64) * weights).sum())
        if blocked[code]:
            continue
        blocked[code ^ ball] = True
        out.append(cand)
        for c in rng.choice(len(INTERIOR), size - 1, replace=False):
            sib = cand.copy()
            sib[INTERIOR[c]] = ~sib[INTERIOR[c]]
            out.append(sib)
    return np.stack(out)


class GlyphWorld:
    """Draws glyph classes (the grammar's class axis, ``glyph NNN`` terminals) at ``image_size`` pixels."""

    def __init__(self, grammar: Grammar, image_size: int = 40, family_size: int = 1, occlusion: float = 0.0,
                 context: float | None = None, context_seed: int = 0) -> None:
        """``context``: a Dirichlet concentration, each class's own distribution over each non-class axis
        (:mod:`pipeline.contexts`); None: uniform, independent of the class."""
        if image_size < 16:
            raise ConfigError(f"glyphs world image_size must be >= 16, got {image_size}")
        if not 0 <= occlusion <= 1:
            raise ConfigError(f"glyphs world occlusion must be in [0, 1], got {occlusion}")
        self.family_size, self.occlusion = int(family_size), float(occlusion)
        # the class axis is checked by glyph_index below: any "glyph NNN"
        check_drawable(grammar, "glyphs", AXES, {"colour": COLOURS, "background": BACKGROUNDS, "size": SIZES, "pattern": PATTERNS})
        self.grammar = grammar
        self.image_size = int(image_size)
        self.classes = grammar.axis("object").choices
        self.bitmaps = glyph_bitmaps(1 + max(glyph_index(c) for c in self.classes), self.family_size)
        self.contexts = WorldContexts(grammar, context, context_seed)

    def sample_attributes(self, seed: int, cls: str | None = None) -> dict[str, str]:
        """The class ``cls`` (else drawn evenly) and the other attributes from its context, reproducible from ``seed``."""
        return self.contexts.sample_attributes("glyph-attributes", seed, cls)

    def render(self, attributes: Mapping[str, str], seed: int) -> Rendering:
        attrs = dict(attributes)
        missing = [a for a in AXES if a not in attrs]
        if missing:
            raise ConfigError(f"glyphs world render: attribute '{missing[0]}' is missing")
        rng = rng_for("glyph-nuisance", seed)
        s = self.image_size * _SUPERSAMPLE
        side = SIZES[attrs["size"]] * s
        cell = side / GRID
        room = s - side
        x0 = room / 2 + rng.uniform(-1, 1) * room * 0.35
        y0 = room / 2 + rng.uniform(-1, 1) * room * 0.35
        fg = np.clip(np.array(COLOURS[attrs["colour"]]) + rng.integers(-12, 13, 3), 0, 255)
        bg = np.clip(np.array(BACKGROUNDS[attrs["background"]]) + rng.integers(-10, 11, 3), 0, 255)
        bitmap = self.bitmaps[glyph_index(attrs["object"])]
        yy, xx = np.mgrid[0:s, 0:s].astype(np.float32)
        gy, gx = np.floor((yy - y0) / cell).astype(int), np.floor((xx - x0) / cell).astype(int)
        on = (gy >= 0) & (gy < GRID) & (gx >= 0) & (gx < GRID)
        inside = np.zeros((s, s), np.float32)
        inside[on] = bitmap[gy[on], gx[on]]
        if self.occlusion and rng.random() < self.occlusion:  # drawn only in a world with occlusion: others keep their renders
            cy, cx = y0 + cell * rng.uniform(1.5, GRID - 1.5), x0 + cell * rng.uniform(1.5, GRID - 1.5)
            half = cell * OCCLUDER_CELLS / 2
            inside[(np.abs(yy - cy) < half) & (np.abs(xx - cx) < half)] = 0.0
        period = s / 8
        shade = np.zeros((s, s), np.float32)
        if attrs["pattern"] == "striped":
            shade = ((np.floor(yy / (period / 2)) % 2) == 1).astype(np.float32)
        elif attrs["pattern"] == "dotted":
            px, py = (xx % period) - period / 2, (yy % period) - period / 2
            shade = (px * px + py * py < (period * 0.28) ** 2).astype(np.float32)
        obj = fg[None, None, :] * (1 - 0.55 * shade[..., None])
        canvas = bg[None, None, :] * (1 - inside[..., None]) + obj * inside[..., None]
        image = Image.fromarray(np.clip(canvas, 0, 255).astype(np.uint8), "RGB").resize(
            (self.image_size, self.image_size), Image.Resampling.BOX)
        small = np.asarray(Image.fromarray((inside * 255).astype(np.uint8)).resize((self.image_size,) * 2, Image.Resampling.BOX)) >= 128
        mask = np.where(small, 1, 0).astype(np.uint8)
        return Rendering(image=image, mask=mask, caption=self.grammar.decode(self.grammar.encode(attrs)), attributes=attrs)

    def sample(self, seed: int) -> Rendering:
        return self.render(self.sample_attributes(seed), seed)
