"""The clone folder's dataset card: ``README.md`` in the Hugging Face Hub's format, so the folder is a dataset.

``datasets.load_dataset(folder)`` reads the card's YAML header: ``configs`` points the builder at the shards
(the folder's other files are bookkeeping), ``dataset_info.features`` types the columns, ``cls`` as a
``ClassLabel`` whose names are the dataset's classes in label order. The Hub reads the same card, so
``hf upload`` of the folder should load the same way (untried here: no network). The body says how the clone was generated and what it holds, and
how to read it with ``webdataset``, ``datasets`` and Ray Data.

The shards are not changed for the card: their columns are WebDataset's, named by file extension (the image,
``cls``, ``json``). The card is rewritten at the end of every run, so a resume updates it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Sequence

import yaml

from pipeline.clone.dataset import ClassInfo
from pipeline.clone.shards import ShardRecord
from pipeline.models.fingerprint import weights_name

if TYPE_CHECKING:
    from pipeline.config import CloneApp

#: the fields of every sample's ``json`` (written by :meth:`pipeline.clone.worker.CloneWorker.generate`) and their
#: Arrow types in the card. Each field has one type in every sample of a clone: a number that does not exist is NaN
#: (a proposal's ``reward`` and ``state_score``, which no search rendered; ``score`` without verification), ``encoding``
#: is null for every sample or none (a free-text prompt has none)
SAMPLE_FIELDS: dict[str, Any] = {
    "accepted": "bool", "attempt": "int64", "class_id": "string", "class_index": "int64", "class_name": "string", "class_prompt": "string",
    "encoding": ["int64"], "from_search": "bool", "model_id": "string", "pipeline_version": "string", "prompt": "string",
    "proposed": "bool",
    "reward": "float64", "score": "float64", "search": "string", "seed": "int64", "state_score": "float64",
    "wnid": "string",
}
SHARD_GLOB = "shard-*.tar"


@dataclass(frozen=True)
class CardFacts:
    """What the card says about how the clone was made (all from the run's config) and the label space."""

    dataset: str  # dataset.name
    classes: tuple[ClassInfo, ...]  # every class of the dataset, in label order (dataset.only does not shrink it)
    image_format: str  # clone.image_format: the image column's name
    model: str  # the weights by hub id or folder name and content (as every sample's model_id names them)
    license: str | None  # the model's licence (model.license), a Hub licence id
    search: str  # the search's class
    settings: dict[str, Any]  # the few settings a reader of the card wants (method, inputs, seeds, sizes)
    command: str | None  # the command line that launched the run (None: the Python API)

    @classmethod
    def of(cls, cfg: CloneApp, classes: Sequence[ClassInfo], command: str | None = None) -> "CardFacts":
        """From the run's settings and the dataset's classes."""
        model, search, dataset = cfg.model, cfg.search, cfg.dataset  # component configs (``_target_`` and its arguments)
        if "pretrained" in model:
            name = weights_name(model["pretrained"], model.get("revision"))
        else:
            name = f"{model['_target_'].rsplit('.', 1)[-1]} ({model.get('world', 'shapes')} world)"
        env, clone = cfg.env, cfg.clone
        settings = {"seed": cfg.seed, "env.mode": env.mode, "env.class_source": env.class_source,
                    "env.budget": env.budget, "dataset.inputs_per_class": dataset.get("inputs_per_class"),
                    "dataset.input_seed": dataset.get("input_seed"), "clone.images_per_class": clone.images_per_class,
                    "clone.shard_size": clone.shard_size, "clone.shard_order": clone.shard_order}
        return cls(str(dataset.get("name") or "dataset"), tuple(classes), str(clone.image_format), name,
                   model.get("license"), search["_target_"].rsplit(".", 1)[-1], settings, command)


def label_names(classes: Sequence[ClassInfo]) -> list[str]:
    """The ClassLabel names, in label order: the class names, or the class ids where names repeat (a ClassLabel's
    names are unique). Labels the dataset does not use are named by their number."""
    by_index = {c.index: c for c in classes}
    names = [c.name for c in classes]
    use_ids = len(set(names)) < len(names)
    return [(by_index[i].id if use_ids else by_index[i].name) if i in by_index else str(i)
            for i in range(max(by_index, default=-1) + 1)]


def size_category(n: int) -> str:
    """The Hub's ``size_categories`` bucket of ``n`` samples."""
    if n < 1000:
        return "n<1K"
    bounds = ["1K", "10K", "100K", "1M", "10M", "100M", "1B", "10B", "100B", "1T"]
    k = min(int(math.log10(n)) - 3, len(bounds) - 2)
    return f"{bounds[k]}<n<{bounds[k + 1]}"


def _feature(name: str, kind: Any) -> dict[str, Any]:
    return {"name": name, "list": kind[0]} if isinstance(kind, list) else {"name": name, "dtype": kind}


def features(facts: CardFacts) -> list[dict[str, Any]]:
    """The card's ``dataset_info.features`` (the ``datasets`` library's YAML form)."""
    names = label_names(facts.classes)
    return [
        {"name": "__key__", "dtype": "string"},
        {"name": facts.image_format, "dtype": "image"},
        {"name": "cls", "dtype": {"class_label": {"names": {str(i): n for i, n in enumerate(names)}}}},
        {"name": "json", "struct": [_feature(k, v) for k, v in SAMPLE_FIELDS.items()]},
    ]


def header(facts: CardFacts, images: int) -> dict[str, Any]:
    """The card's YAML metadata."""
    return {
        "pretty_name": f"{facts.dataset} clone (RLDF)",
        "license": facts.license or "other",
        "task_categories": ["image-classification"],
        "tags": ["synthetic", "rldf", "webdataset"],
        "size_categories": [size_category(images)],
        "configs": [{"config_name": "default", "data_files": [{"split": "train", "path": SHARD_GLOB}], "default": True}],
        "dataset_info": {"features": features(facts)},
    }


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}%"


