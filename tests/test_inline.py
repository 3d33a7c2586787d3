"""``cluster=inline``: one worker in the driver's process, for one GPU and for nodes without Ray. It writes the
same bytes as Ray's workers, and runs where Ray cannot be imported."""

import json
import subprocess
import sys

import pytest

from helpers import ROOT
from helpers.clone import SMALL, clone, sample_hashes
from pipeline.clone.layout import Layout

NO_RAY = """
import json, sys
sys.modules["ray"] = None  # `import ray` raises ImportError, as on a node without it
import pipeline.clone as c
s = c.run(c.load(sys.argv[1:])).to_dict()
print(json.dumps({"ok": s["ok"], "images": s["images_written"], "shards": s["shards_written"], "device": s["worker_devices"]}))
"""


def run_without_ray(out, *overrides):
    p = subprocess.run([sys.executable, "-c", NO_RAY, f"paths.output_dir={out}", *SMALL, "cluster=inline", *overrides],
                       cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    return json.loads(p.stdout.strip().splitlines()[-1])


def test_an_inline_clone_runs_without_ray_and_resumes_identically(tmp_path):
    s = run_without_ray(tmp_path)
    assert s["ok"] and s["images"] == 48 and s["shards"] == 12 and list(s["device"]) == ["0"]
    hashes = sample_hashes(tmp_path)
    shards = Layout(str(tmp_path)).shard_files()
    (tmp_path / shards[3].rsplit("/", 1)[-1]).unlink()
    again = run_without_ray(tmp_path)
    assert again["ok"] and again["shards"] == 1
    assert sample_hashes(tmp_path) == hashes


def test_inline_asks_for_one_worker(tmp_path):
    from pipeline.errors import ConfigError

    with pytest.raises(ConfigError, match="one worker"):
        clone(tmp_path, "cluster=inline", "cluster.num_workers=2")


@pytest.mark.slow
def test_inline_and_ray_workers_write_the_same_bytes(reference, tmp_path):
    s = clone(tmp_path, "cluster=inline")
    assert s["images_written"] == 48
    assert sample_hashes(tmp_path) == reference[2]


def test_without_ray_a_ray_backend_says_how_to_get_it_in_one_line(tmp_path):
    p = subprocess.run([sys.executable, str(ROOT / "scripts" / "clone.py"), f"paths.output_dir={tmp_path}", *SMALL],
                       cwd=ROOT, capture_output=True, text=True, timeout=600,
                       env={**__import__("os").environ, "PYTHONPATH": str(ROOT / "tests" / "helpers" / "no_ray")})
    lines = p.stderr.strip().splitlines()
    assert p.returncode == 2 and len(lines) == 1, p.stderr[-2000:]
    assert "needs Ray" in lines[0] and "cluster=inline" in lines[0]


def test_an_out_of_memory_back_off_keeps_every_sample_and_the_records_say_so(tmp_path):
    """Calls run out of memory above 2 images: the renderer halves its batch until they fit and redoes the calls. Every
    sample is the same bytes as a run without the back-off (the procedural generator's pixels do not follow the call
    size), and the records name the call size, since a diffusion model's pixels may (measured on the CPU with the
    embedded model: calls of 4 and 1 differ by one grey level in some images)."""
    clean = tmp_path / "clean"
    assert clone(clean, "cluster=inline", "clone.batch_size=8")["ok"]
    out = tmp_path / "backed_off"
    s = clone(out, "cluster=inline", "clone.batch_size=8", "model._target_=helpers.oom.OutOfMemoryAbove", "+model.limit=2",
              "clone.on_config_change=allow")
    assert s["images_written"] == 48 and s["shards_after_oom_backoff"] == 12
    assert sample_hashes(out) == sample_hashes(clean)
    records = json.loads((out / "manifest.json").read_text())["shards"]
    assert {r["backed_off_to"] for r in records} == {2}
    assert "backed_off_to" not in json.loads((clean / "manifest.json").read_text())["shards"][0]
    log = [json.loads(line) for line in (out / "clone.log").read_text().splitlines()]
    assert [e["batch_size"] for e in log if e["event"] == "oom_backoff"][-1] == 2
    assert "12 shards were rendered after CUDA ran out of memory" in (out / "README.md").read_text()
    assert "ran out of memory" not in (clean / "README.md").read_text()
