"""``searchcost``: search renders not reused as dataset images, and CAS, of two make-eval folders."""

from __future__ import annotations

import json
from pathlib import Path


from pipeline.clone.layout import Layout
from pipeline.markdown import table


def run(dirs: list[Path]) -> dict:
    """From make-eval folders (the RLDF goal clone of each): search renders, images, the share of images that
    are search renders, and the cost ratio (search renders not in the dataset / dataset images), with CAS."""
    rows = {}
    for d in dirs:
        layout = Layout(str(d / "qlearning"))
        events = [json.loads(x) for x in Path(layout.log).read_text().splitlines() if x.strip()]
        renders = sum(e.get("renders", 0) for e in events if e["event"] == "search_done")
        images = sum(e["images"] for e in events if e["event"] == "shard_done")
        from_search = 0
        import webdataset as wds

        for sample in wds.WebDataset(layout.shard_files(), shardshuffle=False, empty_check=False):
            from_search += bool(json.loads(sample["json"]).get("from_search"))
        res = json.loads((d / "results.json").read_text())["rows"]
        q, real = res["qlearning"], res.get("real", {})
        rows[d.name] = {"images": images, "search_renders": renders, "images_from_search": from_search,
                        "cost_ratio": round((renders - from_search) / images, 3), "cas": round(q["cas"]["accuracy"], 3),
                        "cas_per_class": {k: round(v, 3) for k, v in q["cas"]["per_class"].items()},
                        "judge_class_accuracy": round(q["judge"]["class_accuracy"], 3), "shortcut_probe": round(q["judge"]["shortcut_probe"], 3),
                        "fd": round(q["metrics"]["fd"], 3), "recall": round(q["metrics"]["recall"], 3),
                        "coverage": round(q["metrics"]["coverage"], 3),
                        "real_cas": round(real["cas"]["accuracy"], 3) if "cas" in real else None}
    return rows


def lines(sc: dict) -> list[str]:
    return ["Search cost at 1300 images per class (shapes world, tiny model, the RLDF goal clone with "
            "`make eval`'s settings, one run without and one with `clone.reuse_search_renders`; cost ratio = search renders not in "
            "the dataset / dataset images):", "",
            table(["run", "images", "search renders", "images that are search renders", "cost ratio ↓", "CAS", "CAS per class",
                   "judge class acc", "shortcut probe ↓", "FD ↓", "recall", "coverage", "real CAS"],
                  [[k, v["images"], v["search_renders"], v["images_from_search"], f"**{v['cost_ratio']}**", f"**{v['cas']}**",
                    " / ".join(f"{c} {a}" for c, a in v["cas_per_class"].items()), v["judge_class_accuracy"], v["shortcut_probe"],
                    v["fd"], v["recall"], v["coverage"], v["real_cas"]] for k, v in sc.items()])]
