"""clone.shard_order=shuffled on a real local Ray: shards mix classes in one global order, hold exactly the
samples a class-order clone holds, resume byte-identically after a SIGKILL, and load with webdataset and
Hugging Face datasets' webdataset loader."""

import hashlib
import json

import pytest
import webdataset as wds

from helpers.clone import clone as clone_small, clone_cmd as clone_cmd_small, sample_hashes
from helpers.processes import count, crash_when

pytestmark = pytest.mark.slow
SHUFFLED = ["clone.shard_order=shuffled", "clone.shard_size=6"]  # 4 classes x 12 images in 8 shards


def clone(out, *overrides, **kw):
    """The SMALL clone in this process (``cluster=inline``): what this module tests is not Ray (tests/test_clone_e2e.py
    and tests/test_cluster_e2e.py are), and an in-process worker starts in a second, not ten."""
    return clone_small(out, "cluster=inline", *overrides, **kw)


def clone_cmd(out, *overrides):
    return clone_cmd_small(out, "cluster=inline", *overrides)


def file_hashes(out):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(out.glob("shard-*.tar"))}


@pytest.fixture(scope="module")
def shuffled(tmp_path_factory):
    out = tmp_path_factory.mktemp("shuffled")
    return out, clone(out, *SHUFFLED)


def test_shuffled_shards_mix_classes_and_hold_the_class_order_samples(shuffled, reference):
    out, s = shuffled
    assert s["ok"] and s["shards_total"] == s["shards_written"] == 8 and s["images_written"] == 48
    assert sample_hashes(out) == reference[2]  # the same 48 samples, byte for byte, in another arrangement
    manifest = json.loads((out / "manifest.json").read_text())
    for rec in manifest["shards"]:
        keys = [x["__key__"] for x in wds.WebDataset(str(out / rec["shard"]), shardshuffle=False)]
        classes = [k.rsplit("_", 1)[0] for k in keys]
        assert len(set(classes)) >= 2 and rec["count"] == 6
        assert rec["class_counts"] == {c: classes.count(c) for c in rec["classes"]}  # the manifest's histogram
    positions = [k for rec in manifest["shards"] for k in
                 (x["__key__"] for x in wds.WebDataset(str(out / rec["shard"]), shardshuffle=False))]
    assert positions != sorted(positions)  # not class order


def test_shuffled_resume_after_sigkill_is_byte_identical(shuffled, tmp_path):
    ref_out, _ = shuffled
    out = tmp_path / "killed"
    records = out / "manifest"
    # one worker, one unit at a time: with reused search renders a shard takes milliseconds, and two workers
    # could commit all 8 between two polls (seen on a clean-clone run)
    crash_when(clone_cmd(out, *SHUFFLED, "cluster.num_workers=1", "cluster.units_per_worker=1", "cluster.max_in_flight=1"),
               lambda: count(records, "*.json") > 0, timeout=240)
    done_at_kill = len(list(records.glob("*.json")))
    assert 1 <= done_at_kill < 8
    s = clone(out, *SHUFFLED)
    assert s["ok"] and s["shards_reused"] >= done_at_kill - 1 and s["shards_reused"] + s["shards_written"] == 8
    assert file_hashes(out) == file_hashes(ref_out)  # every shard file, not just the samples


def test_shuffled_shards_load_with_hugging_face_datasets(shuffled, tmp_path, monkeypatch):
    datasets = pytest.importorskip("datasets", reason="datasets is not installed (pip install -e '.[dev]')")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    out, _ = shuffled
    files = sorted(str(p) for p in out.glob("shard-*.tar"))
    ds = datasets.load_dataset("webdataset", data_files={"train": files}, split="train", cache_dir=str(tmp_path / "hf"))
    assert ds.num_rows == 48 and {"png", "cls", "json", "__key__"} <= set(ds.column_names)
    row = ds[0]
    assert row["png"].size == (32, 32) and row["json"]["class_id"] == row["__key__"].rsplit("_", 1)[0]
    assert len({r.rsplit("_", 1)[0] for r in ds["__key__"][:6]}) >= 2  # the first shard already mixes classes
