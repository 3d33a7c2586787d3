"""Any text-to-image pipeline diffusers loads (Stable Diffusion 1.x/2.x, SDXL-Turbo, LCM, the embedded model).

Each image has its own ``torch.Generator``, drawn on the CPU (diffusers' advice for reproducible latents), so
its initial noise depends only on (prompt, seed), the same on every device. Its pixels
also depend on the call's size: CPU and GPU kernels pick other code paths (blocking, reductions) for other
batch sizes, which moves a few pixels by a grey level. With ``pad_batches`` every call to the pipeline has
exactly ``max_batch_size`` images (a short call is padded with copies of its last image, which are
dropped), so on one machine an image is the same bytes whatever shared its call, and whatever the caller's
batch size. Prompt embeddings are cached per prompt and encoded in padded chunks of the same size: the
RLDF search renders the same states at several seeds and the clone renders each state many times.
"""

from __future__ import annotations

import inspect
from typing import Any, Mapping, Sequence

import torch
from PIL import Image

from pipeline.errors import ConfigError
from pipeline.models.loading import load_pretrained
from pipeline.torch_device import resolve_device, resolve_dtype


class DiffusersGenerator:
    def __init__(
        self,
        pretrained: str,
        pipeline_class: str = "AutoPipelineForText2Image",
        device: str = "auto",
        dtype: str = "auto",
        scheduler: str | None = None,
        scheduler_kwargs: Mapping[str, Any] | None = None,
        num_inference_steps: int = 25,
        guidance_scale: float = 7.5,
        height: int | None = None,
        width: int | None = None,
        negative_prompt: str | None = None,
        max_batch_size: int = 16,
        pad_batches: bool = True,
        variant: str | None = None,
        cache_prompts: int = 4096,
    ) -> None:
        import diffusers

        if num_inference_steps < 1:
            raise ConfigError(f"model.num_inference_steps must be >= 1, got {num_inference_steps}")
        if max_batch_size < 1:
            raise ConfigError(f"model.max_batch_size must be >= 1, got {max_batch_size}")
        cls = getattr(diffusers, pipeline_class, None)
        if cls is None:
            raise ConfigError(f"model.pipeline_class '{pipeline_class}' is not a diffusers class")
        self.device = resolve_device(device)
        self.dtype = resolve_dtype(dtype, self.device)
        kwargs: dict[str, Any] = {"dtype": self.dtype}
        if variant:
            kwargs["variant"] = variant
        if "safety_checker" in inspect.signature(cls.__init__).parameters:
            # dataset generation scores images itself; the checker blanks them, so it is never loaded
            kwargs.update(safety_checker=None, requires_safety_checker=False)
        pipe = load_pretrained(cls.from_pretrained, pretrained, "diffusion pipeline (model.pretrained)", **kwargs)
        if getattr(pipe, "safety_checker", None) is not None:
            pipe.safety_checker = None
        if scheduler:
            sched_cls = getattr(diffusers, scheduler, None)
            if sched_cls is None:
                raise ConfigError(f"model.scheduler '{scheduler}' is not a diffusers scheduler")
            pipe.scheduler = sched_cls.from_config(pipe.scheduler.config, **dict(scheduler_kwargs or {}))
        pipe.set_progress_bar_config(disable=True)
        self.pipe = pipe.to(self.device)
        self.steps, self.guidance = int(num_inference_steps), float(guidance_scale)
        self.height, self.width, self.negative_prompt = height, width, negative_prompt
        self.max_batch_size, self.cache_size = int(max_batch_size), int(cache_prompts)
        self.pad_batches = bool(pad_batches)
        self._embeds: dict[str, tuple[torch.Tensor, torch.Tensor | None]] = {}
        # prompt-embedding caching needs the two-tensor encode_prompt of the SD 1.x/2.x family
        self._can_cache = type(pipe).__name__ in {"StableDiffusionPipeline", "LatentConsistencyModelPipeline"}
        size = f"{height or 'default'}x{width or 'default'}"
        self.model_id = f"{pretrained}|{type(pipe.scheduler).__name__}|steps={self.steps}|cfg={self.guidance:g}|{size}"

    @property
    def call_size(self) -> int | None:
        """Every pipeline call has this many images (None: as many as asked for); the renderer pads its reward
        calls to it too (pipeline/rendering.py)."""
        return self.max_batch_size if self.pad_batches else None

    def _prompt_embeds(self, prompts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor | None]:
        cfg = self.guidance > 1.0
        missing = [p for p in dict.fromkeys(prompts) if p not in self._embeds]
        if missing:
            if len(self._embeds) + len(missing) > self.cache_size:
                self._embeds.clear()
            size = self.call_size or len(missing)
            for i in range(0, len(missing), size):
                part = missing[i : i + size]
                padded = part + [""] * (size - len(part))  # a fixed-size call: an embedding never depends on its neighbours
                pos, neg = self.pipe.encode_prompt(
                    padded, self.device, 1, cfg, negative_prompt=[self.negative_prompt or ""] * len(padded) if cfg else None
                )
                for j, p in enumerate(part):
                    self._embeds[p] = (pos[j], neg[j] if cfg else None)
        pos = torch.stack([self._embeds[p][0] for p in prompts])
        neg = torch.stack([self._embeds[p][1] for p in prompts]) if cfg else None
        return pos, neg

    @torch.inference_mode()
    def generate(self, prompts: Sequence[str], seeds: Sequence[int]) -> list[Image.Image]:
        if len(prompts) != len(seeds):
            raise ConfigError(f"generate: {len(prompts)} prompts but {len(seeds)} seeds")
        out: list[Image.Image] = []
        for i in range(0, len(prompts), self.max_batch_size):
            chunk, chunk_seeds = list(prompts[i : i + self.max_batch_size]), list(seeds[i : i + self.max_batch_size])
            n = len(chunk)
            if self.pad_batches:  # copies of the last image, dropped below
                chunk += [chunk[-1]] * (self.max_batch_size - n)
                chunk_seeds += [chunk_seeds[-1]] * (self.max_batch_size - n)
            generators = [torch.Generator("cpu").manual_seed(int(s)) for s in chunk_seeds]  # the same noise on any device
            kwargs: dict[str, Any] = dict(
                num_inference_steps=self.steps, guidance_scale=self.guidance, generator=generators,
                height=self.height, width=self.width, output_type="pil",
            )
            if self._can_cache:
                pos, neg = self._prompt_embeds(chunk)
                kwargs.update(prompt_embeds=pos, negative_prompt_embeds=neg)
            else:
                kwargs.update(prompt=chunk, negative_prompt=[self.negative_prompt] * len(chunk) if self.negative_prompt else None)
            out.extend(self.pipe(**kwargs).images[:n])
        return out
