"""A clone's identity: the settings its output depends on, recorded at the first run, checked on resume.

Resume reuses every committed shard and search result in ``paths.output_dir``. That is right only if the
rerun would have produced the same bytes, so the first run writes ``run.json`` with the settings that
decide a sample (run seed, grammar, model, rewards, search, env, dataset, clone settings) and the
*content* of the local model folders those settings name. A resume under different settings, or with
retrained weights in the same folder, stops with an error that names what changed, instead of mixing
two datasets in one output. ``clone.on_config_change=allow`` resumes anyway and records the change.

Runtime knobs that do not change a sample (workers, cluster, devices, batch sizes, progress bars,
retries) are left out, so a run may resume on other hardware or with a different cluster size: which
settings those are is marked in the schema (:func:`pipeline.config.is_runtime`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from typing import Any, Callable

from pipeline.clone.layout import LAYOUT
from pipeline.config import is_runtime
from pipeline.errors import ConfigError
from pipeline.models.fingerprint import fingerprint_path
from pipeline.storage import Storage

log = logging.getLogger("rldf.clone")

# top-level config groups that decide what a sample is
OUTPUT_GROUPS = ("seed", "grammar", "model", "reward", "search", "env", "dataset", "clone")
# groups whose local paths name model weights: their files' content is part of the identity
WEIGHT_GROUPS = ("model", "reward")
#: settings added after folders were made, with the value that keeps the behaviour those folders were made with:
#: a run.json without the key reads as that value, so adding a setting does not make old folders foreign
ADDED_SETTINGS: dict[str, Any] = {"env.class_source": "read", "dataset.inputs_per_class": 1, "clone.reuse_max_share": 1.0,
                                  "env.rendered_candidates": 4, "env.rendered_seeds": 8, "env.acceptance": "absolute",
                                  "env.state_seeds": "shared", "clone.propose": "accepted", "clone.fill": "strict",
                                  "clone.context_prior": "empirical", "dataset.context": None, "dataset.context_seed": 0,
                                  "dataset.context_inputs": None, "clone.shuffle_classes": None,
                                  "reward.semantic_encoder.sharpness": 3.0, "reward.semantic_encoder.threshold": 0.15}


def _flatten(node: Any, prefix: str, out: dict[str, Any]) -> None:
    if isinstance(node, dict):
        for k, v in node.items():
            _flatten(v, f"{prefix}.{k}" if prefix else str(k), out)
    else:
        out[prefix] = node


def run_identity(cfg: dict[str, Any]) -> dict[str, Any]:
    """The resolved settings a clone's samples depend on, flattened to ``dotted.key -> value``.

    A string under a weight group that names an existing local path is replaced by its content
    fingerprint, so moving the models folder is not a change and retraining in place is; so is a class-list file
    (``dataset.classes: <path>``), whose edits change what the labels mean."""
    flat: dict[str, Any] = {}
    for group in OUTPUT_GROUPS:
        if group in cfg:
            _flatten(cfg[group], group, flat)
    out, hashed = {}, {}  # a folder named by several keys (e.g. the shapes CNN) is read once
    order = flat.get("clone.shard_order")
    for key, value in sorted(flat.items()):
        if is_runtime(key, order):
            continue
        named_file = key.split(".", 1)[0] in WEIGHT_GROUPS or key == "dataset.classes"  # weights; a class-list file
        if named_file and isinstance(value, str) and value and os.path.exists(value):
            if value not in hashed:
                hashed[value] = fingerprint_path(value)
            value = hashed[value]
        out[key] = value
    return out


def identity_hash(identity: dict[str, Any]) -> str:
    """A short stable hash of a run identity: what every manifest record, search result and sample carries, so
    output of another run's settings is told from this folder's own."""
    return hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[:16]


def folder_identities(storage: Storage) -> set[str]:
    """The identity hashes this folder accepted: the current one of ``run.json`` and those it replaced with
    ``clone.on_config_change=allow`` (their shards were kept). Empty when ``run.json`` is absent or unreadable."""
    try:
        record = json.loads(storage.read_bytes(LAYOUT.run_json))
        return {identity_hash(record["identity"])} | {identity_hash(h["identity"]) for h in record.get("history", [])}
    except (FileNotFoundError, ValueError, KeyError, TypeError):
        return set()


def _record(identity: dict[str, Any], history: list) -> dict[str, Any]:
    return {"identity": identity, "identity_hash": identity_hash(identity), "history": history}


def _write_record(storage: Storage, record: dict[str, Any]) -> None:
    storage.write_bytes(LAYOUT.run_json, json.dumps(record, indent=1).encode())


def _short(value: Any) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= 60 else text[:57] + "..."


def identity_diff(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """One line per setting that differs: ``key: old -> new``."""
    lines = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key, ADDED_SETTINGS.get(key, "<unset>")), new.get(key, ADDED_SETTINGS.get(key, "<unset>"))
        if a != b:
            lines.append(f"{key}: {_short(a)} -> {_short(b)}")
    return lines


def has_output(storage: Storage) -> bool:
    """Whether anything a resume would reuse was committed: a search result, a shard or its manifest record."""
    return bool(storage.list(LAYOUT.searches, ".json") or storage.list(LAYOUT.records, ".json") or storage.list("", ".tar"))


def check_identity(storage: Storage, cfg: dict[str, Any], policy: str, identity: dict[str, Any] | None = None,
                   output_tags: Callable[[], set[str]] | None = None) -> list[str]:
    """Record the run's identity on the first run; on a resume compare and return the differences. While
    the folder holds no committed output (an earlier start failed early), the record is simply replaced.
    ``identity``: :func:`run_identity` of ``cfg`` where the caller has it already.

    Raises :class:`ConfigError` on a difference when ``policy`` is ``"error"``; with ``"allow"`` the new
    identity is recorded (the previous ones are kept under ``history``) and the differences returned.

    A missing or damaged ``run.json`` beside committed output is repaired from the outputs, which each name the
    identity hash they were made under (``output_tags`` lists them): when they are all this run's, the record is
    rewritten; when some are another's, the folder is refused (or, with ``"allow"``, rewritten and those redone)."""
    new = identity if identity is not None else run_identity(cfg)
    record, damage = None, "missing"
    if storage.exists(LAYOUT.run_json):
        try:
            record = json.loads(storage.read_bytes(LAYOUT.run_json))
            if not isinstance(record, dict) or not isinstance(record.get("identity"), dict):
                raise ValueError("no identity in it")
        except (ValueError, TypeError) as e:
            record, damage = None, f"unreadable ({e})"
    if record is None:
        if not has_output(storage):  # a first run, or a record of a start that committed nothing
            _write_record(storage, _record(new, []))
            return []
        foreign = sorted((output_tags() if output_tags else set()) - {identity_hash(new), None})
        if foreign and policy == "error":
            raise ConfigError(
                f"{storage.path(LAYOUT.run_json)} is {damage}, and the folder holds output made under other settings "
                f"(identity {', '.join(foreign)}; this run's is {identity_hash(new)}): use a new paths.output_dir, restore "
                "run.json, or pass clone.on_config_change=allow to redo that output under the current settings")
        log.warning("%s is %s: rebuilt from the current settings (%s)", storage.path(LAYOUT.run_json), damage,
                    f"output of other settings ({', '.join(foreign)}) will be redone" if foreign
                    else "every output in the folder was made under them")
        _write_record(storage, _record(new, []))
        return [f"{LAYOUT.run_json}: {damage}, rebuilt"]
    old = record["identity"]
    changes = identity_diff(old, new)
    if not changes:
        if identity_hash(old) != identity_hash(new):  # only settings added since, at their old behaviour: recorded
            history = record.get("history", []) + [{"identity": old, "replaced_at": time.strftime("%Y-%m-%dT%H:%M:%S")}]
            _write_record(storage, {**record, **_record(new, history)})
        return []
    if not has_output(storage):  # a start that failed before committing anything blocks nothing
        log.info("%s holds no output yet: replacing the settings of the earlier start (%s)", storage.url, "; ".join(changes))
        _write_record(storage, _record(new, []))
        return []
    if policy == "error":
        shown = "; ".join(changes[:6]) + (f"; and {len(changes) - 6} more" if len(changes) > 6 else "")
        raise ConfigError(
            f"{storage.url} was started with other settings, and resuming would mix two datasets: {shown}. "
            "Use a new paths.output_dir, or pass clone.on_config_change=allow to resume anyway "
            "(shards already written keep the old settings)"
        )
    history = record.get("history", []) + [{"identity": old, "replaced_at": time.strftime("%Y-%m-%dT%H:%M:%S")}]
    _write_record(storage, {**record, **_record(new, history)})
    log.warning("resuming %s with changed settings (clone.on_config_change=allow): %s", storage.url, "; ".join(changes))
    return changes


def check_weights(storage: Storage, weights: str | None, policy: str) -> str | None:
    """Record in ``run.json`` the hub snapshot (``org/name@commit``) a worker loaded; a later worker or a resume
    that loaded another snapshot (the hub id's branch moved on, or a node's cache holds an older one) is a
    change of the model: refused under ``policy="error"``, recorded and returned as a line with ``"allow"``.
    Local model folders are fingerprinted in the identity itself (:func:`run_identity`)."""
    if not weights or not storage.exists(LAYOUT.run_json):
        return None
    record = json.loads(storage.read_bytes(LAYOUT.run_json))
    old = record.get("weights")
    if old == weights:
        return None
    if old is not None and policy == "error":
        raise ConfigError(
            f"{storage.url} was made with model weights {old}, but a worker loaded {weights}: pin the snapshot with "
            f"model.revision={old.rsplit('@', 1)[-1]} (download it where it is missing), or pass clone.on_config_change=allow"
        )
    record["weights"] = weights
    _write_record(storage, record)
    if old is None:
        return None
    log.warning("model weights changed (clone.on_config_change=allow): %s -> %s", old, weights)
    return f"weights: {old} -> {weights}"
