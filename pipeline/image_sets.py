"""The one reader of image collections on disk, shared by the clone's inputs (:mod:`pipeline.clone.dataset`)
and the metrics' sources (:mod:`pipeline.metrics.sources`), so both accept the same files and number the
same classes the same way.

* An image file is any file whose suffix, in any case, is one of :data:`IMAGE_SUFFIXES` (ILSVRC's ``.JPEG``
  included); hidden files are skipped; files are taken in sorted name order.
* A WebDataset sample's image is its first field among :data:`SAMPLE_IMAGE_KEYS`.
* An ImageFolder tree's class folders are labelled by the class list they belong to — a dataset config's
  ``{wnid, name}`` entries or a clone's ``class_labels`` (folder = WordNet id, else name) — so an
  ImageNet-100 tree keeps ImageNet-1k's labels; without a class list, by sorted folder name (0, 1, …).
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Mapping

from PIL import Image, UnidentifiedImageError

from pipeline.errors import InputError
from pipeline.images import to_rgb

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp"})
SAMPLE_IMAGE_KEYS = ("png", "jpg", "jpeg", "webp")


def is_image_file(path: Path) -> bool:
    return path.is_file() and not path.name.startswith(".") and path.suffix.lower() in IMAGE_SUFFIXES


def image_files(folder: str | Path) -> list[Path]:
    """The image files directly in ``folder``, sorted by name."""
    return sorted(p for p in Path(folder).iterdir() if is_image_file(p))


def sample_image(sample: Mapping[str, bytes]) -> bytes | None:
    """The encoded image of a WebDataset sample, or None if it has none."""
    key = next((k for k in SAMPLE_IMAGE_KEYS if k in sample), None)
    return sample[key] if key is not None else None


def decode_image(data: bytes, where: str) -> Image.Image:
    """Encoded bytes to 8-bit RGB, or :class:`InputError` naming ``where``."""
    try:
        with Image.open(io.BytesIO(data)) as im:
            im.load()
            return to_rgb(im)
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise InputError(f"cannot read image {where} ({type(e).__name__})") from None


def class_folders(root: str | Path, labels: Mapping[str, int] | None = None) -> list[tuple[Path, int]]:
    """``(folder, label)`` for the class folders of an ImageFolder tree, in label order. With ``labels``
    (folder name -> label), only the folders it names, labelled by it; else every folder by sorted name."""
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"image folder '{root}' does not exist")
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if labels is None:
        return [(p, i) for i, p in enumerate(folders)]
    found = [(p, int(labels[p.name])) for p in folders if p.name in labels]
    if not found:
        raise InputError(f"image folder '{root}' has none of the {len(labels)} class folders expected "
                         f"(e.g. '{next(iter(labels))}')")
    return sorted(found, key=lambda t: t[1])
