"""``batches``: how full the generator calls are, in the search and generation phases."""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from pipeline.bench.common import SHAPES, clone
from pipeline.clone.layout import Layout
from pipeline.markdown import table


def run(model: str | None, classes: int, budget: int | None, images: int, batch: int) -> dict:
    """Full generator calls (one worker, one torch thread, the embedded diffusion model by default).

    Search: a search-only clone (the demo's Q-learning and, by default, its render budget per class,
    ``images_per_class=1``) of ``classes`` classes, with the worker's searches pooled (``cluster.units_per_worker``
    from conf), and one at a time (on one class: that speed does not depend on their number); its search renders/s
    over the bare generator's images/s in full calls of ``batch`` (grid prompts; measured before and after the clones,
    one thread like the worker).
    Generation: the same searches reused by generation-only clones of ``images`` per class (search renders
    not reused, so every image is rendered), class-order, shuffled, shuffled and class-order shards; the mean
    images/s of each order."""
    import pipeline.clone as clone_api

    if budget is None:  # make demo's, the smallest shipped job (the presets search with env.budget, 480)
        budget = int(clone_api.load(["experiment=shapes_demo"]).env.budget)
    names = SHAPES[:classes]
    common = [*([f"model={model}"] if model else []), f"dataset.only=[{','.join(names)}]", f"clone.batch_size={batch}",
              "cluster.num_workers=1", "cluster.threads_per_worker=1", "search=qlearning_batched", f"env.budget={budget}"]
    cfg = clone_api.load(common)
    bare = BareGenerator(cfg, batch)
    bare_before, cached_before = bare.rate(0), bare.rate(0)
    tmp = Path(tempfile.mkdtemp(prefix="rldf-bench-batches-"))
    pooled_units = int(cfg.cluster.units_per_worker)
    search, same_results = _searches(tmp, common, names, pooled_units)
    gen = _generation(tmp, common, images, pooled_units)
    bare_after, cached_after = bare.rate(1), bare.rate(1)
    bare_mean, cached_mean = (bare_before + bare_after) / 2, (cached_before + cached_after) / 2
    shutil.rmtree(tmp, ignore_errors=True)
    return {
        "model": model or Path(str(cfg.model.get("pretrained", cfg.model._target_))).name, "classes": classes, "budget": budget,
        "batch": batch, "units_per_worker": pooled_units, "bare_generator_images_per_s": round(bare_mean, 3),
        "bare_before_and_after": [round(bare_before, 3), round(bare_after, 3)],
        "bare_cached_prompts_images_per_s": round(cached_mean, 3), "bare_cached_before_and_after": [round(cached_before, 3), round(cached_after, 3)],
        "search_over_bare_cached_prompts": round(search[str(pooled_units)]["renders_per_s"] / cached_mean, 3),
        "search": search,
        "search_over_bare": round(search[str(pooled_units)]["renders_per_s"] / bare_mean, 3),
        "search_no_ahead_over_bare": round(search["no_ahead"]["renders_per_s"] / bare_mean, 3),
        "search_results_same_without_ahead": same_results,
        "search_unpooled_over_bare": round(search["1"]["renders_per_s"] / bare_mean, 3),
        "generation": gen,
        "shuffled_over_class": round(gen["shuffled"]["images_per_s"] / gen["class"]["images_per_s"], 3),
    }


