"""What the semantic encoder reads in a class's input images, and the class the search aims at.

RLDF starts from one input image per class and no text (the paper): the class is what the encoder *reads*
in it. When the reading is wrong, every image of the class shows another class under the right label, so
the clone can read more than one input (``dataset.inputs_per_class`` = k) and can anchor the class on the
dataset's own label (``env.class_source``):

* ``read`` (the paper): the class distribution is the mean of the k inputs' distributions; the goal encoding is
  the per-axis argmax of the mean distributions; class consistency scores a render against the mean class
  distribution. With k = 1 this is exactly the single-input reading.
* ``label``: the class axis is fixed to the label (the class *name* is used, unlike the paper); the other axes
  are read as above, and class consistency scores a render by the probability of the label, ``p(label | render)``.

Either way the reading (the likeliest class and its probability) is recorded, so a run says where it
disagrees with the label.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
from PIL import Image

from pipeline.encoders.base import SemanticEncoder
from pipeline.errors import ConfigError
from pipeline.grammar import Encoding, Grammar

CLASS_SOURCES = ("read", "label")


@dataclass
class InputReading:
    images: list[Image.Image]  # the k input images; the similarity rewards compare renders to the first
    goal: Encoding  # in the full grammar: the per-axis argmax of the mean distributions (class axis: the label with class_source=label)
    class_target: np.ndarray | None  # what class consistency compares a render's class distribution to (None: no class axis)
    class_probs: np.ndarray | None  # the mean class distribution read in the inputs (None: no class axis)
    read_class: str | None  # the likeliest class of :attr:`class_probs`
    read_prob: float | None
    label: str | None  # the class fixed by the label (class_source=label), else None

    def describe(self) -> dict[str, object]:
        """The reading as a search result records it."""
        return {"read_class": self.read_class, "read_prob": None if self.read_prob is None else round(self.read_prob, 6),
                "class_source": "label" if self.label is not None else "read"}


def read_inputs(encoder: SemanticEncoder, grammar: Grammar, images: Sequence[Image.Image], label: str | None = None) -> InputReading:
    """Read ``images`` (a class's k inputs) with ``encoder`` over ``grammar`` (the full grammar); ``label``: the
    class name that fixes the class axis (class_source=label), which must be one of the class axis's choices."""
    images = list(images)
    if not images:
        raise ConfigError("dataset.inputs_per_class must be >= 1")
    probs = [p[0] if len(p) == 1 else p.mean(0, dtype=np.float64).astype(p.dtype) for p in map(np.asarray, encoder.probabilities(images))]
    goal = [int(np.argmax(p)) for p in probs]
    class_target = class_probs = read_class = read_prob = None
    if grammar.class_axis is not None:
        a = grammar.axis_index(grammar.class_axis)
        choices = grammar.axis(grammar.class_axis).choices
        class_probs = probs[a]
        read_class, read_prob = choices[goal[a]], float(class_probs[goal[a]])
        class_target = class_probs
        if label is not None:
            lowered = [c.lower() for c in choices]
            if label.lower() not in lowered:
                raise ConfigError(f"env.class_source=label: the label '{label}' is not a class of the grammar's class axis")
            goal[a] = lowered.index(label.lower())
            label = choices[goal[a]]  # the grammar's spelling
            class_target = np.zeros_like(class_probs)
            class_target[goal[a]] = 1.0
    elif label is not None:
        raise ConfigError("env.class_source=label needs a grammar with a class axis")
    return InputReading(images, tuple(goal), class_target, class_probs, read_class, read_prob, label)


def reader_accuracy(encoder: SemanticEncoder, grammar: Grammar, classes: Sequence[Any], inputs: Callable[[Any], Sequence[Image.Image]],
                    ks: Sequence[int] = (1,), progress: bool = False) -> dict[str, dict[str, float]]:
    """How often ``encoder`` reads a class's input images as that class: top-1 and top-5 of the class reading
    (:func:`read_inputs`) from each class's first ``k`` inputs (``inputs(cls)``: at least ``max(ks)`` images),
    for each ``k`` of ``ks``, over ``classes`` (whose ``prompt`` is a choice of ``grammar``'s class axis)."""
    from tqdm import tqdm

    choices = [c.lower() for c in grammar.axis(grammar.class_axis).choices]
    hits = {k: [0, 0] for k in ks}
    for cls in tqdm(classes, desc="reading inputs", disable=not progress):
        images = list(inputs(cls))
        truth = choices.index(cls.prompt.lower())
        for k in ks:
            probs = read_inputs(encoder, grammar, images[:k]).class_probs
            ranked = np.argsort(-probs, kind="stable")
            hits[k][0] += int(ranked[0] == truth)
            hits[k][1] += int(truth in ranked[:5])
    n = max(len(classes), 1)
    return {f"k={k}": {"top1": round(t1 / n, 4), "top5": round(t5 / n, 4), "classes": len(classes)} for k, (t1, t5) in hits.items()}
