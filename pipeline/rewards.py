"""Semantic rewards: how well a render matches the single input image (all in [0, 1], higher is better).

The RLDF paper scores renders with three rewards; the formulas are ours (the paper leaves them open):

* **Reward 1, segmentation** — :class:`SegmentationReward`: which semantic classes appear and where.
* **Reward 2, convolutional features** — :class:`FeatureReward`: coarse-to-fine feature statistics.
* **Reward 3, embedding similarity** — :class:`EmbeddingReward`: CLIP-style cosine similarity.

and one of our own, the clone's default: **class consistency** — :class:`ClassConsistencyReward`: whether the
semantic encoder reads the render as the input's class, as surely as it reads the class's own inputs (the relative
rule, calibrated to the reader), ignoring every other attribute. The three
similarity rewards score the whole input (its colour, background, layout), so a search that maximises them
converges on a copy of the one input image; a dataset needs the class kept and the rest varied.

:class:`CompositeReward` is their weighted mean, and always also reports class consistency (the score a
state and an image are *accepted* by, whatever the reward weights). A reward is used in two steps: ``prepare(input)``
once per search, then ``score_many(renders, targets)`` for every batch of renders, each render scored against
its own prepared input (``targets[i]``), so one model call serves the renders of many classes' searches.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping, Protocol, Sequence

import numpy as np
from PIL import Image

from pipeline.encoders.base import ImageEncoder, Segmenter, SemanticEncoder, per_image
from pipeline.errors import ConfigError


class Reward(Protocol):
    def prepare(self, target: Image.Image) -> Any:
        """Precompute whatever the score needs from the input image."""
        ...

    def score_many(self, images: Sequence[Image.Image], targets: Sequence[Any]) -> np.ndarray:
        """One reward in [0, 1] per image, image ``i`` against ``targets[i]`` (a :meth:`prepare` result)."""
        ...


def _rowdot(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a[i] · b[i]`` for each row."""
    return np.einsum("nd,nd->n", a, b)


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

    def __init__(self, segmenter: Segmenter, layout_weight: float, grid: int) -> None:
        if not 0 <= layout_weight <= 1:
            raise ConfigError(f"reward.segmentation.layout_weight must be in [0, 1], got {layout_weight}")
        self.segmenter, self.layout_weight, self.grid = segmenter, float(layout_weight), int(grid)

    def prepare(self, target: Image.Image) -> np.ndarray:
        return self.segmenter.segment([target])

    def score_many(self, images: Sequence[Image.Image], targets: Sequence[np.ndarray]) -> np.ndarray:
        p, q = self.segmenter.segment(images), np.concatenate(list(targets))
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

    def score_many(self, images: Sequence[Image.Image], targets: Sequence[list[np.ndarray]]) -> np.ndarray:
        desc = self._describe(self.encoder.feature_maps(images))
        weights = self.level_weights or [1.0] * len(desc)
        if len(weights) != len(desc):
            raise ConfigError(f"reward.features.level_weights has {len(weights)} entries for {len(desc)} levels")
        total = sum(w * (1 + _rowdot(d, np.concatenate([t[level] for t in targets]))) / 2
                    for level, (w, d) in enumerate(zip(weights, desc)))
        return np.clip(total / sum(weights), 0.0, 1.0).astype(np.float32)


class EmbeddingReward:
    """Reward 3. ``r3 = max(0, cos(e(render), e(input)))`` for L2-normalised embeddings ``e`` (CLIP by default)."""

    def __init__(self, encoder: ImageEncoder) -> None:
        self.encoder = encoder

    def prepare(self, target: Image.Image) -> np.ndarray:
        return self.encoder.embed([target])[0]

    def score_many(self, images: Sequence[Image.Image], targets: Sequence[np.ndarray]) -> np.ndarray:
        return np.clip(_rowdot(self.encoder.embed(images), np.stack(list(targets))), 0.0, 1.0).astype(np.float32)


ACCEPTANCE_RULES = ("relative", "absolute")  # env.acceptance


@dataclass(frozen=True)
class ClassTarget:
    """What a render's class reading is compared with (:meth:`CompositeReward.prepare`, from :mod:`pipeline.reading`).

    ``dist``: the class distribution read in the inputs (or the one-hot of a class fixed by the label or by renders);
    ``index``: the class ``t`` the search aims at; ``reference``: ``p̄(t)``, the reader's mean probability of ``t`` on the
    class's own input images, which the relative rule (``env.acceptance=relative``) scales by; None: the absolute rule.
    """

    dist: np.ndarray
    index: int
    reference: float | None = None


