"""clone.shard_order=shuffled (the session's ``shuffled`` clone, in-process): shards mix classes in one global order,
hold exactly the samples a class-order clone holds, and load with webdataset and Hugging Face datasets' webdataset
loader. Their resume after a SIGKILL is tests/test_clone_e2e.py's ``test_a_sigkilled_clone_resumes_byte_identical``."""

import json

import pytest
import webdataset as wds

from helpers.clone import SHUFFLED, clone, sample_hashes

pytestmark = pytest.mark.slow


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


def test_shuffled_shards_load_with_hugging_face_datasets(tmp_path, monkeypatch):
    """Hugging Face's generic webdataset loader infers the json's types from the first samples: with random proposals
    the first shard holds search renders (a float `reward`); a first batch of proposals only (`reward` null, as
    clone.propose=inputs gives here) fails to cast (issue 45; `load_dataset(<folder>)` reads the card's types)."""
    datasets = pytest.importorskip("datasets", reason="datasets is not installed (pip install -e '.[dev]')")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    out = tmp_path / "random"
    clone(out, "cluster=inline", *SHUFFLED, "clone.propose=random")
    files = sorted(str(p) for p in out.glob("shard-*.tar"))
    ds = datasets.load_dataset("webdataset", data_files={"train": files}, split="train", cache_dir=str(tmp_path / "hf"))
    assert ds.num_rows == 48 and {"png", "cls", "json", "__key__"} <= set(ds.column_names)
    row = ds[0]
    assert row["png"].size == (32, 32) and row["json"]["class_id"] == row["__key__"].rsplit("_", 1)[0]
    assert len({r.rsplit("_", 1)[0] for r in ds["__key__"][:6]}) >= 2  # the first shard already mixes classes
