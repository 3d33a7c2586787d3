#!/usr/bin/env python
"""Benchmarks, each measured side by side in one run and reported as ratios where noise would dominate.

  overhead  clone images/s (Ray workers, persisted searches reused, shards written) over the bare
            generator's images/s with the same model, batch size and steps, in the same process run
  scaling   clone images/s with 2 workers over 1 worker (1 torch thread per worker, so 1 vs 2 cores)
  batches   how full the generator calls are: a search-only clone's renders/s over the bare generator's at
            full batches (searches pooled in one worker, and one at a time), shuffled-shard over class-order
            generation images/s, renders per call in both phases
  search    renders each method needs until its best state has the input image's class, and until it is
            within 1% of the grid's best reward (procedural shapes world: renders count the same for any model)
  metrics   feature extraction images/s (tiny CLIP) and precision/recall time on 10k x 10k features
  resume    a 1000-shard clone (procedural generator) whose driver is SIGKILLed halfway: time to resume it,
            time of a resume with nothing left to do, and whether every shard equals a clean run's
  scale     the 1000-class stand-in (experiment=glyphs1000) at 10, 100 and 1000 classes, same images per
            class: wall per class, driver peak RSS, driver CPU per unit, manifest size, no-op resume time,
            and the share of searches whose best state has the input's class
  reader    the stand-in's weightless reader: accuracy per attribute on random renders
  presets   the experiment presets' dry-run plans (classes, units, shards, images, device-hours at an
            assumed clone.throughput: no GPU is measured here)
  gpu       (runs alone, not in the default set; a CUDA GPU, or --gpu-scale tiny on the CPU) the staged GPU check
            (pipeline/gpu_bench.py, make gpu-check): device facts, bare SD 2.1 at batch 1/8/16/32 from one load, the
            clone's search and generation phases in this process (cluster=inline) over the bare generator, SDXL-Turbo,
            the phases through Ray where installed, model.compile; one JSON line per stage to --out as it ends;
            --budget-s starts no stage that would end past it
  searchcost  (not in the default set) search renders not reused as dataset images over dataset images, and
            CAS, of two make-eval folders run with and without clone.reuse_search_renders (--eval-dirs)

Usage: python scripts/bench.py [--only overhead,scaling,batches,search,metrics,resume,scale,reader,presets] [--model tiny_shapes] [--out docs/bench.json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from pipeline.clone.layout import Layout  # no Hydra, webdataset or Ray (pipeline.clone imports its API lazily)
from pipeline.markdown import table

ROOT = Path(__file__).resolve().parents[1]  # the repository (the package is installed editable: make setup)


def clone(out: Path, *overrides: str) -> dict:
    """The clone API in this process; its summary."""
    import pipeline.clone as clone_api

    s = clone_api.run(clone_api.load([f"paths.output_dir={out}", "clone.progress=false", *overrides])).to_dict()
    if not s["ok"]:
        raise SystemExit(f"clone failed: {s['failures'] or s['stopped']}")
    return s


def clone_cmd(out: Path, *overrides: str) -> list[str]:
    """The CLI, where a benchmark needs a process of its own (to kill it, or to measure the driver alone)."""
    import pipeline.clone as clone_api

    return clone_api.cli_command(f"paths.output_dir={out}", "clone.progress=false", *overrides)


def bench_resume(shards: int) -> dict:
    """A clean ``shards``-shard clone, then the same clone killed (driver SIGKILL, its Ray with it) once half
    its shards are committed and resumed; then a resume with nothing left to do."""
    import hashlib
    import signal

    classes = 10
    common = ["model=procedural", "reward=learned_shapes", "search=random", "env.budget=64", "clone.shard_size=4",
              f"clone.images_per_class={4 * shards // classes}"]
    tmp = Path(tempfile.mkdtemp(prefix="rldf-bench-resume-"))

    def timed(out: Path) -> float:
        t0 = time.perf_counter()
        clone(out, *common)
        return time.perf_counter() - t0

    def digests(out: Path) -> dict[str, str]:
        return {Path(p).name: hashlib.sha256(Path(p).read_bytes()).hexdigest() for p in Layout(str(out)).shard_files()}

    clean = timed(tmp / "clean")
    killed = tmp / "killed"
    run = subprocess.Popen(clone_cmd(killed, *common), cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    log = Path(Layout(str(killed)).log)
    while run.poll() is None and not (log.is_file() and log.read_text().count('"shard_done"') >= shards // 2):
        time.sleep(0.2)
    os.killpg(run.pid, signal.SIGKILL)  # the driver and the Ray it started: the whole "node" is gone
    run.wait()
    committed = len(Layout(str(killed)).shard_files())
    resume = timed(killed)
    noop = timed(killed)
    same = digests(killed) == digests(tmp / "clean")
    shutil.rmtree(tmp, ignore_errors=True)
    return {"shards": shards, "images": 4 * shards, "clean_run_s": round(clean, 1), "committed_before_kill": committed,
            "resume_after_kill_s": round(resume, 1), "resume_nothing_left_s": round(noop, 1), "shards_identical_to_clean_run": same}


def run_watched(out: Path, *overrides: str) -> tuple[dict, float, int, float]:
    """Run the clone CLI into ``out``; (the summary it wrote, wall s, the driver's peak RSS in bytes, the driver's
    CPU seconds)."""
    cmd = clone_cmd(out, *overrides)
    import psutil

    t0 = time.perf_counter()
    proc = psutil.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    peak, cpu = 0, 0.0
    while proc.poll() is None:
        try:
            peak = max(peak, proc.memory_info().rss)
            t = proc.cpu_times()
            cpu = t.user + t.system
        except psutil.NoSuchProcess:
            break
        time.sleep(0.05)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"clone failed ({' '.join(cmd[2:])})")
    return json.loads(Path(Layout(str(out)).summary).read_text()), wall, peak, cpu


def bench_scale(sizes: list[int], images: int) -> dict:
    """The stand-in at each class count with the same images per class and settings (experiment=glyphs1000)."""
    tmp = Path(tempfile.mkdtemp(prefix="rldf-bench-scale-"))
    rows = {}
    for n in sizes:
        out = tmp / f"c{n}"
        args = ["experiment=glyphs1000", f"dataset.num_classes={n}", f"clone.images_per_class={images}"]
        s, wall, rss, cpu = run_watched(out, *args)
        units = s["searches_run"] + s["shards_written"]
        _, noop, _, _ = run_watched(out, *args)
        layout = Layout(str(out))
        manifest = sum(p.stat().st_size for p in [Path(layout.manifest), *Path(layout.records).glob("*.json")])
        rows[str(n)] = {"classes": n, "images": s["images_written"], "units": units, "wall_s": round(wall, 1),
                        "wall_per_class_s": round(wall / n, 3), "driver_peak_rss_mb": round(rss / 2**20, 1),
                        "driver_cpu_ms_per_unit": round(1000 * cpu / units, 2), "manifest_kb": round(manifest / 1024, 1),
                        "resume_nothing_left_s": round(noop, 1), "searches_found_class": round(s["searches_found_class"] / s["searches_run"], 3)}
        print(json.dumps({"scale": rows[str(n)]}), flush=True)
    shutil.rmtree(tmp, ignore_errors=True)
    big, mid = rows[str(max(sizes))], rows[str(sorted(sizes)[-2])] if len(sizes) > 1 else None
    return {"rows": rows, "images_per_class": images,
            "per_class_wall_ratio": round(big["wall_per_class_s"] / mid["wall_per_class_s"], 3) if mid else None}


def bench_reader(n: int) -> dict:
    """The stand-in's weightless reader on ``n`` random renders of the 1000-class glyphs world: accuracy per axis."""
    from hydra.utils import instantiate

    import pipeline.clone as clone_api
    from pipeline.encoders.glyph_reader import GlyphReader

    data = instantiate(clone_api.load(["experiment=glyphs1000"]).dataset)
    renders = [data.world.sample(10_000 + k) for k in range(n)]  # seeds apart from the tests' 0..599
    t0 = time.perf_counter()
    read = GlyphReader(data.grammar).encode([r.image for r in renders])
    seconds = time.perf_counter() - t0
    truth = [data.grammar.encode(r.attributes) for r in renders]
    acc = {a.name: round(float(np.mean([x[k] == t[k] for x, t in zip(read, truth)])), 4) for k, a in enumerate(data.grammar.axes)}
    return {"renders": n, "classes": len(data.classes()), "accuracy": acc, "ms_per_image": round(1000 * seconds / n, 3)}


