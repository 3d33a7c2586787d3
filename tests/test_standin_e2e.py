"""The 1000-class stand-in (experiment=glyphs1000) end to end on a real local Ray: killed mid-search, it
resumes to a complete clone with every sample once; shards and searches removed afterwards are redone
byte-identically."""

import hashlib
import json

import pytest

import pipeline.clone as clone_api
from helpers.clone import sample_hashes
from helpers.processes import count, crash_when

pytestmark = pytest.mark.slow
# 1000 classes x 2 images in 40 shuffled shards of 50; a short search each (the clone's cost is the 1000 units)
# (one input read: the preset's five inputs and class chosen by renders would add 32 renders to each 8-render search)
STANDIN = ["experiment=glyphs1000", "clone.images_per_class=2", "clone.shard_size=50", "env.budget=8", "clone.progress=false",
           "cluster=inline", "dataset.inputs_per_class=1", "env.class_source=read"]  # in-process: this tests the stand-in, not Ray


def standin(out) -> dict:
    return clone_api.run(clone_api.load([f"paths.output_dir={out}", *STANDIN])).to_dict()


def file_hashes(out):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(out.glob("shard-*.tar"))}


def test_the_1000_class_standin_survives_a_kill_and_redoes_lost_work_identically(tmp_path):
    out = tmp_path / "standin"
    searches = out / "searches"
    crash_when(clone_api.cli_command(f"paths.output_dir={out}", *STANDIN),
               lambda: count(searches, "*.json") >= 150)  # mid-search
    done = len(list(searches.glob("*.json")))
    assert 150 <= done < 1000, done
    s = standin(out)
    assert s["ok"] and s["searches_reused"] >= done - 2 and s["searches_run"] + s["searches_reused"] == 1000
    assert s["shards_written"] == 40 and s["images_written"] == 2000
    assert s["searches_found_class"] / s["searches_run"] > 0.9  # the top-k class axis finds the input's class
    hashes = sample_hashes(out)  # fails on a duplicate key
    assert len(hashes) == 2000 and len({k.rsplit("_", 1)[0] for k in hashes}) == 1000
    before = file_hashes(out)
    manifest = json.loads((out / "manifest.json").read_text())
    assert all(len(r["classes"]) >= 40 for r in manifest["shards"])  # shuffled: each shard mixes many classes
    for shard in ("shard-000003.tar", "shard-000017.tar", "shard-000039.tar"):
        (out / shard).unlink()
        (out / "manifest" / shard.replace(".tar", ".json")).unlink()
    lost = json.loads((out / "manifest" / "shard-000020.json").read_text())["classes"][:2]
    for cls in lost:  # lost searches (result and renders): redone, and the shards that need them wait for them
        (searches / f"{cls}.json").unlink()
    (out / "shard-000020.tar").unlink()
    (out / "manifest" / "shard-000020.json").unlink()
    s = standin(out)
    assert s["ok"] and s["shards_written"] == 4 and s["searches_run"] == 2
    assert file_hashes(out) == before
