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
* ``rendered``: diffusion feedback on the reading itself, without the class name. A reader that errs systematically
  (an occluded cell, two similar breeds) reads the inputs of class A as class B, and reads renders of A the same
  way; renders of B it reads as B. So each of the reading's likeliest classes is rendered (the goal's other
  attributes, the same seeds for every candidate) and the class whose renders' mean class distribution ``q_c`` is
  closest to the inputs' ``p`` (least ``KL(p ‖ q_c)``) is chosen (:func:`choose_by_renders`); the class axis is then
  fixed to it and class consistency is ``p(class | render)``, as with the label.

Either way the reading (the likeliest class and its probability) is recorded, so a run says where it
disagrees with the label.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import numpy as np
from PIL import Image

from pipeline.encoders.base import SemanticEncoder
from pipeline.errors import ConfigError
from pipeline.grammar import Encoding, Grammar
from pipeline.rewards import ClassTarget
from pipeline.seeding import derive_seed

CLASS_SOURCES = ("read", "label", "rendered")
RENDERED_SMOOTHING = 1e-3  # added to a candidate's mean render distribution, so a class its renders never show is not infinitely far


@dataclass
class InputReading:
    images: list[Image.Image]  # the k input images; the similarity rewards compare renders to the first
    goal: Encoding  # in the full grammar: the per-axis argmax of the mean distributions (class axis: the label with class_source=label)
    class_target: np.ndarray | None  # what class consistency compares a render's class distribution to (None: no class axis)
    class_probs: np.ndarray | None  # the mean class distribution read in the inputs (None: no class axis)
    read_class: str | None  # the likeliest class of :attr:`class_probs` (class_source=rendered: the class chosen by renders)
    read_prob: float | None  # its probability in :attr:`class_probs`
    label: str | None  # the class fixed on the class axis (class_source=label: the label; rendered: the class chosen), else None
    class_source: str = "read"
    #: class_source=rendered: each candidate class -> KL(p ‖ q_c) of its renders, and the likeliest class read
    rendered: dict[str, Any] | None = None
    acceptance: str = "absolute"  # env.acceptance: how a render's class reading is judged (pipeline.rewards.ClassConsistencyReward)
    class_pos: int | None = None  # the class axis's position in :attr:`goal`

    def target(self) -> ClassTarget | None:
        """What class consistency compares a render with: :attr:`class_target`, the class ``t`` on the goal's class axis
        and, under the relative rule, ``p̄(t)``: the inputs' mean probability of ``t`` (None: no class axis)."""
        if self.class_target is None:
            return None
        t = int(self.goal[self.class_pos])
        ref = float(self.class_probs[t]) if self.acceptance == "relative" else None
        return ClassTarget(self.class_target, t, ref)

    def describe(self) -> dict[str, object]:
        """The reading as a search result records it (and, with class_source=rendered, :attr:`rendered` beside it)."""
        return {"read_class": self.read_class, "read_prob": None if self.read_prob is None else round(self.read_prob, 6),
                "class_source": self.class_source}


def read_inputs(encoder: SemanticEncoder, grammar: Grammar, images: Sequence[Image.Image], label: str | None = None,
                acceptance: str = "absolute") -> InputReading:
    """Read ``images`` (a class's k inputs) with ``encoder`` over ``grammar`` (the full grammar); ``label``: the
    class name that fixes the class axis (class_source=label), which must be one of the class axis's choices;
    ``acceptance``: the rule renders are judged by (``env.acceptance``, one of :data:`~pipeline.rewards.ACCEPTANCE_RULES`,
    checked by the config schema)."""
    images = list(images)
    if not images:
        raise ConfigError("dataset.inputs_per_class must be >= 1")
    probs = [p[0] if len(p) == 1 else p.mean(0, dtype=np.float64).astype(p.dtype) for p in map(np.asarray, encoder.probabilities(images))]
    goal = [int(np.argmax(p)) for p in probs]
    class_target = class_probs = read_class = read_prob = a = None
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
            goal, class_target = _fix_class(goal, a, lowered.index(label.lower()), class_probs)
            label = choices[goal[a]]  # the grammar's spelling
    elif label is not None:
        raise ConfigError("env.class_source=label needs a grammar with a class axis")
    return InputReading(images, tuple(goal), class_target, class_probs, read_class, read_prob, label,
                        "read" if label is None else "label", acceptance=acceptance, class_pos=a)


def _fix_class(goal: Sequence[int], axis: int, c: int, class_probs: np.ndarray) -> tuple[list[int], np.ndarray]:
    """``goal`` with class ``c`` on the class ``axis``, and the one-hot class-consistency target of ``c``: the class
    axis fixed, by the label or by renders."""
    fixed = list(goal)
    fixed[axis] = c
    target = np.zeros_like(class_probs)
    target[c] = 1.0
    return fixed, target


