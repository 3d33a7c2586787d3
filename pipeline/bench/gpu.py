"""The GPU check (``make gpu-check``; ``python scripts/bench.py --only gpu --out FILE``): the flagship path's speed
on one GPU, in stages, with no download and no Ray needed.

It builds full-size, randomly initialised Stable Diffusion 2.1 (UNet, VAE, OpenCLIP-H text encoder) and SDXL-Turbo
(the few-step architecture) from the configs shipped in ``models/configs/``, in fp16, saves them like checkpoints,
and measures, in this order (by value, so that a check cut short has measured what matters most):

1. ``device``: the device, its memory, the library versions;
2. ``build_sd21`` then ``bare_sd21``: the bare generator (the preset's ``DiffusersGenerator``, 512 px, 25 steps) at
   batch 1, 8, 16 and 32 from one load: images/s, first-call time, peak memory allocated and reserved;
3. ``clone_search`` and ``clone_generation``: the clone's two phases with SD 2.1 on one worker in this process
   (``cluster=inline``; the worker warmed up, so the device's set-up is not timed): search renders/s of a
   search-only clone and images/s of a generation-only clone (shuffled shards, every image rendered; every state
   accepted and verification off, since random weights draw noise that no reward would accept), their call fullness,
   and each over the bare generator at the same batch;
4. ``build_sdxl_turbo`` then ``bare_sdxl_turbo`` (one step);
5. ``clone_search_ray`` and ``clone_generation_ray``: the same phases through Ray, where Ray is installed;
6. ``compile_sd21``: ``model.compile`` at batch 16 (first call, which holds the compile, and images/s after).

Before it starts it prints each stage's estimated seconds (:data:`ESTIMATES`, from published figures, not measured
here); each stage's result is appended to the output file as one JSON line when it ends (flushed), a stage that fails
records its error and the next runs, and ``budget_s`` starts no stage whose estimate would end past it. Random weights
cost the same compute as trained ones. ``scale="tiny"`` runs the same stages on the CPU with the tiny models of the
same architectures (``pipeline/models/tiny_pipelines.py``), so the check is tested where no GPU is.
"""

from __future__ import annotations

import importlib.util
import itertools
import json
import shutil
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, TextIO

import torch

from pipeline.bench.common import SHAPES

CONFIGS = Path(__file__).resolve().parents[2] / "models" / "configs"
PROMPTS = ["a large red solid star on a white background", "a small blue dotted circle on a black background",
           "a medium green striped square on a grey background", "a large yellow solid cross on a blue background"]


@dataclass(frozen=True)
class Scale:
    size: int              # pixels per side
    sd_steps: int          # SD 2.1's steps (25 in the preset)
    batches: tuple[int, ...]
    clone_batch: int       # the clone's and compile's batch (the bare row it is compared with)
    calls: int             # timed calls per batch size, after one warm-up call
    clone_classes: int
    clone_budget: int      # search renders per class
    clone_images: int      # images per class in the generation phase


SCALES = {  # full: the generation phase renders 10 x 48 = 480 images, about 80 s at 6 images/s, so its start and end
    # (workers, the last shard's write, the summary) are a few percent of the window
    "full": Scale(size=512, sd_steps=25, batches=(1, 8, 16, 32), clone_batch=16, calls=2,
                  clone_classes=10, clone_budget=24, clone_images=48),
    "tiny": Scale(size=32, sd_steps=2, batches=(1, 2, 4), clone_batch=4, calls=1,
                  clone_classes=2, clone_budget=8, clone_images=4),
}
ARCHS = {"sd21": "sd", "sdxl_turbo": "sdxl"}  # model preset -> pipeline family

