"""The Vendi score (Friedman & Dieng, 2023): the effective number of distinct items in a set.

With ``K`` the cosine-similarity kernel of ``n`` feature vectors, ``VS = exp(−Σ_i λ_i log λ_i)`` over the
eigenvalues ``λ_i`` of ``K / n``: 1 for ``n`` copies of one image, ``n`` for ``n`` orthogonal ones.
torchmetrics has no Vendi score; this is the paper's definition in a few lines of torch.
"""

from __future__ import annotations

import torch


def vendi_score(features: torch.Tensor) -> float:
    """Vendi score of ``[n, d]`` features under the cosine kernel."""
    if len(features) == 0:
        return 0.0
    x = torch.nn.functional.normalize(features.double(), dim=1)
    n = len(x)
    # K/n = X Xᵀ/n has the same non-zero eigenvalues as Xᵀ X/n (d × d): cheaper when n > d
    gram = (x.T @ x if n > x.shape[1] else x @ x.T) / n
    lam = torch.linalg.eigvalsh(gram).clamp_min(0)
    lam = lam[lam > 1e-12]
    return float(torch.exp(-(lam * lam.log()).sum()))


def per_class_vendi(features: torch.Tensor, labels: torch.Tensor) -> dict[int, float]:
    """Intra-class diversity: the Vendi score of each class's features."""
    return {int(c): vendi_score(features[labels == c]) for c in labels.unique()}
