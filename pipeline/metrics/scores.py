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


class Distances:
    """torchmetrics' FID and KID for features of one width, built once and reset between pairs of sets: the
    per-class scores of a 1000-class clone reuse two metric objects instead of building two per class."""

    def __init__(self, dim: int, kid_subsets: int = 100, kid_subset_size: int = 1000, seed: int = 0) -> None:
        self.kid_subset_size, self.seed = kid_subset_size, seed
        self.fid = FrechetInceptionDistance(feature=PrecomputedFeatures(dim), reset_real_features=True)
        self.fid.set_dtype(torch.float64)
        with warnings.catch_warnings():  # "will save all extracted features": intended, they are precomputed
            warnings.simplefilter("ignore", UserWarning)
            self.kid = KernelInceptionDistance(feature=PrecomputedFeatures(dim), subsets=kid_subsets,
                                               subset_size=kid_subset_size, compute_on_cpu=True)

    def frechet(self, real: np.ndarray, fake: np.ndarray) -> float:
        """Fréchet distance of Gaussians fitted to the features (float64 throughout)."""
        self.fid.reset()
        self.fid.update(torch.from_numpy(real).double(), real=True)
        self.fid.update(torch.from_numpy(fake).double(), real=False)
        return float(self.fid.compute())

    def kernel(self, real: np.ndarray, fake: np.ndarray) -> tuple[float, float]:
        """KID mean and std over random subsets (the global RNG is seeded for reproducibility, then restored).

        Subsets hold ``kid_subset_size`` images, or half the smaller set when that is smaller (subsets as large
        as the set would all be the same set and the std would read 0).
        """
        self.kid.reset()
        self.kid.subset_size = min(self.kid_subset_size, max(2, min(len(real), len(fake)) // 2))
        self.kid.update(torch.from_numpy(real).double(), real=True)
        self.kid.update(torch.from_numpy(fake).double(), real=False)
        state = torch.random.get_rng_state()
        torch.manual_seed(self.seed)
        try:
            mean, std = self.kid.compute()
        finally:
            torch.random.set_rng_state(state)
        return float(mean), float(std)


def frechet_distance(real: np.ndarray, fake: np.ndarray) -> float:
    """Fréchet distance of two feature sets (:meth:`Distances.frechet`)."""
    return Distances(real.shape[1]).frechet(real, fake)


def score(real: np.ndarray, fake: np.ndarray, k: int, distances: Distances, chunk: int) -> dict[str, Any]:
    out: dict[str, Any] = {"n_real": int(len(real)), "n_fake": int(len(fake))}
    if len(real) >= 2 and len(fake) >= 2:
        out["fd"] = distances.frechet(real, fake)
        out["kid"], out["kid_std"] = distances.kernel(real, fake)
    if len(real) > k and len(fake) > k:
        out.update(prdc(torch.from_numpy(real), torch.from_numpy(fake), k, chunk))
    return out


def score_sets(real: FeatureSet, fake: FeatureSet, k: int = 3, kid_subsets: int = 100, kid_subset_size: int = 1000,
               seed: int = 0, chunk: int = 1024, class_names: dict[int, str] | None = None) -> dict[str, Any]:
    """Overall and per-class (by label) metrics, each with the number of images behind it."""
    distances = Distances(real.features.shape[1], kid_subsets, kid_subset_size, seed)
    result = {"overall": score(real.features, fake.features, k, distances, chunk), "per_class": {}}
    labels = sorted(set(real.labels.tolist()) & set(fake.labels.tolist()) - {-1})
    for lab in labels:
        r, f = real.features[real.labels == lab], fake.features[fake.labels == lab]
        entry = score(r, f, k, distances, chunk)
        entry["label"] = lab
        result["per_class"][(class_names or {}).get(lab, str(lab))] = entry
    only_real = sorted(set(real.labels.tolist()) - set(fake.labels.tolist()) - {-1})
    only_fake = sorted(set(fake.labels.tolist()) - set(real.labels.tolist()) - {-1})
    result["classes_only_real"], result["classes_only_fake"] = only_real, only_fake
    return result
