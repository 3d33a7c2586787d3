#!/usr/bin/env python
"""Train the embedded shapes-world models and save them in diffusers/transformers format under models/.

Stages (run in this order by default; each loads what earlier stages saved):
  tokenizer  CLIPTokenizer covering the grammar                  -> models/tiny_shapes_sd/tokenizer, models/tiny_clip
  cnn        ShapesNet: per-axis heads + segmentation            -> models/shapes_cnn
  clip       tiny CLIPModel, contrastive on images and captions  -> models/tiny_clip
  vae        AutoencoderKL, 32x32 <-> 16x16x4                     -> models/tiny_shapes_sd/vae
  unet       UNet2DConditionModel + CLIPTextModel, v-prediction  -> models/tiny_shapes_sd (whole pipeline)

Fixed seeds; ``--steps-scale`` shortens every stage for a smoke run. ``--resume`` continues the clip and
unet stages from the saved weights (a second round with fresh renders: see the README for the commands
that produced the shipped models).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from pipeline.grammar import Grammar
from pipeline.models import tiny
from pipeline.models.training import optimiser_step, warmup_cosine
from pipeline.models.shapes_cnn import train_shapes_net
from pipeline.models.tokenizer import write_clip_tokenizer
from pipeline.shapes.tensors import PARTIAL_TEMPLATES, augment_caption, render_arrays
from pipeline.shapes.world import ShapesWorld

ROOT = Path(__file__).resolve().parents[1]


def log(stage: str, msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {stage}: {msg}", flush=True)


def to_tensor(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255.0


def corpus(grammar: Grammar) -> list[str]:
    texts = [grammar.decode(e) for e in grammar.grid()]
    for t in PARTIAL_TEMPLATES:
        texts.append(t)
    return texts + [a.name for a in grammar.axes] + [c for a in grammar.axes for c in a.choices]


def stage_tokenizer(args, world, data) -> None:
    for folder in (args.out / "tiny_shapes_sd" / "tokenizer", args.out / "tiny_clip"):
        tok = write_clip_tokenizer(corpus(world.grammar), folder)
    log("tokenizer", f"{len(tok)} tokens")


def stage_cnn(args, world, data) -> None:
    net = train_shapes_net(world, data, int(3000 * args.steps_scale), seed=1, log=lambda m: log("cnn", m))
    net.save_pretrained(args.out / "shapes_cnn")


def stage_clip(args, world, data) -> None:
    from transformers import CLIPTokenizer

    tok = CLIPTokenizer.from_pretrained(args.out / "tiny_clip")
    if args.resume:  # continue from the saved model (new data order, fresh warm-up/cosine schedule)
        from transformers import CLIPModel

        model, seed = CLIPModel.from_pretrained(args.out / "tiny_clip"), 6
    else:
        torch.manual_seed(2)
        model, seed = tiny.clip_model(len(tok), layers=4), 2
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=args.clip_lr, weight_decay=0.05)
    x_all = to_tensor(data.images)
    mean = torch.tensor([0.4815, 0.4578, 0.4082]).view(1, 3, 1, 1)
    std = torch.tensor([0.2686, 0.2613, 0.2758]).view(1, 3, 1, 1)
    steps, batch = int(args.clip_steps * args.steps_scale), 128
    gen = torch.Generator().manual_seed(seed)
    for step in range(steps):
        idx = torch.randint(len(x_all), (batch,), generator=gen).tolist()
        caps = [augment_caption(world, data.labels[i], seed=step * batch + j) for j, i in enumerate(idx)]
        enc = tok(caps, padding="max_length", truncation=True, return_tensors="pt")
        out = model(input_ids=enc.input_ids, attention_mask=enc.attention_mask, pixel_values=(x_all[idx] - mean) / std)
        same = torch.tensor([[a == b for b in caps] for a in caps], dtype=torch.float32)
        # several images can match one caption ("a photo of a star"): soft targets over all matches
        loss = 0.5 * (
            torch.sum(-same / same.sum(1, keepdim=True) * F.log_softmax(out.logits_per_text, 1), 1).mean()
            + torch.sum(-same / same.sum(1, keepdim=True) * F.log_softmax(out.logits_per_image, 1), 1).mean()
        )
        optimiser_step(opt, loss, warmup_cosine(step, steps, args.clip_lr))
        if step % 250 == 0 or step == steps - 1:
            log("clip", f"step {step}/{steps} loss {loss.item():.3f}")
    model.save_pretrained(args.out / "tiny_clip")
    (args.out / "tiny_clip" / "preprocessor_config.json").write_text(json.dumps({
        "image_processor_type": "CLIPImageProcessor", "size": {"shortest_edge": 32}, "crop_size": {"height": 32, "width": 32},
        "do_resize": True, "do_center_crop": True, "do_normalize": True, "resample": 3,
        "image_mean": mean.flatten().tolist(), "image_std": std.flatten().tolist(),
    }))


def stage_vae(args, world, data) -> None:
    torch.manual_seed(3)
    vae = tiny.vae()
    opt = torch.optim.AdamW(vae.parameters(), lr=2e-3)
    x_all = to_tensor(data.images) * 2 - 1
    steps = int(1000 * args.steps_scale)
    gen = torch.Generator().manual_seed(3)
    for step in range(steps):
        x = x_all[torch.randint(len(x_all), (64,), generator=gen)]
        post = vae.encode(x).latent_dist
        rec = vae.decode(post.sample(generator=gen)).sample
        loss = F.mse_loss(rec, x) + 1e-6 * post.kl().mean()
        optimiser_step(opt, loss, warmup_cosine(step, steps, 2e-3))
        if step % 100 == 0 or step == steps - 1:
            log("vae", f"step {step}/{steps} mse {F.mse_loss(rec, x).item():.4f}")
    with torch.no_grad():
        lat = torch.cat([vae.encode(x_all[i : i + 256]).latent_dist.mean for i in range(0, min(2048, len(x_all)), 256)])
    vae.register_to_config(scaling_factor=float(1.0 / lat.std()))
    log("vae", f"latent std {lat.std():.3f} -> scaling_factor {vae.config.scaling_factor:.3f}")
    vae.save_pretrained(args.out / "tiny_shapes_sd" / "vae")


def stage_unet(args, world, data) -> None:
    from diffusers import AutoencoderKL, DDPMScheduler, StableDiffusionPipeline
    from transformers import CLIPTokenizer

    sd = args.out / "tiny_shapes_sd"
    tok = CLIPTokenizer.from_pretrained(sd / "tokenizer")
    vae = AutoencoderKL.from_pretrained(sd / "vae").eval()
    if args.resume:  # continue from the saved pipeline (new data order, fresh warm-up/cosine schedule)
        from diffusers import UNet2DConditionModel
        from transformers import CLIPTextModel

        unet, text = UNet2DConditionModel.from_pretrained(sd / "unet"), CLIPTextModel.from_pretrained(sd / "text_encoder")
        seed = 5 if args.train_seed is None else args.train_seed
    else:
        torch.manual_seed(4)
        unet, text = tiny.unet(), tiny.text_encoder(len(tok))
        seed = 4 if args.train_seed is None else args.train_seed
    unet.train(), text.train()
    sched = tiny.scheduler()
    train_sched = DDPMScheduler.from_config(sched.config)
    x_all = to_tensor(data.images) * 2 - 1
    with torch.no_grad():
        dists = [vae.encode(x_all[i : i + 512]).latent_dist for i in range(0, len(x_all), 512)]
        mu, sigma = torch.cat([d.mean for d in dists]), torch.cat([d.std for d in dists])
    params = list(unet.parameters()) + list(text.parameters())
    opt = torch.optim.AdamW(params, lr=args.unet_lr, weight_decay=1e-2)
    steps, batch = int(args.unet_steps * args.steps_scale), 64
    gen = torch.Generator().manual_seed(seed)
    empty = tok([""], padding="max_length", return_tensors="pt").input_ids
    t0 = time.time()
    for step in range(steps):
        idx = torch.randint(len(mu), (batch,), generator=gen)
        lat = (mu[idx] + sigma[idx] * torch.randn(mu[idx].shape, generator=gen)) * vae.config.scaling_factor
        caps = [data.captions[i] for i in idx.tolist()]
        ids = tok(caps, padding="max_length", truncation=True, return_tensors="pt").input_ids
        drop = torch.rand(batch, generator=gen) < 0.1  # caption dropout, for classifier-free guidance
        ids[drop] = empty
        noise = torch.randn(lat.shape, generator=gen)
        t = torch.randint(0, train_sched.config.num_train_timesteps, (batch,), generator=gen)
        noisy = train_sched.add_noise(lat, noise, t)
        target = train_sched.get_velocity(lat, noise, t)
        pred = unet(noisy, t, encoder_hidden_states=text(ids)[0]).sample
        loss = F.mse_loss(pred, target)
        optimiser_step(opt, loss, warmup_cosine(step, steps, args.unet_lr, warmup=200), clip_params=params)
        if step % 100 == 0 or step == steps - 1:
            log("unet", f"step {step}/{steps} loss {loss.item():.4f} ({(time.time() - t0) / (step + 1):.2f} s/step)")
        if (step + 1) % args.save_every == 0 or step == steps - 1:
            pipe = StableDiffusionPipeline(
                vae=vae, text_encoder=text, tokenizer=tok, unet=unet, scheduler=sched,
                safety_checker=None, feature_extractor=None, requires_safety_checker=False,
            )
            pipe.save_pretrained(sd, safe_serialization=True)
            log("unet", f"saved pipeline at step {step + 1}")


STAGES = {"tokenizer": stage_tokenizer, "cnn": stage_cnn, "clip": stage_clip, "vae": stage_vae, "unet": stage_unet}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=ROOT / "models")
    p.add_argument("--stages", default=",".join(STAGES))
    p.add_argument("--n-train", type=int, default=20000, help="shapes-world training renders")
    p.add_argument("--unet-steps", type=int, default=5000)
    p.add_argument("--unet-lr", type=float, default=1e-3, help="peak learning rate of the UNet stage")
    p.add_argument("--clip-steps", type=int, default=4000)
    p.add_argument("--clip-lr", type=float, default=1e-3, help="peak learning rate of the CLIP stage")
    p.add_argument("--resume", action="store_true",
                   help="clip and unet stages: continue training the saved models instead of starting from random weights")
    p.add_argument("--data-seed", type=int, default=0, help="seed of the training renders (a new round: a new seed)")
    p.add_argument("--train-seed", type=int, default=None,
                   help="unet stage: seed of batch order and noise (default 4, or 5 with --resume)")
    p.add_argument("--save-every", type=int, default=1000)
    p.add_argument("--steps-scale", type=float, default=1.0, help="multiply every stage's steps (smoke runs)")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    grammar = Grammar.from_yaml(ROOT / "conf" / "grammar" / "shapes.yaml")
    world = ShapesWorld(grammar, 32)
    t0 = time.time()
    data = render_arrays(world, args.n_train, "train", seed=args.data_seed)
    log("data", f"{args.n_train} renders in {time.time() - t0:.1f}s")
    for name in args.stages.split(","):
        t0 = time.time()
        STAGES[name](args, world, data)
        log(name, f"done in {time.time() - t0:.0f}s")


if __name__ == "__main__":
    main()
