"""The interface between the search and whatever renders a prompt (a diffusion model, or the shapes world)."""

from __future__ import annotations

from typing import Protocol, Sequence, runtime_checkable

from PIL import Image


@runtime_checkable
class Generator(Protocol):
    """Renders prompts to images, batched. Image ``i`` depends only on ``(prompts[i], seeds[i])`` and settings."""

    #: identifies the model and settings in sample metadata (e.g. a hub id or folder plus steps)
    model_id: str

    def generate(self, prompts: Sequence[str], seeds: Sequence[int]) -> list[Image.Image]:
        """One RGB image per (prompt, seed) pair, in order."""
        ...
