"""Content fingerprints of model weights: a local file or folder -> ``sha256:…`` of its names and bytes.

The run identity (``pipeline/clone/identity.py``) records them for every local model folder a config names, and
each sample's ``model_id`` names its generator's weights by folder name and fingerprint, never by a path of
the machine it ran on.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

FULL_HASH_LIMIT = 256 << 20  # files above this are fingerprinted by size, head and tail (multi-GB checkpoints)
PARTIAL_BYTES = 16 << 20


def _file_digest(path: Path, h: "hashlib._Hash") -> None:
    size = path.stat().st_size
    h.update(f"{size}\0".encode())
    with open(path, "rb") as f:
        if size <= FULL_HASH_LIMIT:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        else:
            h.update(f.read(PARTIAL_BYTES))
            f.seek(size - PARTIAL_BYTES)
            h.update(f.read(PARTIAL_BYTES))


def fingerprint_path(path: str | Path) -> str:
    """``sha256:…`` of a local file or of every file below a folder (relative names and content)."""
    root = Path(path)
    h = hashlib.sha256()
    files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
    for p in files:
        h.update(f"{p.relative_to(root) if p != root else p.name}\0".encode())
        _file_digest(p, h)
    return f"sha256:{h.hexdigest()}"


def weights_name(ref: str, commit: str | None = None) -> str:
    """How a sample names the weights it was drawn with: ``org/name@commit`` (or ``org/name``) for a hub id,
    ``<folder name>@sha256:<12 hex>`` for a local folder."""
    path = Path(str(ref)).expanduser()
    if path.exists():
        return f"{path.resolve().name}@{fingerprint_path(path)[:19]}"
    return f"{ref}@{commit}" if commit else str(ref)