def build_full(arch: str, out: Path, device: torch.device, dtype: torch.dtype, configs: Path = CONFIGS) -> Path:
    """A full-size ``arch`` pipeline from ``configs/<arch>`` (``models/configs``), random weights, saved as the
    preset loads it."""
    from diffusers import AutoencoderKL, StableDiffusionPipeline, StableDiffusionXLPipeline, UNet2DConditionModel
    from diffusers.schedulers import DDIMScheduler, EulerAncestralDiscreteScheduler
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    from pipeline.models.tokenizer import write_clip_tokenizer

    cfg = Path(configs) / arch
    tok = write_clip_tokenizer(PROMPTS, out / "_tokenizer", max_length=77)  # prompt ids < the configs' vocabulary
    with torch.device(device):  # initialised on the GPU: seconds, not minutes
        unet = UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(cfg / "unet"))
        vae = AutoencoderKL.from_config(AutoencoderKL.load_config(cfg / "vae"))
        text = CLIPTextModel(CLIPTextConfig.from_pretrained(cfg / "text_encoder"))
        text_2 = CLIPTextModelWithProjection(CLIPTextConfig.from_pretrained(cfg / "text_encoder_2")) if arch == "sdxl_turbo" else None
    if arch == "sd21":
        pipe = StableDiffusionPipeline(vae=vae, text_encoder=text, tokenizer=tok, unet=unet,
                                       scheduler=DDIMScheduler.from_pretrained(cfg / "scheduler"),
                                       safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    else:
        pipe = StableDiffusionXLPipeline(vae=vae, text_encoder=text, text_encoder_2=text_2, tokenizer=tok, tokenizer_2=tok, unet=unet,
                                         scheduler=EulerAncestralDiscreteScheduler.from_pretrained(cfg / "scheduler"))
    pipe.to(dtype)
    folder = out / arch
    pipe.save_pretrained(folder, variant="fp16" if arch == "sdxl_turbo" else None)  # sdxl_turbo's preset loads the fp16 variant
    del pipe, unet, vae, text, text_2
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return folder


def build(arch: str, scale: str, out: Path, device: torch.device) -> Path:
    if scale == "tiny":
        from pipeline.models import tiny_pipelines

        return tiny_pipelines.build(ARCHS[arch], PROMPTS, out / arch, variant="fp16" if arch == "sdxl_turbo" else None)
    return build_full(arch, out, device, torch.float16)


def model_overrides(arch: str, folder: Path, s: Scale, batch: int, **extra: Any) -> list[str]:
    steps = s.sd_steps if arch == "sd21" else 1
    return [f"model={arch}", f"model.pretrained={folder}", f"model.height={s.size}", f"model.width={s.size}",
            f"model.num_inference_steps={steps}", f"model.max_batch_size={batch}",
            *(f"model.{k}={str(v).lower() if isinstance(v, bool) else v}" for k, v in extra.items())]


def generator(arch: str, folder: Path, s: Scale, batch: int, **extra: Any):
    from hydra.utils import instantiate

    from pipeline.compose import load_config

    return instantiate(load_config("run_search", model_overrides(arch, folder, s, batch, **extra)).model)



def _sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def _memory() -> dict[str, float | None]:
    """Peak memory since the last reset: allocated by tensors, and reserved by the allocator (what a worker needs)."""
    if not torch.cuda.is_available():
        return {"peak_allocated_gib": None, "peak_reserved_gib": None}
    return {"peak_allocated_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2),
            "peak_reserved_gib": round(torch.cuda.max_memory_reserved() / 2**30, 2)}


def timed_calls(gen: Any, batch: int, calls: int) -> dict[str, Any]:
    """One warm-up call (its time reported: with compile it holds the compile), then ``calls`` timed calls."""
    prompts = [PROMPTS[i % len(PROMPTS)] for i in range(batch)]
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    gen.generate(prompts, list(range(batch)))
    _sync()
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    for c in range(calls):
        gen.generate(prompts, list(range((c + 1) * batch, (c + 2) * batch)))
    _sync()
    rate = batch * calls / (time.perf_counter() - t0)
    return {"images_per_s": round(rate, 3), "first_call_s": round(first, 2), **_memory()}


def _free() -> None:
    """Hand the device memory of the models dropped so far back (call after their last reference is gone)."""
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


@dataclass
class Check:
    """What the stages share: the scale, the device, a scratch folder, the models built and the results so far."""

    scale: str
    device: torch.device
    work: Path
    folders: dict[str, Path] = field(default_factory=dict)
    results: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def s(self) -> Scale:
        return SCALES[self.scale]

    def bare_rate(self, arch: str, batch: int) -> float:
        """The project's own generator (DiffusersGenerator) at ``batch``: its padded calls, cached embeddings, PIL."""
        return self.results[f"bare_{arch}"]["batches"][str(batch)]["images_per_s"]

    @property
    def diffusers_rate(self) -> float:
        """diffusers' own StableDiffusionPipeline at the clone's batch, called as a user would: what the ratios divide by."""
        return self.results["diffusers_sd21"]["images_per_s"]


def device_facts(c: Check) -> dict[str, Any]:
    from pipeline.torch_device import describe_device

    facts = describe_device(c.device, torch.float16 if c.device.type == "cuda" else torch.float32)
    if c.device.type == "cuda":
        props = torch.cuda.get_device_properties(c.device)
        facts.update(memory_gib=round(props.total_memory / 2**30, 1), multiprocessors=props.multi_processor_count,
                     capability=f"{props.major}.{props.minor}", gpus=torch.cuda.device_count())
    facts.update(python=sys.version.split()[0], ray_installed=importlib.util.find_spec("ray") is not None)
    return facts


def build_stage(arch: str) -> Callable[[Check], dict[str, Any]]:
    def run(c: Check) -> dict[str, Any]:
        c.folders[arch] = build(arch, c.scale, c.work, c.device)
        return {"folder_gib": round(sum(f.stat().st_size for f in c.folders[arch].rglob("*") if f.is_file()) / 2**30, 3)}

    return run


def bare_stage(arch: str) -> Callable[[Check], dict[str, Any]]:
    """Every batch size from one load: the generator's call size set per row (as an out-of-memory back-off sets it)."""

    def run(c: Check) -> dict[str, Any]:
        gen = generator(arch, c.folders[arch], c.s, max(c.s.batches))
        rows = {}
        for batch in c.s.batches:
            gen.max_batch_size = batch
            rows[str(batch)] = timed_calls(gen, batch, c.s.calls)
        del gen
        _free()
        return {"steps": c.s.sd_steps if arch == "sd21" else 1, "batches": rows}

    return run


def diffusers_stage(c: Check) -> dict[str, Any]:
    """diffusers itself: ``StableDiffusionPipeline`` from the same folder, the preset's scheduler, steps, guidance,
    negative prompt and size, fp16 on a GPU, called with a list of ``clone_batch`` prompts and one CPU generator per
    image, PIL out: one warm-up call, then ``calls`` timed. Nothing of this project runs in the timed calls."""
    import diffusers
    from omegaconf import OmegaConf

    cfg = OmegaConf.load(Path(__file__).resolve().parents[2] / "conf" / "model" / "sd21.yaml")
    dtype = torch.float16 if c.device.type == "cuda" else torch.float32
    pipe = diffusers.StableDiffusionPipeline.from_pretrained(str(c.folders["sd21"]), torch_dtype=dtype, safety_checker=None)
    pipe.scheduler = getattr(diffusers, cfg.scheduler).from_config(pipe.scheduler.config)
    pipe = pipe.to(c.device)
    pipe.set_progress_bar_config(disable=True)
    batch, s = c.s.clone_batch, c.s

    class Bare:  # what timed_calls calls: diffusers' own pipeline, a CPU generator per image
        @staticmethod
        def generate(prompts: list[str], seeds: list[int]) -> None:
            pipe(prompt=prompts, negative_prompt=[cfg.negative_prompt] * len(prompts), num_inference_steps=s.sd_steps,
                 guidance_scale=cfg.guidance_scale, height=s.size, width=s.size, output_type="pil",
                 generator=[torch.Generator("cpu").manual_seed(seed) for seed in seeds])

    row = timed_calls(Bare, batch, s.calls)
    pipe = None  # dropped: its device memory goes back below
    _free()
    return {"batch": batch, "steps": s.sd_steps, "scheduler": cfg.scheduler, **row,
            "generator_over_diffusers": round(c.bare_rate("sd21", batch) / row["images_per_s"], 3)}


def identity_stage(c: Check) -> dict[str, Any]:
    """What a sample's bytes depend on, on this device: one state and seed rendered alone (a short call padded to the
    call size), at position 5 of a full call, and in calls padded to half the size (an out-of-memory back-off's)."""
    import numpy as np

    batch = c.s.clone_batch
    gen = generator("sd21", c.folders["sd21"], c.s, batch)
    prompts, seeds = [PROMPTS[i % len(PROMPTS)] for i in range(batch)], list(range(500, 500 + batch))
    j = min(5, batch - 1)
    full = np.asarray(gen.generate(prompts, seeds)[j], np.int16)
    alone = np.asarray(gen.generate([prompts[j]], [seeds[j]])[0], np.int16)
    gen.max_batch_size = max(1, batch // 2)  # its padding follows, as after a back-off
    half = np.asarray(gen.generate([prompts[j]], [seeds[j]])[0], np.int16)
    del gen
    _free()
    return {"call_size": batch, "position": j, "alone_equals_in_full_call": bool(np.array_equal(full, alone)),
            "half_call_size_max_abs_diff": int(np.abs(full - half).max())}


def build_clip(c: Check) -> Path:
    """The ImageNet presets' reader and reward model: CLIP ViT-L/14's architecture (the published
    openai/clip-vit-large-patch14 sizes) with random weights at full scale, a tiny CLIP at tiny scale, and a tokenizer of
    the ImageNet grammar's words (no download)."""
    from transformers import CLIPConfig, CLIPModel

    from pipeline.compose import load_config
    from pipeline.models import tiny
    from pipeline.models.tokenizer import write_clip_tokenizer

    grammar_words = load_config("clone", ["grammar=imagenet", "dataset=imagenet1k"])
    texts = [str(t) for t in (*grammar_words.grammar.rules.values(),) for t in t] + \
        [str(k.prompt) for k in grammar_words.dataset.classes]
    out = c.work / "clip"
    if c.scale == "tiny":
        tok = write_clip_tokenizer(texts, out)
        model = tiny.clip_model(len(tok), image_size=32, hidden=32, layers=1, projection=16)
    else:
        tok = write_clip_tokenizer(texts, out, max_length=77)
        vision = dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16, patch_size=14,
                      image_size=224, projection_dim=768)
        text = dict(vocab_size=len(tok), hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
                    max_position_embeddings=77, projection_dim=768, bos_token_id=len(tok) - 2, eos_token_id=len(tok) - 1,
                    pad_token_id=len(tok) - 1)
        with torch.device(c.device):
            model = CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=768))
    model.save_pretrained(out)
    return out


