"""The clone on an object store: a real S3-protocol server (moto's, on 127.0.0.1) holds the output; a resume
after deleting and truncating objects redoes exactly those shards, and clone.log lands in the bucket; a fast
resume check reads no shard bytes (counted on the wire by a proxy in front of the server), a deep one all."""

import collections
import os
import re
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest

from helpers.clone import clone as clone_small, sample_hashes
from helpers.processes import free_port

pytestmark = pytest.mark.slow
boto3 = pytest.importorskip("boto3", reason="boto3 is not installed (pip install -e '.[dev]')")
s3fs = pytest.importorskip("s3fs", reason="s3fs is not installed (pip install -e '.[dev]')")
pytest.importorskip("moto.server", reason="moto's server is not installed (pip install -e '.[dev]')")


def clone(out, *overrides, **kw):
    """The SMALL clone in this process (``cluster=inline``): what this module tests is not Ray (tests/test_clone_e2e.py
    and tests/test_cluster_e2e.py are), and an in-process worker starts in a second, not ten."""
    return clone_small(out, "cluster=inline", *overrides, **kw)


def downloaded(fs, prefix, dest):
    dest.mkdir(parents=True, exist_ok=True)
    for key in fs.ls(prefix):
        if key.endswith(".tar"):
            fs.get(key, str(dest / Path(key).name))
    return sample_hashes(dest)


def test_clone_to_s3_resumes_after_lost_and_truncated_objects(s3_server, reference, tmp_path, monkeypatch):
    fs = s3_server
    ref_out, _, ref_hashes = reference
    monkeypatch.chdir(tmp_path)  # clone.log used to land in the working directory
    s = clone("s3://clones/run")
    assert s["ok"] and s["shards_written"] == 12
    assert downloaded(fs, "clones/run", tmp_path / "first") == ref_hashes  # same samples as a local clone
    log = fs.cat("clones/run/clone.log").decode()
    assert log.count('"shard_done"') == 12 and not list(tmp_path.glob("*.log"))
    assert {"run.json", "manifest.json"} <= {Path(k).name for k in fs.ls("clones/run")}

    fs.rm("clones/run/shard-000001.tar")  # lost
    data = fs.cat("clones/run/shard-000013.tar")
    fs.pipe("clones/run/shard-000013.tar", data[: len(data) // 2])  # truncated
    s = clone("s3://clones/run")
    assert s["shards_written"] == 2 and s["shards_reused"] == 10 and set(s["corrupt_redone"]) == {"shard-000001.tar", "shard-000013.tar"}
    assert downloaded(fs, "clones/run", tmp_path / "resumed") == ref_hashes
    assert fs.cat("clones/run/clone.log").decode().count('"event": "plan"') == 2  # both runs' events, in order


def relay(src: socket.socket, dst: socket.socket, see=lambda chunk: None) -> None:
    """Copy ``src`` to ``dst`` until either side closes (``see`` looks at each chunk first), then shut both down."""
    try:
        while chunk := src.recv(1 << 16):
            see(chunk)
            dst.sendall(chunk)
    except OSError:
        pass
    finally:
        for sock in (src, dst):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class CountingProxy:
    """A TCP proxy in front of the S3 server that counts the bytes the server sends back, per request
    (method, path). Clients send a request only after the previous response on that connection (HTTP/1.1
    without pipelining), so a response belongs to the last request line seen on its connection."""

    REQUEST = re.compile(rb"^(GET|HEAD|PUT|POST|DELETE) (/[^ ?]*)")

    def __init__(self, target_port: int) -> None:
        self.target = target_port
        self.received: collections.Counter = collections.Counter()
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target))
            request = [("?", "?")]
            threading.Thread(target=self._pipe, args=(client, upstream, request, False), daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, client, request, True), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket, request: list, counting: bool) -> None:
        def see(chunk: bytes) -> None:
            if counting:
                self.received[request[0]] += len(chunk)
            elif m := self.REQUEST.match(chunk):
                request[0] = (m.group(1).decode(), m.group(2).decode())

        relay(src, dst, see)

    def shard_bytes(self, method: str | None = None) -> int:
        """Bytes received for shard objects (not the searches' render files a regenerated shard reads from)."""
        return sum(n for (m, path), n in self.received.items() if re.search(r"/shard-\d+\.tar$", path) and method in (None, m))

    def close(self) -> None:
        self.server.close()


