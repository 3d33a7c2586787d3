"""Benchmarks (``make bench``, ``scripts/bench.py``), one module each, measured side by side in one run and reported
as ratios where noise would dominate. Each module has ``run(...)`` (its report) and ``lines(report)`` (its tables for
docs/results.md); the GPU check (:mod:`pipeline.bench.gpu`) runs alone, in stages.

Benchmarks, each measured side by side in one run and reported as ratios where noise would dominate.

  overhead  clone images/s (Ray workers, persisted searches reused, shards written) over the bare
            generator's images/s with the same model, batch size and steps, in the same process run
  scaling   clone images/s with 2 workers over 1 worker (1 torch thread per worker, so 1 vs 2 cores)
  batches   how full the generator calls are: a search-only clone's renders/s over the bare generator's at
            full batches (searches pooled in one worker, and one at a time), shuffled-shard over class-order
            generation images/s, renders per call in both phases
  search    renders each method needs until its best state has the input image's class, and until it is
            within 1% of the grid's best reward (procedural shapes world: renders count the same for any model)
  metrics   feature extraction images/s (tiny CLIP) and precision/recall time on 10k x 10k features
  resume    a 1000-shard clone (procedural generator) whose driver is SIGKILLed halfway: time to resume it,
            time of a resume with nothing left to do, and whether every shard equals a clean run's
  scale     the 1000-class stand-in (experiment=glyphs1000) at 10, 100 and 1000 classes, same images per
            class: wall per class, driver peak RSS, driver CPU per unit, manifest size, no-op resume time,
            and the share of searches whose best state has the input's class
  reader    the stand-in's weightless reader: accuracy per attribute on random renders
  presets   the experiment presets' dry-run plans (classes, units, shards, images, device-hours at an
            assumed clone.throughput: no GPU is measured here)
  gpu       (runs alone, not in the default set; a CUDA GPU, or --gpu-scale tiny on the CPU) the staged GPU check
            (pipeline/bench/gpu.py, make gpu-check): device facts, bare SD 2.1 at batch 1/8/16/32 from one load, the
            clone's search and generation phases in this process (cluster=inline) over the bare generator, SDXL-Turbo,
            the phases through Ray where installed, model.compile; one JSON line per stage to --out as it ends;
            --budget-s starts no stage that would end past it
  searchcost  (not in the default set) search renders not reused as dataset images over dataset images, and
            CAS, of two make-eval folders run with and without clone.reuse_search_renders (--eval-dirs)
"""

from __future__ import annotations

import importlib
import os
import platform
from pathlib import Path
from typing import Any

#: report part -> its module (``overhead`` and ``scaling`` are one benchmark, reported as ``pipeline``)
MODULES = {"pipeline": "overhead", "batches": "batches", "search": "search", "resume": "resume", "scale": "scale",
           "reader": "reader", "presets": "presets", "searchcost": "searchcost", "metrics": "metrics", "gpu": "gpu"}


def module(part: str) -> Any:
    return importlib.import_module(f"pipeline.bench.{MODULES[part]}")


def markdown(report: dict[str, Any], command: str) -> dict[str, str]:
    """One table per benchmark part, as printed and as written to docs/results.md (a block each)."""
    where = f"Command: `{command}` ({platform.machine()}, {os.cpu_count()} cores)."
    return {k: "\n".join([where, "", *module(k).lines(report[k])]) for k in MODULES if k in report}


def write_tables(report: dict[str, Any], command: str, markdown_file: Path | None) -> None:
    tables = markdown(report, command)
    print("\n\n".join(tables.values()))
    if markdown_file:
        from pipeline.markdown import replace_block

        for part, text in tables.items():
            replace_block(markdown_file, f"bench-{part}", text, title="Results on the shapes world")