def reward_stage(c: Check) -> dict[str, Any]:
    """The ImageNet presets' reward on the device (``reward=clip_imagenet``: CLIP reads each render over ImageNet-1k's
    1000 class prompts and the grammar's axes) scoring calls of ``clone_batch`` SD 2.1 renders, device tensors as the
    clone's renderer hands them over, against a prepared input: seconds per image, beside SD 2.1's own."""
    from pipeline.assembly import build_stack, prepare, read
    from pipeline.compose import load_config

    folder, batch, s = build_clip(c), c.s.clone_batch, c.s
    cfg = load_config("clone", [*model_overrides("sd21", c.folders["sd21"], s, batch), "grammar=imagenet", "dataset=imagenet1k",
                                     "reward=clip_imagenet", f"reward.image_encoder.pretrained={folder}",
                                     f"reward.image_encoder.batch_size={batch}",
                                     "reward.semantic_encoder.prompts_per_choice=4"])  # one-time text side only: a quarter
    t0 = time.perf_counter()
    stack = build_stack(cfg, [str(k.prompt) for k in cfg.dataset.classes])
    build_s = time.perf_counter() - t0
    prompts = [stack.full_grammar.decode(e) for e in itertools.islice(stack.full_grammar.grid(), batch)]
    images = list(stack.generator.render(prompts, list(range(batch))))
    target = prepare(stack, read(stack, stack.generator.generate(prompts[:1], [0])))
    stack.reward.score_many(images, [target] * batch)  # warm-up
    _sync()
    t0 = time.perf_counter()
    for _ in range(s.calls):
        stack.reward.score_many(images, [target] * batch)
    _sync()
    per_image = (time.perf_counter() - t0) / (batch * s.calls)
    sd_per_image = 1 / c.bare_rate("sd21", batch)
    del stack
    _free()
    return {"batch": batch, "classes": 1000, "reward_s_per_image": round(per_image, 5), "sd21_s_per_image": round(sd_per_image, 5),
            "reward_share": round(per_image / (per_image + sd_per_image), 3), "build_s": round(build_s, 1),
            "device": str(c.device), **_memory()}


