"""``rldf-search``: run one search from a single input image; write JSON, a trajectory grid and a reward plot."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

from omegaconf import DictConfig

from pipeline.assembly import build_stack, make_env
from pipeline.cli import app
from pipeline.errors import ConfigError
from pipeline.images import load_image
from pipeline.search.report import write_search_report
from pipeline.search.result import SearchProblem
from pipeline.shapes.world import ShapesWorld

log = logging.getLogger("rldf.search")


def run(cfg: DictConfig) -> dict:
    if cfg.env.class_source != "read":  # a label or a class chosen by renders is the clone's (one search reads one image)
        raise ConfigError(f"env.class_source={cfg.env.class_source} applies to clones (scripts/clone.py); a single search "
                          "reads the class in its input image (env.class_source=read)")
    stack = build_stack(cfg)
    class_name = cfg.class_name
    if cfg.input_image is not None:
        target = load_image(cfg.input_image)
    else:  # no image given: draw one from the shapes world (the embedded default)
        sample = ShapesWorld(stack.grammar, int(cfg.input_size)).sample(int(cfg.input_seed))
        target = sample.image
        class_name = class_name or sample.attributes.get(stack.grammar.class_axis or "object")
        log.info("input: shapes-world sample %d (%s)", cfg.input_seed, sample.caption)
    env = make_env(stack, target, int(cfg.seed))
    t0 = time.perf_counter()
    result = stack.search.run(SearchProblem(env, seed=int(cfg.seed), class_name=class_name))
    result.info.update(wall_s=round(time.perf_counter() - t0, 3), model_id=stack.generator.model_id, class_name=class_name)
    out = Path(cfg.paths.output_dir)
    paths = write_search_report(result, env, stack.grammar, out, input_image=target)
    best = result.best
    summary = {
        "method": result.method, "renders": result.renders, "best_prompt": best.prompt,
        "best_reward": round(best.reward, 4), "goal": env.goal and stack.grammar.decode(env.goal),
        "accepted_states": len(result.accepted), "accept_threshold": result.accept_threshold,
        "outputs": {k: str(v) for k, v in paths.items()},
    }
    print(json.dumps(summary, indent=1))
    return summary


@app("run_search")
def main(cfg: DictConfig) -> None:
    """Run one search from a single input image; writes its JSON, a trajectory grid and a reward plot."""
    run(cfg)


if __name__ == "__main__":
    main()
