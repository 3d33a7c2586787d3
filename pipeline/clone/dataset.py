"""The dataset to clone: its classes and each class's input images.

Four sources: the shapes and glyphs worlds (drawn), an ImageFolder tree (``root/<class folder>/*.jpg``), or
WebDataset shards (the first samples whose ``cls`` is the class). Each class has ``inputs_per_class`` input
images (1, the paper's single input, by default), chosen deterministically; the first is always the input
a one-input run uses, so raising k adds inputs and never replaces one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import yaml
from PIL import Image

from pipeline.errors import ConfigError, InputError
from pipeline.grammar import Grammar
from pipeline.image_sets import decode_image, image_files, sample_image
from pipeline.images import load_image
from pipeline.seeding import derive_seed


@dataclass(frozen=True)
class ClassInfo:
    index: int  # label written as ``cls``
    id: str  # stable identifier used in keys and file names (WordNet id where there is one)
    name: str  # human-readable name
    wnid: str | None = None
    prompt: str = ""  # the text naming the class in a prompt: the grammar's class-axis terminal (default: name)
    group: str | None = None  # the class group whose nuisance vocabulary the grammar uses (grammar `groups`)

    def __post_init__(self) -> None:
        if not self.prompt:
            object.__setattr__(self, "prompt", self.name)


@dataclass(frozen=True)
class InputImage:
    ref: str  # which image it is, as a search result records it (a file, a sample key, a seed)
    image: Image.Image


def _check_inputs(k: Any) -> int:
    if int(k) < 1:
        raise ConfigError(f"dataset.inputs_per_class must be >= 1, got {k}")
    return int(k)


def _check_context_inputs(m: Any, k: int) -> int:
    """``dataset.context_inputs``: the inputs a class's context is read from (null: its ``inputs_per_class``)."""
    if m is None:
        return k
    if int(m) < k:
        raise ConfigError(f"dataset.context_inputs must be null or >= dataset.inputs_per_class ({k}), got {m}")
    return int(m)


def _key_safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "-", text).strip("-") or "class"


def read_class_list(path: str | Path) -> list[dict[str, str]]:
    """A class list kept in a file of its own rather than in the config (``dataset.classes: <path>``): ImageNet-21k's
    21,841 classes compose in a second this way instead of half a minute of config nodes. A ``.tsv`` whose first line
    names its columns (of ``wnid``, ``name``, ``prompt``, ``group``), or a ``.yaml`` / ``.json`` list, in label order."""
    p = Path(str(path)).expanduser()
    if not p.is_file():
        raise ConfigError(f"dataset.classes: class list '{p}' does not exist")
    if p.suffix == ".tsv":
        header, *rows = [line.rstrip("\n").split("\t") for line in p.read_text(encoding="utf-8").splitlines() if line.strip()]
        unknown = sorted(set(header) - {"wnid", "name", "prompt", "group"})
        if unknown or "name" not in header and "wnid" not in header:
            raise ConfigError(f"dataset.classes: '{p}' must name its columns on its first line (wnid, name, prompt, group), got {header}")
        return [{k: v for k, v in zip(header, row) if v} for row in rows]
    import json

    data = json.loads(p.read_text()) if p.suffix == ".json" else yaml.safe_load(p.read_text())
    if not isinstance(data, list):
        raise ConfigError(f"dataset.classes: '{p}' holds no list of classes")
    return data


