"""A small CNN for the shapes world: one classification head per grammar axis and a segmentation head.

Trained on renders (the renderer gives exact labels and masks), it is the shapes world's semantic
encoder (image -> encoding), its segmentation drives Reward 1 and its intermediate features Reward 2.
Saved and loaded with ``huggingface_hub``'s mixin (``config.json`` + ``model.safetensors``).
"""

from __future__ import annotations

import torch
from huggingface_hub import PyTorchModelHubMixin
from torch import nn


def conv_block(cin: int, cout: int, stride: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


def conv_stage(cin: int, cout: int) -> nn.Sequential:
    """Downsample by 2, then one more 3x3 conv: two layers per scale, for receptive field on whole shapes."""
    return nn.Sequential(conv_block(cin, cout, 2), conv_block(cout, cout, 1))


class ShapesNet(nn.Module, PyTorchModelHubMixin):
    def __init__(self, axis_sizes: list[int], axis_names: list[str], seg_classes: int, widths: list[int] = (16, 32, 64, 128),
                 axis_choices: list[list[str]] | None = None) -> None:
        """``axis_choices``: each head's choices in its output order (its vocabulary, as a classifier's ``id2label``),
        so a reader maps them to a grammar by name; None (a model saved before it was recorded): the grammar's order."""
        super().__init__()
        w = list(widths)
        self.axis_names = list(axis_names)
        self.axis_choices = [list(c) for c in axis_choices] if axis_choices is not None else None
        self.stem = conv_block(3, w[0], 1)  # 32x32
        self.stages = nn.ModuleList([conv_stage(w[0], w[1]), conv_stage(w[1], w[2]), conv_stage(w[2], w[3])])  # 16, 8, 4
        self.heads = nn.ModuleList([nn.Linear(w[3] + w[2], k) for k in axis_sizes])
        self.seg = nn.Sequential(nn.Conv2d(w[0] + w[1], 32, 3, 1, 1), nn.ReLU(inplace=True), nn.Conv2d(32, seg_classes, 1))

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Feature maps at 32, 16, 8 and 4 pixels (input: [N, 3, H, W] in [0, 1])."""
        x = (x - 0.5) / 0.25
        maps = [self.stem(x)]
        for stage in self.stages:
            maps.append(stage(maps[-1]))
        return maps

    def forward(self, x: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        """(per-axis logits, segmentation logits [N, C, H, W])."""
        f0, f1, f2, f3 = self.features(x)
        pooled = torch.cat([f3.mean((2, 3)), f2.amax((2, 3))], 1)
        up = nn.functional.interpolate(f1, size=f0.shape[-2:], mode="bilinear", align_corners=False)
        return [h(pooled) for h in self.heads], self.seg(torch.cat([f0, up], 1))


def train_shapes_net(world, data, steps: int, seed: int, lr: float = 3e-3, batch: int = 64, log=None) -> ShapesNet:
    """Train a :class:`ShapesNet` on rendered arrays (``pipeline.shapes.tensors.ShapesArrays``): the sum of
    the per-axis cross-entropies and the segmentation cross-entropy, AdamW, warm-up then cosine decay."""
    import torch.nn.functional as F

    from pipeline.models.training import optimiser_step, warmup_cosine

    g = world.grammar
    torch.manual_seed(seed)
    net = ShapesNet([len(a) for a in g.axes], [a.name for a in g.axes], seg_classes=len(world.classes) + 1,
                    axis_choices=[list(a.choices) for a in g.axes])
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-4)
    x = torch.from_numpy(data.images).permute(0, 3, 1, 2).float() / 255.0
    y, m = torch.from_numpy(data.labels), torch.from_numpy(data.masks).long()
    gen = torch.Generator().manual_seed(seed)
    warmup = min(100, steps // 10 + 1)
    for step in range(steps):
        idx = torch.randint(len(x), (batch,), generator=gen)
        logits, seg = net(x[idx])
        loss = sum(F.cross_entropy(lg, y[idx, k]) for k, lg in enumerate(logits)) + F.cross_entropy(seg, m[idx])
        optimiser_step(opt, loss, warmup_cosine(step, steps, lr, warmup))
        if log is not None and (step % 250 == 0 or step == steps - 1):
            log(f"step {step}/{steps} loss {loss.item():.3f}")
    return net.eval()
