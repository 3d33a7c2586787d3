#!/usr/bin/env python
"""A contact sheet of a clone: one row per class, random samples from its shards (seeded).

  python scripts/contact_sheet.py runs/demo docs/demo_contact_sheet.png --per-class 12
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import webdataset as wds

from pipeline.metrics.cas import load_labelled
from pipeline.metrics.sheets import class_contact_sheet
from pipeline.metrics.sources import ShardImages


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("clone", type=Path, help="a clone's output folder (shards and manifest.json)")
    p.add_argument("out", type=Path, help="PNG to write")
    p.add_argument("--per-class", type=int, default=12)
    p.add_argument("--size", type=int, default=32, help="images are resized to this before pasting")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    data = load_labelled(ShardImages(str(a.clone), a.size))
    names = {}
    for s in wds.WebDataset(sorted(str(t) for t in a.clone.glob("*.tar")), shardshuffle=False, empty_check=False):
        meta = json.loads(s["json"]) if "json" in s else {}
        names.setdefault(int(s["cls"]), meta.get("class_name", s["cls"].decode()))
    names = dict(sorted(names.items()))
    class_contact_sheet(data.images, data.labels.numpy(), names, a.per_class, a.seed, a.out)
    print(f"contact sheet: {a.out}")


if __name__ == "__main__":
    main()
