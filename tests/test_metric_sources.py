"""What the metrics read: a clone through its manifest (local and on an S3-protocol server), ImageNet val as it ships
(a flat folder and its label file, every format), and each extractor at the size it was made for."""

import io
import json

import numpy as np
import pytest
from omegaconf import OmegaConf
from PIL import Image

from pipeline.clone.manifest import Manifest
from pipeline.clone.shards import write_shard
from pipeline.errors import InputError
from pipeline.metrics.sources import CloneImages, LabelledFiles, clone_class_labels, open_source
from pipeline.storage import Storage

COLOURS = {"n01440764": (200, 30, 30), "n01443537": (30, 30, 200)}  # tench, goldfish


def png(colour, size=12) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (size, size), colour).save(buf, format="PNG")
    return buf.getvalue()


def write_clone(url: str) -> None:
    """Two committed shards and their records (as the driver writes them), the class labels, and a stray shard that a
    stopped run left without a record."""
    st = Storage(url)
    manifest = Manifest(st)
    for s, (wnid, label) in enumerate((("n01440764", 0), ("n01443537", 1))):
        samples = [{"__key__": f"{wnid}_{i:06d}", "png": png(COLOURS[wnid]), "cls": str(label).encode()} for i in range(3)]
        manifest.add(write_shard(st, f"shard-{s:06d}.tar", samples, [wnid]))
    manifest.consolidate({"class_labels": {"n01440764": 0, "n01443537": 1}})
    write_shard(st, "shard-000002.tar", [{"__key__": "x_000000", "png": png((0, 255, 0)), "cls": b"0"}], ["x"])


def read_all(source):
    return [(int(x[0, 0, 0]), int(y)) for x, y in source]


def test_a_clone_is_read_through_its_manifest(tmp_path):
    write_clone(str(tmp_path / "clone"))
    src = open_source(str(tmp_path / "clone"), 8)
    assert isinstance(src, CloneImages) and len(src.urls) == 2 and src.samples == 6
    assert read_all(src) == [(200, 0)] * 3 + [(30, 1)] * 3  # the stray shard-000002.tar is not read
    assert "2 shards, 6 images" in src.description
    assert clone_class_labels(str(tmp_path / "clone")) == {"n01440764": 0, "n01443537": 1}


def test_a_clone_on_an_object_store_is_read_through_its_manifest(s3_server):
    write_clone("s3://clones/metrics")
    src = open_source("s3://clones/metrics", 8)
    assert isinstance(src, CloneImages) and src.samples == 6
    assert read_all(src) == [(200, 0)] * 3 + [(30, 1)] * 3
    assert clone_class_labels("s3://clones/metrics") == {"n01440764": 0, "n01443537": 1}
    with pytest.raises(InputError, match="not a clone"):
        open_source("s3://clones/nothing-here", 8)


@pytest.fixture()
def val(tmp_path):
    """ImageNet val as it ships: a flat folder of ILSVRC2012_val_*.JPEG (a class each, alternating) and no folders."""
    folder = tmp_path / "val"
    folder.mkdir()
    wnids = []
    for i in range(1, 7):
        wnid = list(COLOURS)[i % 2]
        Image.new("RGB", (16, 16), COLOURS[wnid]).save(folder / f"ILSVRC2012_val_{i:08d}.JPEG", format="JPEG", quality=95)
        wnids.append(wnid)
    return folder, wnids


def check(src, wnids, labels):
    got = read_all(src)
    assert [y for _, y in got] == [labels[w] for w in wnids]
    assert all((r > 150) == (w == "n01440764") for (r, _), w in zip(got, wnids))  # each image carries its own class


def test_imagenet_val_as_it_ships_with_each_label_file(val, tmp_path):
    folder, wnids = val
    names = sorted(p.name for p in folder.iterdir())
    with pytest.raises(InputError, match="no class folders: give its label file"):
        open_source(str(folder), 8)
    files = {
        "solution.csv": "ImageId,PredictionString\n" + "".join(f"{n[:-5]},{w} 1 2 3 4 {w} 5 6 7 8\n" for n, w in zip(names, wnids)),
        "pairs.txt": "".join(f"{n} {w}\n" for n, w in zip(names, wnids)),
        "synsets.txt": "".join(f"{w}\n" for w in wnids),  # TensorFlow's one class per line, in sorted order
    }
    for name, text in files.items():
        (tmp_path / name).write_text(text)
        src = open_source(str(folder), 8, label_file=str(tmp_path / name))
        assert isinstance(src, LabelledFiles) and src.classes == {0: "n01440764", 1: "n01443537"}
        check(src, wnids, {"n01440764": 0, "n01443537": 1})
    # labelled by a clone's class labels (an ImageNet-1k clone: 0 and 1 are tench and goldfish), one class only
    src = open_source(str(folder), 8, labels={"n01443537": 1}, label_file=str(tmp_path / "pairs.txt"))
    assert len(src) == 3 and {y for _, y in read_all(src)} == {1}


