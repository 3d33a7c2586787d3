"""scripts/search.py end to end, and its one-line errors."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


FAST = ["model=procedural", "reward=pixel_stats"]  # the weightless stack: these tests are about the app


def run(*overrides, cwd=ROOT):
    return subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "search.py"), *FAST, *overrides],
        cwd=cwd, capture_output=True, text=True, timeout=300,
    )


def test_search_writes_json_grid_and_plot(tmp_path):
    p = run(f"paths.output_dir={tmp_path}", "search=noisy_gradient", "input_seed=3", "reward.semantic_encoder.samples_per_choice=4")
    assert p.returncode == 0, p.stderr
    result = json.loads((tmp_path / "result.json").read_text())
    assert result["method"] == "noisy_gradient" and result["renders"] > 0 and result["candidates"]
    for name in ("trajectory.png", "reward_curve.png"):
        assert (tmp_path / name).stat().st_size > 1000


def test_search_from_an_image_file(tmp_path, world):
    img = tmp_path / "input.png"
    world.sample(4).image.save(img)
    p = run(f"paths.output_dir={tmp_path / 'out'}", f"input_image={img}", "search=random", "env.budget=50",
            "reward.semantic_encoder.samples_per_choice=2")
    assert p.returncode == 0, p.stderr
    assert json.loads((tmp_path / "out" / "result.json").read_text())["renders"] == 50


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["input_image=/no/such/image.png"], "input image '/no/such/image.png' does not exist"),
        (["env.start={shape: circle}"], "has no attribute 'shape'"),
        (["env.horizon=0"], "env.horizon must be >= 1"),
        (["search.alpha=3"], "search.alpha must be in [0, 1]"),
        (["reward.weights.embedding=-1"], "reward.weights.embedding must be >= 0"),
        (["env.class_source=rendered"], "env.class_source=rendered applies to clones"),
    ],
)
def test_bad_inputs_end_with_one_line(tmp_path, overrides, message):
    p = run(f"paths.output_dir={tmp_path}", "reward.semantic_encoder.samples_per_choice=2", *overrides)
    assert p.returncode == 2
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], p.stderr
    assert "Traceback" not in p.stderr


def test_unreadable_image(tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not a png")
    p = run(f"paths.output_dir={tmp_path}", f"input_image={bad}")
    assert p.returncode == 2 and "cannot be read as an image" in p.stderr
