"""Semantic rewards: how well a render matches the single input image (all in [0, 1], higher is better).

The RLDF paper scores renders with three rewards; the formulas are ours (the paper leaves them open):

* **Reward 1, segmentation** — :class:`SegmentationReward`: which semantic classes appear and where.
* **Reward 2, convolutional features** — :class:`FeatureReward`: coarse-to-fine feature statistics.
* **Reward 3, embedding similarity** — :class:`EmbeddingReward`: CLIP-style cosine similarity.

:class:`CompositeReward` is their weighted mean. A reward is used in two steps: ``prepare(input)``
once per search, then ``score(renders, prepared)`` for every batch of renders.
"""

from __future__ import annotations

from typing import Any, Mapping, Protocol, Sequence

import numpy as np
from PIL import Image

from pipeline.encoders.base import ImageEncoder, Segmenter
from pipeline.errors import ConfigError


class Reward(Protocol):
    def prepare(self, target: Image.Image) -> Any:
        """Precompute whatever the score needs from the input image."""
        ...

    def score(self, images: Sequence[Image.Image], prepared: Any) -> np.ndarray:
        """One reward in [0, 1] per image."""
        ...


def _pool(p: np.ndarray, grid: int) -> np.ndarray:
    """Average-pool ``[N, C, H, W]`` to ``[N, C, grid, grid]`` (H, W divisible after cropping)."""
    n, c, h, w = p.shape
    hh, ww = h - h % grid, w - w % grid
    return p[:, :, :hh, :ww].reshape(n, c, grid, hh // grid, grid, ww // grid).mean((3, 5))


class SegmentationReward:
    """Reward 1. With class-probability maps ``P`` (render) and ``Q`` (input)::

        r1 = (1 - λ) · Σ_c min(ā_c(P), ā_c(Q))  +  λ · Σ min(P̂, Q̂) / Σ max(P̂, Q̂)

    where ``ā_c`` is class ``c``'s mean area (histogram intersection: *which* classes, how much) and
    ``P̂, Q̂`` are the maps average-pooled to ``grid × grid`` cells (soft IoU: *where*). λ = ``layout_weight``.
    """

    def __init__(self, segmenter: Segmenter, layout_weight: float = 0.25, grid: int = 4) -> None:
        if not 0 <= layout_weight <= 1:
            raise ConfigError(f"reward.segmentation.layout_weight must be in [0, 1], got {layout_weight}")
        self.segmenter, self.layout_weight, self.grid = segmenter, float(layout_weight), int(grid)

    def prepare(self, target: Image.Image) -> np.ndarray:
        return self.segmenter.segment([target])

    def score(self, images: Sequence[Image.Image], prepared: np.ndarray) -> np.ndarray:
        p, q = self.segmenter.segment(images), prepared
        area = np.minimum(p.mean((2, 3)), q.mean((2, 3))).sum(1)
        pp, qq = _pool(p, self.grid), _pool(q, self.grid)
        layout = np.minimum(pp, qq).sum((1, 2, 3)) / (np.maximum(pp, qq).sum((1, 2, 3)) + 1e-8)
        return np.clip((1 - self.layout_weight) * area + self.layout_weight * layout, 0.0, 1.0).astype(np.float32)


class FeatureReward:
    """Reward 2. For each feature level ``l`` (coarse to fine), describe an image by the per-channel
    spatial mean and standard deviation of its feature map, then::

        r2 = Σ_l w_l · (1 + cos(d_l(render), d_l(input))) / 2  /  Σ_l w_l

    Pooling over space makes the reward care about *what* details appear, not exactly where.
    """

    def __init__(self, encoder: ImageEncoder, level_weights: Sequence[float] | None = None) -> None:
        self.encoder = encoder
        self.level_weights = None if level_weights is None else [float(w) for w in level_weights]

    @staticmethod
    def _describe(maps: list[np.ndarray]) -> list[np.ndarray]:
        out = []
        for m in maps:
            d = np.concatenate([m.mean((2, 3)), m.std((2, 3))], axis=1)
            out.append(d / (np.linalg.norm(d, axis=1, keepdims=True) + 1e-8))
        return out

    def prepare(self, target: Image.Image) -> list[np.ndarray]:
        return self._describe(self.encoder.feature_maps([target]))

    def score(self, images: Sequence[Image.Image], prepared: list[np.ndarray]) -> np.ndarray:
        desc = self._describe(self.encoder.feature_maps(images))
        weights = self.level_weights or [1.0] * len(desc)
        if len(weights) != len(desc):
            raise ConfigError(f"reward.features.level_weights has {len(weights)} entries for {len(desc)} levels")
        total = sum(w * (1 + (d @ t[0])) / 2 for w, d, t in zip(weights, desc, prepared))
        return np.clip(total / sum(weights), 0.0, 1.0).astype(np.float32)


class EmbeddingReward:
    """Reward 3. ``r3 = max(0, cos(e(render), e(input)))`` for L2-normalised embeddings ``e`` (CLIP by default)."""

    def __init__(self, encoder: ImageEncoder) -> None:
        self.encoder = encoder

    def prepare(self, target: Image.Image) -> np.ndarray:
        return self.encoder.embed([target])[0]

    def score(self, images: Sequence[Image.Image], prepared: np.ndarray) -> np.ndarray:
        return np.clip(self.encoder.embed(images) @ prepared, 0.0, 1.0).astype(np.float32)


class CompositeReward:
    """The weighted mean ``Σ_k w_k r_k / Σ_k w_k`` of named rewards; terms with weight 0 are not computed."""

    def __init__(self, terms: Mapping[str, Reward], weights: Mapping[str, float]) -> None:
        unknown = set(weights) - set(terms)
        if unknown:
            raise ConfigError(f"reward.weights names unknown reward '{sorted(unknown)[0]}' (known: {', '.join(terms)})")
        for name, w in weights.items():
            if w < 0:
                raise ConfigError(f"reward.weights.{name} must be >= 0, got {w}")
        self.terms = {k: v for k, v in terms.items() if weights.get(k, 0) > 0}
        self.weights = {k: float(weights[k]) for k in self.terms}
        if not self.terms:
            raise ConfigError("reward.weights: at least one reward needs a positive weight")

    def prepare(self, target: Image.Image) -> dict[str, Any]:
        return {k: t.prepare(target) for k, t in self.terms.items()}

    def score(self, images: Sequence[Image.Image], prepared: dict[str, Any]) -> np.ndarray:
        total = sum(self.weights[k] * t.score(images, prepared[k]) for k, t in self.terms.items())
        return (total / sum(self.weights.values())).astype(np.float32)


def build_reward(
    image_encoder: ImageEncoder,
    segmenter: Segmenter | None,
    weights: Mapping[str, float],
    segmentation: Mapping[str, Any] | None = None,
    features: Mapping[str, Any] | None = None,
    feature_encoder: ImageEncoder | None = None,
) -> CompositeReward:
    """Assemble the paper's three rewards from encoders (the shape of ``conf/reward/*.yaml``).

    Reward 3 uses ``image_encoder``'s embeddings; Reward 2 the feature maps of ``feature_encoder``
    (a CNN, say) or, if None, of ``image_encoder``.
    """
    terms: dict[str, Reward] = {
        "features": FeatureReward(feature_encoder or image_encoder, **(features or {})),
        "embedding": EmbeddingReward(image_encoder),
    }
    if segmenter is not None:
        terms["segmentation"] = SegmentationReward(segmenter, **(segmentation or {}))
    elif weights.get("segmentation", 0) > 0:
        raise ConfigError("reward.weights.segmentation > 0 but reward.segmenter is null")
    return CompositeReward(terms, dict(weights))
