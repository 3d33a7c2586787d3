"""The GPU check (bench --only gpu) where no GPU is: its stages at tiny scale on the CPU, written as they end, a failing
or late stage recorded, and the full-size build path (shipped configs -> random models -> save -> the presets' loader)
on the same configs shrunk."""

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from pipeline.bench import gpu as gpu_bench

ROOT = Path(__file__).resolve().parents[1]


NO_RAY_STAGES = ("device,build_sd21,bare_sd21,diffusers_sd21,identity_sd21,reward_clip,clone_search,clone_generation,build_sdxl_turbo,"
                 "bare_sdxl_turbo")


def lines(path: Path) -> list[dict]:
    """The lines written so far (a line still being written has no newline yet)."""
    return [json.loads(x) for x in path.read_text().split("\n")[:-1] if x.strip()]


def test_the_gpu_check_runs_its_stages_at_tiny_scale_with_no_ray_in_the_bare_rows(tmp_path):
    out = tmp_path / "gpu.jsonl"
    p = subprocess.run([sys.executable, "scripts/bench.py", "--only", "gpu", "--gpu-scale", "tiny", "--gpu-stages", NO_RAY_STAGES,
                        "--out", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert p.returncode == 0, p.stderr[-2000:]
    got = lines(out)
    assert "command" in got[0] and [x["stage"] for x in got[1]["plan"]] == NO_RAY_STAGES.split(",")
    stages = {x["stage"]: x for x in got[2:]}
    assert list(stages) == [*NO_RAY_STAGES.split(","), "end"] and all(x["ok"] for x in got[2:-1])
    for name in ("device", "build_sd21", "bare_sd21", "diffusers_sd21"):  # the bare rows import neither Ray nor webdataset
        assert stages[name]["imports"] == {"ray": False, "webdataset": False}, name
    assert set(stages["bare_sd21"]["batches"]) == {"1", "2", "4"} and all(r["images_per_s"] > 0 for r in stages["bare_sd21"]["batches"].values())
    assert stages["clone_search"]["backend"] == "inline" and stages["clone_search"]["renders"] > 0
    assert stages["clone_search"]["imports"]["ray"] is False  # the clone's phases in this process, no Ray
    assert stages["clone_generation"]["images"] == 2 * 4 and stages["clone_generation"]["calls"]["renders_per_call"] == 4.0
    assert stages["clone_generation"]["over_bare"] > 0 and stages["clone_generation"]["over_diffusers"] > 0
    assert stages["diffusers_sd21"]["images_per_s"] > 0 and stages["clone_search"]["over_diffusers"] > 0
    assert stages["identity_sd21"]["alone_equals_in_full_call"] is True  # padded calls: an image never depends on its call
    assert stages["reward_clip"]["classes"] == 1000 and 0 < stages["reward_clip"]["reward_share"] < 1
    assert "| search | inline |" in p.stdout and "| sd21 | 2 | 4 |" in p.stdout


def test_each_stage_is_on_disk_as_it_ends_so_a_killed_check_keeps_what_it_measured(tmp_path):
    out = tmp_path / "gpu.jsonl"
    proc = subprocess.Popen([sys.executable, "scripts/bench.py", "--only", "gpu", "--gpu-scale", "tiny", "--out", str(out)], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 300
        ended = lambda: [x.get("stage") for x in lines(out)] if out.exists() else []  # noqa: E731
        while time.time() < deadline and proc.poll() is None and "bare_sd21" not in ended():
            time.sleep(0.2)
        assert proc.poll() is None, "the check ended before it could be killed"
    finally:
        proc.kill()
        proc.wait()
    done = [x["stage"] for x in lines(out)[2:]]
    assert done[:3] == ["device", "build_sd21", "bare_sd21"] and "end" not in done


def test_a_failing_stage_is_recorded_and_the_budget_starts_no_stage_that_would_end_past_it(tmp_path, capsys):
    check = gpu_bench.Check("tiny", torch.device("cpu"), tmp_path)

    def boom(c):
        raise RuntimeError("CUDA error: an illegal memory access was encountered")

    failed = gpu_bench._run_stage(gpu_bench.Stage("x", boom, {"tiny": 1}), check, None, 0.0)
    assert failed["ok"] is False and failed["error"].startswith("RuntimeError: CUDA error") and "x" not in check.results
    assert "Traceback (most recent call last)" in capsys.readouterr().err  # the whole traceback, to the log
    after = gpu_bench._run_stage(gpu_bench.Stage("y", lambda c: {"v": 1}, {"tiny": 1}, needs=("x",)), check, None, 0.0)
    assert "needs x" in after["skipped"]
    late = gpu_bench._run_stage(gpu_bench.Stage("z", lambda c: {"v": 1}, {"tiny": 30}), check, 100.0, 80.0)
    assert "budget" in late["skipped"] and "z" not in check.results
    assert gpu_bench._run_stage(gpu_bench.Stage("w", lambda c: {"v": 1}, {"tiny": 10}), check, 100.0, 80.0)["v"] == 1
    assert [st.name for st in gpu_bench.plan("full", ray=False)] == [
        "device", "build_sd21", "bare_sd21", "diffusers_sd21", "identity_sd21", "reward_clip", "clone_search", "clone_generation",
        "build_sdxl_turbo", "bare_sdxl_turbo"]  # compile is a second call: only when named
    assert [st.name for st in gpu_bench.plan("full", ["compile_sd21"], ray=False)] == ["compile_sd21"]
    assert sum(st.estimate_s["full"] for st in gpu_bench.plan("full", ray=False)) < 6 * 60  # the target, by the estimate


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
    s = gpu_bench.Scale(size=64, sd_steps=2, batches=(2,), clone_batch=2, calls=1, clone_classes=1, clone_budget=2, clone_images=1)
    for arch in gpu_bench.ARCHS:
        configs = shrink(arch, tmp_path / "configs")
        folder = gpu_bench.build_full(arch, tmp_path / "models", torch.device("cpu"), torch.float32, configs=configs)
        gen = gpu_bench.generator(arch, folder, s, 2)
        assert gen.family == gpu_bench.ARCHS[arch]
        assert gpu_bench.timed_calls(gen, 2, 1)["images_per_s"] > 0
        assert gen.generate(["a red star"], [1])[0].size == (64, 64)


def test_the_compile_rows_build_a_compiled_generator(tmp_path):
    """The compile row (not run here: a CPU compile of even the tiny UNet takes most of a minute)
    build the preset with model.compile set, through the same overrides."""
    folder = gpu_bench.build("sd21", "tiny", tmp_path, torch.device("cpu"))
    s = gpu_bench.SCALES["tiny"]
    assert "model.compile=true" in gpu_bench.model_overrides("sd21", folder, s, 4, compile=True)
    on, off = (gpu_bench.generator("sd21", folder, s, s.clone_batch, compile=c) for c in (True, False))
    assert type(on.pipe.unet).__name__ == "OptimizedModule" and type(off.pipe.unet).__name__ == "UNet2DConditionModel"


@pytest.mark.slow  # a process that runs the check
def test_the_one_call_script_writes_preflight_install_and_check_under_its_folder(tmp_path):
    """scripts/device_check.sh, as a lent node runs it (here on tiny models, the project already installed): everything
    under OUT, a failing stage's whole traceback in the log beside the JSON lines."""
    import os

    env = {**os.environ, "PYTHON": sys.executable, "GPU_SCALE": "tiny", "STAGES": "device,build_sd21,reward_clip", "SKIP_TESTS": "1"}
    p = subprocess.run(["bash", "scripts/device_check.sh", str(tmp_path / "out"), "120"], cwd=ROOT, capture_output=True, text=True,
                       timeout=600, env=env)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
    out = tmp_path / "out"
    assert {f.name for f in out.iterdir()} >= {"preflight.txt", "install.txt", "gpu-check.jsonl", "gpu-check.log", "gpu-check.md"}
    assert "torch" in (out / "preflight.txt").read_text() and "imports already" in (out / "install.txt").read_text()
    ended = {x["stage"]: x for x in lines(out / "gpu-check.jsonl")[2:]}
    assert ended["device"]["ok"] and ended["reward_clip"]["skipped"].startswith("needs bare_sd21")
