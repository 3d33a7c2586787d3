"""The end of a run: ``manifest.json`` consolidated from every shard's record, what the records add up to (missing and
unpassed images, label accuracy, shards after an out-of-memory back-off), the classes read as another class, whether
the run made its dataset (``clone.max_shortfall``), and ``summary.json``, the dataset card and timm's ``_info.json``
written beside the shards. Everything here is rebuilt from the folder, so a resumed run's outputs cover every run."""

from __future__ import annotations

import json
import os
import sys
from typing import Any, Callable, Mapping

from pipeline.clone.card import CardFacts, dataset_card, timm_info
from pipeline.clone.layout import LAYOUT
from pipeline.clone.manifest import Manifest
from pipeline.clone.plan import ClonePlan
from pipeline.clone.summary import CloneSummary, incompleteness
from pipeline.errors import InputError, PipelineError
from pipeline.storage import Storage


def finish(summary: CloneSummary, plan: ClonePlan, clone: Mapping[str, Any], manifest: Manifest, storage: Storage,
           card: CardFacts, readings: Mapping[str, tuple[str | None, float | None]], event: Callable[..., None]) -> None:
    """Fill ``summary`` from the folder and write the run's outputs (``clone``: the clone settings; ``readings``: class
    id -> the class its search read and how surely)."""
    records = list(manifest.records().values())  # read once (in parallel): the view, the tally and the card use them
    try:
        manifest.consolidate({"classes": [c.id for c in plan.classes], "class_labels": {c.id: c.index for c in plan.classes}},
                             records=records)
    except InputError as err:  # manifest.json is an index of manifest/*.json: the next run rebuilds it
        summary.failures.append({"unit": LAYOUT.manifest, "attempts": 1, "error": str(err)})
    tally(summary, records)
    if summary.shortfall:
        event("shortfall", classes=summary.shortfall)
    summary.images_requested = len(plan.classes) * int(clone.images_per_class)
    summary.incomplete = incompleteness(summary, float(clone.max_shortfall))
    if summary.incomplete:
        event("incomplete", why=summary.incomplete)
    label_report(summary, records, plan, readings)
    if summary.misread:
        event("misread", classes=summary.misread)
    event("summary", **summary.to_dict())
    try:
        storage.write_bytes(LAYOUT.summary, json.dumps(summary.to_dict(), indent=1).encode())
    except (OSError, PipelineError) as err:  # a full disk: the shards and the log say what is done
        print(f"warning: {LAYOUT.summary} could not be written ({err})", file=sys.stderr)
    write_card(storage, card, records, summary)


def tally(summary: CloneSummary, records: list) -> None:
    """Images missing and not passing, per class, and shards rendered after a back-off, from every record."""
    for rec in records:
        if rec.missing:
            for c, n in (rec.missing_by_class or {c: rec.missing for c in rec.classes}).items():
                summary.shortfall[c] = summary.shortfall.get(c, 0) + n
        for c, n in (rec.failed_by_class or {}).items():
            summary.not_passed[c] = summary.not_passed.get(c, 0) + n
        summary.shards_after_oom_backoff += rec.backed_off_to is not None


def label_report(summary: CloneSummary, records: list, plan: ClonePlan, readings: Mapping[str, tuple[str | None, float | None]]) -> None:
    """Label accuracy from the records that count it, and the classes whose input reading is not their label."""
    per: dict[str, list[int]] = {}
    for rec in records:
        if rec.label_ok is None:  # a record older than the count (those that have it have class_counts too)
            continue
        for c, n in (rec.class_counts or {}).items():
            tally_c = per.setdefault(c, [0, 0])
            tally_c[0] += rec.label_ok.get(c, 0)
            tally_c[1] += n
    total = sum(n for _, n in per.values())
    if total:
        summary.label_accuracy = round(sum(ok for ok, _ in per.values()) / total, 6)
        summary.label_accuracy_by_class = {c: round(ok / n, 6) for c, (ok, n) in sorted(per.items()) if n}
    for cls in plan.classes:
        read, prob = readings.get(cls.id, (None, None))
        if read is not None and read.lower() != cls.prompt.lower():
            summary.misread[cls.id] = {"label": cls.prompt, "read": read, "prob": prob}


def write_card(storage: Storage, card: CardFacts, records: list, summary: CloneSummary) -> None:
    """The folder's dataset card and timm's _info.json, rewritten from every committed shard after each run."""
    root = storage.root  # a local folder is shown from the working directory where it lies below it
    shown = (str(storage.url) if not storage.is_local
             else os.path.relpath(root) if root.startswith(os.getcwd() + os.sep) else root)
    try:
        contexts = json.loads(storage.read_bytes(LAYOUT.contexts)) if storage.exists(LAYOUT.contexts) else None
        text = dataset_card(card, sorted(records, key=lambda r: r.shard), summary.to_dict(), shown, contexts)
        storage.write_bytes(LAYOUT.card, text.encode())
        storage.write_bytes(LAYOUT.timm_info, json.dumps(timm_info(card, records), indent=1).encode())
    except (OSError, PipelineError) as err:
        print(f"warning: {LAYOUT.card} could not be written ({err})", file=sys.stderr)