#: skipped input files the card names (every one is in summary.json's ``inputs_skipped``)
CARD_SKIPPED_FILES = 20


def _skipped_inputs(skipped: dict[str, list[dict[str, str]]]) -> list[str]:
    """The input files that could not be read (unreadable, empty, not images), each passed over for the next one."""
    files = [(cid, f) for cid, fs in sorted(skipped.items()) for f in fs]
    if not files:
        return []
    lines = [f"{len(files)} input files of {len(skipped)} classes could not be read and were passed over (the next image of "
             "the class was read instead; all in `inputs_skipped` in `summary.json`):", ""]
    lines += [f"- `{f['file']}`: {f['why']}" for _, f in files[:CARD_SKIPPED_FILES]]
    if len(files) > CARD_SKIPPED_FILES:
        lines.append(f"- and {len(files) - CARD_SKIPPED_FILES} more")
    return lines + [""]


def body(facts: CardFacts, records: Sequence[ShardRecord], images: int, summary: dict[str, Any], folder: str) -> str:
    """The card's text: how the clone was made, what it holds (``images`` samples in ``records``), how to load it."""
    cloned = sorted({c for r in records for c in (r.class_counts or dict.fromkeys(r.classes, 1))})
    size_mb = sum(r.bytes for r in records) / 1e6
    how = f"`{facts.command}`" if facts.command else "the Python API (`pipeline.clone.run`)"
    settings = ", ".join(f"`{k}={v}`" for k, v in facts.settings.items() if v is not None)
    img = facts.image_format
    misread = summary.get("misread") or {}
    short = summary.get("shortfall") or {}
    unpassed = summary.get("not_passed") or {}
    lines = [
        f"# {facts.dataset} clone (RLDF)",
        "",
        f"{images} synthetic images of {len(cloned)} of the {len(facts.classes)} classes of `{facts.dataset}`, generated by "
        f"rldf-pipeline (search `{facts.search}`) from each class's input image(s).{_method(facts.search)}",
        "",
        "## How it was generated",
        "",
        f"- launched with {how}",
        f"- model: `{facts.model}` (licence: {facts.license or 'see the model'}); search: `{facts.search}`",
        f"- settings: {settings}",
        "- every setting the samples depend on is in `run.json`; every event of every run in `clone.log`; the latest "
        "run's summary in `summary.json`",
        "",
        "## What it holds",
        "",
        "| images | classes | shards | size | label accuracy | classes read as another class | images short | images not passing |",
        "|---|---|---|---|---|---|---|---|",
        f"| {images} | {len(cloned)} | {len(records)} | {size_mb:.1f} MB | {_pct(summary.get('label_accuracy'))} | "
        f"{len(misread)} | {sum(short.values())} | {sum(unpassed.values())} |",
        "",
        "A sample's `json` says whether its image passed acceptance (`accepted`: the semantic encoder read it as its class "
        "at least `env.accept_threshold` times as surely as the class's own input images, `env.acceptance=relative`); "
        "where no render of an image passed in `clone.max_tries`, the best one is kept with `accepted: false` "
        "(`clone.fill=best`). Filter on it to train on passing images only.",
        *_per_class(records, unpassed, short),
        *_backed_off(records),
        *_skipped_inputs(summary.get("inputs_skipped") or {}),
        "Label accuracy is the share of samples whose prompt asks for the class of their label; on a procedural world it is "
        "the share whose image shows its label. A class whose input image(s) the semantic encoder read as another class "
        "(`misread` in `summary.json`) shows the class read unless `env.class_source=label` (with `rendered`, the class "
        "its renders chose).",
        "",
        "Columns: `__key__` (`<class id>_<index>`), "
        f"`{img}` (the image), `cls` (the label, a `ClassLabel`), `json` (class, prompt, its semantic encoding, seed, "
        "reward and score, the model, the search).",
        "",
        "## Load it",
        "",
        *_loading(folder, img, facts.dataset),
    ]
    return "\n".join(lines)


