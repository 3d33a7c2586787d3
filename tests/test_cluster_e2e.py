"""A real two-node Ray cluster on this machine (two raylets, ``ray start --head`` + ``ray start --address``):
losing a node mid-run, with no spare capacity for a replacement, loses nothing and hangs nothing."""

import json
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import pytest

from helpers.clone import clone, clone_cmd, last_summary, sample_hashes
from helpers.processes import free_port

pytestmark = pytest.mark.slow
RAY = str(Path(sys.executable).with_name("ray"))


def cluster_processes(temp_dir: str) -> list[psutil.Process]:
    """The processes of the cluster under ``temp_dir`` (every Ray daemon names its session folder)."""
    procs = []
    for p in psutil.process_iter(["cmdline"]):
        try:
            if any(temp_dir in arg for arg in p.info["cmdline"] or ()):
                procs.append(p)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return procs


def raylets(temp_dir: str) -> list[psutil.Process]:
    return [p for p in cluster_processes(temp_dir) if Path(p.info["cmdline"][0]).name == "raylet"]


@pytest.fixture
def two_nodes(request):
    """A head node (one CPU, or as many as the test's ``head_cpus`` mark says) and a second node with one CPU;
    stopped (only these processes) at the end."""
    mark = request.node.get_closest_marker("head_cpus")
    head_cpus = mark.args[0] if mark else 1
    temp_dir = tempfile.mkdtemp(prefix="rt", dir="/tmp")  # short: Ray's socket paths must stay under 108 bytes
    port = free_port()
    try:
        subprocess.run([RAY, "start", "--head", f"--port={port}", "--include-dashboard=false", f"--temp-dir={temp_dir}",
                        f"--num-cpus={head_cpus}", "--disable-usage-stats"], check=True, capture_output=True, timeout=120)
        head = {p.pid for p in raylets(temp_dir)}
        subprocess.run([RAY, "start", f"--address=127.0.0.1:{port}", "--num-cpus=1", "--disable-usage-stats"],
                       check=True, capture_output=True, timeout=120)
        second = [p for p in raylets(temp_dir) if p.pid not in head]
        assert len(head) == 1 and len(second) == 1
        yield f"127.0.0.1:{port}", second[0]
    finally:
        procs = cluster_processes(temp_dir)
        for p in procs:
            p.send_signal(signal.SIGKILL)
        psutil.wait_procs(procs, timeout=30)


def lose_node(raylet: psutil.Process) -> None:
    """The node is gone, as when its machine dies: its raylet and every process it started (the workers
    among them; a worker left alive would keep answering the driver directly for a while)."""
    procs = [*raylet.children(recursive=True), raylet]
    for p in procs:
        p.send_signal(signal.SIGKILL)
    psutil.wait_procs(procs, timeout=30)


SETTINGS = ["clone.images_per_class=96"]  # 96 shards of 4: the run is still going when the node goes


def clone_on(address, out, workers, *overrides):
    """The clone on the cluster at ``address``, killed-node-ready: running, with 8 shards committed."""
    cmd = [*clone_cmd(out, *SETTINGS), "cluster=ray", f"cluster.address={address}", f"cluster.num_workers={workers}", "cluster.cpus_per_worker=1",
           "cluster.gpus_per_worker=0", "cluster.threads_per_worker=1", "cluster.log_to_driver=false", *overrides]
    run = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    log = out / "clone.log"
    deadline = time.time() + 240
    while time.time() < deadline and run.poll() is None:
        if log.is_file() and log.read_text().count('"shard_done"') >= 8:
            break
        time.sleep(0.2)
    assert run.poll() is None, "the clone ended before the node could be killed"
    return cmd, run