def compile_stage(c: Check) -> dict[str, Any]:
    batch = c.s.clone_batch
    gen = generator("sd21", c.folders["sd21"], c.s, batch, compile=True)
    row = timed_calls(gen, batch, c.s.calls)
    del gen
    _free()
    return {"batch": batch, "on": row, "speedup_over_bare": round(row["images_per_s"] / c.bare_rate("sd21", batch), 3)}


def _clone_overrides(c: Check, backend: str) -> list[str]:
    s, batch = c.s, c.s.clone_batch
    gpus = 1 if c.device.type == "cuda" else 0  # a worker asked for a GPU that has none stops in one line
    cluster = ["cluster=inline"] if backend == "inline" else ["cluster=local", "cluster.num_workers=1"]
    return [*model_overrides("sd21", c.folders["sd21"], s, batch), f"dataset.only=[{','.join(SHAPES[: s.clone_classes])}]",
            f"clone.batch_size={batch}", *cluster, f"cluster.gpus_per_worker={gpus}", "search=qlearning_batched",
            f"env.budget={s.clone_budget}", "env.accept_threshold=0", "clone.verify_images=false", "clone.reuse_search_renders=false",
            "clone.progress=false", "clone.worker_warmup=true"]


def _clone(out: Path, overrides: list[str]) -> dict[str, Any]:
    import pipeline.clone as clone_api

    summary = clone_api.run(clone_api.load([f"paths.output_dir={out}", *overrides])).to_dict()
    if not summary["ok"]:
        raise RuntimeError(f"the clone failed: {summary['failures'] or summary['stopped'] or summary['incomplete']}")
    return summary


