"""``search``: renders each method needs to reach the input's class and 1% of the grid's best reward."""

from __future__ import annotations

import dataclasses

import numpy as np

from pipeline.markdown import table


#: the methods compared: (name, search= option, overrides)
METHODS = (("qlearning", "qlearning_optimiser", ()), ("qlearning, 8 episodes in parallel", "qlearning_optimiser", ("search.parallel_episodes=8",)),
           ("noisy_gradient", "noisy_gradient", ()), ("random", "random", ()), ("exhaustive", "exhaustive", ()))
#: the world the methods search: the procedural generator, the weightless pixel-statistics reward, reward-only mode
STACK = ["model=procedural", "reward=pixel_stats", "env.mode=reward_only"]


def run(inputs: int, seeds: int) -> dict:
    """Each method on ``inputs`` shapes-world inputs, ``seeds`` seeds each; components composed from conf/ as a run's are."""
    from hydra.utils import instantiate

    from pipeline.assembly import build_stack
    from pipeline.compose import load_config
    from pipeline.env import GridEnv, StateEvaluator
    from pipeline.images import noise_image
    from pipeline.rendering import Renderer
    from pipeline.search import SearchProblem
    from pipeline.shapes.world import ShapesWorld

    stack = build_stack(load_config("run_search", STACK))
    g = stack.grammar
    world, settings = ShapesWorld(g), dataclasses.replace(stack.env, budget=g.size)
    searches = {name: load_config("run_search", [*STACK, f"search={option}", *extra]).search for name, option, extra in METHODS}
    methods = {name: (lambda cfg=cfg: instantiate(cfg)) for name, cfg in searches.items()}
    rows: dict[str, dict[str, list]] = {m: {"class": [], "optimum": [], "total": []} for m in methods}
    for i in range(inputs):
        sample = world.sample(10_000 + i)
        cls = g.encode(sample.attributes)[0]
        start = stack.semantic_encoder.encode([noise_image(32, i)])[0]

        def env():
            return GridEnv.from_settings(g, StateEvaluator(Renderer(stack.generator, stack.reward, 64), sample.image, [123]), start, None, settings)

        best = methods["exhaustive"]().run(SearchProblem(env())).best.reward
        for name, make in methods.items():
            for seed in range(1 if name == "exhaustive" else seeds):
                res = make().run(SearchProblem(env(), seed=seed))
                # renders until the best state so far has the input's class for good
                best_so_far, to_class = -np.inf, None
                for (n, _), c in zip(res.trace, res.candidates):
                    if c.reward > best_so_far:
                        best_so_far = c.reward
                        if c.encoding[0] != cls:
                            to_class = None
                        elif to_class is None:
                            to_class = n
                rows[name]["class"].append(to_class)
                rows[name]["optimum"].append(res.renders_to_reach(0.99 * best))
                rows[name]["total"].append(res.renders)

    def stats(values: list) -> dict:
        hit = [v for v in values if v is not None]
        if not hit:
            return {"reached": f"0/{len(values)}"}
        q = np.percentile(hit, [25, 50, 75])
        return {"reached": f"{len(hit)}/{len(values)}", "median": float(q[1]), "iqr": [float(q[0]), float(q[2])]}

    return {m: {"renders_to_class": stats(r["class"]), "renders_to_1pct_of_optimum": stats(r["optimum"]),
                "renders_total_median": float(np.median(r["total"]))} for m, r in rows.items()} | {
        "setup": f"{inputs} shapes-world inputs x {seeds} seeds, procedural generator, pixel-statistics reward, reward-only mode"}


def _stat(s: dict) -> str:
    if "median" not in s:
        return f"{s['reached']}; —"
    return f"{s['reached']}; {s['median']:.0f} ({s['iqr'][0]:.0f}–{s['iqr'][1]:.0f})"


def lines(s: dict) -> list[str]:
    return [f"Search cost ({s['setup']}): renders until the best state has the input's class for good, and until it is "
            "within 1% of the grid's best reward (reached; median (IQR)):", "",
            table(["method", "to the input's class", "to within 1% of the optimum", "total renders (median)"],
                  [[m, _stat(r["renders_to_class"]), _stat(r["renders_to_1pct_of_optimum"]), f"{r['renders_total_median']:.0f}"]
                   for m, r in s.items() if m != "setup"])]