class BareGenerator:
    """The bare generator: the clone's model config, one thread, full calls of ``batch``; measured before the clones
    and after them (the machine's speed drifts), the mean is the reference. Each time on grid prompts it has not seen
    (:meth:`rate` of a new set), as bare diffusers encodes every prompt and as a search renders each state once; then on
    the same prompts again, their text embeddings from our prompt cache (pipeline/generators/prompt_cache.py)."""

    def __init__(self, cfg, batch: int) -> None:
        import torch
        from hydra.utils import instantiate

        from pipeline.assembly import instantiate_model

        torch.set_num_threads(1)
        grammar = instantiate(cfg.grammar)
        self.generator, self.batch = instantiate_model(cfg.model, grammar), batch
        grid = list(grammar.grid())
        self.prompt_sets = [[grammar.decode(e) for e in grid[k :: max(1, len(grid) // (8 * batch))]][: 8 * batch] for k in (0, 1, 2)]
        self.generator.generate(self.prompt_sets[2][:batch], list(range(batch)))  # warm-up, on prompts not measured

    def rate(self, prompt_set: int) -> float:
        prompts, batch = self.prompt_sets[prompt_set], self.batch
        t0 = time.perf_counter()
        for i in range(0, len(prompts), batch):
            self.generator.generate(prompts[i : i + batch], list(range(i, i + batch)))
        return len(prompts) / (time.perf_counter() - t0)


def _searches(tmp: Path, common: list[str], names: list[str], pooled_units: int) -> tuple[dict, bool]:
    """Search-only clones: pooled, pooled without renders ahead (``env.render_ahead=false``: the same results, the calls
    it would make without), one search at a time (its speed does not depend on the class count, so fewer classes)."""
    search = {}
    for key, units, extra in ((str(pooled_units), pooled_units, []), ("no_ahead", pooled_units, ["env.render_ahead=false"]),
                              ("1", 1, [f"dataset.only=[{names[0]}]"])):
        s = clone(tmp / f"search-{key}", *common, *extra, "clone.images_per_class=1", "clone.shard_size=1", f"cluster.units_per_worker={units}")
        search[key] = {"classes": s["classes"], "renders": s["search_renders"], "renders_per_s": round(s["search_renders"] / (s["wall_s"] - s["startup_s"]), 3),
                       "calls": s["generator_calls"]["search"]}
    same = [sorted((tmp / f"search-{k}").glob("searches/*.json")) for k in (str(pooled_units), "no_ahead")]
    return search, len(same[0]) == len(names) and [p.read_bytes() for p in same[0]] == [p.read_bytes() for p in same[1]]


def _generation(tmp: Path, common: list[str], images: int, pooled_units: int) -> dict[str, dict]:
    """Generation-only clones from the pooled searches in class, shuffled, shuffled, class order: a drift of the
    machine's speed that is linear in time weighs on both orders alike."""
    gen: dict[str, dict] = {}
    for k, order in enumerate(("class", "shuffled", "shuffled", "class")):
        out = tmp / f"gen-{order}-{k}"
        out.mkdir()
        searched = Layout(str(tmp / f"search-{pooled_units}"))
        shutil.copytree(searched.searches, Layout(str(out)).searches)
        shutil.copy(searched.run_json, Layout(str(out)).run_json)  # its identity, so the searches count as this folder's
        s = clone(out, *common, f"clone.images_per_class={images}", f"clone.shard_size={images}", f"clone.shard_order={order}",
                  "clone.reuse_search_renders=false", "clone.on_config_change=allow")
        g = gen.setdefault(order, {"images": s["images_written"], "runs_images_per_s": [], "calls": s["generator_calls"]["generation"]})
        g["runs_images_per_s"].append(s["images_per_s_after_startup"])
    for g in gen.values():
        g["images_per_s"] = round(float(np.mean(g["runs_images_per_s"])), 3)
    return gen


def lines(b: dict) -> list[str]:
    su, sn, s1, g = b["search"][str(b["units_per_worker"])], b["search"]["no_ahead"], b["search"]["1"], b["generation"]

    def calls(c: dict) -> str:
        ahead = (f"; {c['ahead'] / c['calls']:.2f} ahead, {c['ahead_used'] / c['ahead']:.0%} of them asked later"
                 if c.get("ahead") else "")
        return f"{c['renders_per_call']} ({c['partial_call_share']:.0%} short{ahead})"

    return [f"Full generator calls (`{b['model']}`, 1 worker, 1 torch thread, `clone.batch_size={b['batch']}`, padded calls; "
            f"search: {b['classes']} classes, Q-learning with 8 episodes in parallel, budget {b['budget']}; generation: the same "
            f"searches, {g['class']['images']} images, search renders not reused):", "",
            table(["measure", "renders/s or images/s", "renders per call (short calls)", "ratio", "target"], [
                [f"bare generator, full calls, prompts it has not seen (mean of before and after the clones: {b['bare_before_and_after'][0]}, "
                 f"{b['bare_before_and_after'][1]})", b["bare_generator_images_per_s"], f"{b['batch']} (0%)", "—", "—"],
                *([[f"the same prompts again, text embeddings cached (before, after: {b['bare_cached_before_and_after'][0]}, "
                    f"{b['bare_cached_before_and_after'][1]})", b["bare_cached_prompts_images_per_s"], f"{b['batch']} (0%)", "—", "—"]]
                  if "bare_cached_prompts_images_per_s" in b else []),
                [f"search-only clone, {min(b['units_per_worker'], su['classes'])} searches at once in one worker "
                 f"(`cluster.units_per_worker={b['units_per_worker']}`, {su['classes']} classes)", su["renders_per_s"], calls(su["calls"]),
                 f"**{b['search_over_bare']:.3f}** of bare" + (f" ({b['search_over_bare_cached_prompts']:.3f} of cached)"
                                                                  if "search_over_bare_cached_prompts" in b else ""), "≥ 0.80"],
                [f"the same, `env.render_ahead=false` (short calls render nothing ahead; search results byte-identical: "
                 f"{'yes' if b.get('search_results_same_without_ahead') else 'NO'})", sn["renders_per_s"],
                 calls(sn["calls"]), f"{b['search_no_ahead_over_bare']:.3f} of bare", "—"],
                [f"search-only clone, 1 search per worker ({s1['classes']} class{'es' if s1['classes'] > 1 else ''})", s1["renders_per_s"], calls(s1["calls"]), f"{b['search_unpooled_over_bare']:.3f} of bare", "—"],
                [f"generation, class-order shards (mean of runs 1 and 4: {', '.join(map(str, g['class']['runs_images_per_s']))})",
                 g["class"]["images_per_s"], calls(g["class"]["calls"]), "—", "—"],
                [f"generation, shuffled shards (mean of runs 2 and 3: {', '.join(map(str, g['shuffled']['runs_images_per_s']))})",
                 g["shuffled"]["images_per_s"], calls(g["shuffled"]["calls"]),
                 f"**{b['shuffled_over_class']:.3f}** of class order", "≥ 0.90"],
            ])]
