"""Shapes-world renders as arrays, for training and judging the embedded models."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipeline.seeding import derive_seed, rng_for
from pipeline.shapes.world import ShapesWorld


@dataclass
class ShapesArrays:
    images: np.ndarray  # [N, H, W, 3] uint8
    masks: np.ndarray  # [N, H, W] uint8 (0 = background, k + 1 = class k)
    labels: np.ndarray  # [N, n_axes] int64 grammar indices
    captions: list[str]


def render_arrays(world: ShapesWorld, n: int, split: str, seed: int = 0) -> ShapesArrays:
    """``n`` random samples of ``split`` (different split names never share a sample seed)."""
    g = world.grammar
    images, masks, labels, captions = [], [], [], []
    for i in range(n):
        r = world.sample(derive_seed("arrays", seed, split, i))
        images.append(np.asarray(r.image))
        masks.append(r.mask)
        labels.append(g.encode(r.attributes))
        captions.append(r.caption)
    return ShapesArrays(np.stack(images), np.stack(masks), np.asarray(labels, dtype=np.int64), captions)


PARTIAL_TEMPLATES = (
    "a photo of a <object>",
    "a <object>",
    "a <colour> <object>",
    "a <size> <object>",
    "a <pattern> <object>",
    "a <object> on a <background> background",
    "a <colour> <object> on a <background> background",
    "a <size> <colour> <object>",
)


def augment_caption(world: ShapesWorld, labels: np.ndarray, seed: int) -> str:
    """The full caption 40% of the time, "a photo of a <object>" 30% (shape is the hardest attribute to
    learn contrastively: the others already separate most pairs in a batch), a random partial one 30%."""
    g = world.grammar
    rng = rng_for("caption", seed)
    u = rng.random()
    if u < 0.4:
        return g.decode(labels)
    if u < 0.7:
        return f"a photo of a {g.describe(labels)['object']}"
    words = g.describe(labels)
    template = PARTIAL_TEMPLATES[int(rng.integers(len(PARTIAL_TEMPLATES)))]
    for k, v in words.items():
        template = template.replace(f"<{k}>", v)
    return template