class ClassConsistencyReward:
    """Class consistency. With ``p(·|x)`` the semantic encoder's distribution over the class axis, two rules
    (``env.acceptance``):

    * **relative** (calibrated to the reader): with ``t`` the class the search aims at and ``p̄(t)`` the reader's mean
      probability of ``t`` on the class's own input images::

          r_class = min(1, p(t | render) / p̄(t))                      (the search's reward term)
          score   = r_class  if t is the reader's top class on the render, else 0   (what acceptance compares with τ)

      A render is accepted when the reader reads it as ``t`` (its top class) at least τ times as surely as it reads
      the class's own photos. A right but unsure reader (CLIP zero-shot over ImageNet's 1000 classes) accepts the renders
      it reads like its inputs; a render read as another class scores 0 however unsure the reader.
    * **absolute** (before): ``r_class = score = Σ_c p(c | render) · dist(c)``, the probability that render and input,
      each read by the encoder, show the same class; bounded by the reader's confidence, so an unsure reader
      accepts nothing at τ = 0.5.

    A target prepared from a bare image (no reading) uses the absolute rule.
    """

    def __init__(self, semantic_encoder: SemanticEncoder, axis: str) -> None:
        self.encoder = semantic_encoder
        self.axis = semantic_encoder.grammar.axis_index(axis)

    def _class_probs(self, images: Sequence[Image.Image]) -> np.ndarray:
        return self.encoder.probabilities(images)[self.axis]

    def prepare(self, target: Image.Image) -> ClassTarget:
        p = self._class_probs([target])[0]
        return ClassTarget(p, int(np.argmax(p)))

    def score_pair(self, images: Sequence[Image.Image], targets: Sequence[ClassTarget]) -> tuple[np.ndarray, np.ndarray]:
        """(reward term, acceptance score) of each image against its target."""
        if not len(images):
            return np.zeros(0, np.float32), np.zeros(0, np.float32)
        p = np.asarray(self._class_probs(images), np.float64)
        raw = np.clip(_rowdot(p, np.stack([np.asarray(t.dist, np.float64) for t in targets])), 0.0, 1.0)
        reward, score = raw.copy(), raw.copy()
        for i, t in enumerate(targets):
            if t.reference is None:
                continue
            pt = p[i, t.index]
            reward[i] = min(1.0, pt / max(float(t.reference), 1e-12))
            score[i] = reward[i] if pt >= p[i].max() else 0.0
        return reward.astype(np.float32), score.astype(np.float32)

    def score_many(self, images: Sequence[Image.Image], targets: Sequence[ClassTarget]) -> np.ndarray:
        return self.score_pair(images, targets)[1]


#: the reward term that decides acceptance (a state's and an image's class-consistency score)
ACCEPTANCE_TERM = "class"
#: the terms :func:`build_reward` can build, as ``reward.weights`` names them
REWARD_TERMS = ("segmentation", "features", "embedding", ACCEPTANCE_TERM)


def check_reward_weights(weights: Mapping[str, float], has_segmenter: bool) -> None:
    """``reward.weights`` as a config gives them, checked before anything is built (:func:`pipeline.config.validate`)
    and by :func:`build_reward`: known terms, none negative, one positive, and a segmenter for a positive segmentation weight."""
    unknown = sorted(k for k, w in weights.items() if k not in REWARD_TERMS and w > 0)
    if unknown:
        raise ConfigError(f"reward.weights names unknown reward '{unknown[0]}' (known: {', '.join(REWARD_TERMS)})")
    for name, w in weights.items():
        if w < 0:
            raise ConfigError(f"reward.weights.{name} must be >= 0, got {w}")
    if not any(w > 0 for w in weights.values()):
        raise ConfigError("reward.weights: at least one reward needs a positive weight")
    if weights.get("segmentation", 0) > 0 and not has_segmenter:
        raise ConfigError("reward.weights.segmentation > 0 but reward.segmenter is null")


