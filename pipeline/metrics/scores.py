"""FD and KID (torchmetrics) and precision/recall/density/coverage, overall and per class."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import torch
from torchmetrics.image.fid import FrechetInceptionDistance
from torchmetrics.image.kid import KernelInceptionDistance

from pipeline.metrics.extractors import PrecomputedFeatures
from pipeline.metrics.features import FeatureSet
from pipeline.metrics.prdc import prdc


def frechet_distance(real: np.ndarray, fake: np.ndarray) -> float:
    """Fréchet distance of Gaussians fitted to the features (torchmetrics' FID, float64 throughout)."""
    fid = FrechetInceptionDistance(feature=PrecomputedFeatures(real.shape[1]), reset_real_features=True)
    fid.set_dtype(torch.float64)
    fid.update(torch.from_numpy(real).double(), real=True)
    fid.update(torch.from_numpy(fake).double(), real=False)
    return float(fid.compute())


def kernel_distance(real: np.ndarray, fake: np.ndarray, subsets: int, subset_size: int, seed: int) -> tuple[float, float]:
    """KID mean and std over random subsets (the global RNG is seeded for reproducibility).

    Subsets hold ``subset_size`` images, or half the smaller set when that is smaller (subsets as large
    as the set would all be the same set and the std would read 0).
    """
    size = min(subset_size, max(2, min(len(real), len(fake)) // 2))
    with warnings.catch_warnings():  # "will save all extracted features": intended, they are precomputed
        warnings.simplefilter("ignore", UserWarning)
        kid = KernelInceptionDistance(feature=PrecomputedFeatures(real.shape[1]), subsets=subsets, subset_size=size, compute_on_cpu=True)
    kid.update(torch.from_numpy(real).double(), real=True)
    kid.update(torch.from_numpy(fake).double(), real=False)
    state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        mean, std = kid.compute()
    finally:
        torch.random.set_rng_state(state)
    return float(mean), float(std)


def score(real: np.ndarray, fake: np.ndarray, k: int, kid_subsets: int, kid_subset_size: int, seed: int, chunk: int) -> dict[str, Any]:
    out: dict[str, Any] = {"n_real": int(len(real)), "n_fake": int(len(fake))}
    if len(real) >= 2 and len(fake) >= 2:
        out["fd"] = frechet_distance(real, fake)
        out["kid"], out["kid_std"] = kernel_distance(real, fake, kid_subsets, kid_subset_size, seed)
    if len(real) > k and len(fake) > k:
        out.update(prdc(torch.from_numpy(real), torch.from_numpy(fake), k, chunk))
    return out


def score_sets(real: FeatureSet, fake: FeatureSet, k: int = 3, kid_subsets: int = 100, kid_subset_size: int = 1000,
               seed: int = 0, chunk: int = 1024, class_names: dict[int, str] | None = None) -> dict[str, Any]:
    """Overall and per-class (by label) metrics, each with the number of images behind it."""
    result = {"overall": score(real.features, fake.features, k, kid_subsets, kid_subset_size, seed, chunk), "per_class": {}}
    labels = sorted(set(real.labels.tolist()) & set(fake.labels.tolist()) - {-1})
    for lab in labels:
        r, f = real.features[real.labels == lab], fake.features[fake.labels == lab]
        entry = score(r, f, k, kid_subsets, kid_subset_size, seed, chunk)
        entry["label"] = lab
        result["per_class"][(class_names or {}).get(lab, str(lab))] = entry
    only_real = sorted(set(real.labels.tolist()) - set(fake.labels.tolist()) - {-1})
    only_fake = sorted(set(fake.labels.tolist()) - set(real.labels.tolist()) - {-1})
    result["classes_only_real"], result["classes_only_fake"] = only_real, only_fake
    return result
