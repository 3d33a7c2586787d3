"""Image sets for the metrics: WebDataset shards, an ImageFolder tree, or a drawn world's real split.

Every source yields ``(uint8 tensor [3, S, S], class label)`` resized to one size with PIL bicubic
(the resize clean-fid recommends), and has a ``fingerprint`` that changes when its content does. Files,
sample fields and folder labels are read by :mod:`pipeline.image_sets`, as the clone reads its inputs.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Iterator, Mapping

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset, IterableDataset

from pipeline.clone.layout import Layout
from pipeline.errors import InputError
from pipeline.image_sets import class_folders, decode_image, image_files, sample_image


def _to_tensor(image: Image.Image, size: int) -> torch.Tensor:
    image = image.convert("RGB")
    if image.size != (size, size):
        image = image.resize((size, size), Image.Resampling.BICUBIC)
    return torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1)


def _decode(data: bytes, where: str, size: int) -> torch.Tensor:
    return _to_tensor(decode_image(data, where), size)


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
            data = sample_image(sample)
            where = f"'{sample.get('__key__')}' in '{sample.get('__url__')}'"
            if data is None:
                raise InputError(f"sample {where} has no image field")
            label = int(sample["cls"]) if "cls" in sample else -1
            yield _decode(data, where, self.size), label


class FolderImages(Dataset):
    """``root/<class>/<image>``; labels from ``labels`` (folder name -> label, e.g. a clone's classes: only
    those folders are read), else by sorted folder name (:func:`pipeline.image_sets.class_folders`)."""

    def __init__(self, root: str, size: int, labels: Mapping[str, int] | None = None) -> None:
        self.root = Path(root)
        folders = class_folders(self.root, labels)
        self.files = [(f, label) for folder, label in folders for f in image_files(folder)]
        self.classes = {label: folder.name for folder, label in folders}  # label -> class folder
        self.size = size
        files = _file_fingerprint([f for f, _ in self.files])
        self.fingerprint = hashlib.sha256(json.dumps([files, sorted(self.classes.items())]).encode()).hexdigest()[:16]
        which = ", labelled as the clone's classes" if labels is not None else ""
        self.description = f"ImageFolder {root} ({len(folders)} classes{which})"

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        path, label = self.files[i]
        return _decode(path.read_bytes(), f"'{path}'", self.size), label


class WorldImages(Dataset):
    """A drawn world's real split (the shapes or the glyphs world), rendered on the fly (``n`` images, disjoint
    across split names).

    With ``classes``, sample ``i`` shows ``classes[i % len(classes)]`` (its other attributes drawn from that class's
    context, uniform in a world without contexts): a class-balanced real set of just those classes.
    """

    def __init__(self, world, split: str, n: int, size: int, seed: int = 0, classes=None) -> None:
        from pipeline.shapes.split import sample_seed

        self.world, self.split, self.n, self.size, self.seed = world, split, int(n), size, seed
        self.classes = list(classes) if classes else None
        self._seed = sample_seed
        kind = type(world).__name__.removesuffix("World").lower()  # shapes, glyph
        ctx = world.contexts
        context = [] if ctx.uniform else [["context", ctx.concentration, ctx.seed]]  # a uniform world keeps its fingerprint
        self.fingerprint = hashlib.sha256(json.dumps([kind, split, n, seed, world.image_size, self.classes, *context]).encode()).hexdigest()[:16]
        which = f", classes {', '.join(self.classes)}" if self.classes and len(self.classes) <= 20 else \
            f", {len(self.classes)} classes" if self.classes else ""
        self.description = f"{kind} world{'' if ctx.uniform else f' with contexts (α = {ctx.concentration:g})'}, real split '{split}' ({n} images{which})"

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        seed = self._seed(self.seed, self.split, i)
        attrs = self.world.sample_attributes(seed, self.classes[i % len(self.classes)] if self.classes else None)
        r = self.world.render(attrs, seed)
        return _to_tensor(r.image, self.size), self.world.classes.index(r.attributes["object"])


def clone_class_labels(spec: str) -> dict[str, int] | None:
    """A clone output folder's class id -> label (``manifest.json``'s ``class_labels``), or None if ``spec``
    is not one: what an ImageFolder real set is labelled by, so per-class metrics compare the same classes."""
    manifest = Path(Layout(spec).manifest)
    if not manifest.is_file():
        return None
    try:
        labels = json.loads(manifest.read_text()).get("class_labels")
    except ValueError:
        return None
    return {str(k): int(v) for k, v in labels.items()} if labels else None


def open_source(spec: str, size: int, world=None, shapes_n: int = 2000, labels: Mapping[str, int] | None = None) -> Dataset | IterableDataset:
    """``shapes`` / ``shapes:<split>``, a folder of shards, a shard pattern, or an ImageFolder root (labelled
    by ``labels`` where given)."""
    if spec == "shapes" or spec.startswith("shapes:"):
        split = spec.split(":", 1)[1] if ":" in spec else "val"
        return WorldImages(world, split, shapes_n, size)
    p = Path(spec)
    if spec.endswith(".tar") or "{" in spec or (p.is_dir() and any(p.glob("*.tar"))):
        return ShardImages(spec, size)
    if p.is_dir():
        return FolderImages(spec, size, labels)
    raise InputError(f"'{spec}' is not a shard pattern, a folder of shards, an image folder or 'shapes[:split]'")