def _phase(summary: dict[str, Any], phase: str) -> dict[str, Any]:
    device = next(iter(summary["worker_devices"].values()), {})
    return {"worker_device": device.get("device_name"), "startup_s": summary["startup_s"],
            "calls": summary["generator_calls"].get(phase, {})}


def clone_search_stage(backend: str) -> Callable[[Check], dict[str, Any]]:
    def run(c: Check) -> dict[str, Any]:
        out = c.work / f"search-{backend}"
        s = _clone(out, [*_clone_overrides(c, backend), "clone.images_per_class=1", "clone.shard_size=1"])
        calls = s["generator_calls"]["search"]  # the search phase's own calls (render and score), no generation in it
        rate = calls["renders"] / calls["seconds"]
        return {"backend": backend, "classes": s["classes"], "batch": c.s.clone_batch, "renders": s["search_renders"],
                "renders_per_s": round(rate, 3), "over_diffusers": round(rate / c.diffusers_rate, 3),
                "over_bare": round(rate / c.bare_rate("sd21", c.s.clone_batch), 3), **_phase(s, "search")}

    return run


def clone_generation_stage(backend: str) -> Callable[[Check], dict[str, Any]]:
    """A resume of the search-only clone with more images per class: its searches are reused, every image rendered."""

    def run(c: Check) -> dict[str, Any]:
        from pipeline.clone.layout import Layout

        searched, out = Layout(str(c.work / f"search-{backend}")), c.work / f"generate-{backend}"
        out.mkdir()
        layout = Layout(str(out))
        shutil.copytree(searched.searches, layout.searches)
        shutil.copyfile(searched.run_json, layout.run_json)  # the searches' identity: this folder accepts them ...
        s = _clone(out, [*_clone_overrides(c, backend), f"clone.images_per_class={c.s.clone_images}",
                         f"clone.shard_size={c.s.clone_images}", "clone.shard_order=shuffled",
                         "clone.on_config_change=allow"])  # ... as a resume with more images per class
        rate = s["images_per_s_after_startup"]  # the whole phase, encoding and shard writes included
        return {"backend": backend, "images": s["images_written"], "batch": c.s.clone_batch, "images_per_s": rate,
                "over_diffusers": round(rate / c.diffusers_rate, 3), "over_bare": round(rate / c.bare_rate("sd21", c.s.clone_batch), 3),
                "window_s": round(s["wall_s"] - s["startup_s"], 1), **_phase(s, "generation")}

    return run


