"""Classification Accuracy Score (Ravuri & Vinyals, 2019): train a classifier only on one image set,
test it on real held-out images. Trained on a clone, it measures how much of the real classes' variety
the clone teaches; trained on as many real images, it gives the reference the clone is compared with.

The classifier is a small CNN (three stride-2 stages, BatchNorm, global pooling) with pad-and-crop and
(where a mirror image keeps the class: not for glyphs) horizontal-flip augmentation, sized for 32-pixel images
on a CPU.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset, IterableDataset
from tqdm import tqdm

from pipeline.models.shapes_cnn import conv_block, conv_stage
from pipeline.models.training import optimiser_step, warmup_cosine


@dataclass
class LabelledImages:
    images: torch.Tensor  # [N, 3, H, W] uint8
    labels: torch.Tensor  # [N] int64

    def __len__(self) -> int:
        return len(self.labels)


def load_labelled(source: Dataset | IterableDataset, n: int | None = None, batch_size: int = 256) -> LabelledImages:
    """Read (image, label) pairs from a metrics source (``pipeline.metrics.sources``) into memory."""
    images, labels, seen = [], [], 0
    for x, y in DataLoader(source, batch_size=batch_size, num_workers=0, shuffle=False):
        images.append(x)
        labels.append(y)
        seen += len(y)
        if n is not None and seen >= n:
            break
    x, y = torch.cat(images), torch.cat(labels).long()
    if n is not None:
        x, y = x[:n], y[:n]
    if (y < 0).any():
        raise ValueError("CAS needs a class label on every image (a 'cls' field in shards)")
    return LabelledImages(x, y)


class SmallClassifier(nn.Module):
    def __init__(self, num_classes: int, widths: tuple[int, ...] = (32, 64, 128)) -> None:
        super().__init__()
        layers, cin = [conv_block(3, widths[0], 1)], widths[0]
        for w in widths:
            layers.append(conv_stage(cin, w))
            cin = w
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(cin, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits for ``x`` in [0, 1], ``[N, 3, H, W]``."""
        return self.head(self.body((x - 0.5) / 0.25).mean((2, 3)))


def _augment(x: torch.Tensor, gen: torch.Generator, hflip: bool, pad: int = 2) -> torch.Tensor:
    """Random horizontal flip (``hflip``) and a random crop of the ``pad``-padded image (one offset per batch)."""
    if hflip:
        flip = torch.rand(len(x), generator=gen) < 0.5
        x = torch.where(flip.view(-1, 1, 1, 1), x.flip(3), x)
    h, w = x.shape[-2:]
    xp = F.pad(x, (pad, pad, pad, pad), mode="replicate")
    i, j = torch.randint(0, 2 * pad + 1, (2,), generator=gen).tolist()
    return xp[..., i : i + h, j : j + w]


def train_classifier(train: LabelledImages, num_classes: int, steps: int, seed: int = 0, batch: int = 64,
                     lr: float = 3e-3, progress: bool = True, desc: str = "CAS classifier", hflip: bool = True) -> SmallClassifier:
    """AdamW with warm-up and cosine decay on augmented batches (``hflip``: mirror images among them); deterministic
    for a given ``seed``."""
    torch.manual_seed(seed)
    net = SmallClassifier(num_classes).train()
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=5e-4)
    gen = torch.Generator().manual_seed(seed)
    for step in tqdm(range(steps), desc=desc, unit="step", leave=False, disable=not progress):
        idx = torch.randint(len(train), (batch,), generator=gen)
        x = _augment(train.images[idx].float() / 255.0, gen, hflip)
        loss = F.cross_entropy(net(x), train.labels[idx])
        optimiser_step(opt, loss, warmup_cosine(step, steps, lr, min(100, steps // 10 + 1)))
    return net.eval()


@torch.inference_mode()
def accuracy(net: nn.Module, test: LabelledImages, class_names: dict[int, str] | None = None, batch: int = 512) -> dict:
    """Top-1 accuracy overall and per true class."""
    pred = torch.cat([net(test.images[i : i + batch].float() / 255.0).argmax(1) for i in range(0, len(test), batch)])
    hit = (pred == test.labels).float()
    per_class = {}
    for lab in sorted(set(test.labels.tolist())):
        m = test.labels == lab
        per_class[(class_names or {}).get(lab, str(lab))] = float(hit[m].mean())
    return {"accuracy": float(hit.mean()), "n_test": int(len(test)), "per_class": per_class}


def classification_accuracy_score(train: LabelledImages, test: LabelledImages, num_classes: int, steps: int, seed: int = 0,
                                  class_names: dict[int, str] | None = None, progress: bool = True, desc: str = "CAS classifier",
                                  hflip: bool = True) -> dict:
    """Train on ``train`` only, score on ``test``; ``n_train`` records how many images taught it. ``hflip``: augment
    with mirror images (off where mirroring changes the class, as for glyphs)."""
    net = train_classifier(train, num_classes, steps, seed, progress=progress, desc=desc, hflip=hflip)
    out = accuracy(net, test, class_names)
    out["n_train"] = int(len(train))
    return out
