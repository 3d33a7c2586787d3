#!/usr/bin/env python
"""RLDF from one input image per shapes-world class: does the best state found keep the input's class, and
how many class-consistent (accepted) states does the search find?

Hydra app on ``conf/run_search.yaml`` (so ``model=``, ``reward=``, ``search=``, ``env.*`` override as
usual), e.g. ``python scripts/rldf_classes.py model=tiny_shapes reward=learned_shapes``. The input image of
each class is the one the clone uses (``pipeline.clone.dataset.ShapesDataset``). Prints one row per class
and the total; writes ``rldf_classes.json`` to ``paths.output_dir``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from omegaconf import DictConfig

from pipeline.assembly import build_stack, make_env
from pipeline.cli import app
from pipeline.clone.dataset import ShapesDataset
from pipeline.search.result import SearchProblem
from pipeline.seeding import derive_seed


def run(cfg: DictConfig) -> dict:
    stack = build_stack(cfg)
    dataset = ShapesDataset(stack.full_grammar, int(cfg.input_size), input_seed=int(cfg.input_seed))
    axis = stack.grammar.axis_index(stack.grammar.class_axis)
    rows = []
    for cls in dataset.classes():
        t0 = time.perf_counter()
        seed = derive_seed(int(cfg.seed), "search", cls.id)
        env = make_env(stack, dataset.input_image(cls), seed)
        res = stack.search.run(SearchProblem(env, seed=seed, class_name=cls.name))
        best = res.best
        found = best.encoding is not None and best.encoding[axis] == cls.index
        rows.append({"class": cls.name, "found": bool(found), "best_prompt": best.prompt, "reward": round(best.reward, 4),
                     "renders": res.renders, "accepted_states": len(res.accepted), "seconds": round(time.perf_counter() - t0, 1)})
        print(json.dumps(rows[-1]), flush=True)
    summary = {"method": stack.search.name, "model": stack.generator.model_id, "mode": cfg.env.mode,
               "found": sum(r["found"] for r in rows), "classes": len(rows),
               "median_renders": sorted(r["renders"] for r in rows)[len(rows) // 2], "rows": rows}
    out = Path(cfg.paths.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "rldf_classes.json").write_text(json.dumps(summary, indent=1))
    print(f"{summary['method']}: input class found for {summary['found']}/{summary['classes']} classes, "
          f"median {summary['median_renders']} renders")
    return summary


@app("run_search")
def main(cfg: DictConfig) -> None:
    """Run the configured search from the input image of every shapes-world class."""
    run(cfg)


if __name__ == "__main__":
    main()