@dataclass(frozen=True)
class Stage:
    name: str
    run: Callable[[Check], dict[str, Any]]
    estimate_s: dict[str, float]  # scale -> seconds (full: one H100, from published figures; tiny: 2 CPU cores)
    needs: tuple[str, ...] = ()
    ray: bool = False  # runs only where Ray is installed
    optional: bool = False  # runs only when named (--gpu-stages): a second call


#: in order of value. Full-scale estimates on one H100: SD 2.1 at 512 px, 25 steps, ~6 images/s at batch 16 (twice
#: diffusers' A100 figure for SD 1.5 at 50 steps, ../docs/cluster.md), model loads ~10 s, compile ~90 s.
STAGES = (
    Stage("device", device_facts, {"full": 5, "tiny": 1}),
    Stage("build_sd21", build_stage("sd21"), {"full": 30, "tiny": 5}),
    Stage("bare_sd21", bare_stage("sd21"), {"full": 45, "tiny": 10}, needs=("build_sd21",)),
    Stage("diffusers_sd21", diffusers_stage, {"full": 20, "tiny": 5}, needs=("bare_sd21",)),
    Stage("identity_sd21", identity_stage, {"full": 15, "tiny": 5}, needs=("build_sd21",)),
    Stage("reward_clip", reward_stage, {"full": 20, "tiny": 20}, needs=("bare_sd21",)),
    Stage("clone_search", clone_search_stage("inline"), {"full": 55, "tiny": 15}, needs=("diffusers_sd21",)),
    Stage("clone_generation", clone_generation_stage("inline"), {"full": 95, "tiny": 15}, needs=("clone_search",)),
    Stage("build_sdxl_turbo", build_stage("sdxl_turbo"), {"full": 45, "tiny": 5}),
    Stage("bare_sdxl_turbo", bare_stage("sdxl_turbo"), {"full": 25, "tiny": 5}, needs=("build_sdxl_turbo",)),
    Stage("clone_search_ray", clone_search_stage("ray"), {"full": 65, "tiny": 25}, needs=("diffusers_sd21",), ray=True),
    Stage("clone_generation_ray", clone_generation_stage("ray"), {"full": 105, "tiny": 25}, needs=("clone_search_ray",), ray=True),
    Stage("compile_sd21", compile_stage, {"full": 100, "tiny": 60}, needs=("bare_sd21",), optional=True),
)


def plan(scale: str, only: list[str] | None = None, ray: bool | None = None) -> list[Stage]:
    """The stages to run: every stage but the optional ones (``only``: those named), the Ray ones only where Ray is
    installed."""
    ray = importlib.util.find_spec("ray") is not None if ray is None else ray
    unknown = sorted(set(only or ()) - {st.name for st in STAGES})
    if unknown:
        raise ValueError(f"unknown GPU check stages {unknown}; known: {[st.name for st in STAGES]}")
    return [st for st in STAGES if (st.name in only if only is not None else not st.optional) and (ray or not st.ray)]


def _imports() -> dict[str, bool]:
    """Which of the heavy optional libraries this process has imported so far (the bare rows need neither)."""
    return {m: m in sys.modules for m in ("ray", "webdataset")}


