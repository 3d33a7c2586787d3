"""Stream a source through a DataLoader and an extractor; cache features on disk per (source, extractor)."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from torch import nn
from torch.utils.data import DataLoader, IterableDataset
from tqdm import tqdm

from pipeline.errors import InputError

THUMBS_PER_CLASS = 8


@dataclass
class FeatureSet:
    features: np.ndarray  # [N, D] float32
    labels: np.ndarray  # [N] int64 (-1 = unlabelled)
    thumbs: dict[int, np.ndarray]  # label -> up to 8 images [k, H, W, 3] uint8, for contact sheets
    description: str
    cached: bool = False

    def __len__(self) -> int:
        return len(self.labels)


def _worker_error(e: Exception) -> InputError | None:
    """DataLoader workers re-raise with the remote traceback: recover our one-line InputError message."""
    m = re.findall(r"InputError: (.+)", str(e))
    return InputError(m[-1].strip()) if m else None


def extract(
    source, extractor: nn.Module, n: int | None, batch_size: int = 256, workers: int = 2,
    device: str = "cpu", cache_dir: str | Path | None = None, label: str = "",
) -> FeatureSet:
    """Features of the first ``n`` images of ``source`` (all if None), from the cache when present."""
    key = hashlib.sha256(json.dumps([source.fingerprint, extractor.name, source.size, n]).encode()).hexdigest()[:20]
    path = Path(cache_dir) / f"{key}.npz" if cache_dir else None
    if path is not None and path.is_file():
        z = np.load(path, allow_pickle=False)
        thumbs = {int(k[6:]): z[k] for k in z.files if k.startswith("thumb_")}
        return FeatureSet(z["features"], z["labels"], thumbs, source.description, cached=True)
    iterable = isinstance(source, IterableDataset)
    workers = min(workers, len(source.urls)) if iterable else workers
    loader = DataLoader(source, batch_size=batch_size, num_workers=workers, shuffle=False,
                        persistent_workers=False, prefetch_factor=2 if workers > 0 else None)
    feats, labels, thumbs, seen = [], [], {}, 0
    total = n if n is not None else (getattr(source, "samples", None) if iterable else len(source))
    bar = tqdm(total=total, desc=f"features {label}".strip(), unit="img", leave=False)
    extractor = extractor.to(device)
    try:
        for images, y in loader:
            if n is not None and seen >= n:
                break
            if n is not None:
                images, y = images[: n - seen], y[: n - seen]
            feats.append(extractor(images.to(device)).cpu().numpy().astype(np.float32))
            labels.append(y.numpy().astype(np.int64))
            for img, lab in zip(images, y.tolist()):
                t = thumbs.setdefault(lab, [])
                if len(t) < THUMBS_PER_CLASS:
                    t.append(img.permute(1, 2, 0).numpy())
            seen += len(y)
            bar.update(len(y))
    except Exception as e:  # noqa: BLE001 - a worker's InputError arrives wrapped
        err = _worker_error(e)
        if err is not None:
            raise err from None
        raise
    finally:
        bar.close()
    if seen == 0:
        raise InputError(f"{label or 'input'} '{source.description}' has no images")
    fs = FeatureSet(np.concatenate(feats), np.concatenate(labels), {k: np.stack(v) for k, v in thumbs.items()}, source.description)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.npz")
        np.savez(tmp, features=fs.features, labels=fs.labels, **{f"thumb_{k}": v for k, v in fs.thumbs.items()})
        tmp.replace(path)
    return fs
