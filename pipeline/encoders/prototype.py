"""A semantic encoder that needs no trained head: per-axis prototypes in an ImageEncoder's space.

For every axis and every choice, it renders a few prompts with that choice fixed and the other axes
random, and keeps the mean embedding (the prototype). An image's encoding picks, axis by axis, the
nearest prototype under the axis's pooled within-choice covariance (linear discriminant analysis with
shrinkage), so features that vary with *other* axes count less. It is the render-based analogue of
CLIP zero-shot classification, usable with any generator and any encoder.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from PIL import Image

from pipeline.encoders.base import ImageEncoder, per_image, softmax
from pipeline.generators.base import Generator
from pipeline.grammar import Encoding, Grammar
from pipeline.seeding import derive_seed, rng_for


class PrototypeSemanticEncoder:
    """Images -> encodings by nearest per-axis prototype; prototypes cost ``samples_per_choice`` renders per choice."""

    @property
    def per_image(self) -> bool:
        """An image's reading depends on its call only through the image encoder's embedding."""
        return per_image(self.image_encoder)

    def __init__(
        self,
        grammar: Grammar,
        generator: Generator,
        image_encoder: ImageEncoder,
        samples_per_choice: int = 8,
        seed: int = 0,
        shrinkage: float = 0.1,
    ) -> None:
        self.grammar = grammar
        self.image_encoder = image_encoder
        rng = rng_for("prototype-encodings", seed)
        prompts, seeds, owners = [], [], []
        for ai, axis in enumerate(grammar.axes):
            for ci in range(len(axis)):
                for k in range(samples_per_choice):
                    enc = [int(rng.integers(n)) for n in grammar.shape]
                    enc[ai] = ci
                    prompts.append(grammar.decode(enc))
                    seeds.append(derive_seed("prototype", seed, ai, ci, k))
                    owners.append((ai, ci))
        emb = image_encoder.embed(generator.generate(prompts, seeds)).astype(np.float64)
        owners_arr = np.array(owners)
        d = emb.shape[1]
        #: per axis: (W [choices, d], b [choices]) of the linear discriminant  score_c = W_c · e + b_c
        self.discriminants: list[tuple[np.ndarray, np.ndarray]] = []
        for ai, axis in enumerate(grammar.axes):
            rows = owners_arr[:, 0] == ai
            x, y = emb[rows], owners_arr[rows, 1]
            means = np.stack([x[y == ci].mean(0) for ci in range(len(axis))])
            within = np.cov((x - means[y]).T).reshape(d, d)
            within = (1 - shrinkage) * within + shrinkage * np.diag(np.diag(within) + 1e-6)
            w = np.linalg.solve(within, means.T).T
            self.discriminants.append((w, -0.5 * np.einsum("cd,cd->c", w, means)))
        self.renders = len(prompts)

    def encode(self, images: Sequence[Image.Image]) -> list[Encoding]:
        emb = self.image_encoder.embed(images).astype(np.float64)
        return [tuple(int(np.argmax(w @ e + b)) for w, b in self.discriminants) for e in emb]

    def probabilities(self, images: Sequence[Image.Image]) -> list[np.ndarray]:
        """Per-axis softmax of the discriminant scores (LDA's posterior under equal priors)."""
        emb = self.image_encoder.embed(images).astype(np.float64)
        return [softmax(emb @ w.T + b) for w, b in self.discriminants]
