#!/usr/bin/env python
"""How often a clone's semantic encoder reads each class's input images as that class (top-1 and top-5), from
one input image per class and from k.

    python scripts/reader_accuracy.py experiment=confusable1000            # the CLIP-like stand-in, k = 1 and 5
    python scripts/reader_accuracy.py experiment=shapes_demo dataset.input_seed=3 --k 1 5
    python scripts/reader_accuracy.py experiment=confusable1000 --rendered   # and the class chosen by renders

``--rendered`` adds ``rendered_top1``: how often env.class_source=rendered chooses the right class, rendering each
of the env.rendered_candidates likeliest classes at the env.rendered_seeds seeds the clone renders them at.

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
from pipeline.reading import check_seeds, choose_by_renders, reader_accuracy, rendered_candidates


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("overrides", nargs="*", help="the clone's config overrides, e.g. experiment=confusable1000")
    p.add_argument("--k", type=int, nargs="+", default=[1, 5], help="input images per class to read (default: 1 5)")
    p.add_argument("--rendered", action="store_true", help="also the class chosen by renders (env.class_source=rendered)")
    a = p.parse_args()
    cfg = clone_api.load(a.overrides)
    dataset = instantiate(cfg.dataset, inputs_per_class=max(a.k))
    with contextlib.redirect_stdout(sys.stderr):  # model loaders' chatter: stdout holds the report alone
        stack = build_stack(cfg, class_names=[c.prompt for c in dataset.all_classes()])
    grammar = stack.full_grammar

    def choose(cls, reading):  # what a clone worker does with env.class_source=rendered, at its seeds
        seeds = check_seeds(int(cfg.seed), cls.id, int(cfg.env.rendered_seeds))
        renders = {name: stack.generator.generate([prompt] * len(seeds), seeds)
                   for name, prompt in rendered_candidates(grammar, reading, int(cfg.env.rendered_candidates))}
        return choose_by_renders(stack.semantic_encoder, grammar, reading, renders)

    report = reader_accuracy(stack.semantic_encoder, grammar, dataset.classes(), lambda cls: [i.image for i in dataset.inputs(cls)],
                             a.k, progress=True, choose=choose if a.rendered else None)
    print(json.dumps({"dataset": str(cfg.dataset.name), "input_seed": cfg.dataset.get("input_seed"), **report}, indent=1))


if __name__ == "__main__":
    main()
