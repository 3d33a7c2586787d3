"""The clone folder is a dataset: its card (README.md) lets ``datasets.load_dataset(folder)`` read the shards, with the
classes' names on the label, and ``_info.json`` lets timm's WebDataset reader list them; a resume rewrites both."""

from __future__ import annotations

import io
import json
import tarfile

import pytest
import yaml

from helpers.clone import CLASSES, clone as clone_small
from pipeline.clone.card import SAMPLE_FIELDS, label_names, size_category
from pipeline.clone.dataset import ClassInfo

datasets = pytest.importorskip("datasets", reason="datasets is not installed (pip install -e '.[dev]')")
SHAPES = ["circle", "octagon", "hexagon", "pentagon", "square", "diamond", "triangle", "star", "cross", "crescent"]


def clone(out, *overrides, **kw):
    """The SMALL clone in this process (``cluster=inline``): what this module tests is not Ray (tests/test_clone_e2e.py
    and tests/test_cluster_e2e.py are), and an in-process worker starts in a second, not ten."""
    return clone_small(out, "cluster=inline", *overrides, **kw)


def load(folder, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    return datasets.load_dataset(str(folder), split="train", cache_dir=str(tmp_path / "hf"))


def card_header(text: str) -> dict:
    assert text.startswith("---\n")
    return yaml.safe_load(text.split("---\n", 2)[1])


def raw_samples(folder) -> dict[str, dict]:
    """Every sample's json as the shards hold it, by key."""
    out = {}
    for shard in sorted(folder.glob("shard-*.tar")):
        with tarfile.open(shard) as tar:
            for m in tar:
                if m.name.endswith(".json"):
                    out[m.name.split(".", 1)[0]] = json.load(io.BytesIO(tar.extractfile(m).read()))
    return out


def test_label_names_are_the_class_names_in_label_order_and_ids_where_names_repeat():
    classes = [ClassInfo(1, "n2", "crane"), ClassInfo(0, "n1", "tench")]
    assert label_names(classes) == ["tench", "crane"]
    twice = [ClassInfo(0, "n1", "crane"), ClassInfo(1, "n2", "crane")]  # ImageNet has two cranes
    assert label_names(twice) == ["n1", "n2"]
    assert label_names([ClassInfo(2, "c", "c")]) == ["0", "1", "c"]  # labels no class holds keep their number


@pytest.mark.parametrize("n, bucket", [(0, "n<1K"), (999, "n<1K"), (1000, "1K<n<10K"), (48_000, "10K<n<100K"),
                                       (1_281_167, "1M<n<10M")])
def test_size_category_is_the_hubs_bucket(n, bucket):
    assert size_category(n) == bucket


@pytest.mark.slow
def test_load_dataset_reads_a_clone_folder_with_class_names(reference, tmp_path, monkeypatch):
    folder, summary, _ = reference
    card = (folder / "README.md").read_text()
    head = card_header(card)
    assert head["configs"][0]["data_files"] == [{"split": "train", "path": "shard-*.tar"}]
    assert head["license"] == "apache-2.0" and head["size_categories"] == ["n<1K"]
    ds = load(folder, tmp_path, monkeypatch)
    assert ds.num_rows == summary["images_written"] == 48
    assert ds.features["cls"].names == SHAPES
    raw = raw_samples(folder)
    assert set(ds["__key__"]) == set(raw)
    for row in ds:
        assert ds.features["cls"].int2str(row["cls"]) == row["json"]["class_name"] == row["__key__"].rsplit("_", 1)[0]
        same = json.dumps(row["json"], sort_keys=True) == json.dumps(raw[row["__key__"]], sort_keys=True)  # NaN as NaN
        assert same  # every field of the sample's json, none lost or added
        assert row["png"].size == (32, 32)
    assert set(SAMPLE_FIELDS) == set(next(iter(raw.values())))
    assert "| 48 | 4 | 12 |" in card and "launched with the Python API" in card


def check_timm_info(folder, images):
    """``_info.json`` as timm's WebDataset reader reads split "train" (``timm/data/readers/reader_wds.py``,
    ``_parse_split_info``: ``splits[split]`` with name, num_samples, filenames and shard_lengths, the file names
    relative to the folder): every shard once, in order, each with its number of samples. (timm needs torchvision,
    which this project's environments leave out, so the test reads the file as timm documents it.)"""
    split = json.loads((folder / "_info.json").read_text())["splits"]["train"]
    assert set(split) >= {"name", "num_samples", "filenames", "shard_lengths"} and split["name"] == "train"
    shards = sorted(p.name for p in folder.glob("shard-*.tar"))
    assert split["filenames"] == shards and split["num_samples"] == images == sum(split["shard_lengths"])
    for name, n in zip(split["filenames"], split["shard_lengths"]):
        with tarfile.open(folder / name) as tar:
            assert len({m.name.split(".", 1)[0] for m in tar}) == n


@pytest.mark.slow
@pytest.mark.parametrize("store", ["local", "s3"])
def test_a_resume_rewrites_the_card_and_timms_info(store, request, tmp_path, monkeypatch):
    """A folder of one class, then a resume that adds three: the card and ``_info.json`` are rewritten, and the
    dataset loads; on local disk, and on an object store (moto's S3 server) once copied as its card says."""
    monkeypatch.chdir(tmp_path)
    if store == "s3":
        fs, out = request.getfixturevalue("s3_server"), "s3://clones/card"

        def copied(name):  # what the card says to do: copy the folder, then load it
            fs.get("clones/card/", str(tmp_path / name), recursive=True)
            return tmp_path / name
    else:
        out = tmp_path / "grown"

        def copied(name):
            return out
    clone(out, "dataset.only=[circle]")
    folder = copied("first")
    assert "| 12 | 1 | 3 |" in (folder / "README.md").read_text()
    check_timm_info(folder, 12)
    s = clone(out, CLASSES)  # class order: the other classes' shards join the folder
    assert s["shards_reused"] == 3
    folder = copied("after")
    check_timm_info(folder, 48)
    card = (folder / "README.md").read_text()
    assert "| 48 | 4 | 12 |" in card and "48 synthetic images of 4 of the 10 classes" in card
    assert ("aws s3 sync s3://clones/card path/to/card" in card) == (store == "s3")
    ds = load(folder, tmp_path, monkeypatch)
    assert ds.num_rows == 48 and ds.features["cls"].names[7] == "star"
    assert sorted({ds.features["cls"].int2str(c) for c in ds["cls"]}) == ["circle", "cross", "square", "star"]


def test_the_card_lists_per_class_how_many_images_passed():
    from pipeline.clone.card import _per_class
    from pipeline.clone.shards import ShardRecord

    records = [ShardRecord("shard-000000.tar", ["a", "b"], 7, 1, "x", "y", missing=1, class_counts={"a": 4, "b": 3},
                           missing_by_class={"b": 1}, failed_by_class={"a": 2})]
    lines = _per_class(records, {"a": 2}, {"b": 1})
    assert "| a | 2 | 2 | 0 |" in lines and "| b | 3 | 0 | 1 |" in lines
    assert _per_class(records, {}, {}) == []
