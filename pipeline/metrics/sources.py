"""Image sets for the metrics: a clone (its folder or object-store prefix, read through its manifest), WebDataset
shards, an ImageFolder tree, a flat folder with a label file (ImageNet val as it ships), or a drawn world's real split.

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


def _tar_samples(stream, where: str) -> Iterator[dict]:
    """WebDataset samples of a tar stream: members grouped by key (the name up to its first dot), in order."""
    import tarfile

    sample: dict = {}
    try:
        with tarfile.open(fileobj=stream, mode="r|") as tar:
            for member in tar:
                if not member.isfile():
                    continue
                key, _, ext = member.name.partition(".")
                if sample and sample["__key__"] != key:
                    yield sample
                    sample = {}
                sample.setdefault("__key__", key)
                sample[ext] = tar.extractfile(member).read()
    except (tarfile.TarError, EOFError, OSError) as e:
        raise InputError(f"cannot read shard {where} ({type(e).__name__}: {e})") from None
    if sample:
        yield sample


class CloneImages(IterableDataset):
    """A clone's output: a local folder or an object-store prefix (``s3://bucket/clone``: any fsspec URL). The shards
    are those its manifest's records list, the truth a resume reads: every committed shard, and nothing a stopped run
    left half-written. Labels from each sample's ``cls``."""

    def __init__(self, spec: str, size: int) -> None:
        from pipeline.clone.manifest import Manifest
        from pipeline.storage import Storage

        self.spec, self.size = spec, size
        storage = Storage(spec, retry_s=60.0)
        records = sorted(Manifest(storage).records().values(), key=lambda r: r.shard)
        if not records:
            raise InputError(f"clone '{spec}' has no committed shards (its manifest/ folder lists none)")
        self.urls = [storage.path(r.shard) for r in records]  # the DataLoader splits shards over its workers
        self.samples = sum(r.count for r in records)
        self.fingerprint = hashlib.sha256(json.dumps([spec, [(r.shard, r.sha256) for r in records]]).encode()).hexdigest()[:16]
        self.description = f"clone {spec} ({len(records)} shards, {self.samples} images, from its manifest)"
        self._fs = storage.fs

    def __len__(self) -> int:
        return self.samples

    def __iter__(self) -> Iterator[tuple[torch.Tensor, int]]:
        worker = torch.utils.data.get_worker_info()
        urls = self.urls if worker is None else self.urls[worker.id :: worker.num_workers]
        for url in urls:
            with self._fs.open(url, "rb") as f:
                for sample in _tar_samples(f, f"'{url}'"):
                    data = sample_image(sample)
                    where = f"'{sample['__key__']}' in '{url}'"
                    if data is None:
                        raise InputError(f"sample {where} has no image field")
                    yield _decode(data, where, self.size), int(sample["cls"]) if "cls" in sample else -1


class _ImageFiles(Dataset):
    """Image files with their labels (``files``: ``(path, label)``), each decoded and resized to ``size``."""

    files: list[tuple[Path, int]]
    size: int

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        path, label = self.files[i]
        return _decode(path.read_bytes(), f"'{path}'", self.size), label


class FolderImages(_ImageFiles):
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


class LabelledFiles(_ImageFiles):
    """A flat folder of images and a label file, as ImageNet's validation set ships (:func:`read_label_file`);
    class ids become labels through ``labels`` (e.g. a clone's ``class_labels``: only those classes are read), else
    by sorted id."""

    def __init__(self, root: str, label_file: str, size: int, labels: Mapping[str, int] | None = None) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise InputError(f"image folder '{root}' does not exist")
        files = image_files(self.root)
        if not files:
            raise InputError(f"image folder '{root}' holds no image files")
        ids = read_label_file(label_file, files)
        if labels is None:
            labels = {c: i for i, c in enumerate(sorted(set(ids.values())))}
        self.files = [(f, int(labels[ids[f.name]])) for f in files if ids.get(f.name) in labels]
        if not self.files:
            raise InputError(f"none of the classes of '{label_file}' is one of the clone's {len(labels)} (e.g. '{next(iter(labels))}')")
        kept = {label for _, label in self.files}
        self.classes = {int(v): c for c, v in labels.items() if int(v) in kept}
        self.size = size
        digest = _file_fingerprint([f for f, _ in self.files] + [Path(label_file)])
        self.fingerprint = hashlib.sha256(json.dumps([digest, [label for _, label in self.files]]).encode()).hexdigest()[:16]
        self.description = f"{root} labelled by {label_file} ({len(self.files)} images, {len(self.classes)} classes)"


