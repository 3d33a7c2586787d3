"""Any text-to-image pipeline diffusers loads (Stable Diffusion 1.x/2.x, SDXL/SDXL-Turbo, LCM, FLUX.1, the embedded model).

Each image has its own ``torch.Generator``, drawn on the CPU (diffusers' advice for reproducible latents), so
its initial noise depends only on (prompt, seed), the same on every device. Its pixels
also depend on the call's size: CPU and GPU kernels pick other code paths (blocking, reductions) for other
batch sizes, which moves a few pixels by a grey level. With ``pad_batches`` every call to the pipeline has
exactly ``max_batch_size`` images (a short call is padded with copies of its last image, which are
dropped), so on one machine an image is the same bytes whatever shared its call, and whatever the caller's
batch size. Prompt embeddings are cached per prompt for every family we ship a preset for
(:mod:`pipeline.generators.prompt_cache`), encoded in padded chunks of the same size.

Speed switches, off by default because they change numerics: ``compile`` (``torch.compile`` of the UNet or
transformer, the UNet in channels_last), ``vae_dtype`` (e.g. ``float32`` for a VAE that overflows in fp16)
or ``vae`` (a replacement VAE, e.g. an fp16-fixed one).
"""

from __future__ import annotations

import inspect
from typing import Any, Mapping, Sequence

import torch
from PIL import Image

from pipeline.errors import ConfigError
from pipeline.images import quantized, to_pil
from pipeline.generators.prompt_cache import PromptCache, pipeline_family
from pipeline.models.fingerprint import weights_name
from pipeline.models.loading import hub_commit, load_pretrained
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
        revision: str | None = None,
        cache_prompts: int = 4096,
        max_sequence_length: int | None = None,
        compile: bool = False,
        vae: str | None = None,
        vae_dtype: str | None = None,
        license: str | None = None,
    ) -> None:
        """``license``: the weights' licence, a Hub licence id (the clone's dataset card names it)."""
        import diffusers

        self.license = license

        if num_inference_steps < 1:
            raise ConfigError(f"model.num_inference_steps must be >= 1, got {num_inference_steps}")
        if max_batch_size < 1:
            raise ConfigError(f"model.max_batch_size must be >= 1, got {max_batch_size}")
        self.device = resolve_device(device)
        self.dtype = resolve_dtype(dtype, self.device)
        pipe = _load(pretrained, pipeline_class, self.dtype, variant, revision, vae)
        if scheduler:
            sched_cls = getattr(diffusers, scheduler, None)
            if sched_cls is None:
                raise ConfigError(f"model.scheduler '{scheduler}' is not a diffusers scheduler")
            pipe.scheduler = sched_cls.from_config(pipe.scheduler.config, **dict(scheduler_kwargs or {}))
        pipe.set_progress_bar_config(disable=True)
        self.pipe = pipe.to(self.device)
        if vae_dtype:
            _set_vae_dtype(self.pipe.vae, resolve_dtype(vae_dtype, self.device))
        if compile:
            _compile_denoiser(self.pipe)
        self.steps, self.guidance = int(num_inference_steps), float(guidance_scale)
        self.height, self.width, self.negative_prompt = height, width, negative_prompt
        self.max_batch_size, self.pad_batches = int(max_batch_size), bool(pad_batches)
        self.max_sequence_length = max_sequence_length
        self.family = pipeline_family(self.pipe)
        self.prompt_cache = None if self.family is None else PromptCache(
            self.pipe, self.family, self.device, self.guidance, negative_prompt, self.call_size, cache_prompts, max_sequence_length)
        commit = hub_commit(pretrained, revision)
        #: the weights loaded: ``org/name@commit`` for a hub snapshot (a local folder's content is in the run identity)
        self.weights = f"{pretrained}@{commit}" if commit else None
        size = f"{height or 'default'}x{width or 'default'}"
        # in every sample's record: the weights by hub id or folder name and content, never this machine's path
        self.model_id = f"{weights_name(pretrained, commit)}|{type(pipe.scheduler).__name__}|steps={self.steps}|cfg={self.guidance:g}|{size}"

    @property
    def call_size(self) -> int | None:
        """Every pipeline call has this many images (None: as many as asked for); the renderer pads its reward
        calls to it too (pipeline/rendering.py)."""
        return self.max_batch_size if self.pad_batches else None

    def generate(self, prompts: Sequence[str], seeds: Sequence[int]) -> list[Image.Image]:
        """PIL images (the bytes diffusers' ``output_type="pil"`` gives)."""
        return [to_pil(x) for x in self.render(prompts, seeds)]

    @torch.inference_mode()
    def render(self, prompts: Sequence[str], seeds: Sequence[int]) -> torch.Tensor:
        """The images as one ``[N, 3, H, W]`` float tensor on the generator's device, on the 8-bit grid
        (:func:`pipeline.images.quantized`): what the clone's renderer scores there, never through PIL."""
        if len(prompts) != len(seeds):
            raise ConfigError(f"generate: {len(prompts)} prompts but {len(seeds)} seeds")
        out: list[torch.Tensor] = []
        for i in range(0, len(prompts), self.max_batch_size):
            chunk, chunk_seeds = list(prompts[i : i + self.max_batch_size]), list(seeds[i : i + self.max_batch_size])
            n = len(chunk)
            if self.pad_batches:  # copies of the last image, dropped below
                chunk += [chunk[-1]] * (self.max_batch_size - n)
                chunk_seeds += [chunk_seeds[-1]] * (self.max_batch_size - n)
            generators = [torch.Generator("cpu").manual_seed(int(s)) for s in chunk_seeds]  # the same noise on any device
            kwargs: dict[str, Any] = dict(
                num_inference_steps=self.steps, guidance_scale=self.guidance, generator=generators,
                height=self.height, width=self.width, output_type="pt",  # denormalised to [0, 1], as "pil" before its rounding
            )
            if self.max_sequence_length:
                kwargs["max_sequence_length"] = self.max_sequence_length
            if self.prompt_cache is not None:
                kwargs.update(self.prompt_cache.kwargs(chunk))
            else:
                kwargs.update(prompt=chunk, negative_prompt=[self.negative_prompt] * len(chunk) if self.negative_prompt else None)
            out.append(quantized(self.pipe(**kwargs).images[:n]))
        if not out:
            return torch.zeros((0, 3, self.height or 0, self.width or 0), device=self.device)
        return torch.cat(out)


