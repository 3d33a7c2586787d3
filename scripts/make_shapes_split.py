#!/usr/bin/env python
"""Write a real shapes-world split, e.g. ``python scripts/make_shapes_split.py --out data/shapes --n 5000 --split val``."""

from __future__ import annotations

import argparse

from pipeline.cli import user_errors
from pipeline.grammar import Grammar
from pipeline.shapes.split import FORMATS, write_split
from pipeline.shapes.world import ShapesWorld


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--n", type=int, default=1000, help="number of images")
    p.add_argument("--split", default="train", help="split name (different names give disjoint samples)")
    p.add_argument("--format", default="webdataset", choices=FORMATS)
    p.add_argument("--image-size", type=int, default=32)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--shard-size", type=int, default=1000)
    p.add_argument("--grammar", default="conf/grammar/shapes.yaml")
    p.add_argument("--context", type=float, default=None,
                   help="a Dirichlet concentration: each class's own attribute distribution (dataset.context); default: uniform")
    p.add_argument("--context-seed", type=int, default=0, help="which contexts the classes draw (dataset.context_seed)")
    a = p.parse_args()
    with user_errors():
        world = ShapesWorld(Grammar.from_yaml(a.grammar), a.image_size, a.context, a.context_seed)
        paths = write_split(world, a.out, a.n, a.split, a.format, a.seed, a.shard_size)
        print("\n".join(str(x) for x in paths))


if __name__ == "__main__":
    main()
