"""Weightless encoders built from pixel statistics: the core is testable with no model at all.

They know nothing learned: the background is the border's median colour, the object is what differs
from it, and shape is read from the object's radial profile. Good enough for the shapes world's
clean renders; the learned encoders (CNN, CLIP, segmenters) replace them for real images.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
from PIL import Image

from pipeline.encoders.base import to_array
from pipeline.shapes.world import BACKGROUNDS, COLOURS

_GROUPS = ("background", "colour", "size", "shape", "pattern")


def _object_stats(x: np.ndarray, n_angles: int = 32, n_harmonics: int = 8) -> dict[str, np.ndarray]:
    """Per-image statistics of one ``[H, W, 3]`` array."""
    h, w, _ = x.shape
    border = np.concatenate([x[0], x[-1], x[:, 0], x[:, -1]])
    bg = np.median(border, axis=0)
    dist = np.linalg.norm(x - bg, axis=-1)
    fg = dist > 0.15
    area = fg.mean()
    stats = {"background": bg, "size": np.array([np.sqrt(area)])}
    if fg.sum() < 3:
        stats.update(colour=np.zeros(3), shape=np.zeros(n_harmonics + 1), pattern=np.zeros(2))
        return stats
    pix = x[fg]
    bright = pix.sum(-1)
    base = pix[bright >= np.quantile(bright, 0.6)]
    colour = np.median(base, axis=0)
    shaded = bright < 0.75 * colour.sum()
    ys, xs = np.nonzero(fg)
    cy, cx = ys.mean(), xs.mean()
    dy, dx = ys - cy, xs - cx
    r = np.hypot(dx, dy) / np.sqrt(fg.sum() / np.pi)
    bins = ((np.arctan2(dy, dx) + np.pi) / (2 * np.pi) * n_angles).astype(int) % n_angles
    profile = np.zeros(n_angles)
    np.maximum.at(profile, bins, r)
    spectrum = np.abs(np.fft.rfft(profile))[1 : n_harmonics + 1] / (profile.mean() * n_angles + 1e-6)
    radial = np.histogram(r, bins=4, range=(0, 2))[0] / len(r)
    stats.update(
        colour=colour,
        shape=np.concatenate([spectrum * 4, radial[:1]]),
        pattern=np.array([shaded.mean(), np.abs(np.diff(fg.astype(float), axis=1)).sum() / fg.sum()]),
    )
    return stats


class PixelStatsEncoder:
    """An ImageEncoder with no weights: colour, size, shape and pattern statistics of the image.

    ``weights`` scales each statistic group in the embedding (they are then L2-normalised together).
    """

    per_image = True  # numpy, image by image: an image's output never depends on its call

    def __init__(self, image_size: int = 32, weights: Mapping[str, float] | None = None) -> None:
        self.image_size = image_size
        self.weights = {g: 1.0 for g in _GROUPS}
        self.weights.update(weights or {})

    def embed(self, images: Sequence[Image.Image]) -> np.ndarray:
        x = to_array(images, self.image_size)
        rows = []
        for img in x:
            s = _object_stats(img)
            rows.append(np.concatenate([self.weights[g] * s[g] for g in _GROUPS]))
        e = np.asarray(rows, dtype=np.float32).reshape(len(x), -1)
        return e / (np.linalg.norm(e, axis=1, keepdims=True) + 1e-8)

    def feature_maps(self, images: Sequence[Image.Image]) -> list[np.ndarray]:
        """Colour and gradient-magnitude maps at full, 1/2 and 1/4 resolution."""
        x = to_array(images, self.image_size).transpose(0, 3, 1, 2)  # N, 3, H, W
        gy, gx = np.gradient(x.mean(1), axis=(1, 2))
        level = np.concatenate([x, np.hypot(gx, gy)[:, None]], axis=1)
        maps = [level]
        for _ in range(2):
            n, c, h, w = level.shape
            level = level[:, :, : h - h % 2, : w - w % 2].reshape(n, c, h // 2, 2, w // 2, 2).mean((3, 5))
            maps.append(level)
        return maps


class PaletteSegmenter:
    """A Segmenter with no weights: soft assignment of each pixel to the nearest colour of a named palette.

    By default the palette is the shapes world's object and background colours, so "which classes
    appear, and where" means which colours cover which part of the image.
    """

    per_image = True  # numpy, image by image: an image's output never depends on its call

    def __init__(self, palette: Mapping[str, Sequence[int]] | None = None, temperature: float = 0.08, image_size: int = 32) -> None:
        palette = dict(palette) if palette else {**COLOURS, **{f"{k} background": v for k, v in BACKGROUNDS.items()}}
        self.class_names = tuple(palette)
        self.colours = np.asarray([palette[k] for k in self.class_names], dtype=np.float32) / 255.0
        self.temperature = float(temperature)
        self.image_size = image_size

    def segment(self, images: Sequence[Image.Image]) -> np.ndarray:
        x = to_array(images, self.image_size)  # N, H, W, 3
        d2 = ((x[:, :, :, None, :] - self.colours[None, None, None]) ** 2).sum(-1)  # N, H, W, C
        logits = -d2 / (2 * self.temperature**2)
        logits -= logits.max(-1, keepdims=True)
        p = np.exp(logits)
        p /= p.sum(-1, keepdims=True)
        return p.transpose(0, 3, 1, 2).astype(np.float32)