def _parse_classes(spec: Sequence[Any] | str) -> list[ClassInfo]:
    """Classes from a list of names or of ``{wnid, name, prompt, group}`` mappings, keyed by WordNet id where
    there is one, or a class-list file (:func:`read_class_list`). Prompts name the classes in prompts, so no two may be
    equal (case-insensitively)."""
    if isinstance(spec, (str, Path)):
        spec = read_class_list(spec)
    out = []
    for i, c in enumerate(spec):
        if isinstance(c, Mapping):
            name, wnid = str(c.get("name") or c.get("wnid")), c.get("wnid")
            prompt, group = str(c.get("prompt") or name), c.get("group")
        else:
            name, wnid, prompt, group = str(c), None, str(c), None
        prompt = " ".join(prompt.split())
        if not prompt or any(ch in prompt for ch in "<>{}"):
            raise ConfigError(f"dataset class '{name}' cannot name a class in a prompt ('{prompt}': empty, or with one of <>{{}}, "
                              "which the grammar's templates use): give it a `prompt`")
        out.append(ClassInfo(i, _key_safe(wnid or name), name, wnid, prompt, group))
    seen: dict[str, ClassInfo] = {}
    for c in out:
        other = seen.setdefault(c.prompt.lower(), c)
        if other is not c:
            raise ConfigError(f"dataset classes {other.id} and {c.id} are both named '{c.prompt}' in prompts: give one a "
                              "distinct `prompt` (e.g. its WordNet lemma plus a hypernym, as scripts/make_imagenet_classes.py does)")
    ids = [c.id for c in out]
    if len(set(ids)) != len(ids):
        raise ConfigError(f"dataset classes repeat the id '{next(i for i in ids if ids.count(i) > 1)}'")
    return out


def _select(classes: list[ClassInfo], only: Sequence[str] | None, what: str) -> list[ClassInfo]:
    if not only:
        return classes
    lookup = {c.name: c for c in classes} | {c.prompt: c for c in classes} | {c.id: c for c in classes}
    missing = [x for x in only if str(x) not in lookup]
    if missing:
        raise ConfigError(f"dataset.only: unknown class '{missing[0]}' in {what}")
    return [lookup[str(x)] for x in only]


class _Catalogue:
    """The class lists every source shares: all classes (the grammar's class axis) and the ones to clone."""

    _all: list[ClassInfo]
    _classes: list[ClassInfo]

    def _set_classes(self, spec: Sequence[Any], only: Sequence[str] | None, what: str) -> None:
        self._all = _parse_classes(spec)
        self._classes = _select(self._all, only, what)

    def classes(self) -> list[ClassInfo]:
        """The classes to clone (``only``, else all)."""
        return self._classes

    def all_classes(self) -> list[ClassInfo]:
        """Every class of the dataset, in label order: the grammar's class axis (``only`` does not shrink it)."""
        return self._all

    inputs_per_class: int  # set by each source from dataset.inputs_per_class
    context_inputs: int  # dataset.context_inputs (>= inputs_per_class)

    def _set_inputs(self, inputs_per_class: Any, context_inputs: Any) -> None:
        self.inputs_per_class = _check_inputs(inputs_per_class)
        self.context_inputs = _check_context_inputs(context_inputs, self.inputs_per_class)

    def inputs(self, cls: ClassInfo) -> list[InputImage]:
        """The class's ``inputs_per_class`` input images, the same ones on every call and every machine."""
        return [self._input(cls, j) for j in range(self.inputs_per_class)]

    def context_extra(self, cls: ClassInfo) -> list[InputImage]:
        """The inputs the class's context is read from besides :meth:`inputs`: the next ones, up to
        ``dataset.context_inputs`` in all, as many as the class has (reading them costs no renders)."""
        out = []
        for j in range(self.inputs_per_class, self.context_inputs):
            try:
                out.append(self._input(cls, j))
            except InputError:  # a class with fewer images reads what it has
                break
        return out

    def skipped(self, cls: ClassInfo) -> list[dict[str, str]]:
        """The files passed over among the class's inputs so far (unreadable, empty, not images), each with why."""
        return []

    def input_image(self, cls: ClassInfo) -> Image.Image:
        """The class's first input image (the single input of the paper's setting)."""
        return self._input(cls, 0).image

    def _input(self, cls: ClassInfo, j: int) -> InputImage:
        raise NotImplementedError


class _DrawnWorld(_Catalogue):
    """A procedural world's inputs: class ``cls`` drawn with random nuisance attributes, input ``j`` at its own seeds
    (input 0 at the seeds of the single-input setting)."""

    world: Any
    grammar: Grammar
    input_seed: int

    def input_attributes(self, cls: ClassInfo, j: int) -> dict[str, str]:
        """What input ``j`` of class ``cls`` shows: its attributes, drawn from the class's context."""
        return self.world.sample_attributes(derive_seed("input", self.input_seed, cls.id, *((j,) if j else ())), cls.name)

    def _input(self, cls: ClassInfo, j: int) -> InputImage:
        attrs = self.input_attributes(cls, j)
        image = self.world.render(attrs, derive_seed("input-render", self.input_seed, cls.id, *((j,) if j else ()))).image
        return InputImage(f"input_seed={self.input_seed}/{cls.id}/{j}", image)


