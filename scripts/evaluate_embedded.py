#!/usr/bin/env python
"""Measure the embedded models' quality (the numbers in the README) and the tiny pipeline's speed.

* a separate judge CNN, trained here on real shapes-world renders of its own split, checks that images
  generated from N random grammar prompts show the prompted class and colour;
* the tiny CLIP's zero-shot class accuracy on real images ("a photo of a <class>");
* images/s of the tiny diffusion pipeline on this machine at batch 1 and 16.
Results go to stdout and ``--out`` (JSON).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from pipeline.encoders.clip import ClipEncoder
from pipeline.generators.diffusers_generator import DiffusersGenerator
from pipeline.grammar import Grammar
from pipeline.metrics.judge import train_judge
from pipeline.models.shapes_cnn import ShapesNet
from pipeline.seeding import derive_seed, rng_for
from pipeline.shapes.tensors import render_arrays
from pipeline.shapes.world import ShapesWorld

ROOT = Path(__file__).resolve().parents[1]


@torch.inference_mode()
def judge_predict(net: ShapesNet, images) -> np.ndarray:
    x = torch.from_numpy(np.stack([np.asarray(im.convert("RGB")) for im in images])).permute(0, 3, 1, 2).float() / 255
    return torch.stack([lg.argmax(1) for lg in net(x)[0]], 1).numpy()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", type=Path, default=ROOT / "models")
    p.add_argument("--n-prompts", type=int, default=500)
    p.add_argument("--judge-train", type=int, default=20000)
    p.add_argument("--judge-steps", type=int, default=3000)
    p.add_argument("--steps", type=int, default=20, help="sampling steps")
    p.add_argument("--guidance", type=float, default=3.0)
    p.add_argument("--out", type=Path, default=None)
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    grammar = Grammar.from_yaml(ROOT / "conf" / "grammar" / "shapes.yaml")
    world = ShapesWorld(grammar, 32)
    ci, co = grammar.axis_index("object"), grammar.axis_index("colour")
    report: dict = {}

    t0 = time.time()
    judge = train_judge(world, a.judge_train, a.judge_steps)
    val = render_arrays(world, 1000, "val", seed=0)
    from PIL import Image

    val_images = [Image.fromarray(im) for im in val.images]
    pred = judge_predict(judge, val_images)
    report["judge_on_real"] = {"class": float((pred[:, ci] == val.labels[:, ci]).mean()),
                               "colour": float((pred[:, co] == val.labels[:, co]).mean()), "train_s": round(time.time() - t0, 1)}
    print("judge on 1000 real images:", report["judge_on_real"], flush=True)

    gen = DiffusersGenerator(str(a.models / "tiny_shapes_sd"), pipeline_class="StableDiffusionPipeline", device="cpu",
                             dtype="float32", scheduler="DDIMScheduler", num_inference_steps=a.steps, guidance_scale=a.guidance,
                             height=32, width=32, max_batch_size=50)
    rng = rng_for("evaluate-prompts", 0)
    encodings = [tuple(int(rng.integers(k)) for k in grammar.shape) for _ in range(a.n_prompts)]
    prompts = [grammar.decode(e) for e in encodings]
    seeds = [derive_seed("evaluate", i) for i in range(a.n_prompts)]
    t0 = time.time()
    images = gen.generate(prompts, seeds)
    gen_s = time.time() - t0
    pred = judge_predict(judge, images)
    enc = np.asarray(encodings)
    report["generated"] = {
        "n": a.n_prompts, "steps": a.steps, "guidance": a.guidance,
        "class_accuracy": float((pred[:, ci] == enc[:, ci]).mean()),
        "colour_accuracy": float((pred[:, co] == enc[:, co]).mean()),
        "per_axis_accuracy": {ax.name: float((pred[:, k] == enc[:, k]).mean()) for k, ax in enumerate(grammar.axes)},
    }
    print("generated images judged:", report["generated"], flush=True)

    speed = {}
    for batch in (1, 16):
        n = 16 if batch == 1 else 64
        t0 = time.time()
        for i in range(0, n, batch):
            gen.generate(prompts[i : i + batch], seeds[i : i + batch])
        speed[f"batch_{batch}"] = round(n / (time.time() - t0), 2)
    speed["batch_50_in_quality_run"] = round(a.n_prompts / gen_s, 2)
    report["images_per_s_cpu"] = speed
    print("images/s:", speed, flush=True)

    clip = ClipEncoder(str(a.models / "tiny_clip"), device="cpu")
    text = clip.embed_text([f"a photo of a {c}" for c in world.classes])
    img = clip.embed(val_images)
    zs = (img @ text.T).argmax(1)
    report["tiny_clip_zero_shot_class_accuracy"] = float((zs == val.labels[:, ci]).mean())
    print("tiny CLIP zero-shot class accuracy on 1000 real images:", report["tiny_clip_zero_shot_class_accuracy"])

    sizes = {d.name: sum(f.stat().st_size for f in d.rglob("*") if f.is_file()) for d in a.models.iterdir() if d.is_dir()}
    report["asset_bytes"] = sizes
    print("asset sizes (MB):", {k: round(v / 1e6, 2) for k, v in sizes.items()})
    if a.out:
        a.out.write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
