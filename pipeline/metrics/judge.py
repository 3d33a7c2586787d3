"""A judge for shapes-world clones: a CNN of its own reads every attribute of every image.

Trained on real renders of its own split (``judge``, seed 7) and never shown generated images, it tells
what a clone's images actually show: the class (accuracy against the label), how evenly each non-class
attribute varies within a class (normalised entropy), and whether the class can be told from the
non-class attributes alone (the *shortcut probe*: a linear classifier from the judge's non-class
readings to the label, trained on half of the clone and tested on the other half; chance is 1/classes).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from pipeline.models.shapes_cnn import ShapesNet, train_shapes_net
from pipeline.shapes.tensors import render_arrays
from pipeline.shapes.world import ShapesWorld


def train_judge(world: ShapesWorld, n: int, steps: int, cache: Path | None = None) -> ShapesNet:
    """The judge (seed 7, split 'judge'); with ``cache``, loaded from / saved to that folder. It learns from the world
    without contexts (uniform attributes), so it reads each attribute, not what a class's context makes likely."""
    if cache is not None and (cache / "config.json").is_file():
        return ShapesNet.from_pretrained(str(cache)).eval()
    uniform = ShapesWorld(world.grammar, world.image_size)
    net = train_shapes_net(uniform, render_arrays(uniform, n, "judge", seed=7), steps, seed=7)
    if cache is not None:
        net.save_pretrained(str(cache))
    return net


@torch.inference_mode()
def judge_readings(net: ShapesNet, images: torch.Tensor, batch: int = 512) -> np.ndarray:
    """Per-axis argmax ``[N, n_axes]`` for uint8 images ``[N, 3, H, W]``."""
    out = []
    for i in range(0, len(images), batch):
        logits, _ = net(images[i : i + batch].float() / 255.0)
        out.append(torch.stack([lg.argmax(1) for lg in logits], 1).numpy())
    return np.concatenate(out) if out else np.zeros((0, len(net.heads)), np.int64)


def normalised_entropy(values: np.ndarray, k: int) -> float:
    """Entropy of the empirical distribution of ``values`` over ``k`` choices, divided by log k (1 = even)."""
    if len(values) == 0 or k < 2:
        return 0.0
    p = np.bincount(values, minlength=k) / len(values)
    p = p[p > 0]
    return float(-(p * np.log(p)).sum() / np.log(k))


def shortcut_probe(readings: np.ndarray, labels: np.ndarray, sizes: list[int], num_classes: int, seed: int = 0,
                   steps: int = 300) -> float:
    """Held-out accuracy of a linear classifier from one-hot non-class readings to the label."""
    x = torch.cat([torch.nn.functional.one_hot(torch.from_numpy(readings[:, j]).long(), k).float()
                   for j, k in enumerate(sizes)], 1)
    y = torch.from_numpy(labels).long()
    perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))
    train, test = perm[: len(y) // 2], perm[len(y) // 2 :]
    if len(train) == 0 or len(test) == 0:
        return float("nan")
    torch.manual_seed(seed)
    lin = torch.nn.Linear(x.shape[1], num_classes)
    opt = torch.optim.Adam(lin.parameters(), lr=0.1)
    for _ in range(steps):
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(lin(x[train]), y[train]) + 1e-3 * lin.weight.pow(2).sum()
        loss.backward()
        opt.step()
    with torch.no_grad():
        return float((lin(x[test]).argmax(1) == y[test]).float().mean())


def judge_clone(net: ShapesNet, world: ShapesWorld, images: torch.Tensor, labels: torch.Tensor, seed: int = 0) -> dict:
    """Class accuracy, per-axis normalised entropy within classes (mean over classes), shortcut probe,
    and the share of images the judge reads as each choice of each non-class axis."""
    g = world.grammar
    ci = g.axis_index(g.class_axis)
    reads = judge_readings(net, images)
    y = labels.numpy()
    free = [j for j in range(len(g.axes)) if j != ci]
    classes = np.unique(y)
    entropy = {g.axes[j].name: float(np.mean([normalised_entropy(reads[y == c, j], len(g.axes[j])) for c in classes]))
               for j in free}
    share = {g.axes[j].name: {ch: float(np.mean(reads[:, j] == k)) for k, ch in enumerate(g.axes[j].choices)} for j in free}
    return {
        "class_accuracy": float(np.mean(reads[:, ci] == y)),
        "entropy": entropy,
        "entropy_min": min(entropy.values()),
        "shortcut_probe": shortcut_probe(reads[:, free], y, [len(g.axes[j]) for j in free], len(g.axes[ci].choices), seed),
        "share": share,
    }
