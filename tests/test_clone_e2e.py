"""The clone end to end on a real local Ray: shards, worker loss, driver SIGKILL + resume, corruption."""

import json
import logging
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
import webdataset as wds

from helpers.clone import SHUFFLED, SMALL, clone, clone_cli, clone_cmd, file_hashes, last_summary, sample_hashes
from helpers.processes import count, crash_when
import pipeline.clone as clone_api
from pipeline.clone import dry_run, load
from pipeline.clone.manifest import Manifest
from pipeline.storage import Storage

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module", autouse=True)
def one_ray():
    """One local Ray for this module's in-process clones, which use a Ray their caller started (each would start and
    stop its own: some 7 s apiece on 2 cores). The clones run as processes start their own, as a user's command does."""
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING)
    yield
    ray.shutdown()


def test_clean_clone_writes_readable_shards(reference):
    out, s, hashes = reference
    assert s["ok"] and s["shards_written"] == 12 and s["images_written"] == 48
    assert len(hashes) == 48
    assert {k.rsplit("_", 1)[0] for k in hashes} == {"circle", "square", "star", "cross"}
    sample = next(iter(wds.WebDataset(str(out / "shard-000000.tar"), shardshuffle=False).decode("pil")))
    meta = sample["json"]  # decoded by webdataset
    assert sample["png"].size == (32, 32) and int(sample["cls"]) == meta["class_index"] == 0
    for field in ("class_id", "class_name", "encoding", "prompt", "seed", "reward", "score", "attempt", "model_id", "search",
                  "pipeline_version", "from_search"):
        assert field in meta
    # accepted search renders are dataset images (clone.reuse_search_renders): they cost no second render
    assert 0 < s["images_from_search"] < 48 and s["search_renders"] > 0
    assert s["images_from_search"] <= 4 * 3  # clone.reuse_max_share: 0.25 of 12 images per class
    assert meta["score"] >= 0.5  # verified at its own seed against env.accept_threshold
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["samples"] == 48 and len(manifest["shards"]) == 12
    assert (out / "clone.log").read_text().count('"shard_done"') == 12


def test_resume_with_nothing_left_redoes_nothing(reference, tmp_path):
    out = tmp_path / "copy"
    shutil.copytree(reference[0], out)
    s = clone(out)
    assert s["shards_written"] == 0 and s["shards_reused"] == 12 and s["searches_run"] == 0
    assert sample_hashes(out) == reference[2]


def test_resume_under_other_settings_is_refused_unless_allowed(reference, tmp_path):
    out = tmp_path / "copy"
    shutil.copytree(reference[0], out)
    p = clone_cli(out, "search=random", "env.budget=20")
    lines = p.stderr.strip().splitlines()
    assert p.returncode != 0 and len(lines) == 1, p.stderr[-2000:]
    assert "was started with other settings" in lines[0] and "search._target_" in lines[0]
    assert "clone.on_config_change=allow" in lines[0]
    # runtime knobs are not settings of the output: another batch size and worker count resume fine
    s = clone(out, "clone.batch_size=3", "cluster.num_workers=1")
    assert s["shards_reused"] == 12
    s = clone(out, "search=random", "env.budget=20", "clone.on_config_change=allow")
    assert s["ok"] and s["shards_reused"] == 12 and sample_hashes(out) == reference[2]
    record = json.loads((out / "run.json").read_text())
    assert record["identity"]["search._target_"].endswith("RandomSearch") and len(record["history"]) == 1


def test_corrupt_shards_are_detected_and_regenerated(reference, tmp_path):
    out = tmp_path / "copy"
    shutil.copytree(reference[0], out)
    truncated, flipped = out / "shard-000001.tar", out / "shard-000013.tar"
    truncated.write_bytes(truncated.read_bytes()[:3000])
    data = bytearray(flipped.read_bytes())
    data[2000] ^= 0xFF
    flipped.write_bytes(bytes(data))
    s = clone(out)
    assert s["shards_written"] == 2 and s["shards_reused"] == 10
    assert set(s["corrupt_redone"]) == {"shard-000001.tar", "shard-000013.tar"}
    assert sample_hashes(out) == reference[2]


def test_a_search_whose_renders_are_lost_is_redone_identically(reference, tmp_path):
    out = tmp_path / "copy"
    shutil.copytree(reference[0], out)
    (out / "searches" / "star.renders.tar").unlink()  # the result is there, the renders its images reuse are not
    for shard in ("shard-000021.tar", "shard-000022.tar", "shard-000023.tar"):  # star's shards
        (out / shard).unlink()
    s = clone(out)
    assert s["searches_run"] == 1 and s["shards_written"] == 3 and sample_hashes(out) == reference[2]


