"""The trained shapes-world CNN as the three encoder roles: semantic encoder, segmenter, feature maps."""

from __future__ import annotations

import functools
from typing import Sequence

import numpy as np
import torch
from PIL import Image

from pipeline.encoders.base import to_array
from pipeline.errors import ConfigError
from pipeline.generators.base import Generator
from pipeline.grammar import Encoding, Grammar
from pipeline.models.loading import load_pretrained
from pipeline.models.shapes_cnn import ShapesNet


@functools.lru_cache(maxsize=4)
def _load_net(pretrained: str) -> ShapesNet:
    """One network per folder and process, whichever roles it plays (segmenter, feature maps, semantic encoder)."""
    return load_pretrained(ShapesNet.from_pretrained, pretrained, "shapes CNN").eval()


class ShapesCnn:
    """Wraps a saved :class:`ShapesNet` (``models/shapes_cnn``)."""

    def __init__(self, pretrained: str, image_size: int = 32, batch_size: int = 256) -> None:
        self.net = _load_net(str(pretrained))
        self.image_size, self.batch_size = image_size, batch_size
        self.class_names = ("background",) + tuple(f"class {k}" for k in range(self.net.seg[-1].out_channels - 1))
        self.num_features = self.net.heads[0].in_features

    @torch.inference_mode()
    def _run(self, images: Sequence[Image.Image]):
        for i in range(0, len(images), self.batch_size):
            x = torch.from_numpy(to_array(images[i : i + self.batch_size], self.image_size)).permute(0, 3, 1, 2)
            yield x

    @torch.inference_mode()
    def predict(self, images: Sequence[Image.Image]) -> np.ndarray:
        """Per-axis argmax indices ``[N, n_axes]``."""
        rows = []
        for x in self._run(images):
            logits, _ = self.net(x)
            rows.append(torch.stack([lg.argmax(1) for lg in logits], 1).numpy())
        return np.concatenate(rows)

    @torch.inference_mode()
    def probabilities(self, images: Sequence[Image.Image]) -> list[np.ndarray]:
        """Per-axis softmax of the heads: one ``[N, k_axis]`` array per axis."""
        parts = [[lg.softmax(1).numpy() for lg in self.net(x)[0]] for x in self._run(images)]
        return [np.concatenate(axis) for axis in zip(*parts)]

    @torch.inference_mode()
    def segment(self, images: Sequence[Image.Image]) -> np.ndarray:
        return np.concatenate([self.net(x)[1].softmax(1).numpy() for x in self._run(images)])

    @torch.inference_mode()
    def feature_maps(self, images: Sequence[Image.Image]) -> list[np.ndarray]:
        parts = [[f.numpy() for f in self.net.features(x)] for x in self._run(images)]
        return [np.concatenate(level) for level in zip(*parts)]

    @torch.inference_mode()
    def embed(self, images: Sequence[Image.Image]) -> np.ndarray:
        out = []
        for x in self._run(images):
            f = self.net.features(x)
            e = torch.cat([f[3].mean((2, 3)), f[2].amax((2, 3))], 1)
            out.append(torch.nn.functional.normalize(e, dim=1).numpy())
        return np.concatenate(out)


class ShapesCnnSemanticEncoder:
    """The CNN's per-axis heads as the semantic encoder (its axes must be the grammar's)."""

    def __init__(self, grammar: Grammar, pretrained: str, generator: Generator | None = None, image_encoder=None) -> None:
        self.grammar, self.cnn = grammar, ShapesCnn(pretrained)
        sizes = [h.out_features for h in self.cnn.net.heads]
        if self.cnn.net.axis_names != [a.name for a in grammar.axes] or sizes != list(grammar.shape):
            raise ConfigError(
                f"shapes CNN '{pretrained}' predicts axes {dict(zip(self.cnn.net.axis_names, sizes))}, "
                f"grammar '{grammar.name}' has {dict(zip([a.name for a in grammar.axes], grammar.shape))}"
            )

    def encode(self, images: Sequence[Image.Image]) -> list[Encoding]:
        return [tuple(int(v) for v in row) for row in self.cnn.predict(images)]

    def probabilities(self, images: Sequence[Image.Image]) -> list[np.ndarray]:
        return self.cnn.probabilities(images)
