"""The GPU tier (``make test-gpu``): what only a CUDA GPU shows, skipped without one (tests/conftest.py). The other
tiers run the same code on CPU; here the embedded tiny diffusion model, of Stable Diffusion's architecture, runs on
the GPU: its renders stay there, the staged GPU check runs its stages on it, and a clone writes its shards from it."""

import json
import subprocess
import sys

import pytest
from hydra.utils import instantiate

from helpers import ROOT
from helpers.clone import TINY_SD, clone
from pipeline.compose import load_config

pytestmark = pytest.mark.gpu

PROMPTS = ["a large red solid star on a white background", "a small blue dotted circle on a black background",
           "a medium green striped square on a grey background"]


def test_renders_are_made_and_kept_on_the_gpu():
    sd = instantiate(load_config("run_search", ["model=tiny_shapes", "model.device=cuda", "model.max_batch_size=4"]).model)
    rendered = sd.render(PROMPTS, [1, 2, 3])
    assert rendered.device.type == "cuda" and rendered.shape == (3, 3, sd.height, sd.width)
    grey = rendered.float() * 255
    assert (grey - grey.round()).abs().max() < 1e-3 and 0 <= grey.min() and grey.max() <= 255  # on the 8-bit grid there


def test_the_gpu_check_runs_its_stages_on_the_gpu(tmp_path):
    stages = "device,build_sd21,bare_sd21,clone_search,clone_generation"
    out = tmp_path / "gpu.jsonl"
    p = subprocess.run([sys.executable, "scripts/bench.py", "--only", "gpu", "--gpu-scale", "tiny", "--gpu-stages", stages,
                        "--out", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert p.returncode == 0, p.stderr[-2000:]
    rows = {x["stage"]: x for x in map(json.loads, out.read_text().splitlines()[2:])}
    assert all(rows[s]["ok"] for s in stages.split(",")), rows
    assert rows["device"]["device"].startswith("cuda") and rows["device"]["dtype"] == "float16"
    assert rows["clone_generation"]["images"] > 0
    assert all(r["peak_allocated_gib"] is not None for r in rows["bare_sd21"]["batches"].values())  # CUDA's memory counters


def test_a_clone_writes_its_shards_from_the_gpu(tmp_path):
    s = clone(tmp_path, *TINY_SD, "model.device=cuda", "cluster=inline")  # 3 classes x 4 images, in this process
    assert s["images_written"] == 12 and s["shards_written"] == 3
    assert s["worker_devices"]["0"]["device"].startswith("cuda") and s["worker_devices"]["0"]["device_name"] != "cpu"