@pytest.mark.parametrize("order", ["class", "shuffled"])
def test_a_sigkilled_clone_resumes_byte_identical(order, request, tmp_path):
    """The machine "crashes" (driver, Ray and workers SIGKILLed) once a shard is committed; the same command then
    finishes a folder whose every shard file is byte-identical to an uninterrupted clone's. Class order runs on Ray,
    against the session's reference; shuffled shards in-process, against the session's shuffled clone. One worker
    running one unit at a time: with reused search renders a shard takes milliseconds, and a wider run could commit
    every shard between two polls. (The 1000-class stand-in killed mid-search: tests/test_standin_e2e.py.)"""
    if order == "class":
        ref_out, overrides, total = request.getfixturevalue("reference")[0], [], 12
    else:
        ref_out, overrides, total = request.getfixturevalue("shuffled")[0], [*SHUFFLED, "cluster=inline"], 8
    out = tmp_path / "killed"
    records = out / "manifest"
    crash_when(clone_cmd(out, *overrides, "cluster.num_workers=1", "cluster.units_per_worker=1", "cluster.max_in_flight=1"),
               lambda: count(records, "*.json") > 0, timeout=240)
    done_at_kill = len(list(records.glob("*.json")))
    assert 1 <= done_at_kill < total
    s = clone(out, *overrides)  # the runtime knobs back to their defaults: they are not settings of the output
    assert s["ok"] and s["shards_reused"] >= done_at_kill - 1 and s["shards_reused"] + s["shards_written"] == total
    assert file_hashes(out) == file_hashes(ref_out)


def test_worker_killed_mid_run_loses_nothing(tmp_path):
    """One of two workers is SIGKILLed once the first shard is committed: it is replaced, its units are redone."""
    import os
    import signal as signals

    pids, killed = [], []

    def on_event(e):
        if e["event"] == "worker_started":
            pids.append(e["pid"])
        if e["event"] == "shard_done" and not killed:
            os.kill(pids[0], signals.SIGKILL)
            killed.append(e)

    s = clone_api.run(load([f"paths.output_dir={tmp_path}", *SMALL, "cluster.num_workers=2"]), on_event=on_event).to_dict()
    assert killed and s["workers_lost"] == 1 and s["ok"]
    hashes = sample_hashes(tmp_path)
    assert len(hashes) == 48


def test_a_failed_first_start_does_not_block_the_corrected_command(tmp_path):
    p = clone_cli(tmp_path, "reward.segmenter.pretrained=/no/such/cnn", "cluster=inline")  # fails once run.json is written
    assert p.returncode != 0 and (tmp_path / "run.json").is_file()
    assert not list(tmp_path.glob("shard-*")) and not list(tmp_path.glob("searches/*.json"))
    s = clone(tmp_path, "cluster=inline")  # before: "was started with other settings, and resuming would mix two datasets"
    assert s["ok"] and s["shards_written"] == 12


LONGER = ["clone.images_per_class=48"]  # 48 shards: long enough to be stopped mid-run


@pytest.fixture(scope="module")
def longer_reference(tmp_path_factory):
    out = tmp_path_factory.mktemp("longer")
    clone(out, *LONGER)
    return sample_hashes(out)