def test_the_devkit_ground_truth_is_named_by_its_meta_mat(val, tmp_path):
    from scipy.io import savemat

    folder, wnids = val
    devkit = tmp_path / "devkit" / "data"
    devkit.mkdir(parents=True)
    ids = {"n01443537": 1, "n01440764": 2}  # the devkit's ILSVRC2012_IDs are not in sorted-wnid order
    (devkit / "ILSVRC2012_validation_ground_truth.txt").write_text("".join(f"{ids[w]}\n" for w in wnids))
    with pytest.raises(InputError, match="meta.mat must be beside it"):
        open_source(str(folder), 8, label_file=str(devkit / "ILSVRC2012_validation_ground_truth.txt"))
    synsets = np.array([(i, w, "words", 0) for w, i in ids.items()] + [(1001, "n00001740", "entity", 7)],
                       dtype=[("ILSVRC2012_ID", "O"), ("WNID", "O"), ("words", "O"), ("num_children", "O")])
    savemat(devkit / "meta.mat", {"synsets": synsets.reshape(-1, 1)})
    src = open_source(str(folder), 8, labels={"n01440764": 0, "n01443537": 1},
                      label_file=str(devkit / "ILSVRC2012_validation_ground_truth.txt"))
    check(src, wnids, {"n01440764": 0, "n01443537": 1})


def test_a_label_file_that_does_not_fit_says_so(val, tmp_path):
    folder, _ = val
    (tmp_path / "short.txt").write_text("n01440764\n")
    with pytest.raises(InputError, match="1 lines of one column for 6 images"):
        open_source(str(folder), 8, label_file=str(tmp_path / "short.txt"))
    (tmp_path / "other.txt").write_text("a.JPEG n01440764\n")
    with pytest.raises(InputError, match="names none of the 6 images"):
        open_source(str(folder), 8, label_file=str(tmp_path / "other.txt"))


def test_each_extractor_scores_at_its_own_size_unless_told(tmp_path):
    from pipeline.cli.metrics import scoring_size
    from pipeline.metrics.extractors import ClipFeatures, Dinov2Features
    from pipeline.models import tiny
    from pipeline.models.tokenizer import write_clip_tokenizer

    clip_dir = tmp_path / "clip"
    tok = write_clip_tokenizer(["a red star"], clip_dir)
    tiny.clip_model(len(tok), image_size=48, patch_size=8, hidden=32, layers=1, projection=16).save_pretrained(clip_dir)
    clip = ClipFeatures(str(clip_dir))
    assert scoring_size(OmegaConf.create({"image_size": None}), clip) == (48, None)
    size, warning = scoring_size(OmegaConf.create({"image_size": 32}), clip)
    assert size == 32 and "made for 48 px" in warning
    from transformers import Dinov2Config, Dinov2Model

    Dinov2Model(Dinov2Config(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64, patch_size=14,
                             image_size=224)).save_pretrained(tmp_path / "dino")
    assert scoring_size(OmegaConf.create({"image_size": None}), Dinov2Features(str(tmp_path / "dino"))) == (224, None)


@pytest.mark.slow  # the CLI end to end, in a process
def test_the_metrics_cli_scores_a_clone_folder_against_a_flat_val_folder(val, tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    from pipeline.models import tiny
    from pipeline.models.tokenizer import write_clip_tokenizer

    folder, wnids = val
    write_clone(str(tmp_path / "clone"))
    (tmp_path / "pairs.txt").write_text("".join(f"{p.name} {w}\n" for p, w in zip(sorted(folder.iterdir()), wnids)))
    clip_dir = tmp_path / "clip"
    tiny.clip_model(len(write_clip_tokenizer(["a red star"], clip_dir)), image_size=40, patch_size=8, hidden=32, layers=1,
                    projection=16).save_pretrained(clip_dir)
    root = Path(__file__).resolve().parents[1]
    p = subprocess.run([sys.executable, str(root / "scripts" / "metrics.py"), f"synthetic={tmp_path / 'clone'}", f"real={folder}",
                        f"real_labels={tmp_path / 'pairs.txt'}", "features=clip", f"features.pretrained={clip_dir}", "k=2",
                        "kid_subsets=2", "kid_subset_size=2", "workers=0", "cache_dir=null", f"paths.output_dir={tmp_path / 'out'}"],
                       cwd=root, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    res = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert res["image_size"] == res["extractor_input_size"] == 40 and "warning" not in res and res["device"] == "cpu"
    assert res["overall"]["n_real"] == 6 and res["overall"]["n_fake"] == 6
    assert set(res["per_class"]) == {"n01440764", "n01443537"}
