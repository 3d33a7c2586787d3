"""``scale``: the 1000-class stand-in at several class counts, same images per class."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path


from pipeline.bench.common import run_watched
from pipeline.clone.layout import Layout
from pipeline.markdown import table


def run(sizes: list[int], images: int) -> dict:
    """The stand-in at each class count with the same images per class and settings (experiment=glyphs1000)."""
    tmp = Path(tempfile.mkdtemp(prefix="rldf-bench-scale-"))
    rows = {}
    for n in sizes:
        out = tmp / f"c{n}"
        args = ["experiment=glyphs1000", f"dataset.num_classes={n}", f"clone.images_per_class={images}"]
        s, wall, rss, cpu = run_watched(out, *args)
        units = s["searches_run"] + s["shards_written"]
        _, noop, _, _ = run_watched(out, *args)
        layout = Layout(str(out))
        manifest = sum(p.stat().st_size for p in [Path(layout.manifest), *Path(layout.records).glob("*.json")])
        rows[str(n)] = {"classes": n, "images": s["images_written"], "units": units, "wall_s": round(wall, 1),
                        "wall_per_class_s": round(wall / n, 3), "driver_peak_rss_mb": round(rss / 2**20, 1),
                        "driver_cpu_ms_per_unit": round(1000 * cpu / units, 2), "manifest_kb": round(manifest / 1024, 1),
                        "resume_nothing_left_s": round(noop, 1), "searches_found_class": round(s["searches_found_class"] / s["searches_run"], 3)}
        print(json.dumps({"scale": rows[str(n)]}), flush=True)
    shutil.rmtree(tmp, ignore_errors=True)
    big, mid = rows[str(max(sizes))], rows[str(sorted(sizes)[-2])] if len(sizes) > 1 else None
    return {"rows": rows, "images_per_class": images,
            "per_class_wall_ratio": round(big["wall_per_class_s"] / mid["wall_per_class_s"], 3) if mid else None}


def lines(sc: dict) -> list[str]:
    return [f"Scale (the 1000-class stand-in, `experiment=glyphs1000`: procedural glyphs, weightless reader, "
            f"{sc['images_per_class']} images per class, shuffled shards of 100, top-10 class axis, 2 local workers):", "",
            table(["classes", "images", "units", "wall", "wall per class", "driver peak RSS", "driver CPU per unit",
                   "manifest", "resume, nothing left", "searches ending on the input's class"],
                  [[r["classes"], r["images"], r["units"], f"{r['wall_s']} s", f"{r['wall_per_class_s']} s", f"{r['driver_peak_rss_mb']} MB",
                    f"{r['driver_cpu_ms_per_unit']} ms", f"{r['manifest_kb']} KB", f"{r['resume_nothing_left_s']} s",
                    f"{r['searches_found_class']:.1%}"] for r in sc["rows"].values()]), "",
            f"Per-class wall at the largest size over the next: **{sc['per_class_wall_ratio']}×** (target ≤ 1.25)."]
