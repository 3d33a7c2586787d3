"""Settings the clone refuses, and a cluster it cannot use: the console command in this process (its exit status 2 and
the one line on stderr; tests/test_configs.py runs it as a process once). Apart from tests/test_clone_e2e.py, whose
in-process clones share one Ray: these start (or fail to reach) their own."""

import pytest

from helpers.clone import SMALL

pytestmark = pytest.mark.slow  # two cases start a local Ray


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["dataset.only=[circle,elephant]"], "unknown class 'elephant'"),
        (["dataset=imagefolder", "dataset.root=/no/such/root"], "dataset.root '/no/such/root' does not exist"),
        (["seed=abc"], "seed must be an integer, got 'abc'"),
        (["paths.output_dir=/proc/rldf-out"], "cannot create the output folder '/proc/rldf-out'"),
        (["cluster.address=127.0.0.1:9"], "cannot reach a Ray cluster at cluster.address=127.0.0.1:9"),  # nothing listens
        (["cluster.cpus_per_worker=4", "cluster.worker_start_timeout_s=3"], "no worker started within cluster.worker_start_timeout_s=3 s"),
    ],
)
def test_invalid_config_is_one_line(tmp_path, overrides, message, capsys, monkeypatch):
    from pipeline.cli.clone import main

    monkeypatch.chdir(tmp_path)  # Hydra's run folder
    with pytest.raises(SystemExit) as stop:
        main([f"paths.output_dir={tmp_path / 'out'}", *SMALL, *overrides])
    lines = capsys.readouterr().err.strip().splitlines()
    assert stop.value.code == 2 and len(lines) == 1 and message in lines[0], lines


@pytest.mark.parametrize("override, message", [  # every rule: tests/test_configs.py
    ("clone.shard_size=abc", "clone.shard_size must be an integer, got 'abc'"),
    ("clone.max_tries=0", "clone.max_tries must be >= 1"),  # was caught in the workers, after Ray started
])
def test_wrong_types_and_ranges_stop_before_anything_starts(tmp_path, override, message, capsys, monkeypatch):
    """In this process, as the one above (tests/test_configs.py runs the console command as a process once)."""
    from pipeline.cli.clone import main

    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as stop:
        main([f"paths.output_dir={tmp_path / 'out'}", *SMALL, override])
    err = capsys.readouterr().err
    assert stop.value.code == 2 and len(err.strip().splitlines()) == 1 and message in err, err
    assert not (tmp_path / "out").exists()  # nothing written: no run.json, no clone.log


