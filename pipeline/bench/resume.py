"""``resume``: a clone whose driver is SIGKILLed halfway, resumed; then a resume with nothing left to do."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path


from pipeline.bench.common import ROOT, clone, clone_cmd
from pipeline.clone.layout import Layout
from pipeline.markdown import table


def run(shards: int) -> dict:
    """A clean ``shards``-shard clone, then the same clone killed (driver SIGKILL, its Ray with it) once half
    its shards are committed and resumed; then a resume with nothing left to do."""
    import hashlib
    import signal

    classes = 10
    common = ["model=procedural", "reward=learned_shapes", "search=random", "env.budget=64", "clone.shard_size=4",
              f"clone.images_per_class={4 * shards // classes}"]
    tmp = Path(tempfile.mkdtemp(prefix="rldf-bench-resume-"))

    def timed(out: Path) -> float:
        t0 = time.perf_counter()
        clone(out, *common)
        return time.perf_counter() - t0

    def digests(out: Path) -> dict[str, str]:
        return {Path(p).name: hashlib.sha256(Path(p).read_bytes()).hexdigest() for p in Layout(str(out)).shard_files()}

    clean = timed(tmp / "clean")
    killed = tmp / "killed"
    run = subprocess.Popen(clone_cmd(killed, *common), cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    log = Path(Layout(str(killed)).log)
    while run.poll() is None and not (log.is_file() and log.read_text().count('"shard_done"') >= shards // 2):
        time.sleep(0.2)
    os.killpg(run.pid, signal.SIGKILL)  # the driver and the Ray it started: the whole "node" is gone
    run.wait()
    committed = len(Layout(str(killed)).shard_files())
    resume = timed(killed)
    noop = timed(killed)
    same = digests(killed) == digests(tmp / "clean")
    shutil.rmtree(tmp, ignore_errors=True)
    return {"shards": shards, "images": 4 * shards, "clean_run_s": round(clean, 1), "committed_before_kill": committed,
            "resume_after_kill_s": round(resume, 1), "resume_nothing_left_s": round(noop, 1), "shards_identical_to_clean_run": same}


def lines(r: dict) -> list[str]:
    return [f"Resume ({r['shards']} shards, {r['images']} images, procedural generator, 2 workers; the driver and its "
            "local Ray SIGKILLed once half the shards were committed):", "",
            table(["measure", "value"], [
                ["clean run, wall", f"{r['clean_run_s']} s"],
                ["shards committed before the kill", r["committed_before_kill"]],
                ["resume after the kill (validate committed shards, redo the rest), wall", f"{r['resume_after_kill_s']} s"],
                ["resume with nothing left to do (validate all shards), wall", f"{r['resume_nothing_left_s']} s"],
                ["every shard byte-identical to the clean run's", "yes" if r["shards_identical_to_clean_run"] else "**no**"],
            ])]
