#!/usr/bin/env python
"""Benchmarks: the modules of ``pipeline/bench/`` (each one's measure is listed there), run and tabulated.

Usage: python scripts/bench.py [--only overhead,scaling,batches,search,metrics,resume,scale,reader,presets] [--model tiny_shapes]
       [--out runs/bench.json] [--markdown docs/results.md]
       python scripts/bench.py --only gpu [--gpu-scale tiny] [--budget-s 360] --out runs/gpu-check.jsonl    (make gpu-check)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from pipeline.bench import module, write_tables
from pipeline.bench.common import ROOT

DEFAULT = "overhead,batches,search,metrics,resume,scale,reader,presets"


def arguments() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", default=DEFAULT)
    p.add_argument("--batch-classes", type=int, default=10, help="classes of the full-calls benchmark (the shapes world has 10)")
    p.add_argument("--batch-budget", type=int, default=None,
                   help="search renders per class in the full-calls benchmark (default: make demo's env.budget)")
    p.add_argument("--batch-images", type=int, default=16, help="images per class in the full-calls benchmark's generation")
    p.add_argument("--reader-renders", type=int, default=5000, help="renders the stand-in's reader is scored on")
    p.add_argument("--scale-sizes", default="10,100,1000", help="class counts of the scale benchmark")
    p.add_argument("--scale-images", type=int, default=10, help="images per class in the scale benchmark")
    p.add_argument("--eval-dirs", default="runs/eval-1300-noreuse,runs/eval-1300-reuse", help="searchcost: make-eval folders")
    p.add_argument("--model", default=None, help="a model= option for the pipeline benchmark (default: conf/clone.yaml's)")
    p.add_argument("--images", type=int, default=64, help="images per class in the pipeline benchmark")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--classes", default="circle,square,star,cross")
    p.add_argument("--inputs", type=int, default=10)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--prdc-n", type=int, default=10_000)
    p.add_argument("--resume-shards", type=int, default=1000, help="shards in the resume benchmark")
    p.add_argument("--gpu-scale", default="full", choices=["full", "tiny"], help="gpu: full-size models on a GPU, or tiny ones (CPU)")
    p.add_argument("--gpu-stages", default=None, help="gpu: only these stages, comma-separated (default: all; pipeline/bench/gpu.py)")
    p.add_argument("--budget-s", type=float, default=None, help="gpu: start no stage whose estimate would end past this many seconds")
    p.add_argument("--out", type=Path, default=None, help="JSON report (gpu: JSON lines, one per stage, appended as each ends)")
    p.add_argument("--markdown", type=Path, default=None, help="write the tables into this markdown file's bench block")
    p.add_argument("--from-json", type=Path, default=None,
                   help="write the tables of an earlier --out report (its own command; .jsonl: a GPU check's) instead of measuring")
    return p.parse_args()


def measure(part: str, a: argparse.Namespace) -> dict:
    """One benchmark part's report, from the command line's arguments."""
    args = {
        "pipeline": (a.model, a.images, a.batch, a.classes.split(",")),
        "batches": (a.model, a.batch_classes, a.batch_budget, a.batch_images, a.batch),
        "search": (a.inputs, a.seeds),
        "resume": (a.resume_shards,),
        "scale": ([int(x) for x in a.scale_sizes.split(",")], a.scale_images),
        "reader": (a.reader_renders,),
        "presets": (),
        "searchcost": ([ROOT / d for d in a.eval_dirs.split(",")],),
        "metrics": (a.prdc_n, 2048),
    }[part]
    report = module(part).run(*args)
    print(json.dumps({part: report}, indent=1), flush=True)
    return report


def gpu_check(a: argparse.Namespace) -> None:
    """``--only gpu``: the staged GPU check (pipeline/bench/gpu.py); its lines go to ``--out`` as each stage ends."""
    from pipeline.bench import gpu

    command = "python scripts/bench.py " + " ".join(sys.argv[1:])
    stages = a.gpu_stages.split(",") if a.gpu_stages else None
    if a.out:
        a.out.parent.mkdir(parents=True, exist_ok=True)
    with open(a.out, "a", encoding="utf-8") if a.out else open(os.devnull, "w") as out:
        out.write(json.dumps({"command": command}) + "\n")
        out.flush()
        report = gpu.run(a.gpu_scale, out, a.budget_s, stages, log=lambda line: print(line, flush=True))
    write_tables({"gpu": report}, command, a.markdown)


def main() -> None:
    a = arguments()
    if a.from_json:
        if a.from_json.suffix == ".jsonl":  # a GPU check's lines
            from pipeline.bench.gpu import report_from_lines

            report = {"gpu": report_from_lines(a.from_json.read_text().splitlines())}
            command = report["gpu"].pop("command", f"(report {a.from_json})")
        else:
            report = json.loads(a.from_json.read_text())
            command = report.pop("command", f"(report {a.from_json})")
        return write_tables(report, command, a.markdown)
    parts = a.only.split(",")
    if "gpu" in parts:
        if parts != ["gpu"]:
            raise SystemExit("bench: the GPU check runs alone: --only gpu")
        return gpu_check(a)
    wanted = {"pipeline" if p in ("overhead", "scaling") else p for p in parts}
    report = {part: measure(part, a) for part in ("pipeline", "batches", "search", "resume", "scale", "reader", "presets",
                                                  "searchcost", "metrics") if part in wanted}
    command = "python scripts/bench.py " + " ".join(sys.argv[1:])
    if a.out:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(json.dumps({**report, "command": command}, indent=1))
    write_tables(report, command, a.markdown)


if __name__ == "__main__":
    main()
