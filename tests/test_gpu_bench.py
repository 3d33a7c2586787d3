"""bench --only gpu, where no GPU is: the whole benchmark at tiny scale on CPU, and the full-size build path
(shipped configs -> random models -> save -> the presets' loader) on the same configs shrunk."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from pipeline import gpu_bench

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow  # the clone phases start Ray
def test_the_gpu_benchmark_runs_at_tiny_scale(tmp_path):
    out = tmp_path / "gpu.json"
    p = subprocess.run([sys.executable, "scripts/bench.py", "--only", "gpu", "--gpu-scale", "tiny", "--gpu-compile", "off",
                        "--out", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert p.returncode == 0, p.stderr[-2000:]
    g = json.loads(out.read_text())["gpu"]
    assert set(g["bare"]) == {"sd21", "sdxl_turbo"} and set(g["bare"]["sd21"]) == {"1", "2", "4"}
    assert all(r["images_per_s"] > 0 for by in g["bare"].values() for r in by.values())
    c = g["clone_sd21"]
    assert c["search"]["renders"] > 0 and c["generation"]["images"] == 2 * 4  # 2 classes x 4 images, every one rendered
    assert c["generation"]["calls"]["renders_per_call"] == 4.0 and c["search_over_bare"] > 0
    assert "| search |" in p.stdout and "| sd21 | 2 | 4 |" in p.stdout


def shrink(arch: str, dst: Path) -> Path:
    """The shipped configs of ``arch`` with small widths and depths (every other key as shipped)."""
    small = {
        "unet": {"block_out_channels": [16, 16, 32, 32][: len(json.loads((gpu_bench.CONFIGS / arch / "unet" / "config.json").read_text())["block_out_channels"])],
                 "attention_head_dim": 2, "norm_num_groups": 8, "layers_per_block": 1,
                 "cross_attention_dim": 64 if arch == "sdxl_turbo" else 32},
        "vae": {"block_out_channels": [8, 8, 8, 8], "norm_num_groups": 4, "layers_per_block": 1},
        "text_encoder": {"hidden_size": 32, "intermediate_size": 64, "num_attention_heads": 2, "num_hidden_layers": 1, "projection_dim": 32},
        "text_encoder_2": {"hidden_size": 32, "intermediate_size": 64, "num_attention_heads": 2, "num_hidden_layers": 1, "projection_dim": 32},
    }
    if arch == "sdxl_turbo":
        small["unet"].update(transformer_layers_per_block=1, addition_time_embed_dim=8, projection_class_embeddings_input_dim=6 * 8 + 32)
    for folder in (gpu_bench.CONFIGS / arch).iterdir():
        for f in folder.glob("*.json"):
            cfg = {**json.loads(f.read_text()), **small.get(folder.name, {})}
            (dst / arch / folder.name).mkdir(parents=True, exist_ok=True)
            (dst / arch / folder.name / f.name).write_text(json.dumps(cfg))
    return dst


def test_the_full_size_build_path_loads_through_the_presets(tmp_path):
    s = gpu_bench.Scale(size=64, sd_steps=2, batches=(2,), compile_batch=2, calls=1, clone_classes=1, clone_budget=2, clone_images=1)
    for arch in gpu_bench.ARCHS:
        configs = shrink(arch, tmp_path / "configs")
        folder = gpu_bench.build_full(arch, tmp_path / "models", torch.device("cpu"), torch.float32, configs=configs)
        gen = gpu_bench.generator(arch, folder, s, 2)
        assert gen.family == gpu_bench.ARCHS[arch]
        assert gpu_bench.timed_calls(gen, 2, 1)["images_per_s"] > 0
        assert gen.generate(["a red star"], [1])[0].size == (64, 64)


def test_the_compile_rows_build_a_compiled_generator(tmp_path):
    """The compile on/off rows (not run here: a CPU compile of even the tiny UNet takes most of a minute)
    build the preset with model.compile set, through the same overrides."""
    folder = gpu_bench.build("sd21", "tiny", tmp_path, torch.device("cpu"))
    s = gpu_bench.SCALES["tiny"]
    assert "model.compile=true" in gpu_bench.model_overrides("sd21", folder, s, 4, compile=True)
    on, off = (gpu_bench.generator("sd21", folder, s, s.compile_batch, compile=c) for c in (True, False))
    assert type(on.pipe.unet).__name__ == "OptimizedModule" and type(off.pipe.unet).__name__ == "UNet2DConditionModel"
    assert set(gpu_bench.COMPILED) <= set(gpu_bench.ARCHS)
