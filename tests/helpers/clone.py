"""The small clone the end-to-end tests run (in this process or as the CLI), and how they read its output."""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path

import webdataset as wds

import pipeline.clone as clone_api
from helpers import ROOT
from pipeline.clone.layout import Layout

CLASSES = "dataset.only=[circle,square,star,cross]"
SMALL = ["model=procedural", "reward=learned_shapes", CLASSES, "clone.images_per_class=12", "clone.shard_size=4", "clone.progress=false",
         "env.budget=64", "search=noisy_gradient", "cluster.num_cpus=2"]
SHUFFLED = ["clone.shard_order=shuffled", "clone.shard_size=6"]  # with SMALL: 4 classes x 12 images in 8 shards
#: with SMALL, the embedded diffusion model at 2 steps (its kernels and padding, a tenth of the time), Q-learning,
#: 3 classes x 4 images in shuffled shards of 4, one worker; search renders are not reused, so every image is a
#: generation render
TINY_SD = ["model=tiny_shapes", "model.num_inference_steps=2", "dataset.only=[circle,square,star]", "clone.propose=random",
           "clone.images_per_class=4", "clone.shard_size=4", "clone.shard_order=shuffled", "clone.reuse_search_renders=false",
           "env.budget=16", "search=qlearning_batched", "cluster.num_workers=1"]


def clone(out, *overrides, ok=True) -> dict:
    """The clone API in this process (Ray started and stopped by it, unless the caller has started one) with the SMALL
    settings; its summary."""
    s = clone_api.run(clone_api.load([f"paths.output_dir={out}", *SMALL, *overrides])).to_dict()
    if ok:
        assert s["ok"], s
    return s


def clone_cmd(out, *overrides):
    """The CLI, for what only a process shows: its exit status, its stderr, a SIGKILL or a signal."""
    return clone_api.cli_command(f"paths.output_dir={out}", *SMALL, *overrides)


def clone_cli(out, *overrides):
    return subprocess.run(clone_cmd(out, *overrides), cwd=ROOT, capture_output=True, text=True, timeout=600)


def last_summary(out) -> dict:
    """The summary the latest run wrote beside the shards (how a test reads a run it started as a process)."""
    return json.loads(Path(Layout(str(out)).summary).read_text())


def file_hashes(out) -> dict[str, str]:
    """shard file name -> sha256 of its bytes."""
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(Path(out).glob("shard-*.tar"))}


def sample_hashes(out):
    """key -> sha256 of the sample's fields; fails on duplicate keys."""
    out_hashes = {}
    shards = Layout(str(out)).shard_files()
    for s in wds.WebDataset(shards, shardshuffle=False, empty_check=False):
        key = s["__key__"]
        assert key not in out_hashes, f"duplicate key {key}"
        h = hashlib.sha256()
        for field in ("png", "cls", "json"):
            h.update(s[field])
        out_hashes[key] = h.hexdigest()
    return out_hashes
