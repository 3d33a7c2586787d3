"""Image sets for the metrics: WebDataset shards, an ImageFolder tree, or the shapes world's real split.

Every source yields ``(uint8 tensor [3, S, S], class label)`` resized to one size with PIL bicubic
(the resize clean-fid recommends), and has a ``fingerprint`` that changes when its content does.
"""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset, IterableDataset

from pipeline.errors import InputError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp"}
IMAGE_KEYS = ("png", "jpg", "jpeg", "webp")


def _to_tensor(image: Image.Image, size: int) -> torch.Tensor:
    image = image.convert("RGB")
    if image.size != (size, size):
        image = image.resize((size, size), Image.Resampling.BICUBIC)
    return torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1)


def _decode(data: bytes, where: str, size: int) -> torch.Tensor:
    try:
        with Image.open(io.BytesIO(data)) as im:
            return _to_tensor(im, size)
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise InputError(f"cannot read image {where} ({type(e).__name__})") from None


def _file_fingerprint(paths: list[Path]) -> str:
    h = hashlib.sha256()
    for p in paths:
        st = p.stat()
        h.update(f"{p.resolve()}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]


class ShardImages(IterableDataset):
    """WebDataset shards: a brace pattern, one ``.tar``, or a folder of ``*.tar``; labels from ``cls``."""

    def __init__(self, spec: str, size: int) -> None:
        import braceexpand

        p = Path(spec)
        if p.is_dir():
            urls = sorted(str(x) for x in p.glob("*.tar"))
        else:
            urls = list(braceexpand.braceexpand(spec))
        missing = [u for u in urls if not Path(u).is_file()]
        if missing:
            raise InputError(f"shard '{missing[0]}' does not exist")
        if not urls:
            raise InputError(f"'{spec}' holds no .tar shards")
        self.urls, self.size = urls, size
        self.fingerprint = _file_fingerprint([Path(u) for u in urls])
        self.description = f"{len(urls)} WebDataset shards ({spec})"

    def __iter__(self) -> Iterator[tuple[torch.Tensor, int]]:
        import webdataset as wds

        worker = torch.utils.data.get_worker_info()
        urls = self.urls if worker is None else self.urls[worker.id :: worker.num_workers]
        for sample in wds.WebDataset(urls, shardshuffle=False, empty_check=False, workersplitter=None, nodesplitter=None):
            key = next((k for k in IMAGE_KEYS if k in sample), None)
            where = f"'{sample.get('__key__')}' in '{sample.get('__url__')}'"
            if key is None:
                raise InputError(f"sample {where} has no image field")
            label = int(sample["cls"]) if "cls" in sample else -1
            yield _decode(sample[key], where, self.size), label


class FolderImages(Dataset):
    """``root/<class>/<image>``; labels follow the sorted class folder names."""

    def __init__(self, root: str, size: int) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise InputError(f"image folder '{root}' does not exist")
        classes = sorted(p.name for p in self.root.iterdir() if p.is_dir())
        self.files = [(f, i) for i, c in enumerate(classes) for f in sorted((self.root / c).iterdir()) if f.suffix.lower() in IMAGE_SUFFIXES]
        self.classes, self.size = classes, size
        self.fingerprint = _file_fingerprint([f for f, _ in self.files])
        self.description = f"ImageFolder {root} ({len(classes)} classes)"

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        path, label = self.files[i]
        return _decode(path.read_bytes(), f"'{path}'", self.size), label


class ShapesImages(Dataset):
    """The shapes world's real split, rendered on the fly (``n`` images, disjoint across split names).

    With ``classes``, sample ``i`` shows ``classes[i % len(classes)]`` (its other attributes stay random):
    a class-balanced real set of just those classes.
    """

    def __init__(self, world, split: str, n: int, size: int, seed: int = 0, classes=None) -> None:
        from pipeline.shapes.split import sample_seed

        self.world, self.split, self.n, self.size, self.seed = world, split, int(n), size, seed
        self.classes = list(classes) if classes else None
        self._seed = sample_seed
        self.fingerprint = hashlib.sha256(json.dumps(["shapes", split, n, seed, world.image_size, self.classes]).encode()).hexdigest()[:16]
        which = f", classes {', '.join(self.classes)}" if self.classes else ""
        self.description = f"shapes world, real split '{split}' ({n} images{which})"

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        seed = self._seed(self.seed, self.split, i)
        attrs = self.world.sample_attributes(seed)
        if self.classes:
            attrs["object"] = self.classes[i % len(self.classes)]
        r = self.world.render(attrs, seed)
        return _to_tensor(r.image, self.size), self.world.classes.index(r.attributes["object"])


def open_source(spec: str, size: int, world=None, shapes_n: int = 2000) -> Dataset | IterableDataset:
    """``shapes`` / ``shapes:<split>``, a folder of shards, a shard pattern, or an ImageFolder root."""
    if spec == "shapes" or spec.startswith("shapes:"):
        split = spec.split(":", 1)[1] if ":" in spec else "val"
        return ShapesImages(world, split, shapes_n, size)
    p = Path(spec)
    if spec.endswith(".tar") or "{" in spec or (p.is_dir() and any(p.glob("*.tar"))):
        return ShardImages(spec, size)
    if p.is_dir():
        return FolderImages(spec, size)
    raise InputError(f"'{spec}' is not a shard pattern, a folder of shards, an image folder or 'shapes[:split]'")