def test_losing_a_node_mid_run_loses_nothing(two_nodes, tmp_path):
    address, second_raylet = two_nodes
    out = tmp_path / "cluster"
    cmd, run = clone_on(address, out, 2)
    lose_node(second_raylet)  # and the head has no free CPU for a replacement
    stdout, stderr = run.communicate(timeout=300)  # before: blocked for good, waiting for a replacement worker
    assert run.returncode == 0, stderr[-3000:]
    s = last_summary(out)
    assert s["workers_lost"] >= 1 and s["ok"] and s["shards_written"] == 96, (out / "clone.log").read_text()[-3000:]
    got = sample_hashes(out)  # fails on a duplicate key
    reference = tmp_path / "reference"
    clone(reference, *SETTINGS)  # a clean run on a local Ray: the samples do not depend on the cluster
    assert got == sample_hashes(reference) and len(got) == 4 * 96


@pytest.mark.head_cpus(0)
def test_with_every_worker_lost_and_none_placeable_the_run_stops_and_resumes(two_nodes, tmp_path):
    address, second_raylet = two_nodes  # the head has no CPU: the only worker runs on the second node
    out = tmp_path / "cluster"
    cmd, run = clone_on(address, out, 1, "cluster.worker_start_timeout_s=30")  # long enough for the first start
    lose_node(second_raylet)
    stdout, stderr = run.communicate(timeout=300)
    assert run.returncode == 1, stderr[-3000:]
    assert "no worker alive and none started within cluster.worker_start_timeout_s=30 s" in stderr
    assert "run the same command again to resume" in stderr
    s = last_summary(out)
    assert s["workers_lost"] >= 1 and s["units_left"] > 0 and s["shards_written"] >= 8
    resumed = clone(out, *SETTINGS)  # on a local Ray: the settings are the same, only the cluster differs
    # A shard the worker committed just before its node went is valid and reused, though the driver never heard of it.
    assert resumed["shards_reused"] >= s["shards_written"] and resumed["ok"]
    assert resumed["shards_reused"] + resumed["shards_written"] == 96
    assert len(sample_hashes(out)) == 4 * 96


@pytest.mark.head_cpus(1)
def test_with_num_workers_auto_a_node_that_joins_mid_run_gets_a_worker(tmp_path):
    """An autoscaling cluster: one node at the start, a second joins once the run is going."""
    temp_dir = tempfile.mkdtemp(prefix="rt", dir="/tmp")
    port = free_port()
    out = tmp_path / "elastic"
    try:
        subprocess.run([RAY, "start", "--head", f"--port={port}", "--include-dashboard=false", f"--temp-dir={temp_dir}",
                        "--num-cpus=1", "--disable-usage-stats"], check=True, capture_output=True, timeout=120)
        cmd, run = clone_on(f"127.0.0.1:{port}", out, "auto", "clone.images_per_class=1500")  # long enough to join
        head = {p.pid for p in raylets(temp_dir)}
        subprocess.run([RAY, "start", f"--address=127.0.0.1:{port}", "--num-cpus=1", "--disable-usage-stats"],
                       check=True, capture_output=True, timeout=120)
        stdout, stderr = run.communicate(timeout=400)
        assert run.returncode == 0, stderr[-3000:]
        assert len([p for p in raylets(temp_dir) if p.pid not in head]) == 1
    finally:
        procs = cluster_processes(temp_dir)
        for p in procs:
            p.send_signal(signal.SIGKILL)
        psutil.wait_procs(procs, timeout=30)
    events = [json.loads(ln) for ln in (out / "clone.log").read_text().splitlines()]
    started = [e for e in events if e["event"] == "worker_started"]
    assert any(e["event"] == "workers_requested" for e in events), [e["event"] for e in events if e["event"] != "shard_done"]
    assert len(started) == 2 and len({e["node"] for e in started}) == 2  # the joined node got the second worker
    assert any(e["event"] == "shard_done" and e["worker"] == started[1]["worker"] for e in events)  # and it worked
    s = last_summary(out)
    assert s["ok"] and s["shards_written"] == 1500 and s["workers_lost"] == 0
    assert len(sample_hashes(out)) == 4 * 1500
