"""Search renders that become dataset images (``clone.reuse_search_renders``).

A search renders every state it visits; the renders of accepted states already passed the class check at
their seed, so throwing them away wastes most of a search (at ImageNet proportions, about a third of
generating 1300 images per class). They are kept beside the search result, in ``searches/<class>.renders.tar``
(written *before* the result, so a result on disk always has its renders), and the first image index of the
class's balanced sequence that picks an accepted state takes that state's search render instead of a new
one — the paper's "images along the trajectories". Which index takes which render depends only on the
persisted search, so resumed shards stay byte-identical.
"""

from __future__ import annotations

import io
import json
import tarfile
from dataclasses import dataclass
from typing import Any, Sequence

import webdataset as wds

from pipeline.clone.shards import TAR_MTIME
from pipeline.errors import InputError
from pipeline.storage import Storage


@dataclass(frozen=True)
class SearchRender:
    prompt: str
    seed: int
    score: float
    data: bytes  # the encoded image, written into a shard as is
    fmt: str


def renders_path(class_id: str) -> str:
    return f"searches/{class_id}.renders.tar"


def write_renders(storage: Storage, class_id: str, renders: Sequence[SearchRender]) -> None:
    """Commit a class's reusable search renders atomically (an empty tar when there are none)."""
    with storage.staged(renders_path(class_id)) as tmp:
        with open(tmp, "wb") as f, wds.TarWriter(f, mtime=TAR_MTIME, user="rldf", group="rldf") as sink:
            for k, r in enumerate(renders):
                sink.write({"__key__": f"r{k:06d}", r.fmt: r.data,
                            "json": json.dumps({"prompt": r.prompt, "seed": r.seed, "score": r.score}).encode()})


def read_renders(storage: Storage, class_id: str) -> list[SearchRender]:
    """A class's search renders in the order they were written."""
    samples: dict[str, dict[str, bytes]] = {}
    if not storage.exists(renders_path(class_id)):  # the driver redoes such a search; only a mid-run deletion gets here
        raise InputError(f"'{renders_path(class_id)}' is missing: run again to redo the search of class '{class_id}'")
    with tarfile.open(fileobj=io.BytesIO(storage.read_bytes(renders_path(class_id))), mode="r:") as tar:
        for member in tar:
            key, field = member.name.split(".", 1)
            samples.setdefault(key, {})[field] = tar.extractfile(member).read()
    out = []
    for key in sorted(samples):
        s = samples[key]
        meta = json.loads(s.pop("json"))
        fmt, data = next(iter(s.items()))
        out.append(SearchRender(meta["prompt"], int(meta["seed"]), float(meta["score"]), data, fmt))
    return out


def assign(sequence: Sequence[Any], renders: Sequence[SearchRender], n: int) -> dict[int, SearchRender]:
    """Image index -> the search render it takes: walking the first ``n`` picks of the balanced sequence, each
    pick takes the next unused render of its state (a state rendered at several seeds serves several
    indices); picks whose state has none left are rendered anew."""
    left: dict[str, list[SearchRender]] = {}
    for r in renders:
        left.setdefault(r.prompt, []).append(r)
    out = {}
    for i, pick in enumerate(sequence[:n]):
        queue = left.get(pick.prompt)
        if queue:
            out[i] = queue.pop(0)
    return out