def test_fast_resume_check_reads_no_shard_bytes_and_deep_reads_them_all(s3_server, reference, tmp_path, monkeypatch):
    fs = s3_server
    proxy = CountingProxy(int(os.environ["AWS_ENDPOINT_URL"].rsplit(":", 1)[1]))
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{proxy.port}")  # the clone talks to S3 through the proxy
    s3fs.S3FileSystem.clear_instance_cache()  # the driver runs in this process: no filesystem made for the old endpoint
    monkeypatch.chdir(tmp_path)
    try:
        assert clone("s3://clones/verify")["shards_written"] == 12
        total = sum(fs.size(k) for k in fs.ls("clones/verify") if k.endswith(".tar"))
        fs.rm("clones/verify/shard-000001.tar")  # lost
        data = fs.cat("clones/verify/shard-000013.tar")
        fs.pipe("clones/verify/shard-000013.tar", data[: len(data) // 2])  # truncated
        for mode in ("fast", "deep"):
            proxy.received.clear()
            s = clone("s3://clones/verify", f"clone.verify={mode}")
            redone = {"shard-000001.tar", "shard-000013.tar"} if mode == "fast" else set()
            assert set(s["corrupt_redone"]) == redone and s["shards_written"] == len(redone) and s["ok"]
            read = proxy.shard_bytes("GET")
            if mode == "fast":
                assert read == 0, (read, total)  # sizes and ETags only: HEAD requests (the issue asks < 1%)
                assert proxy.shard_bytes() < 0.2 * total  # the HEAD responses' headers, all told
            else:
                assert read >= total  # every shard read back and hashed
        flipped = bytearray(fs.cat("clones/verify/shard-000002.tar"))
        flipped[2000] ^= 0xFF  # same size, other content: the store's checksum (ETag) changes, so fast reads it
        fs.pipe("clones/verify/shard-000002.tar", bytes(flipped))
        s = clone("s3://clones/verify", "clone.verify=fast")
        assert set(s["corrupt_redone"]) == {"shard-000002.tar"}
        assert downloaded(fs, "clones/verify", tmp_path / "after") == reference[2]
    finally:
        proxy.close()
        s3fs.S3FileSystem.clear_instance_cache()


class FaultyProxy:
    """A TCP proxy in front of the S3 server that fails on purpose: connections number ``fail`` (1-based) are answered
    ``503 Slow Down`` without reaching the server, and :meth:`down` makes the store go away (every connection cut,
    new ones refused) for a while, then come back on the same port."""

    def __init__(self, target_port: int, fail: set[int] = frozenset()) -> None:
        self.target, self.fail, self.connections = target_port, set(fail), 0
        self.failed = self.refused_for = 0
        self.open: list[socket.socket] = []
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self._serve()

    def _serve(self) -> None:
        threading.Thread(target=self._accept, args=(self.server,), daemon=True).start()

    def _accept(self, server: socket.socket) -> None:
        while True:
            try:
                client, _ = server.accept()
            except OSError:
                return
            self.connections += 1
            if self.connections in self.fail:
                self.failed += 1
                try:
                    client.recv(1 << 16)
                    client.sendall(b"HTTP/1.1 503 Slow Down\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                finally:
                    client.close()
                continue
            upstream = socket.create_connection(("127.0.0.1", self.target))
            self.open += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=relay, args=(a, b), daemon=True).start()

    def down(self, seconds: float) -> None:
        """The store goes away now, for ``seconds`` (in the background)."""
        self.server.close()
        for sock in self.open:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self.open.clear()

        def back() -> None:
            time.sleep(seconds)
            self.server = socket.create_server(("127.0.0.1", self.port))
            self._serve()

        threading.Thread(target=back, daemon=True).start()

    def close(self) -> None:
        self.server.close()


@pytest.fixture
def through(s3_server, monkeypatch, tmp_path):
    """Point this process's clients (and Ray workers started by it) at a FaultyProxy in front of the server."""
    proxies = []

    def make(**kw):
        proxy = FaultyProxy(int(os.environ["AWS_ENDPOINT_URL"].rsplit(":", 1)[1]), **kw)
        monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{proxy.port}")
        s3fs.S3FileSystem.clear_instance_cache()
        proxies.append(proxy)
        return proxy

    monkeypatch.chdir(tmp_path)
    yield make
    for p in proxies:
        p.close()
    s3fs.S3FileSystem.clear_instance_cache()


def test_an_object_store_that_hiccups_or_goes_away_for_a_while_costs_a_pause(s3_server, reference, through, tmp_path):
    proxy = through(fail={3, 8, 9, 10, 20, 21, 22, 23, 24, 40})  # throttled now and then, several in a row
    events = []
    went_down = threading.Event()

    def on_event(e):
        events.append(e["event"])
        if e["event"] == "shard_done" and not went_down.is_set():  # mid-run, after the first shard
            went_down.set()
            proxy.down(20)

    from pipeline.clone import api
    from helpers.clone import SMALL
    s = api.run(api.load(["paths.output_dir=s3://clones/hiccups", *SMALL, "cluster=inline"]), on_event=on_event).to_dict()
    assert s["ok"] and s["shards_written"] == 12 and not s["failures"], s
    assert went_down.is_set() and proxy.failed >= 5
    assert downloaded(s3_server, "clones/hiccups", tmp_path / "got") == reference[2]


@pytest.mark.parametrize("problem, message", [
    ("no credentials", "no credentials (set AWS_ACCESS_KEY_ID"),
    ("no endpoint", "the object store does not answer at http://127.0.0.1:"),
    ("no bucket", "the bucket does not exist"),
])
def test_an_object_store_that_cannot_be_used_is_one_line_before_ray_starts(s3_server, tmp_path, problem, message):
    from helpers.clone import clone_cmd
    env = dict(os.environ, AWS_EC2_METADATA_DISABLED="true", AWS_CONFIG_FILE=str(tmp_path / "none"),
               AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "none"))
    url = "s3://clones/unusable"
    if problem == "no credentials":
        env.pop("AWS_ACCESS_KEY_ID")
        env.pop("AWS_SECRET_ACCESS_KEY")
    elif problem == "no endpoint":
        env["AWS_ENDPOINT_URL"] = f"http://127.0.0.1:{free_port()}"
    else:
        url = "s3://no-such-bucket/run"
    t0 = time.perf_counter()
    p = subprocess.run(clone_cmd(url), capture_output=True, text=True, env=env, timeout=300)
    errors = [ln for ln in p.stderr.splitlines() if ln.strip()]
    assert p.returncode != 0 and len(errors) == 1 and errors[0].startswith("error: cannot use the output folder") and message in errors[0], p.stderr
    assert "Traceback" not in p.stderr and time.perf_counter() - t0 < 60
