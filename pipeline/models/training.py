"""The optimisation loop pieces every embedded model's training shares."""

from __future__ import annotations

import math
from typing import Iterable

import torch


def warmup_cosine(step: int, steps: int, peak: float, warmup: int = 100) -> float:
    """Linear warm-up to ``peak`` over ``warmup`` steps, then cosine decay to 0 at ``steps``."""
    if step < warmup:
        return peak * (step + 1) / warmup
    return peak * 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, steps - warmup)))


def optimiser_step(opt: torch.optim.Optimizer, loss: torch.Tensor, lr: float,
                   clip_params: Iterable[torch.Tensor] | None = None, max_norm: float = 1.0) -> None:
    """Set the learning rate, back-propagate ``loss`` and step (clipping gradients of ``clip_params``)."""
    for group in opt.param_groups:
        group["lr"] = lr
    opt.zero_grad()
    loss.backward()
    if clip_params is not None:
        torch.nn.utils.clip_grad_norm_(clip_params, max_norm)
    opt.step()
