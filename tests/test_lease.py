"""The output folder's lease (pipeline/clone/lease.py) on a local disk: one holder, a refusal naming it, takeover of
a dead holder (at once for a dead pid of this host, after the timeout for a silent one elsewhere), loss detected
by the old holder, and exactly one winner among racing takers."""

import json
import socket
import subprocess
import sys
import threading
import time

import pytest

from pipeline.clone.lease import FOLDER, FolderHeld, Lease
from pipeline.storage import Storage


def lease(storage, **kw):
    return Lease(storage, "abcdef0123456789", kw.get("timeout_s", 60), kw.get("heartbeat_s", 5))


def dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def plant(storage, generation, **fields):
    body = {"run_id": "other", "host": socket.gethostname(), "pid": 1, "started": time.time(), "identity": "0" * 16,
            "generation": generation, "heartbeat": time.time(), **fields}
    storage.write_bytes(f"{FOLDER}/{generation:06d}.json", json.dumps(body).encode())


def test_a_held_folder_is_refused_naming_the_holder_and_freed_on_release(tmp_path):
    storage = Storage(tmp_path / "out")
    with lease(storage) as first:
        assert first.generation == 1 and storage.list(FOLDER) == [f"{FOLDER}/000001.json"]
        with pytest.raises(FolderHeld, match=rf"is being written by another run \(pid {first.started and __import__('os').getpid()} on "):
            lease(storage).acquire()
    assert storage.list(FOLDER) == []  # released
    with lease(storage) as again:
        assert again.generation == 1 and again.took_over is None


def test_a_dead_holder_on_this_host_is_taken_over_at_once(tmp_path):
    storage = Storage(tmp_path / "out")
    plant(storage, 3, pid=dead_pid())  # a SIGKILLed driver's lease, heartbeat fresh
    with lease(storage) as mine:
        assert mine.generation == 4 and mine.took_over.generation == 3
        assert storage.list(FOLDER) == [f"{FOLDER}/000004.json"]


def test_a_silent_holder_elsewhere_is_taken_over_after_the_timeout_only(tmp_path):
    storage = Storage(tmp_path / "out")
    plant(storage, 1, host="node-7", heartbeat=time.time() - 30)
    with pytest.raises(FolderHeld, match="on node-7, started .* last heartbeat 30 s ago"):
        lease(storage, timeout_s=60).acquire()
    with lease(storage, timeout_s=20) as mine:
        assert mine.generation == 2 and mine.took_over.host == "node-7"


def test_the_old_holder_learns_it_lost_the_folder(tmp_path):
    storage = Storage(tmp_path / "out")
    old = lease(storage, heartbeat_s=0.2, timeout_s=1).acquire()
    assert old.renew()
    plant(storage, 2, host="node-9")  # a run elsewhere took over while this one was paused
    deadline = time.time() + 10
    while old.lost is None and time.time() < deadline:
        time.sleep(0.1)
    assert old.lost and "another run took over the output folder" in old.lost and "node-9" in old.lost
    old.release()
    assert storage.list(FOLDER) == [f"{FOLDER}/000002.json"]  # the new holder's lease is left alone


def test_of_racing_takers_exactly_one_wins(tmp_path):
    storage = Storage(tmp_path / "out")
    plant(storage, 1, pid=dead_pid())  # free to take: every racer sees the same dead holder
    outcomes, barrier = [], threading.Barrier(8)

    def race():
        barrier.wait()
        try:
            outcomes.append(lease(Storage(tmp_path / "out")).acquire())
        except FolderHeld as e:
            outcomes.append(e)

    threads = [threading.Thread(target=race) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winners = [o for o in outcomes if isinstance(o, Lease)]
    assert len(winners) == 1 and len(outcomes) == 8
    winners[0].release()


def test_the_timeout_must_exceed_the_heartbeat(tmp_path):
    with pytest.raises(Exception, match="lease_timeout_s .* must exceed clone.lease_heartbeat_s"):
        Lease(Storage(tmp_path), "x", 5, 5)
