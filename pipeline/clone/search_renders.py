"""Search renders that become dataset images (``clone.reuse_search_renders``).

A search renders every state it visits; the renders of accepted states already passed the class check at
their seed, so throwing them away wastes most of a search (at ImageNet proportions, about a third of
generating 1300 images per class). They are kept beside the search result, in ``searches/<class>.renders.tar``
(written *before* the result, so a result on disk always has its renders), with an index of each render's
prompt, seed, score and byte range in the search result. The first image index of the class's balanced
sequence that picks an accepted state takes that state's search render instead of a new one — the paper's
"images along the trajectories" — for at most ``clone.reuse_max_share`` of the class's images: a search renders
its states at the same seed(s), so its renders share one layout, and a class made mostly of them trains a
classifier that has seen one layout (``make eval`` at 200 images per class, 88-92% reused: CAS 8 points lower).
A shard reads only the byte ranges of the renders it uses (a shuffled shard draws from hundreds of classes).
Which index takes which render depends only on the persisted search, so resumed shards stay byte-identical.
"""

from __future__ import annotations

import math
import tarfile
from dataclasses import asdict, dataclass
from typing import Any, Sequence

import webdataset as wds

from pipeline.clone.shards import TAR_MTIME
from pipeline.errors import InputError
from pipeline.clone.layout import LAYOUT
from pipeline.storage import Storage


@dataclass(frozen=True)
class SearchRender:
    """One reusable render: what it shows, and where its encoded bytes are in the class's renders file."""

    prompt: str
    seed: int
    score: float
    fmt: str
    offset: int
    size: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def write_renders(storage: Storage, class_id: str, renders: Sequence[tuple[str, int, float, bytes, str]]) -> list[SearchRender]:
    """Commit a class's reusable search renders, ``(prompt, seed, score, encoded image, format)``, as one tar
    (empty when there are none), atomically; returns their index."""
    with storage.staged(LAYOUT.renders(class_id)) as tmp:
        with open(tmp, "wb") as f, wds.TarWriter(f, mtime=TAR_MTIME, user="rldf", group="rldf") as sink:
            for k, (_, _, _, data, fmt) in enumerate(renders):
                sink.write({"__key__": f"r{k:06d}", fmt: data})
        with tarfile.open(tmp, mode="r:") as tar:
            ranges = [(m.offset_data, m.size) for m in tar]
    return [SearchRender(p, int(seed), float(score), fmt, off, size) for (p, seed, score, _, fmt), (off, size) in zip(renders, ranges)]


def read_render(storage: Storage, class_id: str, render: SearchRender) -> bytes:
    """The encoded image of one render (a ranged read: an object store sends only those bytes)."""
    try:
        data = storage.read_range(LAYOUT.renders(class_id), render.offset, render.size)
    except FileNotFoundError:  # the driver redoes such a search; only a mid-run deletion gets here
        raise InputError(f"'{LAYOUT.renders(class_id)}' is missing: run again to redo the search of class '{class_id}'") from None
    if len(data) != render.size:
        raise InputError(f"'{LAYOUT.renders(class_id)}' is truncated: run again to redo the search of class '{class_id}'")
    return data


def reuse_limit(share: float, images_per_class: int) -> int:
    """How many of a class's images may be search renders under ``clone.reuse_max_share`` (rounded down)."""
    return math.floor(share * images_per_class + 1e-9)


def assign(sequence: Sequence[Any], renders: Sequence[SearchRender], n: int, limit: int | None = None) -> dict[int, SearchRender]:
    """Image index -> the search render it takes: walking the first ``n`` picks of the balanced sequence, each
    pick takes the next unused render of its state (a state rendered at several seeds serves several
    indices), until ``limit`` indices have one; the other picks are rendered anew at their own seeds."""
    left: dict[str, list[SearchRender]] = {}
    for r in renders:
        left.setdefault(r.prompt, []).append(r)
    out = {}
    for i, pick in enumerate(sequence[:n]):
        if limit is not None and len(out) >= limit:
            break
        queue = left.get(pick.prompt)
        if queue:
            out[i] = queue.pop(0)
    return out
