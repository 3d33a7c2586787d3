"""Interfaces of the three kinds of encoder the rewards and the MDP use."""

from __future__ import annotations

from typing import Protocol, Sequence, runtime_checkable

import numpy as np
from PIL import Image

from pipeline.grammar import Encoding, Grammar
from pipeline.images import to_pil


@runtime_checkable
class ImageEncoder(Protocol):
    """Images -> L2-normalised embeddings ``[N, D]`` and intermediate feature maps (coarse to fine)."""

    def embed(self, images: Sequence[Image.Image]) -> np.ndarray: ...

    def feature_maps(self, images: Sequence[Image.Image]) -> list[np.ndarray]:
        """One ``[N, C, h, w]`` array per level."""
        ...


@runtime_checkable
class Segmenter(Protocol):
    """Images -> per-pixel class probabilities ``[N, C, H, W]`` over ``class_names``."""

    class_names: tuple[str, ...]

    def segment(self, images: Sequence[Image.Image]) -> np.ndarray: ...


@runtime_checkable
class SemanticEncoder(Protocol):
    """Images -> semantic encodings on ``grammar``'s grid (the input image gives the goal encoding).

    ``probabilities`` gives, per axis, a distribution over that axis's choices (``[N, k_axis]``); the
    class-consistency reward reads the class axis's. ``encode`` is its per-axis argmax.
    """

    grammar: Grammar

    def encode(self, images: Sequence[Image.Image]) -> list[Encoding]: ...

    def probabilities(self, images: Sequence[Image.Image]) -> list[np.ndarray]: ...


def per_image(model: object) -> bool:
    """Whether ``model`` (an encoder, segmenter or reward) declares that an image's output never depends on the
    other images of its call (``per_image = True``: numpy readers). A torch model's may, in its last digits (its
    kernels follow the batch size), so callers that need exact scores give it calls of one size."""
    return bool(getattr(model, "per_image", False))


def softmax(logits: np.ndarray, axis: int = -1) -> np.ndarray:
    z = np.exp(logits - logits.max(axis=axis, keepdims=True))
    return z / z.sum(axis=axis, keepdims=True)


def to_array(images: Sequence[Image.Image], size: int | None = None) -> np.ndarray:
    """Stack RGB images as float32 ``[N, H, W, 3]`` in [0, 1], optionally resized (bicubic) to ``size``. Renders that
    are tensors (:func:`pipeline.images.to_pil`) are read as the PIL images of their bytes: a numpy reader reads on
    the host what the dataset stores."""
    out = []
    for im in images:
        im = to_pil(im).convert("RGB")
        if size is not None and im.size != (size, size):
            im = im.resize((size, size), Image.Resampling.BICUBIC)
        out.append(np.asarray(im, dtype=np.float32) / 255.0)
    return np.stack(out) if out else np.zeros((0, size or 1, size or 1, 3), np.float32)
