"""What the benchmarks share: the clone in this process or as a process of its own."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

from pipeline.clone.layout import Layout

ROOT = Path(__file__).resolve().parents[2]  # the repository (the package is installed editable: make setup)
#: the shapes world's classes, in the order the benchmarks take their first n
SHAPES = ["circle", "octagon", "hexagon", "pentagon", "square", "diamond", "triangle", "star", "cross", "crescent"]


def clone(out: Path, *overrides: str) -> dict:
    """The clone API in this process; its summary."""
    import pipeline.clone as clone_api

    s = clone_api.run(clone_api.load([f"paths.output_dir={out}", "clone.progress=false", *overrides])).to_dict()
    if not s["ok"]:
        raise SystemExit(f"clone failed: {s['failures'] or s['stopped']}")
    return s


def clone_cmd(out: Path, *overrides: str) -> list[str]:
    """The CLI, where a benchmark needs a process of its own (to kill it, or to measure the driver alone)."""
    import pipeline.clone as clone_api

    return clone_api.cli_command(f"paths.output_dir={out}", "clone.progress=false", *overrides)


def run_watched(out: Path, *overrides: str) -> tuple[dict, float, int, float]:
    """Run the clone CLI into ``out``; (the summary it wrote, wall s, the driver's peak RSS in bytes, the driver's
    CPU seconds)."""
    cmd = clone_cmd(out, *overrides)
    import psutil

    t0 = time.perf_counter()
    proc = psutil.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    peak, cpu = 0, 0.0
    while proc.poll() is None:
        try:
            peak = max(peak, proc.memory_info().rss)
            t = proc.cpu_times()
            cpu = t.user + t.system
        except psutil.NoSuchProcess:
            break
        time.sleep(0.05)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"clone failed ({' '.join(cmd[2:])})")
    return json.loads(Path(Layout(str(out)).summary).read_text()), wall, peak, cpu