class ShapesDataset(_DrawnWorld):
    """The shapes world: classes are the grammar's class-axis choices; input images are drawn (from each class's
    context, ``context``: :mod:`pipeline.contexts`)."""

    def __init__(self, grammar: Grammar, image_size: int = 32, only: Sequence[str] | None = None, input_seed: int = 0,
                 name: str = "shapes", inputs_per_class: int = 1, context: float | None = None, context_seed: int = 0,
                 context_inputs: int | None = None) -> None:
        from pipeline.shapes.world import ShapesWorld

        self.name = name
        self.world = ShapesWorld(grammar, image_size, context, context_seed)
        self.grammar, self.input_seed = grammar, int(input_seed)
        axis = grammar.class_axis or "object"
        self._set_classes(grammar.axis(axis).choices, only, "the shapes world")
        self._set_inputs(inputs_per_class, context_inputs)


class GlyphsDataset(_DrawnWorld):
    """The glyphs world (:mod:`pipeline.glyphs.world`): ``num_classes`` classes ``glyph 000``…, the stand-in for
    ImageNet's 1000; input images are drawn with random nuisance attributes, like the shapes world's."""

    def __init__(self, grammar: Grammar, num_classes: int = 1000, image_size: int = 40, only: Sequence[str] | None = None,
                 input_seed: int = 0, name: str = "glyphs", inputs_per_class: int = 1, family_size: int = 1,
                 occlusion: float = 0.0, context: float | None = None, context_seed: int = 0,
                 context_inputs: int | None = None) -> None:
        from pipeline.glyphs.world import GlyphWorld, glyph_name

        if int(num_classes) < 1:
            raise ConfigError(f"dataset.num_classes must be >= 1, got {num_classes}")
        self.name = name
        names = [glyph_name(k) for k in range(int(num_classes))]
        self.grammar = grammar.with_choices(grammar.class_axis or "object", names)
        self.world = GlyphWorld(self.grammar, image_size, family_size, occlusion, context, context_seed)
        self.input_seed = int(input_seed)
        self._set_classes(names, only, "the glyphs world")
        self._set_inputs(inputs_per_class, context_inputs)


WNID = re.compile(r"n\d{8}")


def folder_prompt(folder: str) -> str:
    """How a class folder's name reads in a prompt: '_' and '-' as spaces ("golden_retriever" -> "golden retriever")."""
    return " ".join(re.sub(r"[_-]+", " ", folder).split())


