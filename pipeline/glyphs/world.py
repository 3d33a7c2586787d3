"""A 1000-class stand-in world for ImageNet-scale runs on a CPU: procedural glyphs with the shapes world's
nuisance axes (colour, background, size, pattern).

Class ``k`` is a 5×5 bitmap ("glyph 042" is bitmap 42) drawn from a fixed seed: every bitmap touches all
four sides of its grid (so its bounding box is its grid) and any two differ in at least
:data:`MIN_DISTANCE` cells, so a reader that samples the object's 5×5 cells tells them apart. The seed of a
render fixes what the grammar does not name: position and a small colour jitter.

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
from typing import Mapping

import numpy as np
from PIL import Image

from pipeline.contexts import WorldContexts
from pipeline.errors import ConfigError
from pipeline.grammar import Grammar
from pipeline.seeding import rng_for
from pipeline.shapes.world import BACKGROUNDS, COLOURS, PATTERNS, Rendering, check_drawable

GRID = 5
MIN_DISTANCE = 5  # cells in which any two glyphs differ
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


@lru_cache(maxsize=8)
def glyph_bitmaps(n: int, family_size: int = 1) -> np.ndarray:
    """``[n, 5, 5]`` bool: the first ``n`` glyphs (the same for every ``n``: a prefix of one fixed sequence); with
    ``family_size`` F > 1, glyph ``k`` is sibling ``k % F`` of family ``k // F`` (sibling 0 is the family's base)."""
    if family_size < 1 or family_size > len(INTERIOR) + 1:
        raise ConfigError(f"glyphs world family_size must be in [1, {len(INTERIOR) + 1}], got {family_size}")
    if family_size > 1:
        return _families(-(-n // family_size), family_size)[:n]
    rng = np.random.default_rng(BITMAP_SEED)
    out: list[np.ndarray] = []
    flat = np.zeros((0, GRID * GRID), bool)
    while len(out) < n:
        cand = rng.random((GRID, GRID)) < 0.5
        if not (cand[0].any() and cand[-1].any() and cand[:, 0].any() and cand[:, -1].any()) or cand.sum() < 8:
            continue
        v = cand.reshape(-1)
        if len(flat) and (flat != v).sum(1).min() < MIN_DISTANCE:
            continue
        out.append(cand)
        flat = np.vstack([flat, v])
    return np.stack(out)


def _families(families: int, size: int) -> np.ndarray:
    rng = np.random.default_rng(BITMAP_SEED + size)
    bases = np.zeros((0, GRID * GRID), bool)
    out: list[np.ndarray] = []
    while len(bases) < families:
        cand = rng.random((GRID, GRID)) < 0.5
        if not (cand[0].any() and cand[-1].any() and cand[:, 0].any() and cand[:, -1].any()) or cand.sum() < 9:
            continue
        if len(bases) and (bases != cand.reshape(-1)).sum(1).min() < MIN_FAMILY_DISTANCE:
            continue
        bases = np.vstack([bases, cand.reshape(-1)])
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
