"""Metric numerics against references, extractors on tiny random real architectures, the metrics CLI."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from prdc import compute_prdc
from scipy import linalg

from pipeline.metrics.features import FeatureSet
from pipeline.metrics.prdc import prdc
from pipeline.metrics.scores import Distances, frechet_distance, score_sets

ROOT = Path(__file__).resolve().parents[1]


def reference_fd(a, b):
    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = linalg.sqrtm(s1 @ s2).real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * covmean))


def test_fd_matches_a_scipy_reference():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(600, 24))
    b = rng.normal(0.2, 1.3, size=(500, 24)) @ rng.normal(size=(24, 24)) * 0.3
    assert frechet_distance(a, b) == pytest.approx(reference_fd(a, b), rel=1e-4)


def test_identical_sets_score_perfectly():
    x = np.random.default_rng(1).normal(size=(300, 16))
    assert abs(frechet_distance(x, x)) < 1e-6
    m = prdc(torch.from_numpy(x), torch.from_numpy(x), k=3)
    assert m["precision"] == 1.0 and m["recall"] == 1.0 and m["coverage"] == 1.0


def test_a_growing_shift_worsens_fd_and_precision():
    rng = np.random.default_rng(2)
    real = rng.normal(size=(800, 8))
    fds, precisions = [], []
    for shift in (0.0, 0.5, 1.0, 2.0):
        fake = rng.normal(size=(800, 8)) + shift
        fds.append(frechet_distance(real, fake))
        precisions.append(prdc(torch.from_numpy(real), torch.from_numpy(fake), 3)["precision"])
    assert fds == sorted(fds) and precisions == sorted(precisions, reverse=True)
    assert precisions[-1] < 0.5 * precisions[0]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_prdc_agrees_with_the_reference_package(seed):
    rng = np.random.default_rng(seed)
    real, fake = rng.normal(size=(700, 32)), rng.normal(0.1, 1.1, size=(600, 32))
    ref = compute_prdc(real, fake, nearest_k=3)
    ours = prdc(torch.from_numpy(real), torch.from_numpy(fake), 3, 128)  # chunked as the metrics CLI calls it
    for key in ("precision", "recall", "density", "coverage"):
        assert ours[key] == pytest.approx(float(ref[key]), abs=1e-6)


def test_per_class_metrics_on_a_three_class_toy_set():
    rng = np.random.default_rng(3)
    centres = np.eye(3, 6) * 5
    labels = np.repeat([0, 1, 2], 100)
    real = FeatureSet((rng.normal(size=(300, 6)) + centres[labels]).astype(np.float32), labels, {}, "real")
    fake_feats = rng.normal(size=(300, 6)) + centres[labels]
    fake_feats[labels == 2] += 3.0  # class 2 is cloned badly
    fake = FeatureSet(fake_feats.astype(np.float32), labels, {}, "fake")
    res = score_sets(real, fake, kid_subsets=10, kid_subset_size=50, class_names={0: "a", 1: "b", 2: "c"})
    per = res["per_class"]
    assert set(per) == {"a", "b", "c"} and all(per[c]["n_real"] == per[c]["n_fake"] == 100 for c in per)
    assert per["c"]["fd"] > 5 * max(per["a"]["fd"], per["b"]["fd"])
    assert per["c"]["precision"] < per["a"]["precision"]
    # one pair of metric objects serves every class: reset between classes, nothing carries over
    for name, lab in (("a", 0), ("c", 2)):
        fresh = Distances(6, kid_subsets=10, kid_subset_size=50)
        r, f = real.features[labels == lab], fake.features[labels == lab]
        assert per[name]["fd"] == fresh.frechet(r, f) and (per[name]["kid"], per[name]["kid_std"]) == fresh.kernel(r, f)


def test_clip_and_dinov2_extractors_on_tiny_random_models(tmp_path, grammar):
    from transformers import Dinov2Config, Dinov2Model

    from pipeline.metrics.extractors import ClipFeatures, Dinov2Features
    from pipeline.models import tiny
    from pipeline.models.tokenizer import write_clip_tokenizer

    tok = write_clip_tokenizer(["a red star"], tmp_path / "clip")
    tiny.clip_model(len(tok), hidden=32, layers=1, projection=16).save_pretrained(tmp_path / "clip")
    Dinov2Model(Dinov2Config(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64, patch_size=14,
                             image_size=56)).save_pretrained(tmp_path / "dino")
    images = torch.randint(0, 256, (5, 3, 40, 40), dtype=torch.uint8)
    clip = ClipFeatures(str(tmp_path / "clip"))
    assert clip(images).shape == (5, 16) and clip.num_features == 16
    dino = Dinov2Features(str(tmp_path / "dino"), image_size=56)
    assert dino(images).shape == (5, 32) and dino.num_features == 32


def test_inception_without_torch_fidelity_is_a_clear_error():
    pytest.importorskip("torchmetrics")
    try:
        import torch_fidelity  # noqa: F401
        pytest.skip("torch-fidelity is installed here")
    except ImportError:
        pass
    from pipeline.errors import ConfigError
    from pipeline.metrics.extractors import InceptionFeatures

    with pytest.raises(ConfigError, match=r"pip install -e '.\[inception\]'"):
        InceptionFeatures()


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory):
    from pipeline.models import tiny
    from pipeline.models.tokenizer import write_clip_tokenizer

    d = tmp_path_factory.mktemp("clip")
    tok = write_clip_tokenizer(["a red star"], d)
    torch.manual_seed(0)
    tiny.clip_model(len(tok), hidden=32, layers=1, projection=16).save_pretrained(d)
    return d


def run_metrics(*overrides):
    return subprocess.run([sys.executable, str(ROOT / "scripts" / "metrics.py"), *overrides], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)


@pytest.mark.slow  # the CLI end to end, in a process
def test_metrics_cli_real_vs_real_with_cache(tmp_path, clip_dir):
    common = [f"features.pretrained={clip_dir}", "shapes_n=120", "kid_subsets=5", "workers=2", f"cache_dir={tmp_path / 'cache'}"]
    p = run_metrics("synthetic=shapes:train", "real=shapes:val", f"paths.output_dir={tmp_path / 'a'}", *common)
    assert p.returncode == 0, p.stderr[-2000:]
    res = json.loads((tmp_path / "a" / "metrics.json").read_text())
    assert res["overall"]["n_real"] == res["overall"]["n_fake"] == 120
    assert len(res["per_class"]) >= 8 and "clip:" in res["extractor"]
    html = (tmp_path / "a" / "report.html").read_text()
    assert "data:image/png;base64" in html and "Per class" in html
    # the second run scores against the same real side: its features come from the cache
    p = run_metrics("synthetic=shapes:test", "real=shapes:val", f"paths.output_dir={tmp_path / 'b'}", *common)
    assert p.returncode == 0, p.stderr[-2000:]
    assert json.loads((tmp_path / "b" / "metrics.json").read_text())["features_cached"] == {"real": True, "synthetic": False}


@pytest.mark.slow  # the CLI end to end, in a process
def test_metrics_cli_reads_clone_shards_and_names_a_corrupt_image(tmp_path, clip_dir, world):
    from pipeline.clone.shards import write_shard
    from pipeline.storage import Storage
    import io

    def png(i):
        buf = io.BytesIO()
        world.sample(i).image.save(buf, format="PNG")
        return buf.getvalue()

    st = Storage(tmp_path / "shards")
    write_shard(st, "shard-000000.tar", [{"__key__": f"c_{i:06d}", "png": png(i), "cls": b"0"} for i in range(20)], ["c"])
    good = run_metrics(f"synthetic={tmp_path / 'shards'}", "real=shapes:val", "shapes_n=40", f"features.pretrained={clip_dir}",
                       f"paths.output_dir={tmp_path / 'out'}", "kid_subsets=5", "cache_dir=null")
    assert good.returncode == 0, good.stderr[-2000:]
    write_shard(st, "shard-000001.tar", [{"__key__": "bad_000000", "png": b"not a png", "cls": b"1"}], ["bad"])
    bad = run_metrics(f"synthetic={tmp_path / 'shards'}", "real=shapes:val", "shapes_n=40", f"features.pretrained={clip_dir}",
                      f"paths.output_dir={tmp_path / 'out2'}", "cache_dir=null")
    errors = [ln for ln in bad.stderr.splitlines() if ln.startswith("error:")]
    assert bad.returncode == 2 and len(errors) == 1 and "Traceback" not in bad.stderr
    assert "cannot read image 'bad_000000'" in errors[0] and "shard-000001.tar" in errors[0]


@pytest.mark.slow  # the CLI end to end, in a process
def test_metrics_cli_empty_input(tmp_path, clip_dir):
    (tmp_path / "empty" / "cls").mkdir(parents=True)
    p = run_metrics(f"synthetic={tmp_path / 'empty'}", "real=shapes:val", "shapes_n=20", f"features.pretrained={clip_dir}",
                    f"paths.output_dir={tmp_path / 'out'}", "cache_dir=null")
    errors = [ln for ln in p.stderr.splitlines() if ln.startswith("error:")]
    assert p.returncode == 2 and len(errors) == 1 and "has no images" in errors[0] and "Traceback" not in p.stderr


def test_one_reader_for_inputs_and_metrics_and_the_clone_labels_a_real_tree(tmp_path):
    """The clone's input reader and the metrics' folder source take the same files (".JPEG" too), and a real
    ImageFolder tree of ImageNet-100 wnids is labelled with the clone's ImageNet-1k labels, not 0..99."""
    import json

    from PIL import Image

    from pipeline.clone.dataset import ImageFolderDataset
    from pipeline.metrics.sources import clone_class_labels, open_source

    real = tmp_path / "real"
    for wnid, colour in (("n01532829", "red"), ("n01558993", "blue")):
        (real / wnid).mkdir(parents=True)
        Image.new("RGB", (8, 8), colour).save(real / wnid / "a.JPEG", format="JPEG")
        Image.new("RGB", (8, 8), colour).save(real / wnid / "b.png")
        (real / wnid / ".hidden.png").write_bytes(b"")
        (real / wnid / "notes.txt").write_text("not an image")
    clone = tmp_path / "clone"
    clone.mkdir()
    (clone / "manifest.json").write_text(json.dumps({"shards": [], "class_labels": {"n01532829": 11, "n01558993": 15}}))
    data = ImageFolderDataset(str(real), [{"wnid": "n01532829", "name": "house finch"}, {"wnid": "n01558993", "name": "robin"}])
    assert data.input_image(data.classes()[0]).getpixel((0, 0))[0] > 200  # a.JPEG, the first image file
    unlabelled = open_source(str(real), 8)
    assert sorted(label for _, label in unlabelled.files) == [0, 0, 1, 1] and len(unlabelled.files) == 4
    labelled = open_source(str(real), 8, labels=clone_class_labels(str(clone)))
    assert [label for _, label in labelled.files] == [11, 11, 15, 15] and labelled.classes == {11: "n01532829", 15: "n01558993"}
    assert labelled.fingerprint != unlabelled.fingerprint  # cached features carry their labels
    assert [int(y) for _, y in (labelled[i] for i in range(4))] == [11, 11, 15, 15]
