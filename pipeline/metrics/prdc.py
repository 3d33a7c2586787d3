"""Improved precision/recall (Kynkäänniemi et al. 2019) and density/coverage (Naeem et al. 2020).

torchmetrics has neither, so :func:`prdc` computes them in row chunks: no N×M distance matrix is ever held, so
50,000 × 50,000 features fit in a few GiB. With ``r_i`` the distance from real point i to its k-th nearest real neighbour (itself
excluded) and likewise ``s_j`` for fake points (strict inequalities, as in the reference ``prdc``)::

    precision = mean_j 1[∃i: d(x_i, y_j) < r_i]       recall   = mean_i 1[∃j: d(x_i, y_j) < s_j]
    density   = 1/(kM) Σ_j Σ_i 1[d(x_i, y_j) < r_i]   coverage = mean_i 1[min_j d(x_i, y_j) < r_i]
"""

from __future__ import annotations

import torch


def _distances(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    if a.dtype == torch.float64:  # exact mode: no matrix-multiply shortcut, for reference checks
        return torch.cdist(a, b, compute_mode="donot_use_mm_for_euclid_dist")
    return torch.cdist(a, b, compute_mode="use_mm_for_euclid_dist")


def kth_neighbour_radii(x: torch.Tensor, k: int, chunk: int) -> torch.Tensor:
    """Distance from each row of ``x`` to its k-th nearest other row."""
    out = []
    for i in range(0, len(x), chunk):
        d = _distances(x[i : i + chunk], x)
        out.append(d.topk(k + 1, dim=1, largest=False).values[:, k])
    return torch.cat(out)


def prdc(real: torch.Tensor, fake: torch.Tensor, k: int = 3, chunk: int = 1024) -> dict[str, float]:
    """The four metrics of ``real`` ``[N, D]`` against ``fake`` ``[M, D]`` features."""
    if len(real) <= k or len(fake) <= k:
        raise ValueError(f"precision/recall with k={k} needs more than {k} samples per side (got {len(real)} real, {len(fake)} fake)")
    r_real = kth_neighbour_radii(real, k, chunk)
    r_fake = kth_neighbour_radii(fake, k, chunk)
    fake_in_real = torch.zeros(len(fake), dtype=torch.bool)
    density_count = torch.zeros(len(fake), dtype=torch.float64)
    real_covered = torch.zeros(len(real), dtype=torch.bool)
    real_recalled = torch.zeros(len(real), dtype=torch.bool)
    for i in range(0, len(real), chunk):
        d = _distances(real[i : i + chunk], fake)  # [chunk, M]
        inside = d < r_real[i : i + chunk, None]
        fake_in_real |= inside.any(0)
        density_count += inside.sum(0, dtype=torch.float64)
        real_covered[i : i + chunk] = d.min(1).values < r_real[i : i + chunk]
        real_recalled[i : i + chunk] = (d < r_fake[None, :]).any(1)
    return {
        "precision": fake_in_real.double().mean().item(),
        "recall": real_recalled.double().mean().item(),
        "density": (density_count.sum() / (k * len(fake))).item(),
        "coverage": real_covered.double().mean().item(),
    }
