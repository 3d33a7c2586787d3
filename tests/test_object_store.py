"""The clone on an object store: a real S3-protocol server (moto's, on 127.0.0.1) holds the output; a resume
after deleting and truncating objects redoes exactly those shards, and clone.log lands in the bucket."""

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import free_port
from test_clone_e2e import clone, reference, sample_hashes, summary  # noqa: F401  (reference is a fixture)

pytestmark = pytest.mark.slow
boto3 = pytest.importorskip("boto3", reason="boto3 is not installed (pip install -e '.[dev]')")
s3fs = pytest.importorskip("s3fs", reason="s3fs is not installed (pip install -e '.[dev]')")
pytest.importorskip("moto.server", reason="moto's server is not installed (pip install -e '.[dev]')")


@pytest.fixture(scope="module")
def s3_server():
    """moto's S3 server on a free local port, with the AWS variables that point clients (and Ray workers,
    which inherit the environment) at it; stopped at the end."""
    port = free_port()
    server = subprocess.Popen([str(Path(sys.executable).with_name("moto_server")), "-H", "127.0.0.1", "-p", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    env = {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_DEFAULT_REGION": "us-east-1",
           "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}"}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        deadline = time.time() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert server.poll() is None and time.time() < deadline, "moto_server did not start"
                time.sleep(0.2)
        boto3.client("s3").create_bucket(Bucket="clones")
        yield s3fs.S3FileSystem()
    finally:
        server.terminate()
        server.wait(timeout=30)
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def downloaded(fs, prefix, dest):
    dest.mkdir(parents=True, exist_ok=True)
    for key in fs.ls(prefix):
        if key.endswith(".tar"):
            fs.get(key, str(dest / Path(key).name))
    return sample_hashes(dest)


def test_clone_to_s3_resumes_after_lost_and_truncated_objects(s3_server, reference, tmp_path, monkeypatch):  # noqa: F811
    fs = s3_server
    ref_out, _, ref_hashes = reference
    monkeypatch.chdir(tmp_path)  # clone.log used to land in the working directory
    s = summary(clone("s3://clones/run"))
    assert s["ok"] and s["shards_written"] == 12
    assert downloaded(fs, "clones/run", tmp_path / "first") == ref_hashes  # same samples as a local clone
    log = fs.cat("clones/run/clone.log").decode()
    assert log.count('"shard_done"') == 12 and not list(tmp_path.glob("*.log"))
    assert {"run.json", "manifest.json"} <= {Path(k).name for k in fs.ls("clones/run")}

    fs.rm("clones/run/shard-000001.tar")  # lost
    data = fs.cat("clones/run/shard-000013.tar")
    fs.pipe("clones/run/shard-000013.tar", data[: len(data) // 2])  # truncated
    s = summary(clone("s3://clones/run"))
    assert s["shards_written"] == 2 and s["shards_reused"] == 10 and set(s["corrupt_redone"]) == {"shard-000001.tar", "shard-000013.tar"}
    assert downloaded(fs, "clones/run", tmp_path / "resumed") == ref_hashes
    assert fs.cat("clones/run/clone.log").decode().count('"event": "plan"') == 2  # both runs' events, in order