def started(out, shards, *overrides):
    """A clone running in the background, once it has committed ``shards`` shards."""
    run = subprocess.Popen(clone_cmd(out, *LONGER, *overrides), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while time.time() < deadline and run.poll() is None:
        log = Path(out) / "clone.log"
        if log.is_file() and log.read_text().count('"shard_done"') >= shards:
            return run
        time.sleep(0.1)
    raise AssertionError(f"the clone ended (exit {run.poll()}) before {shards} shards were committed")


def test_sigterm_lets_units_in_flight_finish_and_says_how_to_resume(longer_reference, tmp_path):
    run = started(tmp_path, 4)
    run.send_signal(signal.SIGTERM)
    stdout, stderr = run.communicate(timeout=120)
    assert run.returncode == 1, stderr[-2000:]
    assert "error: stopped with" in stderr and "stopped by SIGTERM" in stderr and "run the same command again to resume" in stderr
    assert "Traceback" not in stderr
    s = last_summary(tmp_path)
    assert s["stopped"] == "stopped by SIGTERM" and 4 <= s["shards_written"] < 48 and s["units_left"] > 0
    valid, problems = Manifest(Storage(tmp_path)).validate("deep")
    assert not problems and len(valid) == s["shards_written"]  # every committed shard is whole and listed
    assert (tmp_path / "manifest.json").is_file() and '"event": "stopped"' in (tmp_path / "clone.log").read_text()
    assert clone(tmp_path, *LONGER)["shards_reused"] == s["shards_written"]
    assert sample_hashes(tmp_path) == longer_reference


def test_a_second_signal_stops_at_once(longer_reference, tmp_path):
    run = started(tmp_path, 2, "cluster.stop_grace_s=600")
    run.send_signal(signal.SIGTERM)
    run.send_signal(signal.SIGINT)
    _, stderr = run.communicate(timeout=60)
    assert run.returncode == 2 and "stopped at once by a second signal" in stderr, stderr[-2000:]
    assert "Traceback" not in stderr
    clone(tmp_path, *LONGER)
    assert sample_hashes(tmp_path) == longer_reference


@pytest.fixture
def small_disk(tmp_path):
    """A 768 KiB tmpfs: room for the searches (about 570 KB with their reusable renders) and a few shards, not for
    the whole clone."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    p = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=768k", "tmpfs", str(mnt)], capture_output=True, text=True)
    if p.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here (needs root): {p.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def test_a_full_disk_commits_no_partial_shard_and_says_so(small_disk, reference):
    p = clone_cli(small_disk, "cluster=inline")  # the disk is the subject: the worker runs in the driver's process
    assert p.returncode == 1 and "No space left on device" in p.stderr and "Traceback" not in p.stderr, p.stderr[-2000:]
    assert "failed after" in p.stderr  # the shard units that could not be written are reported as failed
    valid, problems = Manifest(Storage(small_disk)).validate("deep")
    assert not problems and 0 < len(valid) < 12  # what was committed is whole; nothing half-written
    assert not list(small_disk.rglob("*.tmp")) and len(list(small_disk.glob("shard-*.tar"))) == len(valid)
    subprocess.run(["mount", "-o", "remount,size=4m", str(small_disk)], check=True)  # space freed: resume
    assert clone(small_disk, "cluster=inline")["shards_reused"] == len(valid)
    assert sample_hashes(small_disk) == reference[2]


def test_a_unit_that_keeps_failing_is_reported(tmp_path):
    import numpy as np
    from PIL import Image

    root = tmp_path / "folder"
    for name in ("circle", "square", "crescent", "star", "cross"):
        (root / name).mkdir(parents=True)
    # greyscale, 16-bit and transparent inputs simply work
    (root / "circle" / "0.png").write_bytes(b"")  # an empty file is passed over for the next image
    Image.new("L", (32, 32), 90).save(root / "circle" / "1.png")
    Image.fromarray(np.full((32, 32), 30000, np.uint16)).save(root / "square" / "0.png")
    Image.new("RGBA", (32, 32), (200, 30, 30, 128)).save(root / "crescent" / "0.png")
    # star has no image, cross a corrupt one: their searches can never start
    (root / "cross" / "0.png").write_bytes(b"\x89PNG not really")
    p = clone_cli(tmp_path / "out", "dataset=imagefolder", f"dataset.root={root}", "dataset.only=null", "search=random",
                  "env.budget=20", "reward=pixel_stats", "reward.semantic_encoder.samples_per_choice=4")
    assert p.returncode == 1
    # an input error is not retried: the same file fails the same way every time
    assert "search:star failed (not retried" in p.stderr and "has 0 readable images" in p.stderr
    assert "search:cross failed (not retried" in p.stderr and "1 unreadable skipped" in p.stderr
    assert p.stderr.count("warning: input skipped for class 'circle': input image") == 1 and "is empty (0 bytes)" in p.stderr
    assert "cannot be read as an image" in p.stderr
    assert "Traceback" not in p.stderr
    s = last_summary(tmp_path / "out")
    assert s["shards_written"] == 9 and len(s["failures"]) == 2  # the other classes are complete and valid
    assert [f["file"] for f in s["inputs_skipped"]["circle"]] == ["circle/0.png"] and "circle/0.png" in (tmp_path / "out" / "README.md").read_text()


def test_dry_run_prints_the_plan(tmp_path):
    plan = dry_run(load([f"paths.output_dir={tmp_path}", *SMALL, "clone.dry_run=true", "clone.throughput=2.0"]))
    assert plan["classes"] == 4 and plan["shards"] == 12 and plan["total_images"] == 48
    assert plan["device_hours_max"] > 0 and not list(tmp_path.glob("shard-*"))


def test_a_class_subset_keeps_the_full_class_axis(tmp_path):
    """`dataset.only` selects classes to clone; the grammar keeps every class, so trained semantic
    encoders (whose heads cover all classes) stay on the grid."""
    s = clone(tmp_path, "dataset.only=[star,cross]", "search=class_name_random", "env.budget=24",
              "clone.images_per_class=4", "env.exclude={colour: [red, blue]}")
    assert s["ok"] and s["shards_written"] == 2
    assert {k.rsplit("_", 1)[0] for k in sample_hashes(tmp_path)} == {"star", "cross"}
    # concept exclusion: no excluded colour in any sample, nor in any state the search rendered
    metas = [json.loads(x["json"]) for x in wds.WebDataset(sorted(str(t) for t in tmp_path.glob("*.tar")), shardshuffle=False)]
    rendered = [c["prompt"] for f in (tmp_path / "searches").glob("*.json") for c in json.loads(f.read_text())["candidates"]]
    assert len(metas) == 8 and len(rendered) == 48
    assert not any(" red " in t or " blue " in t for t in [m["prompt"] for m in metas] + rendered)
