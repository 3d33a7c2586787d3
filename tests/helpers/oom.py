"""A generator that runs out of CUDA memory above a call size, as a GPU would (``model._target_`` in a test)."""

from __future__ import annotations

from typing import Any

import torch

from pipeline.generators.procedural import ProceduralGenerator


class OutOfMemoryAbove:
    """The procedural generator (its settings in ``kwargs``), except that a call of more than ``limit`` images raises
    ``torch.OutOfMemoryError``. ``max_batch_size``: the call size the renderer starts from and lowers on a back-off."""

    def __init__(self, limit: int, max_batch_size: int = 16, **kwargs: Any) -> None:
        self.inner, self.limit, self.max_batch_size = ProceduralGenerator(**kwargs), int(limit), int(max_batch_size)
        self.model_id = self.inner.model_id
        self.raised = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.__dict__["inner"], name)

    def generate(self, prompts, seeds):
        if len(prompts) > self.limit:
            self.raised += 1
            raise torch.OutOfMemoryError(f"CUDA out of memory. Tried to allocate a call of {len(prompts)} images")
        return self.inner.generate(prompts, seeds)


class DeviceOutOfMemoryAbove:
    """A real generator (the tiny diffusion model) that runs out of CUDA memory when a call holds more than ``limit``
    images on the device: its padded call size where it pads (``call_size``), else the call's count."""

    def __init__(self, inner: Any, limit: int) -> None:
        self.__dict__.update(inner=inner, limit=int(limit), raised=0)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.__dict__["inner"], name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self.inner, name, value)  # max_batch_size: the renderer's back-off lowers the generator's own

    def _check(self, n: int) -> None:
        held = min(self.inner.max_batch_size, n) if self.inner.call_size is None else self.inner.call_size
        if held > self.limit:
            self.__dict__["raised"] += 1
            raise torch.OutOfMemoryError(f"CUDA out of memory. Tried to allocate a call of {held} images")

    def render(self, prompts, seeds):
        self._check(len(prompts))
        return self.inner.render(prompts, seeds)

    def generate(self, prompts, seeds):
        self._check(len(prompts))
        return self.inner.generate(prompts, seeds)