def _backed_off(records: Sequence[Any]) -> list[str]:
    """A line when some shards were rendered after a CUDA out-of-memory back-off (their pixels may differ)."""
    sizes = sorted({r.backed_off_to for r in records if r.backed_off_to is not None})
    if not sizes:
        return []
    n = sum(r.backed_off_to is not None for r in records)
    return ["", f"{n} shards were rendered after CUDA ran out of memory and the batch was lowered (to "
            f"{', '.join(map(str, sizes))}): their prompts, seeds and initial noise are those of the plan, but their pixels "
            "may differ slightly from a run at the full batch (`backed_off_to` in their manifest records).", ""]


def _per_class(records: Sequence[ShardRecord], unpassed: dict[str, int], short: dict[str, int]) -> list[str]:
    """The classes with images not passing or missing, worst first (the first 20), with how many of theirs passed."""
    if not unpassed and not short:
        return []
    written: dict[str, int] = {}
    for r in records:
        for c, n in (r.class_counts or {}).items():
            written[c] = written.get(c, 0) + n
    worst = sorted({*unpassed, *short}, key=lambda c: (-(unpassed.get(c, 0) + short.get(c, 0)), c))
    rows = [f"| {c} | {written.get(c, 0) - unpassed.get(c, 0)} | {unpassed.get(c, 0)} | {short.get(c, 0)} |" for c in worst[:20]]
    more = ["", f"and {len(worst) - 20} more classes (`not_passed` and `shortfall` in `summary.json`)."] if len(worst) > 20 else []
    return ["", "Classes with images not passing or missing:", "", "| class | passed | not passed | missing |", "|---|---|---|---|",
            *rows, *more]


def _method(search: str) -> str:
    if search != "QLearning":
        return ""
    return (" The method is Reinforcement Learning from Diffusion Feedback (Marathe, arXiv 2311.15648): a Q-learning agent "
            "walks a grid of semantic encodings read from the input image(s), the diffusion model renders its states, and "
            "the images along high-reward trajectories keep the input's class while the rest varies.")


