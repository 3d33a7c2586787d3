"""The glyphs world's semantic encoder, weightless: it reads a render the way the world draws it.

Background: the border's median colour; object: the pixels that differ from it; class: the object's
bounding box cut into the 5×5 glyph grid, each cell's foreground share compared with every class's bitmap
(any two differ in at least 5 cells); colour: the median of the object's brighter pixels; size: the box's
side over the image's; pattern: the share of the object's pixels a stripe or dot darkens. Each axis gets a
softmax over its choices, so class consistency and goal encodings work as with a learned encoder.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
from PIL import Image

from pipeline.encoders.base import softmax, to_array
from pipeline.glyphs.world import GRID, SIZES, glyph_bitmaps, glyph_index
from pipeline.grammar import Encoding, Grammar
from pipeline.shapes.world import BACKGROUNDS, COLOURS

SHADED = {"solid": 0.0, "dotted": 0.25, "striped": 0.5}  # share of the object's pixels a pattern darkens
_TABLES = {"colour": COLOURS, "background": BACKGROUNDS}


class GlyphReader:
    """Semantic encoder over a glyphs-world grammar (``generator`` and ``image_encoder`` are accepted and unused,
    as :func:`pipeline.assembly.build_stack` passes them to every semantic encoder)."""

    per_image = True  # numpy, image by image: an image's output never depends on its call

    def __init__(self, grammar: Grammar, generator: Any = None, image_encoder: Any = None, sharpness: float = 3.0,
                 threshold: float = 0.15, family_size: int = 1) -> None:
        """``family_size``: the glyphs world's (the dataset's ``family_size``): which bitmaps the classes are."""
        self.grammar, self.sharpness, self.threshold = grammar, float(sharpness), float(threshold)
        names = grammar.axis("object").choices
        ids = [glyph_index(n) for n in names]
        self.bitmaps = glyph_bitmaps(1 + max(ids), int(family_size))[ids].reshape(len(ids), -1).astype(np.float32)

    @staticmethod
    def check_classes(names: Sequence[str], **_: Any) -> None:
        """Refuse, in one line, class names that are not glyphs (the reader knows the glyphs by their names)."""
        for n in names:
            glyph_index(n)

    def _read(self, x: np.ndarray) -> dict[str, Any]:
        h, w, _ = x.shape
        border = np.concatenate([x[0], x[-1], x[:, 0], x[:, -1]])
        bg = np.median(border, axis=0)
        fg = np.linalg.norm(x - bg, axis=-1) > self.threshold
        if fg.sum() < 4:
            return {"background": bg}
        ys, xs = np.nonzero(fg)
        y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
        box = fg[y0:y1, x0:x1].astype(np.float32)
        cells = np.zeros((GRID, GRID), np.float32)
        ry = np.linspace(0, y1 - y0, GRID + 1)
        rx = np.linspace(0, x1 - x0, GRID + 1)
        for i in range(GRID):
            for j in range(GRID):
                part = box[int(round(ry[i])) : max(int(round(ry[i + 1])), int(round(ry[i])) + 1),
                           int(round(rx[j])) : max(int(round(rx[j + 1])), int(round(rx[j])) + 1)]
                cells[i, j] = part.mean() if part.size else 0.0
        pix = x[fg]
        bright = pix.sum(-1)
        colour = np.median(pix[bright >= np.quantile(bright, 0.6)], axis=0)
        shaded = float((bright < 0.75 * colour.sum()).mean())
        return {"background": bg, "cells": cells.reshape(-1), "colour": colour, "size": max(y1 - y0, x1 - x0) / max(h, w),
                "shaded": shaded}

    def probabilities(self, images: Sequence[Image.Image]) -> list[np.ndarray]:
        reads = [self._read(x) for x in to_array(images)]
        out = []
        for axis in self.grammar.axes:
            k = len(axis)
            logits = np.zeros((len(reads), k), np.float64)
            for n, r in enumerate(reads):
                if axis.name == "object" and "cells" in r:
                    logits[n] = -self.sharpness * ((self.bitmaps - r["cells"]) ** 2).sum(1)
                elif axis.name in _TABLES and axis.name in r:
                    ref = np.array([_TABLES[axis.name][c] for c in axis.choices], np.float64) / 255.0
                    logits[n] = -((ref - r[axis.name]) ** 2).sum(1) / 0.01
                elif axis.name == "size" and "size" in r:
                    logits[n] = -((np.array([SIZES[c] for c in axis.choices]) - r["size"]) / 0.05) ** 2
                elif axis.name == "pattern" and "shaded" in r:
                    logits[n] = -((np.array([SHADED[c] for c in axis.choices]) - r["shaded"]) / 0.08) ** 2
            out.append(softmax(logits, axis=1).astype(np.float32))
        return out

    def encode(self, images: Sequence[Image.Image]) -> list[Encoding]:
        probs = self.probabilities(images)
        return [tuple(int(np.argmax(p[n])) for p in probs) for n in range(len(images))]
