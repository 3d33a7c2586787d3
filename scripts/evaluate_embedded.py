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

from hydra.utils import instantiate

from pipeline.compose import load_config
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


def images_per_s(gen, prompts: list[str], seeds: list[int]) -> dict[str, float]:
    """The tiny pipeline's images/s at batch 1 and 16 on this machine."""
    speed = {}
    for batch in (1, 16):
        n = 16 if batch == 1 else 64
        t0 = time.time()
        for i in range(0, n, batch):
            gen.generate(prompts[i : i + batch], seeds[i : i + batch])
        speed[f"batch_{batch}"] = round(n / (time.time() - t0), 2)
    return speed


def clip_zero_shot(folder: Path, world: ShapesWorld, images, labels: np.ndarray) -> float:
    """Zero-shot class accuracy of the tiny CLIP ("a photo of a <class>") on real images."""
    clip = ClipEncoder(str(folder), device="cpu")
    text = clip.embed_text([f"a photo of a {c}" for c in world.classes])
    return float(((clip.embed(images) @ text.T).argmax(1) == labels).mean())


def cnn_accuracy(folder: Path, grammar: Grammar, images, labels: np.ndarray) -> dict[str, float]:
    """Per-axis accuracy of the shapes CNN's heads (the semantic encoder of reward=learned_shapes) on real images."""
    from pipeline.encoders.shapes_cnn import ShapesCnn

    pred = ShapesCnn(str(folder)).predict(images)
    return {ax.name: float((pred[:, k] == labels[:, k]).mean()) for k, ax in enumerate(grammar.axes)}