def _loading(folder: str, img: str, name: str) -> list[str]:
    """How to read the clone from ``folder`` with ``datasets``, ``webdataset``, timm and Ray Data."""
    remote = "://" in folder
    local = f"path/to/{folder.rstrip('/').rsplit('/', 1)[-1]}" if remote else folder
    lines = [f"On the object store: copy the folder first (`aws s3 sync {folder} {local}`), or stream its shards "
             "with `webdataset` or Ray Data.", ""] if remote else []
    return lines + [
        "```python",
        "from datasets import load_dataset",
        f'ds = load_dataset("{local}", split="train")',
        'names = ds.features["cls"].names  # ds[0]["cls"] is a label, names[label] its class',
        "```",
        "",
        "```python",
        "import glob, webdataset as wds",
        f'shards = sorted(glob.glob("{local}/{SHARD_GLOB}"))  # not searches/*.tar: those are search renders',
        f'ds = wds.WebDataset(shards, shardshuffle=False).decode("pil").to_tuple("{img}", "cls")',
        "```",
        "",
        "```python",
        "import timm  # timm's own WebDataset reader lists the shards from _info.json",
        f'ds = timm.data.create_dataset("wds/{name}", root="{local}", split="train", is_training=True)',
        "```",
        "",
        "```python",
        "import glob, ray",
        f'ds = ray.data.read_webdataset(sorted(glob.glob("{local}/{SHARD_GLOB}")))',
        "```",
        "",
    ]


def timm_info(facts: CardFacts, records: Sequence[ShardRecord]) -> dict[str, Any]:
    """``_info.json``: the committed shards as timm's WebDataset reader (``timm.data.create_dataset("wds/<name>",
    root=folder, split="train")``) lists a split: its shard file names, samples per shard and in all, in shard order."""
    ordered = sorted(records, key=lambda r: r.shard)
    return {"name": facts.dataset, "splits": {"train": {"name": "train", "num_samples": sum(r.count for r in ordered),
                                                        "filenames": [r.shard for r in ordered],
                                                        "shard_lengths": [r.count for r in ordered]}}}


def dataset_card(facts: CardFacts, records: Sequence[ShardRecord], summary: dict[str, Any], folder: str,
                 contexts: dict[str, Any] | None = None) -> str:
    """The whole ``README.md``: YAML header and body. ``folder``: where a reader loads it from, as the card shows it;
    ``contexts``: ``contexts.json`` (clone.propose=inputs), whose estimates the card lists."""
    images = sum(r.count for r in records)
    meta = yaml.safe_dump(header(facts, images), sort_keys=False, allow_unicode=True)
    return f"---\n{meta}---\n\n{body(facts, records, images, summary, folder)}" + "\n".join(context_section(contexts))


#: classes whose context estimate the card lists (every class's is in contexts.json)
CARD_CONTEXT_CLASSES = 20


def context_section(contexts: dict[str, Any] | None) -> list[str]:
    """Each class's context, as read from its inputs (``clone.propose=inputs``): the prior of each axis and, for the first
    classes, the likeliest choice of each axis with its estimated share of the class's images."""
    if not contexts or not contexts.get("classes"):
        return []
    priors = contexts["priors"]
    lines = ["", "", "## Each class's context", "",
             "Each class's images follow what its input images show beyond the class (`clone.propose=inputs`): on every "
             "non-class axis, the mean of the semantic encoder's readings of its inputs, smoothed towards a prior learned from "
             f"every class (`clone.context_prior={contexts['context_prior']}`; strength in inputs: small where classes differ, "
             "large where they share one distribution). The estimates are in `contexts.json`.", "",
             "| axis | choices | prior strength | classes |", "|---|---|---|---|"]
    lines += [f"| {p['axis']} | {len(p['choices'])} | {p['strength']:.3g} | {p['classes']} |" for p in priors]
    classes = sorted(contexts["classes"])
    axes = sorted({a for est in contexts["classes"].values() for a in est})
    lines += ["", "| class | " + " | ".join(axes) + " |", "|---|" + "---|" * len(axes)]
    for cid in classes[:CARD_CONTEXT_CLASSES]:
        est = contexts["classes"][cid]  # axis -> {choice: estimated share}
        cells = [f"{max(est[a], key=est[a].get)} ({max(est[a].values()):.0%})" if a in est else "" for a in axes]
        lines.append(f"| {cid} | " + " | ".join(cells) + " |")
    if len(classes) > CARD_CONTEXT_CLASSES:
        lines += ["", f"and {len(classes) - CARD_CONTEXT_CLASSES} more classes in `contexts.json`."]
    return lines