class CompositeReward:
    """The weighted mean ``Σ_k w_k r_k / Σ_k w_k`` of named rewards; terms with weight 0 are not computed,
    except ``acceptance`` (class consistency), which :meth:`score_with_acceptance` always reports."""

    def __init__(self, terms: Mapping[str, Reward], weights: Mapping[str, float], acceptance: str | None = ACCEPTANCE_TERM) -> None:
        unknown = {k for k, w in weights.items() if k not in terms and w > 0}  # a 0 weight on a term not built is harmless
        if unknown:
            raise ConfigError(f"reward.weights names unknown reward '{sorted(unknown)[0]}' (known: {', '.join(terms)})")
        for name, w in weights.items():
            if w < 0:
                raise ConfigError(f"reward.weights.{name} must be >= 0, got {w}")
        self.acceptance = acceptance if acceptance in terms else None
        self.terms = {k: v for k, v in terms.items() if weights.get(k, 0) > 0 or k == self.acceptance}
        self.weights = {k: float(weights.get(k, 0)) for k in self.terms}
        if not any(w > 0 for w in self.weights.values()):
            raise ConfigError("reward.weights: at least one reward needs a positive weight")

    @property
    def per_image(self) -> bool:
        """Whether every term's model reads image by image (:func:`pipeline.encoders.base.per_image`): then a score
        never depends on what shared its call, and callers need not give it calls of one size."""
        return all(per_image(getattr(t, "segmenter", None) or getattr(t, "encoder", None)) for t in self.terms.values())

    def prepare(self, target: Image.Image, class_target: ClassTarget | None = None) -> dict[str, Any]:
        """Each term's precomputed input; ``class_target`` (:meth:`pipeline.reading.InputReading.target`: the class
        the search aims at, the inputs' reading and the rule) replaces the class-consistency term's reading of ``target``."""
        return {k: class_target if k == self.acceptance and class_target is not None else t.prepare(target)
                for k, t in self.terms.items()}

    def score_many(self, images: Sequence[Image.Image], targets: Sequence[dict[str, Any]]) -> tuple[np.ndarray, np.ndarray]:
        """(weighted reward, class-consistency score) of image ``i`` against ``targets[i]`` (a :meth:`prepare`
        result): one model call for images of many inputs. The score is NaN without an acceptance term."""
        if len(images) != len(targets):
            raise ConfigError(f"score_many: {len(images)} images but {len(targets)} targets")
        if not len(images):
            return np.zeros(0, np.float32), np.zeros(0, np.float32)
        parts, accept = {}, np.full(len(images), np.nan)
        for k, t in self.terms.items():
            if k == self.acceptance:
                parts[k], accept = t.score_pair(images, [p[k] for p in targets])
            else:
                parts[k] = t.score_many(images, [p[k] for p in targets])
        total = sum(self.weights[k] * parts[k] for k in parts) / sum(self.weights.values())
        return np.asarray(total, np.float32), np.asarray(accept, np.float32)

    def score_with_acceptance(self, images: Sequence[Image.Image], prepared: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
        """(weighted reward, class-consistency score) of each image against one input."""
        return self.score_many(images, [prepared] * len(images))

    def score(self, images: Sequence[Image.Image], prepared: dict[str, Any]) -> np.ndarray:
        return self.score_with_acceptance(images, prepared)[0]


def build_reward(
    image_encoder: ImageEncoder,
    segmenter: Segmenter | None,
    weights: Mapping[str, float],
    segmentation: Mapping[str, Any] | None = None,
    features: Mapping[str, Any] | None = None,
    feature_encoder: ImageEncoder | None = None,
    semantic_encoder: SemanticEncoder | None = None,
) -> CompositeReward:
    """Assemble the rewards from encoders (the shape of ``conf/reward/*.yaml``). ``segmentation``: Reward 1's
    settings (``reward.segmentation``), needed with a ``segmenter``.

    Reward 3 uses ``image_encoder``'s embeddings; Reward 2 the feature maps of ``feature_encoder``
    (a CNN, say) or, if None, of ``image_encoder``; class consistency the ``semantic_encoder``'s
    class axis (when its grammar has one).
    """
    check_reward_weights(weights, segmenter is not None)
    terms: dict[str, Reward] = {
        "features": FeatureReward(feature_encoder or image_encoder, **(features or {})),
        "embedding": EmbeddingReward(image_encoder),
    }
    class_axis = getattr(getattr(semantic_encoder, "grammar", None), "class_axis", None)
    if class_axis is not None:
        terms[ACCEPTANCE_TERM] = ClassConsistencyReward(semantic_encoder, class_axis)
    elif weights.get(ACCEPTANCE_TERM, 0) > 0:
        raise ConfigError("reward.weights.class > 0 needs a semantic encoder over a grammar with a class_axis")
    if segmenter is not None:
        if segmentation is None:
            raise ConfigError("reward.segmentation (layout_weight, grid) is needed with a segmenter")
        terms["segmentation"] = SegmentationReward(segmenter, **segmentation)
    return CompositeReward(terms, dict(weights))


@dataclass
class RewardModels:
    """What ``reward=`` builds (``conf/reward/*.yaml``, by ``_target_``): each encoder once, and the weights.

    ``semantic_encoder`` is a partial: it reads images into encodings of the grammar it is given with the
    generator (some build prototypes by rendering), so :meth:`build` completes it. ``feature_encoder`` is the
    CNN whose feature maps Reward 2 compares (null: the image encoder's); a config that names the segmenter's
    folder again (``${.segmenter}``) shares its network (models are loaded once per folder)."""

    image_encoder: ImageEncoder
    segmenter: Segmenter | None
    feature_encoder: ImageEncoder | None
    semantic_encoder: Callable[..., SemanticEncoder]
    weights: Mapping[str, float]
    segmentation: Mapping[str, Any]
    features: Mapping[str, Any]

    def build(self, grammar: Any, generator: Any) -> tuple[CompositeReward, SemanticEncoder]:
        semantic = self.semantic_encoder(grammar=grammar, generator=generator, image_encoder=self.image_encoder)
        reward = build_reward(self.image_encoder, self.segmenter, dict(self.weights), dict(self.segmentation or {}),
                              dict(self.features or {}), self.feature_encoder, semantic)
        return reward, semantic
