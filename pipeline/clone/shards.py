"""WebDataset shards that commit atomically, and their validation against a manifest record."""

from __future__ import annotations

import hashlib
import io
import tarfile
from dataclasses import asdict, dataclass
from typing import Any, Iterable

import webdataset as wds
from PIL import Image

from pipeline.config import VERIFY_MODES
from pipeline.images import to_pil
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
    stamp: str | None = None  # the store's own checksum at commit (Storage.stat): what clone.verify=fast compares
    #: class id -> samples of that class in the shard (a shuffled shard mixes many)
    class_counts: dict[str, int] | None = None
    #: class id -> image indices of that class left out (only classes with some)
    missing_by_class: dict[str, int] | None = None
    #: the run identity's hash (:func:`pipeline.clone.identity.identity_hash`) it was made under; None in older records
    identity: str | None = None
    #: class id -> samples of that class whose prompt asks for the class of their label (:func:`asks_for_label`; None:
    #: not counted, as in older records): on a procedural world, samples that show their label
    label_ok: dict[str, int] | None = None
    #: class id -> samples of that class that did not pass acceptance (clone.fill=best kept the best of their tries)
    failed_by_class: dict[str, int] | None = None
    #: the generator's call size when its images were rendered after a CUDA out-of-memory back-off (None: none happened
    #: on the worker). The prompts, seeds and noise are those of a run without it; the pixels may not be, since kernels
    #: take other paths at other batch sizes (on the CPU, a grey level here and there)
    backed_off_to: int | None = None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        if d["backed_off_to"] is None:  # a record without a back-off reads as records always have
            del d["backed_off_to"]
        return d


def asks_for_label(meta: dict[str, Any], class_pos: int) -> bool:
    """Whether a sample's prompt asks for the class of its label: its ``encoding`` is in the full grammar, whose class
    axis (position ``class_pos``) lists the dataset's classes in label order, so it names ``class_index``; a free-text
    prompt (no encoding, class-name prompting) is made from the class name."""
    enc = meta.get("encoding")
    return enc is None or enc[class_pos] == meta["class_index"]


def keys_digest(keys: Iterable[str]) -> str:
    return hashlib.sha256("\n".join(sorted(keys)).encode()).hexdigest()


def write_shard(storage: Storage, name: str, samples: list[dict[str, Any]], classes: list[str], missing: int = 0,
                class_counts: dict[str, int] | None = None, missing_by_class: dict[str, int] | None = None,
                identity: str | None = None, label_ok: dict[str, int] | None = None,
                failed_by_class: dict[str, int] | None = None, backed_off_to: int | None = None) -> ShardRecord:
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
    stat = storage.stat(name)
    return ShardRecord(name, classes, len(samples), size, digest.hexdigest(), keys_digest(s["__key__"] for s in samples), missing,
                       stat[1] if stat else None, class_counts, missing_by_class or None, identity, label_ok,
                       failed_by_class or None, backed_off_to)


def tar_keys(data: bytes) -> list[str]:
    """Sample keys in a shard's bytes (raises ``tarfile.TarError`` on a truncated or corrupt tar)."""
    keys: dict[str, None] = {}
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
        for member in tar:
            keys[member.name.split(".", 1)[0]] = None
            tar.extractfile(member).read()
    return list(keys)


PIL_FORMATS = {"png": "PNG", "jpg": "JPEG", "webp": "WEBP"}  # clone.image_format (IMAGE_FORMATS) -> PIL's format


def encode_image(image: Image.Image, fmt: str, quality: int) -> bytes:
    """A sample's image file (a render on the device is copied to the host here, in the worker's encoding threads)."""
    image = to_pil(image)
    buf = io.BytesIO()
    if fmt == "png":
        image.save(buf, format="PNG")
    else:
        image.save(buf, format=PIL_FORMATS[fmt], quality=int(quality))
    return buf.getvalue()


def verify_shard(storage: Storage, record: ShardRecord, mode: str) -> str | None:
    """Why the committed shard does not match its record, or None if it does.

    ``deep`` reads the shard back: sha256, a readable tar, its sample keys. ``fast`` reads nothing of it:
    it exists, has the recorded size and the store's checksum (:meth:`Storage.stat`) is the one recorded
    at commit; where the stamp differs or was never recorded (a copied bucket or folder, an older record),
    it falls back to ``deep`` for that shard, so a copy is re-verified, never regenerated."""
    if mode not in VERIFY_MODES:
        raise ValueError(f"verify mode must be one of {VERIFY_MODES}, got {mode!r}")
    stat = storage.stat(record.shard)
    if stat is None:
        return "missing"
    if stat[0] != record.bytes:
        return f"size {stat[0]} != {record.bytes}"
    if mode == "fast" and record.stamp is not None and stat[1] == record.stamp:
        return None
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
