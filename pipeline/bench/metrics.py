"""``metrics``: feature extraction images/s and precision/recall time."""

from __future__ import annotations

import time

import numpy as np

from pipeline.bench.common import ROOT
from pipeline.markdown import table


def run(n: int, dim: int) -> dict:
    import torch

    from pipeline.grammar import Grammar
    from pipeline.metrics.extractors import ClipFeatures
    from pipeline.metrics.features import extract
    from pipeline.metrics.prdc import prdc
    from pipeline.metrics.sources import WorldImages
    from pipeline.shapes.world import ShapesWorld

    out = {}
    models = ROOT / "models" / "tiny_clip"
    if models.is_dir():
        world = ShapesWorld(Grammar.from_yaml(ROOT / "conf" / "grammar" / "shapes.yaml"))
        t0 = time.perf_counter()
        fs = extract(WorldImages(world, "bench", 2000, 32), ClipFeatures(str(models)), None, workers=1)
        out["tiny_clip_features_images_per_s"] = round(len(fs) / (time.perf_counter() - t0), 1)
    rng = np.random.default_rng(0)
    real = torch.from_numpy(rng.normal(size=(n, dim)).astype(np.float32))
    fake = torch.from_numpy(rng.normal(0.1, 1, size=(n, dim)).astype(np.float32))
    t0 = time.perf_counter()
    prdc(real, fake, k=3, chunk=1024)
    out[f"prdc_{n}x{n}x{dim}_s"] = round(time.perf_counter() - t0, 2)
    return out


def lines(m: dict) -> list[str]:
    return ["Metrics cost:", "", table(["measure", "value"], [[k, v] for k, v in m.items()])]
