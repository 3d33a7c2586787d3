"""``presets``: the experiment presets' dry-run plans."""

from __future__ import annotations

import tempfile


from pipeline.markdown import table


PRESETS = {"imagenet1k_sd21": 1.8, "imagenet100_sd21": 1.8, "imagenet1k_sdxl_turbo": 12.0, "glyphs1000": None, "shapes_demo": None}


def run() -> dict:
    """Each preset's dry-run plan; ImageNet presets at an assumed throughput (images/s per GPU worker)."""
    import pipeline.clone as clone_api

    rows = {}
    for name, throughput in PRESETS.items():
        extra = [f"clone.throughput={throughput}"] if throughput else []
        data = ["dataset.root=" + tempfile.gettempdir()] if name.startswith("imagenet") else []
        rows[name] = clone_api.dry_run(clone_api.load([f"experiment={name}", "clone.dry_run=true", *data, *extra]))
    return rows


def lines(pr: dict) -> list[str]:
    return ["Experiment presets, dry-run plans (`clone.dry_run=true`; the ImageNet presets at an *assumed* "
            "`clone.throughput` per GPU worker, not measured here; device-hours are an upper bound: every search at its full budget):", "",
            table(["preset", "classes", "images", "shards", "shard order", "search renders/class (max)", "throughput (img/s/worker)",
                   "device-hours (max)"],
                  [[k, v["classes"], v["total_images"], v["shards"], v.get("shard_order", "class"), v["search_renders_per_class_max"],
                    f"{v['throughput_images_per_s_per_worker']} ({'assumed' if v['throughput_source'] == 'clone.throughput' else 'measured here'})",
                    v["device_hours_max"]] for k, v in pr.items()])]
