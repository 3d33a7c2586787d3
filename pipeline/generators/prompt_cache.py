"""Per-prompt text embeddings for the pipeline families we ship presets for.

The RLDF search renders each state at several seeds and the clone renders each state many times, so a
prompt is encoded once and its embeddings reused. With a few-step model (SDXL-Turbo, FLUX.1-schnell) the
text encoders are a large share of a call, and the pipeline would otherwise run them on every call.

Each family names the ``encode_prompt`` of its diffusers pipeline and the tensors its ``__call__`` accepts
in place of ``prompt``:

- ``sd`` (Stable Diffusion 1.x/2.x, LCM): ``prompt_embeds`` and, with guidance, ``negative_prompt_embeds``;
- ``sdxl`` (SDXL, SDXL-Turbo): those two plus ``pooled_prompt_embeds`` and ``negative_pooled_prompt_embeds``;
- ``flux`` (FLUX.1): ``prompt_embeds`` (T5) and ``pooled_prompt_embeds`` (CLIP); no negative prompt.

Prompts are encoded in chunks of a fixed size (padded with empty prompts), so a prompt's embedding never
depends on which prompts were encoded with it.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import torch

# family -> the diffusers pipeline classes it covers (by name, so an older diffusers without one still imports)
FAMILIES: dict[str, tuple[str, ...]] = {
    "sd": ("StableDiffusionPipeline", "LatentConsistencyModelPipeline"),
    "sdxl": ("StableDiffusionXLPipeline",),
    "flux": ("FluxPipeline",),
}

Embeds = dict[str, "torch.Tensor | None"]


def pipeline_family(pipe: Any) -> str | None:
    """The family of ``pipe`` (its class or a base class), or None when its prompts are not cached."""
    names = {c.__name__ for c in type(pipe).__mro__}
    for family, classes in FAMILIES.items():
        if names & set(classes):
            return family
    return None


def _encoder(pipe: Any, family: str, device: torch.device, guidance: float, negative_prompt: str | None,
             max_sequence_length: int | None) -> Callable[[list[str]], Embeds]:
    cfg = guidance > 1.0

    def negatives(n: int) -> list[str] | None:
        return [negative_prompt or ""] * n if cfg else None

    if family == "sd":
        def encode(prompts: list[str]) -> Embeds:
            pos, neg = pipe.encode_prompt(prompts, device, 1, cfg, negative_prompt=negatives(len(prompts)))
            return {"prompt_embeds": pos, "negative_prompt_embeds": neg if cfg else None}
    elif family == "sdxl":
        def encode(prompts: list[str]) -> Embeds:
            pos, neg, pooled, neg_pooled = pipe.encode_prompt(
                prompt=prompts, device=device, num_images_per_prompt=1, do_classifier_free_guidance=cfg,
                negative_prompt=negatives(len(prompts)) if negative_prompt else None,
            )
            return {"prompt_embeds": pos, "negative_prompt_embeds": neg if cfg else None,
                    "pooled_prompt_embeds": pooled, "negative_pooled_prompt_embeds": neg_pooled if cfg else None}
    elif family == "flux":
        def encode(prompts: list[str]) -> Embeds:
            extra = {"max_sequence_length": max_sequence_length} if max_sequence_length else {}
            pos, pooled, _text_ids = pipe.encode_prompt(prompt=prompts, prompt_2=None, device=device, num_images_per_prompt=1, **extra)
            return {"prompt_embeds": pos, "pooled_prompt_embeds": pooled}
    else:
        raise ValueError(f"no prompt encoder for pipeline family '{family}'")
    return encode


class PromptCache:
    """Embeddings per prompt for one pipeline, encoded in fixed-size chunks; :meth:`kwargs` gives the
    pipeline-call arguments for a list of prompts. Holds at most ``capacity`` prompts (cleared when full)."""

    def __init__(self, pipe: Any, family: str, device: torch.device, guidance: float, negative_prompt: str | None,
                 chunk_size: int | None, capacity: int = 4096, max_sequence_length: int | None = None) -> None:
        self.family, self.chunk_size, self.capacity = family, chunk_size, int(capacity)
        self._encode = _encoder(pipe, family, device, guidance, negative_prompt, max_sequence_length)
        self._rows: dict[str, dict[str, torch.Tensor | None]] = {}

    def __contains__(self, prompt: str) -> bool:
        return prompt in self._rows

    def __len__(self) -> int:
        return len(self._rows)

    def _fill(self, prompts: Sequence[str]) -> None:
        missing = [p for p in dict.fromkeys(prompts) if p not in self._rows]
        if not missing:
            return
        if len(self._rows) + len(missing) > self.capacity:
            self._rows.clear()
        size = self.chunk_size or len(missing)
        for i in range(0, len(missing), size):
            part = missing[i : i + size]
            embeds = self._encode(part + [""] * (size - len(part)))
            for j, p in enumerate(part):
                self._rows[p] = {k: (None if v is None else v[j]) for k, v in embeds.items()}

    def kwargs(self, prompts: Sequence[str]) -> dict[str, torch.Tensor | None]:
        self._fill(prompts)
        rows = [self._rows[p] for p in prompts]
        return {k: (None if rows[0][k] is None else torch.stack([r[k] for r in rows])) for k in rows[0]}
