"""scripts/evaluate.py end to end on a tiny setting (procedural model, two classes, two methods).

The README's `make eval-quick` is not run here: this only checks that the command wires clones, metrics,
CAS and the markdown together, resumes, and keeps the prose around its tables."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def evaluate(tmp_path, *extra):
    cmd = [sys.executable, str(ROOT / "scripts" / "evaluate.py"), "--model", "procedural", "--reward", "learned_shapes",
           "--classes", "circle,star", "--methods", "class_name,qlearning", "--images-per-class", "6", "--budget", "96",
           "--cas-steps", "30", "--n-cas-test", "60", "--judge-train", "500", "--judge-steps", "40", "--out", str(tmp_path / "eval"),
           "--markdown", str(tmp_path / "results.md"), "--figures", str(tmp_path / "figs"), "--no-progress",
           "--workers", "1", "--set", "cluster=inline", *extra]  # what is tested is the evaluation, not Ray: its clones run in-process
    p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert p.returncode == 0, p.stderr[-3000:]
    return p


def test_evaluate_end_to_end_and_resume(tmp_path):
    evaluate(tmp_path)
    res = json.loads((tmp_path / "eval" / "results.json").read_text())
    assert set(res["rows"]) == {"class_name", "qlearning", "real"}
    for name, row in res["rows"].items():
        m = row["metrics"]
        short = sum(row["clone"]["shortfall"].values()) if "clone" in row else 0  # a class not found is short, not padded
        assert m["n_fake"] == 12 - short and m["n_real"] == res["args"]["n_real"]
        assert 0 <= m["precision"] <= 1 and 0 <= m["recall"] <= 1 and m["fd"] >= 0
        assert 0 <= row["cas"]["accuracy"] <= 1 and row["cas"]["n_train"] == 12 - short
        j = row["judge"]
        assert 0 <= j["class_accuracy"] <= 1 and set(j["entropy"]) == {"colour", "background", "size", "pattern"}
        assert 0 <= j["shortcut_probe"] <= 1 and row["vendi"] >= 1
        assert (tmp_path / "figs" / f"{name}.png").is_file()
    assert res["rows"]["qlearning"]["search"]["renders_max"] <= 96 + 8  # one lockstep batch may cross the budget
    assert set(res["class_names"]) == {"circle", "star"}
    md = (tmp_path / "results.md").read_text()
    assert "RLDF Q-learning" in md and "CAS" in md and "shortcut probe" in md and "](figs/qlearning.png)" in md
    assert res["rows"]["qlearning"]["search"]["accepted_fraction"] > 0

    # prose around the tables survives; a rerun reuses the clones and their recorded timings
    (tmp_path / "results.md").write_text("# Mine\n\nintro\n\n" + md.split("# Results on the shapes world\n\n", 1)[1] + "\noutro\n")
    wall = res["rows"]["qlearning"]["clone"]["wall_s_command"]
    evaluate(tmp_path)
    res2 = json.loads((tmp_path / "eval" / "results.json").read_text())
    assert res2["rows"]["qlearning"]["clone"]["wall_s_command"] == wall
    assert res2["rows"]["qlearning"]["metrics"] == res["rows"]["qlearning"]["metrics"]
    md2 = (tmp_path / "results.md").read_text()
    assert md2.startswith("# Mine\n\nintro\n\n") and md2.rstrip().endswith("outro") and md2.count("eval:begin") == 1


def test_standin_evaluation_end_to_end(tmp_path):
    """scripts/evaluate_standin.py on 8 classes of the CLIP-like stand-in (two families of four), two methods."""
    cmd = [sys.executable, str(ROOT / "scripts" / "evaluate_standin.py"), "--methods", "qlearning,qlearning_k5_rendered",
           "--images-per-class", "2", "--cas-steps", "5", "--n-cas-test", "16", "--out", str(tmp_path / "eval"),
           "--markdown", str(tmp_path / "results.md"), "--no-progress", "--threads", "1",
           "--set", "dataset.num_classes=8", "--set", "cluster=inline"]
    p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert p.returncode == 0, p.stderr[-3000:]
    res = json.loads((tmp_path / "eval" / "results.json").read_text())
    assert set(res["rows"]) == {"qlearning", "qlearning_k5_rendered", "real"} and res["args"]["classes"] == 8
    for name in ("qlearning", "qlearning_k5_rendered"):
        row = res["rows"][name]
        assert 0 <= row["clone"]["label_accuracy"] <= 1 and 0 <= row["misread"] <= 8
        assert 0 <= row["empty_classes"] <= 8 and row["shortfall"] >= 2 * row["empty_classes"]
        assert list(row["entropy"]) == ["colour", "background", "size", "pattern"]  # the grammar's non-class axes
        assert all(0 <= v <= 1 for v in row["entropy"].values() if v == v)  # NaN: no class with two images
        assert row["cas"]["n_train"] == row["clone"]["images_written"] <= 16 and 0 <= row["cas"]["accuracy"] <= 1
    # the candidates' renders (4 classes x 8 seeds per class) count among the search renders
    assert res["rows"]["qlearning_k5_rendered"]["clone"]["search_renders"] >= 8 * 32
    assert res["rows"]["real"]["cas"]["n_train"] == 16 and res["args"]["n_cas_test"] == 16
    md = (tmp_path / "results.md").read_text()
    assert "eval-standin:begin" in md and "class chosen by renders" in md and "| CAS |" in md
    # a rerun resumes the clones and trains only the classifiers whose score is not kept (here: the real set's)
    kept = tmp_path / "eval" / "cas"
    assert sorted(f.name for f in kept.iterdir()) == ["qlearning.json", "qlearning_k5_rendered.json", "real.json"]
    before = (kept / "qlearning.json").stat().st_mtime_ns
    (kept / "real.json").unlink()
    p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert p.returncode == 0, p.stderr[-3000:]
    again = json.loads((tmp_path / "eval" / "results.json").read_text())
    assert (kept / "qlearning.json").stat().st_mtime_ns == before and (kept / "real.json").is_file()
    assert {n: r["cas"] for n, r in again["rows"].items()} == {n: r["cas"] for n, r in res["rows"].items()}
    assert res["cas_kept"] == [] and again["cas_kept"] == ["qlearning", "qlearning_k5_rendered"]
    assert "was kept from an earlier run" in (tmp_path / "results.md").read_text()
