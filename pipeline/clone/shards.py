"""WebDataset shards that commit atomically, and their validation against a manifest record."""

from __future__ import annotations

import hashlib
import io
import tarfile
from dataclasses import asdict, dataclass
from typing import Any, Iterable

import webdataset as wds

from pipeline.storage import Storage

#: fixed tar member mtime, so a shard's bytes depend only on its samples
TAR_MTIME = 0.0


@dataclass(frozen=True)
class ShardRecord:
    """What the manifest knows about a committed shard."""

    shard: str  # file name, e.g. "shard-000012.tar"
    classes: list[str]
    count: int
    bytes: int
    sha256: str
    keys_sha256: str  # hash of the sorted sample keys (detects a shard holding the wrong samples)
    missing: int = 0  # image indices of the shard left out: no candidate passed verification

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def keys_digest(keys: Iterable[str]) -> str:
    return hashlib.sha256("\n".join(sorted(keys)).encode()).hexdigest()


def write_shard(storage: Storage, name: str, samples: list[dict[str, Any]], classes: list[str], missing: int = 0) -> ShardRecord:
    """Write ``samples`` (WebDataset dicts with ``__key__``) as ``name`` under ``storage``, atomically."""
    with storage.staged(name) as tmp:  # a failed write (full disk) commits nothing and says why
        with open(tmp, "wb") as f:
            with wds.TarWriter(f, mtime=TAR_MTIME, user="rldf", group="rldf") as sink:
                for sample in samples:
                    sink.write(sample)
            f.flush()
        digest, size = hashlib.sha256(), 0
        with open(tmp, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
                size += len(block)
    return ShardRecord(name, classes, len(samples), size, digest.hexdigest(), keys_digest(s["__key__"] for s in samples), missing)


def tar_keys(data: bytes) -> list[str]:
    """Sample keys in a shard's bytes (raises ``tarfile.TarError`` on a truncated or corrupt tar)."""
    keys: dict[str, None] = {}
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
        for member in tar:
            keys[member.name.split(".", 1)[0]] = None
            tar.extractfile(member).read()
    return list(keys)


def verify_shard(storage: Storage, record: ShardRecord) -> str | None:
    """Why the committed shard does not match its record, or None if it does."""
    if not storage.exists(record.shard):
        return "missing"
    if storage.size(record.shard) != record.bytes:
        return f"size {storage.size(record.shard)} != {record.bytes}"
    data = storage.read_bytes(record.shard)
    if hashlib.sha256(data).hexdigest() != record.sha256:
        return "sha256 mismatch"
    try:
        keys = tar_keys(data)
    except (tarfile.TarError, OSError, EOFError) as e:
        return f"unreadable tar ({e})"
    if len(keys) != record.count or keys_digest(keys) != record.keys_sha256:
        return f"holds {len(keys)} samples, expected {record.count}"
    return None
