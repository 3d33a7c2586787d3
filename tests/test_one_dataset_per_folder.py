"""One dataset per folder, end to end on a local Ray: two launches into one folder never mix, output of another run's
settings is never reused, and damaged bookkeeping is repaired from the records and shards without rewriting one."""

import hashlib
import json
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from helpers import ROOT
from helpers.clone import clone as clone_small, clone_cmd as clone_cmd_small, sample_hashes
from pipeline.clone.layout import Layout

pytestmark = pytest.mark.slow


def clone(out, *overrides, **kw):
    """The SMALL clone in this process (``cluster=inline``): what this module tests is not Ray (tests/test_clone_e2e.py
    and tests/test_cluster_e2e.py are), and an in-process worker starts in a second, not ten."""
    return clone_small(out, "cluster=inline", *overrides, **kw)


def clone_cmd(out, *overrides):
    return clone_cmd_small(out, "cluster=inline", *overrides)


def file_hashes(out: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(out.glob("shard-*.tar"))}


def test_two_launches_into_one_folder_never_mix(reference, tmp_path):
    out = tmp_path / "out"
    procs = {seed: subprocess.Popen(clone_cmd(out, f"seed={seed}"), cwd=ROOT, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, text=True) for seed in (0, 1)}
    results = {seed: (p.wait(timeout=600), p.stderr.read()) for seed, p in procs.items()}
    winners = [seed for seed, (rc, _) in results.items() if rc == 0]
    assert len(winners) == 1, results
    (winner,), loser = winners, 1 - winners[0]
    rc, err = results[loser]
    errors = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert rc != 0 and len(errors) == 1 and "is being written by another run (pid " in errors[0], err
    # the folder holds the winner's dataset only, sample for sample
    expected = reference[2] if winner == 0 else sample_hashes(_clean(tmp_path / "clean", winner))
    assert sample_hashes(out) == expected
    assert not list((out / "lease").glob("*.json"))  # freed when the winner ended
    # the loser's command, run again now the folder is free, is refused by the folder's settings
    p = subprocess.run(clone_cmd(out, f"seed={loser}"), cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert p.returncode != 0 and "was started with other settings" in p.stderr and "seed" in p.stderr


def _clean(out, seed):
    clone(out, f"seed={seed}")
    return out


def _copy(reference, tmp_path) -> Path:
    out = tmp_path / "copy"
    shutil.copytree(reference[0], out)
    return out


def test_output_of_other_settings_is_refused_or_redone_never_reused(reference, tmp_path):
    out = _copy(reference, tmp_path)
    layout = Layout(str(out))
    rec_path = Path(layout.record("shard-000001.tar"))
    rec = json.loads(rec_path.read_text())
    rec["identity"] = "0123456789abcdef"  # a record another run wrote into this folder
    rec_path.write_text(json.dumps(rec))
    search = Path(layout.search("star"))
    body = json.loads(search.read_text())
    body["info"]["identity"] = "0123456789abcdef"
    search.write_text(json.dumps(body))
    from pipeline.errors import ConfigError
    with pytest.raises(ConfigError, match=r"holds 2 files made by a run of other settings \(identity 0123456789abcdef"):
        clone(out)
    s = clone(out, "clone.on_config_change=allow")
    assert s["shards_written"] == 1 and s["searches_run"] == 1
    assert sample_hashes(out) == reference[2] and file_hashes(out) == file_hashes(reference[0])
    assert json.loads(rec_path.read_text())["identity"] == json.loads(Path(layout.run_json).read_text())["identity_hash"]


def test_damaged_bookkeeping_is_repaired_without_rewriting_a_shard(reference, tmp_path):
    out = _copy(reference, tmp_path)
    layout = Layout(str(out))
    before = {p.name: (p.stat().st_mtime_ns, hashlib.sha256(p.read_bytes()).hexdigest()) for p in out.glob("shard-*.tar")}
    record = Path(layout.record("shard-000002.tar"))
    kept_record = json.loads(record.read_text())
    search = Path(layout.search("square"))
    kept_search = search.read_bytes()
    run_json = Path(layout.run_json)
    run_json.write_text(run_json.read_text()[:40])  # truncated
    Path(layout.manifest).write_text("garbage{")
    record.unlink()  # a deleted manifest record
    search.write_bytes(kept_search[: len(kept_search) // 2])  # a truncated search result
    with open(layout.log, "ab") as f:
        f.write(b"\x00junk without a newline")
    s = clone(out)
    assert s["shards_written"] == 0 and s["shards_reused"] == len(before) and s["searches_run"] == 1
    after = {p.name: (p.stat().st_mtime_ns, hashlib.sha256(p.read_bytes()).hexdigest()) for p in out.glob("shard-*.tar")}
    assert after == before  # no shard rewritten
    rebuilt = json.loads(record.read_text())
    assert {k: v for k, v in rebuilt.items()} == kept_record  # the record rebuilt from its shard is the one deleted
    assert search.read_bytes() == kept_search  # the search redone: the same bytes
    assert json.loads(run_json.read_text())["identity_hash"] == kept_record["identity"]
    assert json.loads(Path(layout.manifest).read_text())["samples"] == sum(1 for _ in sample_hashes(out))
    lines = Path(layout.log).read_bytes().split(b"\n")
    events = [json.loads(ln)["event"] for ln in lines[lines.index(b"\x00junk without a newline") + 1:] if ln]
    assert {"bookkeeping_damaged", "record_rebuilt", "config_changed"} <= set(events)


def test_a_sigkilled_run_is_taken_over_at_once(reference, tmp_path):
    out = _copy(reference, tmp_path)
    lease = out / "lease" / "000001.json"
    dead = subprocess.Popen(["true"])
    dead.wait()
    lease.parent.mkdir(exist_ok=True)
    lease.write_text(json.dumps({"run_id": "x", "host": __import__("socket").gethostname(), "pid": dead.pid,
                                 "started": time.time(), "identity": "y", "generation": 1, "heartbeat": time.time()}))
    s = clone(out)
    assert s["shards_written"] == 0 and not list(lease.parent.glob("*.json"))
    log = [json.loads(ln) for ln in Path(Layout(str(out)).log).read_text().splitlines()]
    assert any(e["event"] == "lease_taken_over" and f"pid {dead.pid}" in e["previous"] for e in log)
