"""Image input and output: loading with clear errors, noise images, contact grids."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
from PIL import Image, ImageDraw, UnidentifiedImageError

from pipeline.errors import InputError
from pipeline.seeding import rng_for


def to_rgb(im: Image.Image) -> Image.Image:
    """8-bit RGB from any PIL mode: greyscale and palette images are expanded; 16-bit images (and integer
    images holding values above 255) are scaled from 65535 rather than clipped at 255, float images from 1
    or 255; transparency is composited on white."""
    if im.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        a = np.asarray(im, dtype=np.float64)
        top = 65535.0 if im.mode.startswith("I;16") or a.max(initial=0) > 255 else 255.0
        if im.mode == "F" and a.max(initial=0) <= 1.0:
            top = 1.0
        im = Image.fromarray(np.clip(a / top * 255.0 + 0.5, 0, 255).astype(np.uint8), "L")
    if im.mode == "P" and "transparency" in im.info:
        im = im.convert("RGBA")
    if im.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = im.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return im.convert("RGB")


def load_image(path: str | Path) -> Image.Image:
    """Open an image as 8-bit RGB (:func:`to_rgb`), or raise :class:`InputError` naming the file."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"input image '{p}' does not exist")
    if p.stat().st_size == 0:
        raise InputError(f"input image '{p}' is empty (0 bytes)")
    try:
        with Image.open(p) as im:
            im.load()
            return to_rgb(im)
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise InputError(f"input image '{p}' cannot be read as an image ({type(e).__name__}: {e})".splitlines()[0]) from None


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


# ---------------------------------------------------------------------- renders on the device
# A generator that can (DiffusersGenerator.render) hands the renderer its images as a device tensor; the rewards read
# them there (CLIP resizes and normalises on the device) and only the images that become dataset samples (or kept
# search renders) are turned into PIL images and encoded, in the worker's encoding threads.


def quantized(x: Any) -> Any:
    """A float image batch in [0, 1] on the 8-bit grid (``round(x·255)/255``): the pixels a PNG of it holds, so a
    reward reads on the device exactly what the dataset stores."""
    return (x.float() * 255).round() / 255


def to_pil(image: Any) -> Image.Image:
    """A PIL image of a render: a PIL image as it is, or a ``[3, H, W]`` tensor (float in [0, 1] on any device, or
    uint8 on the host) rounded as diffusers rounds its ``pil`` output (the same bytes)."""
    if isinstance(image, Image.Image):
        return image
    return Image.fromarray(to_host(image).permute(1, 2, 0).numpy(), "RGB")


def to_host(image: Any) -> Any:
    """A render kept for later (a search's reusable renders, a shard's best failed try): a device tensor is copied to
    the host as uint8 (a quarter of its float size, and off the device's memory); a uint8 tensor or a PIL image stays
    as it is."""
    if isinstance(image, Image.Image):
        return image
    import torch

    x = image.detach()
    if x.dtype != torch.uint8:
        x = (x.float() * 255).round().to(torch.uint8)
    return x.cpu()


def is_tensor(image: Any) -> bool:
    return type(image).__module__.startswith("torch") and hasattr(image, "permute")
