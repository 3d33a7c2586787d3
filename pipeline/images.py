"""Image input and output: loading with clear errors, noise images, contact grids."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw, UnidentifiedImageError

from pipeline.errors import InputError
from pipeline.seeding import rng_for


def load_image(path: str | Path) -> Image.Image:
    """Open an image as RGB, or raise :class:`InputError` naming the file."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"input image '{p}' does not exist")
    try:
        with Image.open(p) as im:
            return im.convert("RGB")
    except (UnidentifiedImageError, OSError) as e:
        raise InputError(f"input image '{p}' cannot be read as an image ({type(e).__name__})") from None


def noise_image(size: int, seed: int) -> Image.Image:
    """The paper's Ψ_0: a uniform random-noise RGB image, reproducible from ``seed``."""
    pixels = rng_for("noise-image", seed).integers(0, 256, (size, size, 3), dtype=np.uint8)
    return Image.fromarray(pixels, "RGB")


def contact_grid(
    images: Sequence[Image.Image], cols: int, cell: int = 96, labels: Sequence[str] | None = None
) -> Image.Image:
    """Paste images into a grid of ``cell``-pixel squares (nearest-neighbour upscaling), with optional labels."""
    rows = max(1, (len(images) + cols - 1) // cols)
    label_h = 14 if labels else 0
    sheet = Image.new("RGB", (cols * cell, rows * (cell + label_h)), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    for i, im in enumerate(images):
        x, y = (i % cols) * cell, (i // cols) * (cell + label_h)
        sheet.paste(im.convert("RGB").resize((cell, cell), Image.Resampling.NEAREST), (x, y))
        if labels:
            draw.text((x + 2, y + cell), str(labels[i])[:16], fill=(0, 0, 0))
    return sheet