PRESETS = {"imagenet1k_sd21": 1.8, "imagenet100_sd21": 1.8, "imagenet1k_sdxl_turbo": 12.0, "glyphs1000": None, "shapes_demo": None}


def bench_presets() -> dict:
    """Each preset's dry-run plan; ImageNet presets at an assumed throughput (images/s per GPU worker)."""
    import pipeline.clone as clone_api

    rows = {}
    for name, throughput in PRESETS.items():
        extra = [f"clone.throughput={throughput}"] if throughput else []
        data = ["dataset.root=" + tempfile.gettempdir()] if name.startswith("imagenet") else []
        rows[name] = clone_api.dry_run(clone_api.load([f"experiment={name}", "clone.dry_run=true", *data, *extra]))
    return rows


def bench_searchcost(dirs: list[Path]) -> dict:
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


def bench_pipeline(model: str, images: int, batch: int, classes: list[str]) -> dict:
    """Overhead and scaling: one search pass, then generation-only clones reusing the searches."""
    import torch
    from hydra.utils import instantiate

    import pipeline.clone as clone_api
    from pipeline.assembly import instantiate_model
    from pipeline.search.result import SearchResult

    common = [*([f"model={model}"] if model else []), f"dataset.only=[{','.join(classes)}]", f"clone.images_per_class={images}",
              f"clone.shard_size={images}", f"clone.batch_size={batch}", "cluster.threads_per_worker=1",
              "search=random", "env.budget=64"]
    tmp = Path(tempfile.mkdtemp(prefix="rldf-bench-"))
    clone(tmp / "searched", *common)  # persists the searches (and a first set of shards)
    results = {}
    for workers in (1, 2):
        out = tmp / f"gen{workers}"
        out.mkdir()
        shutil.copytree(Layout(str(tmp / "searched")).searches, Layout(str(out)).searches)
        s = clone(out, *common, f"cluster.num_workers={workers}")
        results[workers] = s
    # the bare generator: same model config, prompts and seeds, one thread (as one worker has)
    torch.set_num_threads(1)
    cfg = clone_api.load(common)
    grammar = instantiate(cfg.grammar)
    gen = instantiate_model(cfg.model, grammar)
    prompts = []
    for c in classes:
        res = SearchResult.from_dict(json.loads(Path(Layout(str(tmp / "searched")).search(c)).read_text()))
        picks = res.sample(images, seed=0) or res.top(images)  # accepted states, else the best (timing only)
        prompts += [picks[i % len(picks)].prompt for i in range(images)]
    gen.generate(prompts[:batch], list(range(batch)))  # warm-up
    t0 = time.perf_counter()
    for i in range(0, len(prompts), batch):
        gen.generate(prompts[i : i + batch], list(range(i, i + batch))[: len(prompts[i : i + batch])])
    bare = len(prompts) / (time.perf_counter() - t0)
    one, two = results[1], results[2]
    shutil.rmtree(tmp, ignore_errors=True)
    return {
        "model": model or Path(str(cfg.model.get("pretrained", cfg.model._target_))).name, "images": len(prompts), "batch": batch,
        "bare_generator_images_per_s": round(bare, 2),
        "clone_1_worker_images_per_s": one["images_per_s_after_startup"],
        "clone_2_workers_images_per_s": two["images_per_s_after_startup"],
        "overhead_ratio": round(one["images_per_s_after_startup"] / bare, 3),
        "scaling_2_over_1": round(two["images_per_s_after_startup"] / one["images_per_s_after_startup"], 3),
        "worker_startup_s": {"1": one["startup_s"], "2": two["startup_s"]},
    }


