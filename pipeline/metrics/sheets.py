"""Contact sheets of labelled image sets: one row per class, a seeded random pick of its images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from pipeline.images import contact_grid


def class_contact_sheet(images: torch.Tensor, labels: np.ndarray, classes: dict[int, str], per_class: int, seed: int,
                        path: Path, cell: int = 64) -> None:
    """Rows = classes, ``per_class`` random samples each (seeded), class name under the first cell."""
    rng = np.random.default_rng(seed)
    cells, names = [], []
    for k, name in classes.items():
        idx = np.flatnonzero(labels == k)
        pick = rng.choice(idx, min(per_class, len(idx)), replace=False) if len(idx) else []
        row = [Image.fromarray(images[i].permute(1, 2, 0).numpy()) for i in pick]
        row += [Image.new("RGB", (8, 8), (255, 255, 255))] * (per_class - len(row))
        cells += row
        names += [name] + [""] * (per_class - 1)
    path.parent.mkdir(parents=True, exist_ok=True)
    contact_grid(cells, per_class, cell=cell, labels=names).save(path)
