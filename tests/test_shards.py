"""Atomic shards, the manifest and its validation, the plan (no Ray)."""

import json
import os

import pytest

from pipeline.clone.dataset import ClassInfo
from pipeline.clone.layout import Layout
from pipeline.clone.manifest import Manifest
from pipeline.clone.plan import ClonePlan
from pipeline.clone.shards import tar_keys, verify_shard, write_shard
from pipeline.errors import ConfigError
from pipeline.storage import Storage


def samples(n, tag=b"x"):
    return [{"__key__": f"c_{i:06d}", "png": tag * (100 + i), "cls": b"0"} for i in range(n)]


def test_shard_bytes_depend_only_on_samples(tmp_path):
    a = write_shard(Storage(tmp_path / "a"), "shard-000000.tar", samples(5), ["c"])
    b = write_shard(Storage(tmp_path / "b"), "shard-000000.tar", samples(5), ["c"])
    same = lambda r: {**r.to_dict(), "stamp": None}  # noqa: E731  (the stamp is the store's, e.g. an mtime)
    assert same(a) == same(b) and a.count == 5
    assert (tmp_path / "a" / "shard-000000.tar").read_bytes() == (tmp_path / "b" / "shard-000000.tar").read_bytes()
    assert not [p for p in os.listdir(tmp_path / "a") if p.endswith(".tmp")]


def test_verify_detects_missing_truncated_and_corrupt(tmp_path):
    st = Storage(tmp_path)
    rec = write_shard(st, "shard-000001.tar", samples(4), ["c"])
    assert verify_shard(st, rec, "deep") is None
    path = tmp_path / rec.shard
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    assert "size" in verify_shard(st, rec, "deep")
    flipped = bytearray(data)
    flipped[700] ^= 0xFF
    path.write_bytes(bytes(flipped))
    assert verify_shard(st, rec, "deep") == "sha256 mismatch"
    assert verify_shard(st, rec, "fast") == "sha256 mismatch"  # rewritten: the stamp changed, so it is read
    path.unlink()
    assert verify_shard(st, rec, "deep") == verify_shard(st, rec, "fast") == "missing"


def test_fast_verification_reads_nothing_while_the_stamp_holds(tmp_path, monkeypatch):
    st = Storage(tmp_path)
    rec = write_shard(st, "shard-000001.tar", samples(4), ["c"])
    monkeypatch.setattr(st, "read_bytes", lambda rel: pytest.fail(f"fast verification read {rel}"))
    assert verify_shard(st, rec, "fast") is None
    copied = {**rec.to_dict(), "stamp": "mtime_ns:1"}  # a copied folder: other stamps, same bytes
    monkeypatch.undo()
    assert verify_shard(st, type(rec)(**copied), "fast") is None  # re-verified deeply, not redone


def test_tar_keys_rejects_a_truncated_tar(tmp_path):
    st = Storage(tmp_path)
    rec = write_shard(st, "s.tar", samples(3), ["c"])
    data = (tmp_path / rec.shard).read_bytes()
    assert tar_keys(data) == ["c_000000", "c_000001", "c_000002"]
    with pytest.raises(Exception):
        tar_keys(data[:1000])


def test_manifest_lists_and_validates(tmp_path):
    st = Storage(tmp_path)
    m = Manifest(st)
    recs = [write_shard(st, f"shard-{i:06d}.tar", samples(2, bytes([65 + i])), ["c"]) for i in range(3)]
    for r in recs:
        m.add(r)
    (tmp_path / recs[1].shard).write_bytes(b"garbage")
    valid, problems = m.validate("deep")
    assert set(valid) == {recs[0].shard, recs[2].shard} and set(problems) == {recs[1].shard}
    m.consolidate()
    assert (tmp_path / "manifest.json").exists()


def test_storage_cleans_leftover_temporaries(tmp_path):
    st = Storage(tmp_path)
    tmp = st.local_tmp("shard-000000.tar")
    open(tmp, "wb").write(b"partial")
    assert not st.exists("shard-000000.tar")  # never visible under its final name
    assert st.clean_tmp() == 1 and not os.path.exists(tmp)


