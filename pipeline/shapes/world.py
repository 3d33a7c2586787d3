"""A deterministic procedural renderer of coloured, patterned shapes on plain backgrounds.

Given attributes (one terminal per grammar axis) and a seed, it draws a reproducible image, its
pixel-exact class mask and its caption. The seed fixes the nuisance factors that the grammar does
not name: position, rotation and a small colour jitter.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Collection, Mapping, Sequence

import numpy as np
from PIL import Image, ImageDraw

from pipeline.contexts import WorldContexts
from pipeline.errors import ConfigError
from pipeline.grammar import Grammar
from pipeline.seeding import rng_for

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (215, 40, 40),
    "orange": (240, 135, 30),
    "yellow": (235, 210, 40),
    "green": (45, 165, 60),
    "teal": (30, 150, 150),
    "blue": (45, 75, 215),
    "purple": (125, 60, 185),
    "magenta": (215, 50, 165),
}
BACKGROUNDS: dict[str, tuple[int, int, int]] = {
    "white": (245, 245, 245),
    "beige": (220, 200, 160),
    "grey": (125, 125, 125),
    "black": (20, 20, 20),
}
SIZES: dict[str, float] = {"small": 0.2, "medium": 0.29, "large": 0.38}  # radius / image side
PATTERNS = ("solid", "striped", "dotted")
SHAPES = (
    "circle", "octagon", "hexagon", "pentagon", "square",
    "diamond", "triangle", "star", "cross", "crescent",
)
AXES = ("object", "colour", "background", "size", "pattern")
_SUPERSAMPLE = 4


@dataclass(frozen=True)
class Rendering:
    """One drawn sample: RGB image, class mask (0 = background, k + 1 = object class k) and caption."""

    image: Image.Image
    mask: np.ndarray
    caption: str
    attributes: dict[str, str]


def _polygon(shape: str, cx: float, cy: float, r: float, angle: float) -> list[tuple[float, float]]:
    def ring(n: int, radii: list[float], phase: float = -math.pi / 2) -> list[tuple[float, float]]:
        pts = []
        for k in range(n * len(radii)):
            t = phase + angle + 2 * math.pi * k / (n * len(radii))
            rr = radii[k % len(radii)] * r
            pts.append((cx + rr * math.cos(t), cy + rr * math.sin(t)))
        return pts

    if shape == "octagon":
        return ring(8, [1.0], phase=math.pi / 8)
    if shape == "hexagon":
        return ring(6, [1.0])
    if shape == "pentagon":
        return ring(5, [1.0])
    if shape == "square":
        return ring(4, [1.0], phase=math.pi / 4)
    if shape == "triangle":
        return ring(3, [1.0])
    if shape == "star":
        return ring(5, [1.0, 0.42])
    if shape == "diamond":  # an elongated rhombus, so a rotated square is not a diamond
        pts = [(0.0, -1.0), (0.55, 0.0), (0.0, 1.0), (-0.55, 0.0)]
    elif shape == "cross":
        w = 0.34
        pts = [(-w, -1), (w, -1), (w, -w), (1, -w), (1, w), (w, w), (w, 1), (-w, 1), (-w, w), (-1, w), (-1, -w), (-w, -w)]
    else:
        raise ConfigError(f"the shapes world cannot draw object '{shape}'")
    ca, sa = math.cos(angle), math.sin(angle)
    return [(cx + r * (x * ca - y * sa), cy + r * (x * sa + y * ca)) for x, y in pts]


def check_drawable(grammar: Grammar, world: str, axes: Sequence[str], known: Mapping[str, Collection[str]]) -> None:
    """Raise :class:`ConfigError` unless ``grammar`` has every one of ``axes`` and only axes and choices the
    world can draw (``known``: axis -> drawable choices; an axis in ``axes`` but not in ``known`` is checked
    by the world itself)."""
    for name in axes:
        grammar.axis_index(name)
    for axis in grammar.axes:
        if axis.name not in axes:
            raise ConfigError(f"the {world} world has no attribute '{axis.name}' (known: {', '.join(axes)})")
        bad = [c for c in axis.choices if axis.name in known and c not in known[axis.name]]
        if bad:
            raise ConfigError(f"the {world} world cannot draw {axis.name} '{bad[0]}'")


class ShapesWorld:
    """Draws the shapes world at ``image_size`` pixels (32 by default, any size by config); with ``context`` (a Dirichlet
    concentration, :mod:`pipeline.contexts`) each class has a distribution of its own over each non-class axis."""

    def __init__(self, grammar: Grammar, image_size: int = 32, context: float | None = None, context_seed: int = 0) -> None:
        if image_size < 8:
            raise ConfigError(f"shapes world image_size must be >= 8, got {image_size}")
        check_drawable(grammar, "shapes", AXES,
                       {"object": SHAPES, "colour": COLOURS, "background": BACKGROUNDS, "size": SIZES, "pattern": PATTERNS})
        self.grammar = grammar
        self.image_size = int(image_size)
        self.classes = grammar.axis("object").choices
        self.contexts = WorldContexts(grammar, context, context_seed)

    # ------------------------------------------------------------------ sampling
    def sample_attributes(self, seed: int, cls: str | None = None) -> dict[str, str]:
        """Random attributes (one terminal per axis), reproducible from ``seed``: the class ``cls`` (else drawn evenly)
        and the others from its context (uniform in a world without contexts)."""
        return self.contexts.sample_attributes("shapes-attributes", seed, cls)

    def render(self, attributes: Mapping[str, str], seed: int) -> Rendering:
        """Draw ``attributes``; ``seed`` fixes position, rotation and colour jitter."""
        attrs = dict(attributes)
        missing = [a for a in AXES if a not in attrs]
        if missing:
            raise ConfigError(f"shapes world render: attribute '{missing[0]}' is missing")
        rng = rng_for("shapes-nuisance", seed)
        s = self.image_size * _SUPERSAMPLE
        radius = SIZES[attrs["size"]] * s
        margin = s / 2 - radius * 1.05
        cx = s / 2 + rng.uniform(-1, 1) * max(margin, 0) * 0.8
        cy = s / 2 + rng.uniform(-1, 1) * max(margin, 0) * 0.8
        angle = math.radians(rng.uniform(-25, 25))
        fg = np.clip(np.array(COLOURS[attrs["colour"]]) + rng.integers(-12, 13, 3), 0, 255)
        bg = np.clip(np.array(BACKGROUNDS[attrs["background"]]) + rng.integers(-10, 11, 3), 0, 255)

        mask_img = Image.new("L", (s, s), 0)
        draw = ImageDraw.Draw(mask_img)
        shape = attrs["object"]
        if shape == "circle":
            draw.ellipse([cx - radius, cy - radius, cx + radius, cy + radius], fill=255)
        elif shape == "crescent":
            draw.ellipse([cx - radius, cy - radius, cx + radius, cy + radius], fill=255)
            ox, oy = cx + 0.45 * radius * math.cos(angle), cy + 0.45 * radius * math.sin(angle)
            rr = radius * 0.85
            draw.ellipse([ox - rr, oy - rr, ox + rr, oy + rr], fill=0)
        else:
            draw.polygon(_polygon(shape, cx, cy, radius, angle), fill=255)
        inside = np.asarray(mask_img, dtype=np.float32) / 255.0

        yy, xx = np.mgrid[0:s, 0:s].astype(np.float32)
        shade = np.zeros((s, s), dtype=np.float32)
        period = s / 8
        if attrs["pattern"] == "striped":
            u = (xx - cx) * math.cos(angle) + (yy - cy) * math.sin(angle)
            shade = ((np.floor(u / (period / 2)) % 2) == 1).astype(np.float32)
        elif attrs["pattern"] == "dotted":
            gx, gy = (xx % period) - period / 2, (yy % period) - period / 2
            shade = (gx * gx + gy * gy < (period * 0.28) ** 2).astype(np.float32)
        obj = fg[None, None, :] * (1 - 0.55 * shade[..., None])
        canvas = bg[None, None, :] * (1 - inside[..., None]) + obj * inside[..., None]
        big = Image.fromarray(np.clip(canvas, 0, 255).astype(np.uint8), "RGB")
        image = big.resize((self.image_size, self.image_size), Image.Resampling.BOX)
        small_inside = np.asarray(mask_img.resize((self.image_size,) * 2, Image.Resampling.BOX)) >= 128
        mask = np.where(small_inside, self.classes.index(shape) + 1, 0).astype(np.uint8)
        caption = self.grammar.decode(self.grammar.encode(attrs))
        return Rendering(image=image, mask=mask, caption=caption, attributes=attrs)

    def sample(self, seed: int) -> Rendering:
        """A random sample of the world (what the "real" splits are made of)."""
        return self.render(self.sample_attributes(seed), seed)
