#!/usr/bin/env python
"""How often a clone's semantic encoder reads each class's input images as that class (top-1 and top-5), from
one input image per class and from k.

    python scripts/reader_accuracy.py experiment=confusable1000            # the CLIP-like stand-in, k = 1 and 5
    python scripts/reader_accuracy.py experiment=shapes_demo dataset.input_seed=3 --k 1 5

Takes the clone's own overrides (the config it would clone with) and prints one JSON object.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys

from hydra.utils import instantiate

import pipeline.clone as clone_api
from pipeline.assembly import build_stack
from pipeline.reading import reader_accuracy


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("overrides", nargs="*", help="the clone's config overrides, e.g. experiment=confusable1000")
    p.add_argument("--k", type=int, nargs="+", default=[1, 5], help="input images per class to read (default: 1 5)")
    a = p.parse_args()
    cfg = clone_api.load(a.overrides)
    dataset = instantiate(cfg.dataset, inputs_per_class=max(a.k))
    with contextlib.redirect_stdout(sys.stderr):  # model loaders' chatter: stdout holds the report alone
        stack = build_stack(cfg, class_names=[c.prompt for c in dataset.all_classes()])
    report = reader_accuracy(stack.semantic_encoder, stack.full_grammar, dataset.classes(),
                             lambda cls: [i.image for i in dataset.inputs(cls)], a.k, progress=True)
    print(json.dumps({"dataset": str(cfg.dataset.name), "input_seed": cfg.dataset.get("input_seed"), **report}, indent=1))


if __name__ == "__main__":
    main()