def read_label_file(path: str, files: list[Path]) -> dict[str, str]:
    """File name -> class id (e.g. a WordNet id) for the images ``files`` of a flat folder, from ``path``:

    * a CSV with ``ImageId`` and ``PredictionString`` columns (Kaggle's ``LOC_val_solution.csv``: the class is the
      first word of the prediction string);
    * lines ``<file> <class>`` (space, tab or comma; the file by name or by name without its suffix);
    * one class per line, as many lines as images, in the images' sorted order (TensorFlow's
      ``imagenet_2012_validation_synset_labels.txt``);
    * the ImageNet devkit's ``ILSVRC2012_validation_ground_truth.txt`` (ILSVRC2012_IDs 1-1000): its ``meta.mat``
      beside it maps them to WordNet ids.
    """
    import csv

    p = Path(path)
    if not p.is_file():
        raise InputError(f"label file '{path}' does not exist")
    lines = [ln.strip() for ln in p.read_text().splitlines() if ln.strip()]
    by_name = {f.name: f.name for f in files} | {f.stem: f.name for f in files}
    if lines and "ImageId" in lines[0] and "PredictionString" in lines[0]:
        rows = csv.DictReader(lines)
        ids = {by_name[r["ImageId"]]: r["PredictionString"].split()[0] for r in rows if r["ImageId"] in by_name and r["PredictionString"]}
    elif lines and len(lines[0].replace(",", " ").split()) >= 2:
        ids = {}
        for ln in lines:
            name, cls = ln.replace(",", " ").split()[:2]
            if name in by_name:
                ids[by_name[name]] = cls
    elif len(lines) == len(files):
        ids = {f.name: c for f, c in zip(files, lines)}
        if all(c.isdigit() for c in lines):
            ids = {f: devkit_wnids(p)[int(c)] for f, c in ids.items()}
    else:
        raise InputError(f"label file '{path}' has {len(lines)} lines of one column for {len(files)} images: one class per "
                         "image in sorted order, lines '<file> <class>', or a CSV with ImageId,PredictionString")
    if not ids:
        raise InputError(f"label file '{path}' names none of the {len(files)} images of the folder (e.g. '{files[0].name}')")
    return ids


def devkit_wnids(ground_truth: Path) -> dict[int, str]:
    """ILSVRC2012_ID -> WordNet id, from the devkit's ``meta.mat`` beside its ground-truth file."""
    meta = ground_truth.parent / "meta.mat"
    if not meta.is_file():
        raise InputError(f"'{ground_truth}' holds ILSVRC2012_IDs: the devkit's meta.mat must be beside it to name their "
                         f"classes (or give a label file of WordNet ids, e.g. LOC_val_solution.csv)")
    from scipy.io import loadmat

    synsets = loadmat(str(meta), squeeze_me=True)["synsets"]
    return {int(s["ILSVRC2012_ID"]): str(s["WNID"]) for s in synsets}


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
    import fsspec

    from pipeline.storage import store_problem

    try:
        with fsspec.open(Layout(spec).manifest, "rb") as f:
            labels = json.loads(f.read()).get("class_labels")
    except (OSError, ValueError):  # not a clone (a missing manifest.json is a FileNotFoundError)
        return None
    except Exception as e:  # noqa: BLE001 - an object store's own errors (credentials, endpoint)
        raise InputError(f"cannot read '{spec}': {store_problem(e)}") from None
    return {str(k): int(v) for k, v in labels.items()} if labels else None


def is_clone(spec: str) -> bool:
    """Whether ``spec`` is a clone's output (local folder or fsspec URL): it holds ``manifest/`` records."""
    if "://" not in spec:
        return (Path(spec) / Layout().records).is_dir()
    import fsspec

    from pipeline.storage import store_problem

    try:
        fs, root = fsspec.core.url_to_fs(spec)
        return bool(fs.exists(f"{root.rstrip('/')}/{Layout().records}"))
    except (ImportError, ValueError) as e:
        raise InputError(f"cannot read '{spec}': {e}") from None
    except Exception as e:  # noqa: BLE001 - an object store's own errors
        raise InputError(f"cannot read '{spec}': {store_problem(e)}") from None


def open_source(spec: str, size: int, world=None, shapes_n: int = 2000, labels: Mapping[str, int] | None = None,
                label_file: str | None = None) -> Dataset | IterableDataset:
    """``shapes`` / ``shapes:<split>``; a clone's folder or ``s3://`` prefix (its manifest's shards); a folder of shards
    or a shard pattern; an ImageFolder root (labelled by ``labels`` where given); a flat folder with ``label_file``."""
    if spec == "shapes" or spec.startswith("shapes:"):
        split = spec.split(":", 1)[1] if ":" in spec else "val"
        return WorldImages(world, split, shapes_n, size)
    if label_file:
        return LabelledFiles(spec, label_file, size, labels)
    if is_clone(spec):
        return CloneImages(spec, size)
    if "://" in spec:
        raise InputError(f"'{spec}' is not a clone (it holds no manifest/ records): only a clone is read from an object store")
    p = Path(spec)
    if spec.endswith(".tar") or "{" in spec or (p.is_dir() and any(p.glob("*.tar"))):
        return ShardImages(spec, size)
    if p.is_dir():
        if not any(q.is_dir() and not q.name.startswith(".") for q in p.iterdir()) and image_files(p):
            raise InputError(f"'{spec}' holds images but no class folders: give its label file (real_labels=…; for "
                             "ImageNet val, LOC_val_solution.csv or the devkit's ILSVRC2012_validation_ground_truth.txt)")
        return FolderImages(spec, size, labels)
    raise InputError(f"'{spec}' is not a clone, a shard pattern, a folder of shards, an image folder or 'shapes[:split]'")
