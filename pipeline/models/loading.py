"""Loading pretrained weights from a local folder or a hub id, with errors that say how to get them."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from pipeline.errors import InputError


def looks_like_path(ref: str) -> bool:
    """Hub ids are ``name`` or ``org/name``; anything absolute, relative-dotted or deeper is a folder."""
    return ref.startswith((".", "/", "~")) or ref.rstrip("/").count("/") > 1


def load_pretrained(loader: Callable[..., Any], ref: str, what: str, **kwargs: Any) -> Any:
    """``loader(ref, **kwargs)`` (e.g. ``CLIPModel.from_pretrained``) with one-line errors.

    A local folder must exist; a hub id (``org/name``) is looked up in the local Hugging Face cache and,
    unless ``HF_HUB_OFFLINE=1``, on the hub.
    """
    ref = str(ref)
    path = Path(ref).expanduser()
    if path.exists():
        ref = str(path)
    elif looks_like_path(ref):
        raise InputError(
            f"{what} folder '{ref}' does not exist: point the config at a folder saved with save_pretrained "
            f"(for the embedded models run `python scripts/train_embedded.py`)"
        )
    try:
        return loader(ref, **kwargs)
    except (OSError, ValueError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise InputError(
            f"could not load {what} '{ref}' ({first[:160]}): without network access, download it elsewhere "
            f"(`hf download {ref} --local-dir /models/{ref.split('/')[-1]}`) and set the path in the config"
        ) from None


def hub_commit(ref: str, revision: str | None = None, probe: str = "model_index.json") -> str | None:
    """The commit of the hub snapshot ``from_pretrained(ref, revision=...)`` loaded (read from the local
    Hugging Face cache, where loading put it), or None for a local folder or a file not in the cache."""
    if Path(str(ref)).expanduser().exists() or looks_like_path(str(ref)):
        return None
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(str(ref), probe, revision=revision)
    if not isinstance(found, str):
        return None
    parts = Path(found).parts
    return parts[parts.index("snapshots") + 1] if "snapshots" in parts else None
