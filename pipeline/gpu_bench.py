"""``python scripts/bench.py --only gpu``: the flagship path's speed on one GPU, with no download.

Builds full-size, randomly initialised Stable Diffusion 2.1 (UNet, VAE, OpenCLIP-H text encoder) and
SDXL-Turbo (the few-step architecture) from the configs shipped in ``models/configs/``, in fp16, saves them
like checkpoints, and measures in one run:

- the bare generator (the model presets' ``DiffusersGenerator``, 512 px; SD 2.1 at 25 steps, SDXL-Turbo at
  its one step): images/s and peak GPU memory at batch 1, 8, 16, 32;
- ``model.compile`` on and off for SD 2.1 at batch 16 (first-call time, which includes the compile, and images/s after);
- the clone itself (Ray, one worker on the GPU, the shapes world's rewards) with SD 2.1: search-phase renders/s
  of a search-only clone and generation-phase images/s of a generation-only clone (shuffled shards, every
  image rendered; every state accepted and verification off, since random weights draw noise that no reward
  would accept), and their call fullness.

Random weights cost the same compute as trained ones. ``scale="tiny"`` runs the same steps on CPU with the
tiny models of the same architectures (``pipeline/models/tiny_pipelines.py``), so the benchmark is tested
where no GPU is.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch

CONFIGS = Path(__file__).resolve().parents[1] / "models" / "configs"
PROMPTS = ["a large red solid star on a white background", "a small blue dotted circle on a black background",
           "a medium green striped square on a grey background", "a large yellow solid cross on a blue background"]


@dataclass(frozen=True)
class Scale:
    size: int              # pixels per side
    sd_steps: int          # SD 2.1's steps (25 in the preset)
    batches: tuple[int, ...]
    compile_batch: int
    calls: int             # timed calls per batch size, after one warm-up call
    clone_classes: int
    clone_budget: int      # search renders per class
    clone_images: int      # images per class in the generation phase


SCALES = {
    "full": Scale(size=512, sd_steps=25, batches=(1, 8, 16, 32), compile_batch=16, calls=2,
                  clone_classes=4, clone_budget=64, clone_images=64),
    "tiny": Scale(size=32, sd_steps=2, batches=(1, 2, 4), compile_batch=4, calls=1,
                  clone_classes=2, clone_budget=8, clone_images=4),
}
ARCHS = {"sd21": "sd", "sdxl_turbo": "sdxl"}  # model preset -> pipeline family
COMPILED = ("sd21",)  # compile on/off is timed for SD 2.1 only: each compile takes a minute or two of the 5-minute budget


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


def timed_calls(gen: Any, batch: int, calls: int) -> dict[str, float]:
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
    peak = torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else None
    return {"images_per_s": round(rate, 3), "first_call_s": round(first, 2), "peak_gib": round(peak, 2) if peak is not None else None}


def bare(arch: str, folder: Path, s: Scale) -> dict[str, Any]:
    rows = {}
    for batch in s.batches:
        gen = generator(arch, folder, s, batch)
        rows[str(batch)] = timed_calls(gen, batch, s.calls)
        del gen
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    return rows


def clone_phases(folder: Path, s: Scale, work: Path, batch: int) -> dict[str, Any]:
    """Search-only, then generation-only clones of SD 2.1 on one worker (the GPU when there is one)."""
    import pipeline.clone as clone_api
    from pipeline.clone.layout import Layout

    names = ["circle", "octagon", "hexagon", "pentagon", "square", "diamond", "triangle", "star", "cross", "crescent"][: s.clone_classes]
    common = [*model_overrides("sd21", folder, s, batch), f"dataset.only=[{','.join(names)}]", f"clone.batch_size={batch}",
              "cluster.num_workers=1", "search=qlearning_batched", f"env.budget={s.clone_budget}", "env.accept_threshold=0", "clone.verify_images=false",
              "clone.reuse_search_renders=false", "clone.progress=false"]

    def run(out: Path, *overrides: str) -> dict[str, Any]:
        summary = clone_api.run(clone_api.load([f"paths.output_dir={out}", *common, *overrides])).to_dict()
        if not summary["ok"]:
            raise SystemExit(f"bench gpu: clone failed: {summary['failures'] or summary['stopped']}")
        return summary

    search = run(work / "search", "clone.images_per_class=1", "clone.shard_size=1")
    out = work / "generate"
    out.mkdir()
    searched, layout = Layout(str(work / "search")), Layout(str(out))
    shutil.copytree(searched.searches, layout.searches)
    shutil.copyfile(searched.run_json, layout.run_json)  # the searches' identity: this folder accepts them ...
    gen = run(out, f"clone.images_per_class={s.clone_images}", f"clone.shard_size={s.clone_images}", "clone.shard_order=shuffled",
              "clone.on_config_change=allow")  # ... as a resume with more images per class
    device = next(iter(gen["worker_devices"].values()), {})
    return {
        "worker_device": device.get("device_name"), "classes": len(names), "batch": batch,
        "search": {"renders": search["search_renders"], "renders_per_s": round(search["search_renders"] / (search["wall_s"] - search["startup_s"]), 3),
                   "calls": search["generator_calls"].get("search", {})},
        "generation": {"images": gen["images_written"], "images_per_s": gen["images_per_s_after_startup"],
                       "calls": gen["generator_calls"].get("generation", {})},
        "worker_startup_s": gen["startup_s"],
    }


def run(scale: str = "full", compile: bool = True, clone: bool = True, log: Callable[[str], None] = print) -> dict[str, Any]:
    """The benchmark's report (see the module docstring)."""
    from pipeline.torch_device import describe_device, resolve_device

    if scale not in SCALES:
        raise ValueError(f"scale must be one of {sorted(SCALES)}, got '{scale}'")
    s = SCALES[scale]
    device = resolve_device("auto")
    if scale == "full" and device.type != "cuda":
        raise SystemExit("bench --only gpu needs a CUDA GPU (full-size SD 2.1 and SDXL-Turbo in fp16); "
                         "--gpu-scale tiny runs the same steps on tiny models on the CPU")
    t_start = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="rldf-bench-gpu-"))
    report: dict[str, Any] = {"scale": scale, "size": s.size, "sd21_steps": s.sd_steps,
                              "device": describe_device(device, torch.float16 if device.type == "cuda" else torch.float32)}
    try:
        folders = {}
        for arch in ARCHS:
            t0 = time.perf_counter()
            folders[arch] = build(arch, scale, work, device)
            log(f"bench gpu: built {arch} in {time.perf_counter() - t0:.1f}s")
        report["bare"] = {}
        for arch, folder in folders.items():
            report["bare"][arch] = bare(arch, folder, s)
            log(f"bench gpu: bare {arch} {report['bare'][arch]}")
        if compile:
            report["compile"] = {}
            for arch in COMPILED:
                folder, rows = folders[arch], {}
                for on in (False, True):
                    gen = generator(arch, folder, s, s.compile_batch, compile=on)
                    rows["on" if on else "off"] = timed_calls(gen, s.compile_batch, s.calls)
                    del gen
                rows["speedup"] = round(rows["on"]["images_per_s"] / rows["off"]["images_per_s"], 3)
                report["compile"][arch] = {"batch": s.compile_batch, **rows}
                log(f"bench gpu: compile {arch} {report['compile'][arch]}")
        if clone:
            batch = max(b for b in s.batches if b <= 16)
            report["clone_sd21"] = clone_phases(folders["sd21"], s, work, batch)
            bare_rate = report["bare"]["sd21"][str(batch)]["images_per_s"]
            report["clone_sd21"]["search_over_bare"] = round(report["clone_sd21"]["search"]["renders_per_s"] / bare_rate, 3)
            report["clone_sd21"]["generation_over_bare"] = round(report["clone_sd21"]["generation"]["images_per_s"] / bare_rate, 3)
            log(f"bench gpu: clone {report['clone_sd21']}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    report["wall_s"] = round(time.perf_counter() - t_start, 1)
    return report