def rendered_candidates(grammar: Grammar, reading: InputReading, n: int) -> list[tuple[str, str]]:
    """(class, prompt) of the reading's ``n`` likeliest classes, each prompt the goal encoding with that class:
    what :func:`choose_by_renders` renders."""
    if reading.class_probs is None or grammar.class_axis is None:
        raise ConfigError("env.class_source=rendered needs a grammar with a class axis")
    a = grammar.axis_index(grammar.class_axis)
    choices = grammar.axis(grammar.class_axis).choices
    out = []
    for c in np.argsort(-reading.class_probs, kind="stable")[: int(n)]:
        goal = list(reading.goal)
        goal[a] = int(c)
        out.append((choices[int(c)], grammar.decode(tuple(goal))))
    return out


def choose_by_renders(encoder: SemanticEncoder, grammar: Grammar, reading: InputReading,
                      renders: Mapping[str, Sequence[Image.Image]]) -> InputReading:
    """class_source=rendered: of the candidate classes (``renders``: each one's renders, at the same seeds), the one
    whose renders ``encoder`` reads like the inputs, least ``KL(p ‖ q_c)`` with ``p`` the inputs' mean class
    distribution and ``q_c`` the candidate's renders' (smoothed by :data:`RENDERED_SMOOTHING`); ties go to the
    likelier class read. The returned reading fixes the class axis to it, as a label would."""
    p = np.asarray(reading.class_probs, np.float64)
    a = grammar.axis_index(grammar.class_axis)
    divergence = {}
    for name, images in renders.items():
        q = np.asarray(encoder.probabilities(list(images))[a], np.float64).mean(0)
        q = (q + RENDERED_SMOOTHING) / (1 + RENDERED_SMOOTHING * len(q))
        divergence[name] = float(np.sum(p * (np.log(np.maximum(p, 1e-12)) - np.log(q))))
    chosen = min(divergence, key=divergence.get)  # dicts keep the candidates' order: likeliest first on a tie
    return settle(grammar, reading, chosen, {"argmax": reading.read_class, "divergence": {k: round(v, 6) for k, v in divergence.items()}})


def settle(grammar: Grammar, reading: InputReading, chosen: str, rendered: dict[str, Any]) -> InputReading:
    """``reading`` with its class fixed to ``chosen`` (class_source=rendered), as :func:`choose_by_renders` chose it
    (or a search result recorded it: nothing is rendered again)."""
    c = grammar.axis(grammar.class_axis).choices.index(chosen)
    goal, target = _fix_class(reading.goal, grammar.axis_index(grammar.class_axis), c, reading.class_probs)
    return InputReading(reading.images, tuple(goal), target, reading.class_probs, chosen, float(reading.class_probs[c]),
                        chosen, "rendered", rendered, reading.acceptance, reading.class_pos)


def check_seeds(run_seed: int, class_id: str, n: int) -> list[int]:
    """The seeds class_source=rendered renders each candidate class of ``class_id`` at (the same for every candidate)."""
    return [derive_seed(run_seed, "class-check", class_id, j) for j in range(int(n))]


def reader_accuracy(encoder: SemanticEncoder, grammar: Grammar, classes: Sequence[Any], inputs: Callable[[Any], Sequence[Image.Image]],
                    ks: Sequence[int] = (1,), progress: bool = False,
                    choose: Callable[[Any, InputReading], InputReading] | None = None) -> dict[str, dict[str, float]]:
    """How often ``encoder`` reads a class's input images as that class: top-1 and top-5 of the class reading
    (:func:`read_inputs`) from each class's first ``k`` inputs (``inputs(cls)``: at least ``max(ks)`` images),
    for each ``k`` of ``ks``, over ``classes`` (whose ``prompt`` is a choice of ``grammar``'s class axis).
    ``choose(cls, reading)``: the class chosen by renders (class_source=rendered), whose hit rate is reported
    as ``rendered_top1``. ``p_true``: the mean probability the reading gives the right class (the reader's confidence
    where it matters: CLIP ViT-L/14 over ImageNet is right on about 3 photos in 4 at a mean well under 0.5)."""
    from tqdm import tqdm

    choices = [c.lower() for c in grammar.axis(grammar.class_axis).choices]
    hits = {k: [0, 0, 0, 0.0] for k in ks}
    for cls in tqdm(classes, desc="reading inputs", disable=not progress):
        images = list(inputs(cls))
        truth = choices.index(cls.prompt.lower())
        for k in ks:
            reading = read_inputs(encoder, grammar, images[:k])
            ranked = np.argsort(-reading.class_probs, kind="stable")
            hits[k][0] += int(ranked[0] == truth)
            hits[k][1] += int(truth in ranked[:5])
            hits[k][3] += float(reading.class_probs[truth])
            if choose is not None:
                hits[k][2] += int(str(choose(cls, reading).read_class).lower() == choices[truth])
    n = max(len(classes), 1)
    return {f"k={k}": {"top1": round(t1 / n, 4), "top5": round(t5 / n, 4), "p_true": round(pt / n, 4), "classes": len(classes),
                       **({"rendered_top1": round(tr / n, 4)} if choose is not None else {})} for k, (t1, t5, tr, pt) in hits.items()}