def test_plan_splits_classes_into_named_shards():
    classes = [ClassInfo(i, f"c{i}", f"c{i}") for i in range(3)]
    plan = ClonePlan(classes, images_per_class=45, shard_size=20, order="class", seed=0)
    units = [u for u in plan.shard_units() if u.classes == (classes[1],)]
    assert [(u.shard, u.indices(0)[0], u.count) for u in units] == [
        ("shard-000003.tar", 0, 20), ("shard-000004.tar", 20, 20), ("shard-000005.tar", 40, 5)]
    assert plan.num_shards == 9 == len(plan.shard_units()) and plan.total_images == 135
    with pytest.raises(ConfigError, match="no classes"):
        ClonePlan([], 4, 4, "class", 0)


def test_shuffled_plan_mixes_classes_and_places_every_sample_once():
    classes = [ClassInfo(i, f"c{i}", f"c{i}") for i in range(50)]
    plan = ClonePlan(classes, images_per_class=40, shard_size=100, order="shuffled", seed=3)
    units = plan.shard_units()
    assert len(units) == plan.num_shards == 20 and [u.shard for u in units] == [Layout.shard_name(j) for j in range(20)]
    places = [(u.classes[k].id, i) for u in units for k, i in u.members.tolist()]
    assert sorted(places) == sorted((c.id, i) for c in classes for i in range(40))  # each sample once
    assert min(len(u.classes) for u in units) >= 35  # 100 samples of 50 classes: nearly every class in every shard
    again = ClonePlan(classes, 40, 100, order="shuffled", seed=3).shard_units()
    assert all((a.members == b.members).all() and a.classes == b.classes for a, b in zip(units, again))
    other = ClonePlan(classes, 40, 100, order="shuffled", seed=4).shard_units()
    assert any((a.members != b.members).any() for a, b in zip(units, other))


def test_shuffled_blocks_mix_the_classes_of_one_block_and_place_every_sample_once():
    classes = [ClassInfo(i, f"c{i}", f"c{i}") for i in range(50)]
    plan = ClonePlan(classes, images_per_class=40, shard_size=100, order="shuffled", seed=3, shuffle_classes=10)
    units = plan.shard_units()
    places = [(u.classes[k].id, i) for u in units for k, i in u.members.tolist()]
    assert sorted(places) == sorted((c.id, i) for c in classes for i in range(40))  # each sample once
    blocks = [{int(c.id[1:]) // 10 for c in u.classes} for u in units]
    assert all(len(b) == 1 for b in blocks) and [b.pop() for b in blocks] == [j // 4 for j in range(20)]  # 4 shards a block
    assert min(len(u.classes) for u in units) >= 9  # a shard mixes its block's classes
    whole = ClonePlan(classes, 40, 100, order="shuffled", seed=3, shuffle_classes=50).shard_units()  # one block: today's order
    assert all((a.members == b.members).all() and a.classes == b.classes
               for a, b in zip(whole, ClonePlan(classes, 40, 100, order="shuffled", seed=3).shard_units()))


def test_the_event_log_lives_beside_the_shards_on_an_object_store(tmp_path, monkeypatch):
    from pipeline.clone.events import EventLog
    from pipeline.clone.layout import LAYOUT

    monkeypatch.chdir(tmp_path)  # it used to land in the working directory
    for run in range(2):  # no appends on an object store: each run's events follow the earlier ones
        event = EventLog(Storage("memory://bucket/run"))
        event("plan", run=run)
        event("summary", run=run)
        event.upload()
    lines = Storage("memory://bucket/run").read_bytes(LAYOUT.log).decode().splitlines()
    assert [(json.loads(x)["event"], json.loads(x)["run"]) for x in lines] == [("plan", 0), ("summary", 0), ("plan", 1), ("summary", 1)]
    assert not os.listdir(tmp_path)
