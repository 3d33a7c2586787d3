"""``search``: renders each method needs to reach the input's class and 1% of the grid's best reward."""

from __future__ import annotations


import numpy as np

from pipeline.bench.common import ROOT
from pipeline.markdown import table


def run(inputs: int, seeds: int) -> dict:
    from pipeline.encoders.pixel_stats import PaletteSegmenter, PixelStatsEncoder
    from pipeline.encoders.prototype import PrototypeSemanticEncoder
    from pipeline.compose import component, env_settings, group_settings
    from pipeline.env import GridEnv, StateEvaluator
    from pipeline.rendering import Renderer
    from pipeline.generators.procedural import ProceduralGenerator
    from pipeline.grammar import Grammar
    from pipeline.images import noise_image
    from pipeline.rewards import build_reward
    from pipeline.search import SearchProblem
    from pipeline.shapes.world import ShapesWorld

    g = Grammar.from_yaml(ROOT / "conf" / "grammar" / "shapes.yaml")
    world, gen, enc = ShapesWorld(g), ProceduralGenerator(g), PixelStatsEncoder()
    reward = build_reward(enc, PaletteSegmenter(), {"segmentation": 1, "features": 1, "embedding": 1},
                          group_settings("reward", "pixel_stats")["segmentation"])
    semantic = PrototypeSemanticEncoder(g, gen, enc, samples_per_choice=24)
    methods = {name: (lambda option=option, params=params: component("search", option, **params)) for name, option, params in
               (("qlearning", "qlearning_optimiser", {}), ("qlearning, 8 episodes in parallel", "qlearning_optimiser", {"parallel_episodes": 8}),
                ("noisy_gradient", "noisy_gradient", {}), ("random", "random", {}), ("exhaustive", "exhaustive", {}))}
    settings = env_settings(mode="reward_only", budget=g.size)
    rows: dict[str, dict[str, list]] = {m: {"class": [], "optimum": [], "total": []} for m in methods}
    for i in range(inputs):
        sample = world.sample(10_000 + i)
        cls = g.encode(sample.attributes)[0]
        start = semantic.encode([noise_image(32, i)])[0]

        def env():
            return GridEnv.from_settings(g, StateEvaluator(Renderer(gen, reward, 64), sample.image, [123]), start, None, settings)

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
