"""The trained shapes-world CNN as the three encoder roles: semantic encoder, segmenter, feature maps."""

from __future__ import annotations

import functools
import json
from pathlib import Path
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
    """The CNN's per-axis heads as the semantic encoder, read by name: each of the grammar's axes must be a head, and
    each of its choices one of that head's (the grammar may hold fewer, in any order: a dataset's classes in its own
    label order). A head's probabilities are taken at the grammar's choices and renormalised over them."""

    def __init__(self, grammar: Grammar, pretrained: str, generator: Generator | None = None, image_encoder=None) -> None:
        self.grammar, self.cnn = grammar, ShapesCnn(pretrained)
        vocabulary = head_vocabulary(self.cnn.net, grammar)
        if [a.name for a in grammar.axes] != list(vocabulary):
            raise ConfigError(f"shapes CNN '{pretrained}' reads the attributes {list(vocabulary)}, grammar '{grammar.name}' "
                              f"has {[a.name for a in grammar.axes]}")
        check_choices(vocabulary, grammar, f"the shapes CNN '{pretrained}'")
        #: per axis, the head's output index of each of the grammar's choices
        self.columns = [np.array([[c.lower() for c in vocabulary[a.name]].index(c.lower()) for c in a.choices]) for a in grammar.axes]
        self._identity = all(len(cols) == len(vocabulary[a.name]) and (cols == np.arange(len(cols))).all()
                             for cols, a in zip(self.columns, grammar.axes))

    @staticmethod
    def check_classes(names: Sequence[str], pretrained: str, **_: object) -> None:
        """Refuse, in one line and without loading weights, class names the CNN's class head does not read."""
        config = Path(str(pretrained)) / "config.json"
        if not config.is_file():
            return  # load_pretrained says what is wrong with the folder when the stack is built
        cfg = json.loads(config.read_text())
        if cfg.get("axis_choices") is None or "object" not in cfg.get("axis_names", []):
            return
        known = cfg["axis_choices"][cfg["axis_names"].index("object")]
        _refuse_unknown(names, known, f"the shapes CNN '{pretrained}'")

    def probabilities(self, images: Sequence[Image.Image]) -> list[np.ndarray]:
        probs = self.cnn.probabilities(images)
        if self._identity:
            return probs
        out = []
        for p, cols in zip(probs, self.columns):
            q = p[:, cols]
            out.append(q / np.maximum(q.sum(1, keepdims=True), 1e-12))
        return out

    def encode(self, images: Sequence[Image.Image]) -> list[Encoding]:
        probs = self.probabilities(images)
        return [tuple(int(np.argmax(p[n])) for p in probs) for n in range(len(images))]


def head_vocabulary(net: ShapesNet, grammar: Grammar) -> dict[str, list[str]]:
    """Each head's choices in output order: the net's recorded vocabulary, else (a model saved before it was
    recorded) the grammar's own choices, position for position, where the sizes agree."""
    sizes = [h.out_features for h in net.heads]
    if net.axis_choices is not None:
        return dict(zip(net.axis_names, net.axis_choices))
    by_name = {a.name: list(a.choices) for a in grammar.axes}
    if net.axis_names != list(by_name) or sizes != list(grammar.shape):
        raise ConfigError(f"shapes CNN predicts axes {dict(zip(net.axis_names, sizes))}, grammar '{grammar.name}' has "
                          f"{dict(zip(by_name, grammar.shape))}")
    return by_name


def _refuse_unknown(names: Sequence[str], known: Sequence[str], reader: str) -> None:
    lowered = {k.lower() for k in known}
    unknown = [n for n in names if n.lower() not in lowered]
    if unknown:
        raise ConfigError(f"{reader} does not read the class{'es' if len(unknown) > 1 else ''} "
                          f"{', '.join(repr(u) for u in unknown[:5])}{'…' if len(unknown) > 5 else ''} (it reads: {', '.join(known)}); "
                          "name the dataset's classes as the reader does (dataset.classes: [{name: <folder>, prompt: <class>}]) "
                          "or use a reader of those classes (reward=clip_imagenet)")


def check_choices(vocabulary: dict[str, list[str]], grammar: Grammar, reader: str) -> None:
    """Every choice of every axis of ``grammar`` is one of ``vocabulary``'s for that axis (case-insensitively)."""
    for a in grammar.axes:
        if a.name == grammar.class_axis:
            _refuse_unknown(a.choices, vocabulary[a.name], reader)
            continue
        known = {c.lower() for c in vocabulary[a.name]}
        bad = [c for c in a.choices if c.lower() not in known]
        if bad:
            raise ConfigError(f"{reader} does not read {a.name} '{bad[0]}' (it reads: {', '.join(vocabulary[a.name])})")