def _load(pretrained: str, pipeline_class: str, dtype: torch.dtype, variant: str | None, revision: str | None, vae: str | None) -> Any:
    """The diffusers pipeline ``pipeline_class`` from ``pretrained`` in ``dtype``, without a safety checker (dataset
    generation scores images itself; the checker blanks them, so it is never loaded)."""
    import diffusers

    cls = getattr(diffusers, pipeline_class, None)
    if cls is None:
        raise ConfigError(f"model.pipeline_class '{pipeline_class}' is not a diffusers class")
    kwargs: dict[str, Any] = {"dtype": dtype}
    if variant:
        kwargs["variant"] = variant
    if revision:
        kwargs["revision"] = revision
    if vae:
        kwargs["vae"] = load_pretrained(diffusers.AutoencoderKL.from_pretrained, vae, "VAE (model.vae)", dtype=dtype)
    if "safety_checker" in inspect.signature(cls.__init__).parameters:
        kwargs.update(safety_checker=None, requires_safety_checker=False)
    pipe = load_pretrained(cls.from_pretrained, pretrained, "diffusion pipeline (model.pretrained)", **kwargs)
    if getattr(pipe, "safety_checker", None) is not None:
        pipe.safety_checker = None
    return pipe


def _set_vae_dtype(vae: Any, dtype: torch.dtype) -> None:
    """Run the VAE in ``dtype`` whatever the pipeline's dtype: its decode casts the latents it is given."""
    vae.to(dtype)
    decode = vae.decode

    def decode_in_dtype(z: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        return decode(z.to(dtype), *args, **kwargs)

    vae.decode = decode_in_dtype


def _compile_denoiser(pipe: Any) -> None:
    """``torch.compile`` the UNet (in channels_last) or the transformer; compiled on its first call. With
    ``pad_batches`` every call has one shape, so it compiles once."""
    if getattr(pipe, "unet", None) is not None:
        pipe.unet.to(memory_format=torch.channels_last)
        pipe.unet = torch.compile(pipe.unet)
    elif getattr(pipe, "transformer", None) is not None:
        pipe.transformer = torch.compile(pipe.transformer)
    else:
        raise ConfigError(f"model.compile: {type(pipe).__name__} has neither a unet nor a transformer to compile")