def run(scale: str = "full", out: TextIO | None = None, budget_s: float | None = None, only: list[str] | None = None,
        log: Callable[[str], None] = print) -> dict[str, Any]:
    """Run the check's stages in order; each result goes to ``out`` as one JSON line as it ends. Returns every result."""
    from pipeline.torch_device import resolve_device

    if scale not in SCALES:
        raise ValueError(f"scale must be one of {sorted(SCALES)}, got '{scale}'")
    device = resolve_device("auto")
    if scale == "full" and device.type != "cuda":
        raise SystemExit("the GPU check needs a CUDA GPU (full-size SD 2.1 and SDXL-Turbo in fp16); "
                         "--gpu-scale tiny runs the same stages on tiny models on the CPU")
    stages = plan(scale, only)
    total = sum(st.estimate_s[scale] for st in stages)

    def emit(line: dict[str, Any]) -> None:
        if out is not None:
            out.write(json.dumps(line, default=str) + "\n")
            out.flush()

    log(f"gpu check ({scale}): {len(stages)} stages, about {total:.0f} s by estimate"
        f"{f', budget {budget_s:g} s' if budget_s else ''}")
    for st in stages:
        log(f"  {st.name:<22} ~{st.estimate_s[scale]:>4.0f} s")
    emit({"plan": [{"stage": st.name, "estimate_s": st.estimate_s[scale]} for st in stages], "estimate_s": total,
          "scale": scale, "budget_s": budget_s})
    check = Check(scale, device, Path(tempfile.mkdtemp(prefix="rldf-gpu-check-")))
    t_start = time.perf_counter()
    try:
        for st in stages:
            line = _run_stage(st, check, budget_s, time.perf_counter() - t_start)
            emit(line)
            log(f"gpu check: {json.dumps(line, default=str)}")
    finally:
        shutil.rmtree(check.work, ignore_errors=True)
    summary = {"stage": "end", "wall_s": round(time.perf_counter() - t_start, 1), "ok": sorted(check.results),
               "estimate_s": total}
    emit(summary)
    return {"scale": scale, "size": SCALES[scale].size, **check.results, "wall_s": summary["wall_s"]}


def _run_stage(st: Stage, check: Check, budget_s: float | None, elapsed: float) -> dict[str, Any]:
    """One stage's JSON line: its result, or why it was skipped, or its error (the next stage runs either way)."""
    line: dict[str, Any] = {"stage": st.name, "estimate_s": st.estimate_s[check.scale]}
    missing = [n for n in st.needs if n not in check.results]
    if missing:
        return {**line, "skipped": f"needs {', '.join(missing)}, which did not run to the end"}
    if budget_s is not None and elapsed + st.estimate_s[check.scale] > budget_s:
        return {**line, "skipped": f"would end past --budget-s {budget_s:g} (at {elapsed:.0f} s, ~{st.estimate_s[check.scale]:.0f} s more)"}
    t0 = time.perf_counter()
    try:
        result = st.run(check)
    except Exception as e:  # noqa: BLE001 - recorded, and the next stage runs
        print(f"gpu check: stage {st.name} failed:\n{traceback.format_exc()}", file=sys.stderr, flush=True)  # the whole traceback
        _free()
        return {**line, "ok": False, "seconds": round(time.perf_counter() - t0, 1),
                "error": f"{type(e).__name__}: {e}".splitlines()[0][:500], "where": traceback.format_exc().splitlines()[-3:]}
    check.results[st.name] = result
    return {**line, "ok": True, "seconds": round(time.perf_counter() - t0, 1), **result, "imports": _imports()}


def report_from_lines(lines: list[str]) -> dict[str, Any]:
    """A check's JSON lines (``--out``) as :func:`run` returns them: the stages that ended, keyed by name."""
    report: dict[str, Any] = {}
    for raw in lines:
        if not raw.strip():
            continue
        line = json.loads(raw)
        if "command" in line:
            report["command"] = line["command"]
        elif "plan" in line:
            report.update(scale=line["scale"], size=SCALES[line["scale"]].size)
        elif line.get("stage") == "end":
            report["wall_s"] = line["wall_s"]
        elif line.get("ok"):
            report[line["stage"]] = {k: v for k, v in line.items() if k not in ("stage", "ok", "estimate_s", "imports")}
        else:
            report.setdefault("not_run", {})[line["stage"]] = line.get("error") or line.get("skipped")
    return report


