"""The manifest: one small JSON record per committed shard, plus a consolidated ``manifest.json``.

A shard is done only when its tar is committed *and* its record exists (records are written after
the tar). Per-shard record files need no append, so the manifest works the same on object stores,
and a run killed at any point leaves the manifest consistent: resume is "list what is done, do the rest".
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from typing import Callable, Iterable

from pipeline.clone.layout import LAYOUT
from pipeline.clone.shards import ShardRecord, verify_shard
from pipeline.storage import Storage

READ_THREADS = 16  # records read at once


class Manifest:
    def __init__(self, storage: Storage) -> None:
        self.storage = storage

    def record_name(self, shard: str) -> str:
        return LAYOUT.record(shard)

    def add(self, record: ShardRecord) -> None:
        self.storage.write_bytes(self.record_name(record.shard), json.dumps(record.to_dict()).encode())

    def remove(self, shard: str) -> None:
        self.storage.remove(self.record_name(shard))

    def records(self) -> dict[str, ShardRecord]:
        return self.scan()[0]

    def scan(self) -> tuple[dict[str, ShardRecord], list[str]]:
        """(records by shard, shards whose record is unreadable: they count as absent, their shards are redone).
        Read :data:`READ_THREADS` at a time: on an object store each record is a request (ImageNet-21k: 28,000)."""
        out, unreadable = {}, []

        def read(rel: str) -> ShardRecord | str:
            try:
                return ShardRecord(**json.loads(self.storage.read_bytes(rel)))
            except (ValueError, TypeError):
                return rel.rsplit("/", 1)[-1][: -len(".json")] + ".tar"

        rels = self.storage.list(LAYOUT.records, ".json")
        with ThreadPoolExecutor(READ_THREADS) if len(rels) > 1 else nullcontext() as pool:
            for got in (pool.map(read, rels) if pool is not None else map(read, rels)):
                if isinstance(got, str):
                    unreadable.append(got)
                else:
                    out[got.shard] = got
        return out, unreadable

    def validate(self, mode: str, records: Iterable[ShardRecord] | None = None,
                 map_fn: Callable = map) -> tuple[dict[str, ShardRecord], dict[str, str]]:
        """(valid records by shard, problems by shard) for ``records`` (default: every shard the manifest lists),
        checked the ``mode`` way (:func:`verify_shard`); ``map_fn`` may check them in parallel (a pool's ``map``)."""
        recs = list(self.records().values() if records is None else records)
        valid, problems = {}, {}
        for rec, why in zip(recs, map_fn(lambda r: verify_shard(self.storage, r, mode), recs)):
            if why is None:
                valid[rec.shard] = rec
            else:
                problems[rec.shard] = why
        return valid, problems

    def consolidate(self, extra: dict | None = None, records: Iterable[ShardRecord] | None = None) -> None:
        """Write ``manifest.json``: every record in shard order (a convenience view; records are the truth), from
        ``records`` where the caller has just read them."""
        recs = sorted(self.records().values() if records is None else records, key=lambda r: r.shard)
        body = {"shards": [r.to_dict() for r in recs], "samples": sum(r.count for r in recs), **(extra or {})}
        # no indent: json's C encoder (at ImageNet-21k's 28,000 records the pure-Python one takes most of a minute)
        self.storage.write_bytes(LAYOUT.manifest, json.dumps(body, separators=(",", ":")).encode())