class ImageFolderDataset(_Catalogue):
    """``root/<folder>/<image>``; ``classes`` lists ``{wnid, name}`` (folder = wnid, else name) in label order,
    or is null to use the sorted folder names. ``input_index`` picks which image (sorted) is the first input; the
    ``inputs_per_class`` inputs are the images from there on, in sorted order."""

    def __init__(
        self, root: str, classes: Sequence[Any] | None = None, only: Sequence[str] | None = None, input_index: int = 0,
        name: str = "imagefolder", inputs_per_class: int = 1, context_inputs: int | None = None,
    ) -> None:
        self.name = name
        self.root = Path(str(root)).expanduser()
        if not self.root.is_dir():
            raise ConfigError(f"dataset.root '{self.root}' does not exist")
        if classes is None:
            classes = [{"name": f, "prompt": folder_prompt(f)} for f in sorted(p.name for p in self.root.iterdir()
                                                                          if p.is_dir() and not p.name.startswith("."))]
            if not classes:
                raise ConfigError(f"dataset.root '{self.root}' has no class folders")
            ids = [c["name"] for c in classes if WNID.fullmatch(c["name"])]
            if ids:
                raise ConfigError(f"dataset.root '{self.root}' has folders named by WordNet id ('{ids[0]}'): a diffusion model "
                                  "cannot draw an id; use dataset=imagenet1k (it names ImageNet's ids) or list dataset.classes "
                                  "with a name for each (docs/guide.md, 'Clone your own dataset')")
        self._set_classes(classes, only, str(self.root))
        self.input_index = int(input_index)
        self._set_inputs(inputs_per_class, context_inputs)
        self._read: dict[str, dict[str, Any]] = {}  # class id -> the files read so far: next position, readable, skipped

    def _input(self, cls: ClassInfo, j: int) -> InputImage:
        """The class's ``j``-th readable image from ``input_index`` on (sorted by name): a file that cannot be read (truncated,
        empty, not an image) is passed over for the next one and listed (:meth:`skipped`; the search result, the summary
        and the card list it, the CLI names it once)."""
        folder = next((self.root / n for n in (cls.wnid, cls.name) if n and (self.root / n).is_dir()), None)
        if folder is None:
            raise InputError(f"dataset.root '{self.root}' has no folder for class '{cls.name}'")
        files = image_files(folder)
        state = self._read.setdefault(cls.id, {"next": self.input_index, "ok": [], "skipped": []})
        while len(state["ok"]) <= j and state["next"] < len(files):
            path = files[state["next"]]
            state["next"] += 1
            try:
                image = load_image(path)
            except InputError as e:
                state["skipped"].append({"file": f"{folder.name}/{path.name}", "why": str(e)})  # the CLI names it once
                continue
            state["ok"].append(path)
            if len(state["ok"]) > j:
                return InputImage(f"{folder.name}/{path.name}", image)
        if len(state["ok"]) <= j:
            first = state["skipped"][0] if state["skipped"] else None
            skipped = f", {len(state['skipped'])} unreadable skipped ({first['why']})" if first else ""
            raise InputError(f"class folder '{folder}' has {len(state['ok'])} readable images from dataset.input_index="
                             f"{self.input_index}{skipped}: input {j + 1} is needed" + (
                                 f" (dataset.inputs_per_class={self.inputs_per_class})" if j < self.inputs_per_class else ""))
        path = state["ok"][j]
        return InputImage(f"{folder.name}/{path.name}", load_image(path))

    def skipped(self, cls: ClassInfo) -> list[dict[str, str]]:
        return list(self._read.get(cls.id, {}).get("skipped", []))


class WebDatasetSource(_Catalogue):
    """WebDataset shards (``urls`` with braces, e.g. ``data/train-{000000..000099}.tar``) with ``cls`` labels;
    the input images of class k are the first ``inputs_per_class`` samples whose ``cls`` is k."""

    def __init__(self, urls: str, classes: Sequence[Any], only: Sequence[str] | None = None, name: str = "webdataset",
                 inputs_per_class: int = 1, context_inputs: int | None = None) -> None:
        import braceexpand

        self.name = name
        self.urls = list(braceexpand.braceexpand(str(urls)))
        local = [u for u in self.urls if "://" not in u]
        missing = [u for u in local if not Path(u).is_file()]
        if missing:
            raise ConfigError(f"dataset.urls: shard '{missing[0]}' does not exist")
        self._set_classes(classes, only, "dataset.classes")
        self._set_inputs(inputs_per_class, context_inputs)
        self._inputs: dict[int, list[tuple[str, bytes]]] = {}  # label -> its first samples' (key, image bytes)

    def _input(self, cls: ClassInfo, j: int) -> InputImage:
        k = self.context_inputs
        if len(self._inputs.get(cls.index, ())) < k:
            import webdataset as wds

            for sample in wds.WebDataset(self.urls, shardshuffle=False, empty_check=False):
                label = int(sample.get("cls", b"-1"))
                img = sample_image(sample)
                got = self._inputs.setdefault(label, [])
                if img is not None and len(got) < k and all(key != sample["__key__"] for key, _ in got):
                    got.append((sample["__key__"], img))
                if len(self._inputs.get(cls.index, ())) >= k:
                    break
        got = self._inputs.get(cls.index, [])
        if len(got) <= j:
            raise InputError(f"dataset.urls has {len(got)} samples of class {cls.index} ('{cls.name}'), "
                             f"{'dataset.inputs_per_class needs ' + str(self.inputs_per_class) if got else 'none to use as its input'}")
        key, data = got[j]
        return InputImage(key, decode_image(data, f"of class {cls.index} ('{cls.name}') in dataset.urls"))