def lines(g: dict[str, Any]) -> list[str]:
    """The check's tables for docs/results.md."""
    from pipeline.markdown import table

    d = g.get("device", {})
    lines = [f"GPU check ({g.get('scale')} scale) on {d.get('device_name', '?')} (torch {d.get('torch')}, CUDA {d.get('cuda')}, "
             f"diffusers {d.get('diffusers')}), {g.get('size')} px, random weights, {g.get('wall_s', '?')} s in all. "
             "Bare generator (the preset's DiffusersGenerator, padded calls, one load per model):", ""]
    rows = [[arch, g[f"bare_{arch}"]["steps"], b, r["images_per_s"], r["first_call_s"], r["peak_allocated_gib"] or "-",
             r["peak_reserved_gib"] or "-"] for arch in ARCHS if f"bare_{arch}" in g for b, r in g[f"bare_{arch}"]["batches"].items()]
    lines.append(table(["model", "steps", "batch", "images/s", "first call (s)", "peak allocated GiB", "peak reserved GiB"], rows))
    if "diffusers_sd21" in g:
        d21 = g["diffusers_sd21"]
        lines += ["", f"diffusers' own StableDiffusionPipeline (list of {d21['batch']} prompts, {d21['scheduler']}, {d21['steps']} steps, "
                  f"PIL out): {d21['images_per_s']} images/s; the project's generator at that batch is {d21['generator_over_diffusers']}x it."]
    if "identity_sd21" in g:
        i21 = g["identity_sd21"]
        lines += ["", f"Identity: a state and seed rendered alone equals it at position {i21['position']} of a full call of "
                  f"{i21['call_size']}: {'yes' if i21['alone_equals_in_full_call'] else 'no'}; in calls padded to half that size the "
                  f"largest pixel difference is {i21['half_call_size_max_abs_diff']} grey levels."]
    phases = [(name, g[name]) for name in ("clone_search", "clone_generation", "clone_search_ray", "clone_generation_ray") if name in g]
    if phases:
        lines += ["", "The clone with SD 2.1 on one worker over diffusers' own pipeline at the same batch (targets: search >= 0.8, "
                  "generation >= 0.95); search from its own generator calls, generation over the phase's whole window:", ""]
        lines.append(table(["phase", "workers", "batch", "per s", "over diffusers", "over the bare generator", "renders/call",
                            "partial calls", "device"],
                           [[name.replace("clone_", "").replace("_ray", ""), p["backend"], p["batch"], p.get("renders_per_s", p.get("images_per_s")),
                             p.get("over_diffusers", "-"), p["over_bare"], p["calls"].get("renders_per_call"), p["calls"].get("partial_call_share"),
                             p["worker_device"]] for name, p in phases]))
    if "reward_clip" in g:
        r = g["reward_clip"]
        lines += ["", f"The ImageNet presets' reward on the device (`reward=clip_imagenet`: CLIP ViT-L/14's architecture, random weights, "
                  f"reading renders over {r['classes']} classes and the grammar's axes) in calls of {r['batch']}: {r['reward_s_per_image']} s "
                  f"per image against SD 2.1's {r['sd21_s_per_image']} s ({r['reward_share']:.1%} of a render's time)."]
    if "compile_sd21" in g:
        c = g["compile_sd21"]
        lines += ["", f"model.compile, SD 2.1 at batch {c['batch']}: {c['on']['images_per_s']} images/s, "
                  f"{c['speedup_over_bare']}x the bare row; first call (with the compile) {c['on']['first_call_s']} s.", ""]
    if g.get("not_run"):
        lines += ["", "Not run: " + "; ".join(f"{k} ({v})" for k, v in g["not_run"].items())]
    return lines