def bench_batches(model: str | None, classes: int, budget: int | None, images: int, batch: int) -> dict:
    """Full generator calls (one worker, one torch thread, the embedded diffusion model by default).

    Search: a search-only clone (the demo's Q-learning and, by default, its render budget per class,
    ``images_per_class=1``) of ``classes`` classes, with the worker's searches pooled (``cluster.units_per_worker``
    from conf), and one at a time (on one class: that speed does not depend on their number); its search renders/s
    over the bare generator's images/s in full calls of ``batch`` (grid prompts; measured before and after the clones,
    one thread like the worker).
    Generation: the same searches reused by generation-only clones of ``images`` per class (search renders
    not reused, so every image is rendered), class-order, shuffled, shuffled and class-order shards; the mean
    images/s of each order."""
    import torch
    from hydra.utils import instantiate

    import pipeline.clone as clone_api
    from pipeline.assembly import instantiate_model
    if budget is None:  # make demo's, the smallest shipped job (the presets search with env.budget, 480)
        budget = int(clone_api.load(["experiment=shapes_demo"]).env.budget)
    names = ["circle", "octagon", "hexagon", "pentagon", "square", "diamond", "triangle", "star", "cross", "crescent"][:classes]
    common = [*([f"model={model}"] if model else []), f"dataset.only=[{','.join(names)}]", f"clone.batch_size={batch}",
              "cluster.num_workers=1", "cluster.threads_per_worker=1", "search=qlearning_batched", f"env.budget={budget}"]
    # the bare generator: same model config, one thread, full calls of `batch`; measured before the clones and
    # after them (the machine's speed drifts), the mean is the reference. Each time on grid prompts it has not
    # seen, as bare diffusers encodes every prompt and as a search renders each state once; then the same prompts
    # again, their text embeddings from our prompt cache (pipeline/generators/prompt_cache.py), for comparison
    torch.set_num_threads(1)
    cfg = clone_api.load(common)
    generator = instantiate_model(cfg.model, instantiate(cfg.grammar))
    grammar = instantiate(cfg.grammar)
    grid = list(grammar.grid())
    prompt_sets = [[grammar.decode(e) for e in grid[k :: max(1, len(grid) // (8 * batch))]][: 8 * batch] for k in (0, 1, 2)]
    generator.generate(prompt_sets[2][:batch], list(range(batch)))  # warm-up, on prompts not measured

    def bare(prompts: list[str]) -> float:
        t0 = time.perf_counter()
        for i in range(0, len(prompts), batch):
            generator.generate(prompts[i : i + batch], list(range(i, i + batch)))
        return len(prompts) / (time.perf_counter() - t0)

    bare_before, cached_before = bare(prompt_sets[0]), bare(prompt_sets[0])
    tmp = Path(tempfile.mkdtemp(prefix="rldf-bench-batches-"))
    pooled_units = int(clone_api.load(common).cluster.units_per_worker)
    search = {}
    # pooled, pooled without renders ahead (env.render_ahead=false: the same results, the calls it would make without),
    # one search at a time (its speed does not depend on the class count, so fewer classes)
    for key, units, extra in ((str(pooled_units), pooled_units, []), ("no_ahead", pooled_units, ["env.render_ahead=false"]),
                              ("1", 1, [f"dataset.only=[{names[0]}]"])):
        s = clone(tmp / f"search-{key}", *common, *extra, "clone.images_per_class=1", "clone.shard_size=1", f"cluster.units_per_worker={units}")
        search[key] = {"classes": s["classes"], "renders": s["search_renders"], "renders_per_s": round(s["search_renders"] / (s["wall_s"] - s["startup_s"]), 3),
                       "calls": s["generator_calls"]["search"]}
    same = [sorted((tmp / f"search-{k}").glob("searches/*.json")) for k in (str(pooled_units), "no_ahead")]
    same_results = len(same[0]) == classes and [p.read_bytes() for p in same[0]] == [p.read_bytes() for p in same[1]]
    gen: dict[str, dict] = {}
    # class, shuffled, shuffled, class: a drift of the machine's speed that is linear in time weighs on both orders alike
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
    bare_after, cached_after = bare(prompt_sets[1]), bare(prompt_sets[1])
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


def bench_search(inputs: int, seeds: int) -> dict:
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


def bench_metrics(n: int, dim: int) -> dict:
    import torch

    from pipeline.grammar import Grammar
    from pipeline.metrics.extractors import ClipFeatures
    from pipeline.metrics.features import extract
    from pipeline.metrics.prdc import prdc
    from pipeline.metrics.sources import WorldImages
    from pipeline.shapes.world import ShapesWorld

    out = {}
    models = ROOT / "models" / "tiny_clip"
    if models.is_dir():
        world = ShapesWorld(Grammar.from_yaml(ROOT / "conf" / "grammar" / "shapes.yaml"))
        t0 = time.perf_counter()
        fs = extract(WorldImages(world, "bench", 2000, 32), ClipFeatures(str(models)), None, workers=1)
        out["tiny_clip_features_images_per_s"] = round(len(fs) / (time.perf_counter() - t0), 1)
    rng = np.random.default_rng(0)
    real = torch.from_numpy(rng.normal(size=(n, dim)).astype(np.float32))
    fake = torch.from_numpy(rng.normal(0.1, 1, size=(n, dim)).astype(np.float32))
    t0 = time.perf_counter()
    prdc(real, fake, k=3, chunk=1024)
    out[f"prdc_{n}x{n}x{dim}_s"] = round(time.perf_counter() - t0, 2)
    return out


def _stat(s: dict) -> str:
    if "median" not in s:
        return f"{s['reached']}; —"
    return f"{s['reached']}; {s['median']:.0f} ({s['iqr'][0]:.0f}–{s['iqr'][1]:.0f})"


def _md_pipeline(p: dict) -> list[str]:
    return [f"Pipeline (`{p['model']}`, {p['images']} images, batch {p['batch']}, one torch thread per worker; "
            f"worker start-up excluded: {p['worker_startup_s']['1']} s with 1 worker, {p['worker_startup_s']['2']} s with 2):", "",
            table(["measure", "images/s", "ratio", "target"], [
                ["bare generator, same model, batch, steps, prompts and seeds (1 thread)", p["bare_generator_images_per_s"], "—", "—"],
                ["clone end to end, 1 worker (Ray, PNG, tar, sha256, manifest)", p["clone_1_worker_images_per_s"],
                 f"**{p['overhead_ratio']:.3f}** of bare", "≥ 0.90"],
                ["clone end to end, 2 workers", p["clone_2_workers_images_per_s"], f"**{p['scaling_2_over_1']:.2f}×** of 1 worker", "—"],
            ])]


def _md_batches(b: dict) -> list[str]:
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


def _md_search(s: dict) -> list[str]:
    return [f"Search cost ({s['setup']}): renders until the best state has the input's class for good, and until it is "
            "within 1% of the grid's best reward (reached; median (IQR)):", "",
            table(["method", "to the input's class", "to within 1% of the optimum", "total renders (median)"],
                  [[m, _stat(r["renders_to_class"]), _stat(r["renders_to_1pct_of_optimum"]), f"{r['renders_total_median']:.0f}"]
                   for m, r in s.items() if m != "setup"])]


def _md_resume(r: dict) -> list[str]:
    return [f"Resume ({r['shards']} shards, {r['images']} images, procedural generator, 2 workers; the driver and its "
            "local Ray SIGKILLed once half the shards were committed):", "",
            table(["measure", "value"], [
                ["clean run, wall", f"{r['clean_run_s']} s"],
                ["shards committed before the kill", r["committed_before_kill"]],
                ["resume after the kill (validate committed shards, redo the rest), wall", f"{r['resume_after_kill_s']} s"],
                ["resume with nothing left to do (validate all shards), wall", f"{r['resume_nothing_left_s']} s"],
                ["every shard byte-identical to the clean run's", "yes" if r["shards_identical_to_clean_run"] else "**no**"],
            ])]


def _md_scale(sc: dict) -> list[str]:
    return [f"Scale (the 1000-class stand-in, `experiment=glyphs1000`: procedural glyphs, weightless reader, "
            f"{sc['images_per_class']} images per class, shuffled shards of 100, top-10 class axis, 2 local workers):", "",
            table(["classes", "images", "units", "wall", "wall per class", "driver peak RSS", "driver CPU per unit",
                   "manifest", "resume, nothing left", "searches ending on the input's class"],
                  [[r["classes"], r["images"], r["units"], f"{r['wall_s']} s", f"{r['wall_per_class_s']} s", f"{r['driver_peak_rss_mb']} MB",
                    f"{r['driver_cpu_ms_per_unit']} ms", f"{r['manifest_kb']} KB", f"{r['resume_nothing_left_s']} s",
                    f"{r['searches_found_class']:.1%}"] for r in sc["rows"].values()]), "",
            f"Per-class wall at the largest size over the next: **{sc['per_class_wall_ratio']}×** (target ≤ 1.25)."]


def _md_reader(r: dict) -> list[str]:
    return [f"The stand-in's weightless reader (`pipeline/encoders/glyph_reader.py`) on {r['renders']} random renders "
            f"of the {r['classes']}-class glyphs world ({r['ms_per_image']} ms per image):", "",
            table(["attribute", "accuracy"], [[k, f"{v:.1%}"] for k, v in r["accuracy"].items()])]


def _md_presets(pr: dict) -> list[str]:
    return ["Experiment presets, dry-run plans (`clone.dry_run=true`; the ImageNet presets at an *assumed* "
            "`clone.throughput` per GPU worker, not measured here; device-hours are an upper bound: every search at its full budget):", "",
            table(["preset", "classes", "images", "shards", "shard order", "search renders/class (max)", "throughput (img/s/worker)",
                   "device-hours (max)"],
                  [[k, v["classes"], v["total_images"], v["shards"], v.get("shard_order", "class"), v["search_renders_per_class_max"],
                    f"{v['throughput_images_per_s_per_worker']} ({'assumed' if v['throughput_source'] == 'clone.throughput' else 'measured here'})",
                    v["device_hours_max"]] for k, v in pr.items()])]


def _md_searchcost(sc: dict) -> list[str]:
    return ["Search cost at 1300 images per class (shapes world, tiny model, the RLDF goal clone with "
            "`make eval`'s settings, one run without and one with `clone.reuse_search_renders`; cost ratio = search renders not in "
            "the dataset / dataset images):", "",
            table(["run", "images", "search renders", "images that are search renders", "cost ratio ↓", "CAS", "CAS per class",
                   "judge class acc", "shortcut probe ↓", "FD ↓", "recall", "coverage", "real CAS"],
                  [[k, v["images"], v["search_renders"], v["images_from_search"], f"**{v['cost_ratio']}**", f"**{v['cas']}**",
                    " / ".join(f"{c} {a}" for c, a in v["cas_per_class"].items()), v["judge_class_accuracy"], v["shortcut_probe"],
                    v["fd"], v["recall"], v["coverage"], v["real_cas"]] for k, v in sc.items()])]


def _md_metrics(m: dict) -> list[str]:
    return ["Metrics cost:", "", table(["measure", "value"], [[k, v] for k, v in m.items()])]


def _md_gpu(g: dict) -> list[str]:
    from pipeline.gpu_bench import markdown_lines

    return markdown_lines(g)


TABLES = {"gpu": _md_gpu, "pipeline": _md_pipeline, "batches": _md_batches, "search": _md_search, "resume": _md_resume, "scale": _md_scale, "reader": _md_reader, "presets": _md_presets, "searchcost": _md_searchcost, "metrics": _md_metrics}


def markdown(report: dict, command: str) -> dict[str, str]:
    """One table per benchmark part, as printed and as written to docs/results.md (a block each)."""
    import platform

    where = f"Command: `{command}` ({platform.machine()}, {os.cpu_count()} cores)."
    return {k: "\n".join([where, "", *part(report[k])]) for k, part in TABLES.items() if k in report}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", default="overhead,batches,search,metrics,resume,scale,reader,presets")
    p.add_argument("--batch-classes", type=int, default=10, help="classes of the full-calls benchmark (the shapes world has 10)")
    p.add_argument("--batch-budget", type=int, default=None,
                   help="search renders per class in the full-calls benchmark (default: make demo's env.budget)")
    p.add_argument("--batch-images", type=int, default=16, help="images per class in the full-calls benchmark's generation")
    p.add_argument("--reader-renders", type=int, default=5000, help="renders the stand-in's reader is scored on")
    p.add_argument("--scale-sizes", default="10,100,1000", help="class counts of the scale benchmark")
    p.add_argument("--scale-images", type=int, default=10, help="images per class in the scale benchmark")
    p.add_argument("--eval-dirs", default="runs/eval-1300-noreuse,runs/eval-1300-reuse", help="searchcost: make-eval folders")
    p.add_argument("--model", default=None, help="a model= option for the pipeline benchmark (default: conf/clone.yaml's)")
    p.add_argument("--images", type=int, default=64, help="images per class in the pipeline benchmark")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--classes", default="circle,square,star,cross")
    p.add_argument("--inputs", type=int, default=10)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--prdc-n", type=int, default=10_000)
    p.add_argument("--resume-shards", type=int, default=1000, help="shards in the resume benchmark")
    p.add_argument("--gpu-scale", default="full", choices=["full", "tiny"], help="gpu: full-size models on a GPU, or tiny ones (CPU)")
    p.add_argument("--gpu-stages", default=None, help="gpu: only these stages, comma-separated (default: all; pipeline/gpu_bench.py)")
    p.add_argument("--budget-s", type=float, default=None, help="gpu: start no stage whose estimate would end past this many seconds")
    p.add_argument("--out", type=Path, default=None, help="JSON report (gpu: JSON lines, one per stage, appended as each ends)")
    p.add_argument("--markdown", type=Path, default=None, help="write the tables into this markdown file's bench block")
    p.add_argument("--from-json", type=Path, default=None, help="write the tables of an earlier --out report (its own command) instead of measuring")
    a = p.parse_args()
    if a.from_json and a.from_json.suffix == ".jsonl":  # a GPU check's lines
        from pipeline.gpu_bench import report_from_lines

        report = report_from_lines(a.from_json.read_text().splitlines())
        write_tables({"gpu": report}, report.pop("command", f"(report {a.from_json})"), a.markdown)
        return
    if a.from_json:
        report = json.loads(a.from_json.read_text())
        command = report.pop("command", f"(report {a.from_json})")
        write_tables(report, command, a.markdown)
        return
    report = {}
    parts = a.only.split(",")
    if "gpu" in parts:
        if parts != ["gpu"]:
            raise SystemExit("bench: the GPU check runs alone: --only gpu")
        return gpu_check(a)
    if "overhead" in parts or "scaling" in parts:
        report["pipeline"] = bench_pipeline(a.model, a.images, a.batch, a.classes.split(","))
        print(json.dumps({"pipeline": report["pipeline"]}, indent=1), flush=True)
    if "batches" in parts:
        report["batches"] = bench_batches(a.model, a.batch_classes, a.batch_budget, a.batch_images, a.batch)
        print(json.dumps({"batches": report["batches"]}, indent=1), flush=True)
    if "search" in parts:
        report["search"] = bench_search(a.inputs, a.seeds)
        print(json.dumps({"search": report["search"]}, indent=1), flush=True)
    if "resume" in parts:
        report["resume"] = bench_resume(a.resume_shards)
        print(json.dumps({"resume": report["resume"]}, indent=1), flush=True)
    if "scale" in parts:
        report["scale"] = bench_scale([int(x) for x in a.scale_sizes.split(",")], a.scale_images)
        print(json.dumps({"scale": report["scale"]}, indent=1), flush=True)
    if "reader" in parts:
        report["reader"] = bench_reader(a.reader_renders)
    if "presets" in parts:
        report["presets"] = bench_presets()
    if "searchcost" in parts:
        report["searchcost"] = bench_searchcost([ROOT / d for d in a.eval_dirs.split(",")])
    if "metrics" in parts:
        report["metrics"] = bench_metrics(a.prdc_n, 2048)
        print(json.dumps({"metrics": report["metrics"]}, indent=1), flush=True)
    command = "python scripts/bench.py " + " ".join(sys.argv[1:])
    if a.out:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(json.dumps({**report, "command": command}, indent=1))
    write_tables(report, command, a.markdown)


def gpu_check(a: argparse.Namespace) -> None:
    """``--only gpu``: the staged GPU check (pipeline/gpu_bench.py); its lines go to ``--out`` as each stage ends."""
    from pipeline import gpu_bench

    command = "python scripts/bench.py " + " ".join(sys.argv[1:])
    stages = a.gpu_stages.split(",") if a.gpu_stages else None
    if a.out:
        a.out.parent.mkdir(parents=True, exist_ok=True)
    with open(a.out, "a", encoding="utf-8") if a.out else open(os.devnull, "w") as out:
        out.write(json.dumps({"command": command}) + "\n")
        out.flush()
        report = gpu_bench.run(a.gpu_scale, out, a.budget_s, stages, log=lambda line: print(line, flush=True))
    write_tables({"gpu": report}, command, a.markdown)


def write_tables(report: dict, command: str, markdown_file: Path | None) -> None:
    tables = markdown(report, command)
    print("\n\n".join(tables.values()))
    if markdown_file:
        from pipeline.markdown import replace_block

        for part, text in tables.items():
            replace_block(markdown_file, f"bench-{part}", text, title="Results on the shapes world")


if __name__ == "__main__":
    main()
