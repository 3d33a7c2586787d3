"""What an output folder already holds, read at the start of every run (a resume is "list what is done, do the rest").

Records and shards are the truth, consolidated files are caches. For each planned shard and each class's
search this decides, from what is intact:

* **done**: a shard whose manifest record validates (:func:`~pipeline.clone.shards.verify_shard`) and names
  one of the folder's identities (:func:`~pipeline.clone.identity.folder_identities`); a search result that
  parses and names one;
* **foreign**: a record or search result of an identity this folder never accepted (another run wrote into
  the folder): the caller refuses the folder, or with ``clone.on_config_change=allow`` redoes them;
* **damaged**: an invalid shard, an unreadable record or search result: redone, and said so;
* **rebuilt**: a committed shard whose record is gone: its record is rebuilt from the shard when every sample
  in it is one this run plans (its key, class and seed), instead of rendering the same bytes again.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable

from pipeline.clone.layout import LAYOUT
from pipeline.clone.manifest import Manifest
from pipeline.clone.plan import ShardUnit
from pipeline.clone.shards import ShardRecord, asks_for_label, keys_digest
from pipeline.errors import PipelineError
from pipeline.storage import Storage

READ_THREADS = 16  # small reads in parallel (an object store answers each in tens of ms)


@dataclass
class Inventory:
    valid: dict[str, ShardRecord] = field(default_factory=dict)  # shard -> its record, done
    damaged: dict[str, str] = field(default_factory=dict)  # shard or search file -> why it is redone
    foreign: dict[str, str] = field(default_factory=dict)  # shard or search file -> the identity it names
    rebuilt: list[str] = field(default_factory=list)  # shards whose record was rebuilt from the shard
    searches_done: set[str] = field(default_factory=set)  # class ids
    #: class id -> (the class read in its input images, its probability) of each usable search result
    readings: dict[str, tuple[str | None, float | None]] = field(default_factory=dict)
    #: class id -> its context reading (clone.propose=inputs: pipeline.clone.context_prior), where its search made one
    contexts: dict[str, dict] = field(default_factory=dict)
    #: class id -> the input files its search passed over (unreadable, empty, not images), where there were any
    skipped_inputs: dict[str, list[dict[str, str]]] = field(default_factory=dict)


def output_tags(storage: Storage) -> set[str]:
    """The identity hashes every record and search result of the folder names (None for those older than the tag)."""
    tags = {rec.identity for rec in Manifest(storage).records().values()}
    for rel in storage.list(LAYOUT.searches, ".json"):
        try:
            tags.add(json.loads(storage.read_bytes(rel)).get("info", {}).get("identity"))
        except (ValueError, AttributeError, OSError, PipelineError):
            continue
    return tags


def _rebuild(storage: Storage, unit: ShardUnit, seed_of: Callable[[Any, int, int], int], class_pos: int | None) -> ShardRecord | None:
    """The record of ``unit``'s committed shard, from the shard itself, if every sample in it is one this run plans:
    its key, its class index and its seed (derived from the run seed, class, index and attempt). Else None.
    ``class_pos``: the class axis's position in the samples' encodings (None: label accuracy not counted)."""
    try:
        data = storage.read_bytes(unit.shard)
        samples: dict[str, dict[str, bytes]] = {}
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
            for member in tar:
                key, _, ext = member.name.partition(".")
                samples.setdefault(key, {})[ext] = tar.extractfile(member).read()
    except (OSError, tarfile.TarError, EOFError, PipelineError):
        return None
    expected = {f"{cls.id}_{i:06d}": (k, cls, i) for k, cls in enumerate(unit.classes) for i in unit.indices(k)}
    counts: dict[str, int] = {}
    label_ok: dict[str, int] = {}
    failed: dict[str, int] = {}
    for key, fields in samples.items():
        if key not in expected or "json" not in fields:
            return None
        k, cls, i = expected[key]
        try:
            meta = json.loads(fields["json"])
            attempt = int(meta["attempt"])
            ok = meta["class_index"] == cls.index and meta["class_id"] == cls.id and (
                meta["from_search"] or meta["seed"] == seed_of(cls, i, attempt))
            label_ok[cls.id] = label_ok.get(cls.id, 0) + (class_pos is not None and asks_for_label(meta, class_pos))
            failed[cls.id] = failed.get(cls.id, 0) + (meta.get("accepted") is False)
        except (ValueError, KeyError, TypeError, IndexError):
            return None
        if not ok:
            return None
        counts[cls.id] = counts.get(cls.id, 0) + 1
    short = {c.id: len(unit.indices(k)) - counts.get(c.id, 0) for k, c in enumerate(unit.classes)}
    stat = storage.stat(unit.shard)
    return ShardRecord(unit.shard, [c.id for c in unit.classes], len(samples), len(data), hashlib.sha256(data).hexdigest(),
                       keys_digest(samples), unit.count - len(samples), stat[1] if stat else None,
                       {c: n for c, n in counts.items() if n}, {c: n for c, n in short.items() if n} or None,
                       label_ok={c: n for c, n in label_ok.items() if n} if class_pos is not None else None,
                       failed_by_class={c: n for c, n in failed.items() if n} or None)


def take_inventory(storage: Storage, units: list[ShardUnit], class_ids: list[str], known: set[str], verify_mode: str,
                   reuse: bool, seed_of: Callable[[Any, int, int], int], identity: str, class_pos: int | None = None) -> Inventory:
    """What of ``units`` (the planned shards) and ``class_ids`` (the classes to search) is done, foreign or damaged.
    ``known``: the folder's identity hashes; ``identity``: this run's (a rebuilt record is tagged with it);
    ``class_pos``: the class axis's position in a sample's encoding (a rebuilt record counts label accuracy)."""
    inv = Inventory()
    manifest = Manifest(storage)
    records, unreadable = manifest.scan()
    for shard in unreadable:
        inv.damaged[LAYOUT.record(shard)] = "unreadable record"
    with ThreadPoolExecutor(READ_THREADS) as pool:
        own = [r for r in records.values() if r.identity is None or r.identity in known]
        inv.valid, problems = manifest.validate(verify_mode, own, pool.map)
        inv.damaged.update(problems)
        for rec in records.values():
            if rec.identity is not None and rec.identity not in known:
                inv.foreign[rec.shard] = rec.identity
        committed = set(storage.list("", ".tar"))
        orphans = [u for u in units if u.shard in committed and u.shard not in records]
        for unit, rec in zip(orphans, pool.map(lambda u: _rebuild(storage, u, seed_of, class_pos), orphans)):
            if rec is not None:
                rec = ShardRecord(**{**rec.to_dict(), "identity": identity})
                manifest.add(rec)
                inv.valid[unit.shard] = rec
                inv.rebuilt.append(unit.shard)

        persisted = set(storage.list(LAYOUT.searches))

        def search_state(cid: str) -> tuple[str, str | None, str | None, dict]:
            """(class id, its identity tag or None, why it is not usable or None, its info)."""
            rel = LAYOUT.search(cid)
            if rel not in persisted:
                return cid, None, "absent", {}
            if reuse and LAYOUT.renders(cid) not in persisted:  # with reuse, its renders are committed first
                return cid, None, "absent", {}
            try:
                body = json.loads(storage.read_bytes(rel))
                tag = body.get("info", {}).get("identity")
                if not isinstance(body.get("info"), dict) or "best" not in body:
                    raise ValueError("not a search result")
            except (ValueError, AttributeError, UnicodeDecodeError) as e:
                return cid, None, f"unreadable ({e})", {}
            return cid, tag, None, body["info"]

        for cid, tag, why, info in pool.map(search_state, class_ids):
            rel = LAYOUT.search(cid)
            if why == "absent":
                continue
            if why is not None:
                inv.damaged[rel] = why
            elif tag is not None and tag not in known:
                inv.foreign[rel] = tag
            else:
                inv.searches_done.add(cid)
                inv.readings[cid] = (info.get("read_class"), info.get("read_prob"))
                if info.get("context") is not None:
                    inv.contexts[cid] = info["context"]
                if info.get("skipped_inputs"):
                    inv.skipped_inputs[cid] = info["skipped_inputs"]
    return inv
