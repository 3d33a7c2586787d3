"""clone.shard_order=shuffled (the session's ``shuffled`` clone, in-process): shards mix classes in one global order,
hold exactly the samples a class-order clone holds, and load with webdataset and Hugging Face datasets' webdataset
loader, Ray Data. Their resume after a SIGKILL is tests/test_clone_e2e.py's ``test_a_sigkilled_clone_resumes_byte_identical``."""

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


def test_every_loader_reads_a_shuffled_jpeg_clone(tmp_path, monkeypatch):
    """The README's loaders on a shuffled JPEG clone with the default proposals (clone.propose=inputs: the first
    samples are proposals, whose `reward` is NaN, not null): webdataset, Hugging Face's generic webdataset loader
    (it infers the json's types from the first samples, so every sample's field must have one type) and its folder
    loader (the card's types), and Ray Data. timm's reader needs torchvision, which this environment leaves out."""
    datasets = pytest.importorskip("datasets", reason="datasets is not installed (pip install -e '.[dev]')")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    out = tmp_path / "jpeg"
    clone(out, "cluster=inline", *SHUFFLED, "clone.image_format=jpg")
    files = sorted(str(p) for p in out.glob("shard-*.tar"))
    metas = [json.loads(x["json"]) for x in wds.WebDataset(files, shardshuffle=False)]
    assert any(m["proposed"] for m in metas[:6]) and all(isinstance(m["reward"], float) for m in metas)
    for field in metas[0]:
        assert len({type(m[field]) for m in metas}) == 1, field  # one type per field: no null beside a number

    ds = wds.WebDataset(files, shardshuffle=False).decode("pil").to_tuple("png;jpg;webp", "cls")  # the README's
    assert sum(1 for image, _ in ds if image.size == (32, 32)) == 48
    generic = datasets.load_dataset("webdataset", data_files={"train": files}, split="train", cache_dir=str(tmp_path / "hf"))
    assert generic.num_rows == 48 and {"jpg", "cls", "json", "__key__"} <= set(generic.column_names)
    row = generic[0]
    assert row["jpg"].size == (32, 32) and row["json"]["class_id"] == row["__key__"].rsplit("_", 1)[0]
    assert len({r.rsplit("_", 1)[0] for r in generic["__key__"][:6]}) >= 2  # the first shard already mixes classes
    folder = datasets.load_dataset(str(out), split="train", cache_dir=str(tmp_path / "hf2"))
    assert folder.num_rows == 48 and folder.features["cls"].names[:1] and folder[0]["jpg"].size == (32, 32)
    ray = pytest.importorskip("ray")
    try:
        rows = ray.data.read_webdataset(files).take_all()
    finally:
        ray.shutdown()  # Ray Data started its own local Ray: later clones in this process start theirs
    assert len(rows) == 48 and {r["__key__"] for r in rows} == {r for r in generic["__key__"]}