@torch.inference_mode()
def vae_class_kept(gen: DiffusersGenerator, judge: ShapesNet, images, classes: np.ndarray) -> float:
    """The judge's class accuracy on the pipeline VAE's reconstructions (posterior mean) of real images: what the
    32-px latent autoencoder alone leaves of the class, a bound on the generated-class figure."""
    vae = gen.pipe.vae
    x = torch.from_numpy(np.stack([np.asarray(im.convert("RGB")) for im in images])).permute(0, 3, 1, 2).float() / 127.5 - 1
    rec = torch.cat([vae.decode(vae.encode(x[i : i + 200].to(vae.dtype)).latent_dist.mean).sample for i in range(0, len(x), 200)])
    arr = ((rec.clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).numpy()
    from PIL import Image

    pred = judge_predict(judge, [Image.fromarray(a) for a in arr])
    return float((pred[:, 0] == classes).mean())


def markdown(r: dict) -> str:
    """The README's table of the embedded models, from this script's report."""
    from pipeline.markdown import table

    g, cnn, speed, mb = r["generated"], r["shapes_cnn_on_real"], r["images_per_s_cpu"], r["asset_bytes"]
    others = ", ".join(f"{k} {v:.1%}" for k, v in g["per_axis_accuracy"].items() if k not in ("object", "colour"))
    return "\n".join([
        f"Measured by `scripts/evaluate_embedded.py --out docs/embedded_quality.json --markdown README.md` (2 CPU cores). "
        f"The judge is a separate CNN trained on real renders of its own split ({r['judge_on_real']['class']:.1%} class and "
        f"{r['judge_on_real']['colour']:.1%} colour on 1,000 real images):", "",
        table(["measure", "result", "target"], [
            [f"prompted class recognised in {g['n']} generated images ({g['steps']} DDIM steps, CFG {g['guidance']:g})",
             f"**{g['class_accuracy']:.1%}**", "≥ 90%"],
            [f"prompted colour recognised ({others})", f"**{g['colour_accuracy']:.1%}**", "≥ 80%"],
            ["tiny CLIP zero-shot class accuracy on 1,000 real images (\"a photo of a …\")",
             f"**{r['tiny_clip_zero_shot_class_accuracy']:.1%}**", "≥ 95%"],
            ["shapes CNN (semantic encoder) on 1,000 real images, per axis", ", ".join(f"{k} {v:.1%}" for k, v in cnn.items()), "—"],
            ["VAE reconstructions of 1,000 real images: class kept (judged)", f"{r['vae_reconstruction_class_accuracy']:.1%}", "—"],
            ["tiny pipeline images/s on CPU, batch 1 / batch 16", f"{speed['batch_1']} / {speed['batch_16']}", "—"],
            ["assets: tiny_shapes_sd / tiny_clip / shapes_cnn",
             " / ".join(f"{mb[k] / 1e6:.1f}" for k in ("tiny_shapes_sd", "tiny_clip", "shapes_cnn")) + " MB", "< 40 MB"],
        ]),
    ])


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", type=Path, default=ROOT / "models")
    p.add_argument("--n-prompts", type=int, default=500)
    p.add_argument("--judge-train", type=int, default=20000)
    p.add_argument("--judge-steps", type=int, default=3000)
    p.add_argument("--steps", type=int, default=None, help="sampling steps (default: conf/model/tiny_shapes.yaml's)")
    p.add_argument("--guidance", type=float, default=None, help="guidance scale (default: conf/model/tiny_shapes.yaml's)")
    p.add_argument("--out", type=Path, default=None)
    p.add_argument("--markdown", type=Path, default=None, help="write the README's table (a marked block) to this file")
    p.add_argument("--threads", type=int, default=2)
    return p.parse_args()


def generated_quality(gen: DiffusersGenerator, judge: ShapesNet, grammar: Grammar, n: int) -> tuple[dict, list, list, float]:
    """The judge's readings of images generated from ``n`` random grammar prompts: (report, prompts, seeds, seconds)."""
    ci, co = grammar.axis_index("object"), grammar.axis_index("colour")
    rng = rng_for("evaluate-prompts", 0)
    encodings = [tuple(int(rng.integers(k)) for k in grammar.shape) for _ in range(n)]
    prompts = [grammar.decode(e) for e in encodings]
    seeds = [derive_seed("evaluate", i) for i in range(n)]
    t0 = time.time()
    images = gen.generate(prompts, seeds)
    seconds = time.time() - t0
    pred, enc = judge_predict(judge, images), np.asarray(encodings)
    report = {"n": n, "steps": gen.steps, "guidance": gen.guidance,
              "class_accuracy": float((pred[:, ci] == enc[:, ci]).mean()), "colour_accuracy": float((pred[:, co] == enc[:, co]).mean()),
              "per_axis_accuracy": {ax.name: float((pred[:, k] == enc[:, k]).mean()) for k, ax in enumerate(grammar.axes)}}
    return report, prompts, seeds, seconds


def main() -> None:
    from PIL import Image

    a = parse_args()
    torch.set_num_threads(a.threads)
    grammar = Grammar.from_yaml(ROOT / "conf" / "grammar" / "shapes.yaml")
    world = ShapesWorld(grammar, 32)
    ci, co = grammar.axis_index("object"), grammar.axis_index("colour")
    report: dict = {}
    t0 = time.time()
    judge = train_judge(world, a.judge_train, a.judge_steps)
    val = render_arrays(world, 1000, "val", seed=0)
    val_images = [Image.fromarray(im) for im in val.images]
    pred = judge_predict(judge, val_images)
    report["judge_on_real"] = {"class": float((pred[:, ci] == val.labels[:, ci]).mean()),
                               "colour": float((pred[:, co] == val.labels[:, co]).mean()), "train_s": round(time.time() - t0, 1)}
    report["shapes_cnn_on_real"] = cnn_accuracy(a.models / "shapes_cnn", grammar, val_images, val.labels)
    sampling = [f"model.{k}={v}" for k, v in (("num_inference_steps", a.steps), ("guidance_scale", a.guidance)) if v is not None]
    gen: DiffusersGenerator = instantiate(load_config("run_search", ["model=tiny_shapes", f"model.pretrained={a.models / 'tiny_shapes_sd'}",
                                                                     "model.device=cpu", "model.max_batch_size=50", *sampling]).model)
    report["generated"], prompts, seeds, gen_s = generated_quality(gen, judge, grammar, a.n_prompts)
    report["images_per_s_cpu"] = {**images_per_s(gen, prompts, seeds), "batch_50_in_quality_run": round(a.n_prompts / gen_s, 2)}
    report["vae_reconstruction_class_accuracy"] = vae_class_kept(gen, judge, val_images, val.labels[:, ci])
    report["tiny_clip_zero_shot_class_accuracy"] = clip_zero_shot(a.models / "tiny_clip", world, val_images, val.labels[:, ci])
    report["asset_bytes"] = {d.name: sum(f.stat().st_size for f in d.rglob("*") if f.is_file())
                             for d in a.models.iterdir() if d.is_dir()}
    print(json.dumps(report, indent=1))
    if a.out:
        a.out.write_text(json.dumps(report, indent=1))
    if a.markdown:
        from pipeline.markdown import replace_block

        replace_block(a.markdown, "embedded", markdown(report))


if __name__ == "__main__":
    main()
