#!/usr/bin/env python
"""Whether a clone keeps each class's context: clone a drawn world whose classes have contexts (``dataset.context``, a
Dirichlet concentration: :mod:`pipeline.contexts`) with each method, and score every clone against the world's truth.

* methods (``conf/eval/methods.yaml``): class name + random attributes; RLDF (5 inputs, the class chosen by renders) with
  random attributes (``clone.propose=random``), with the context read from its inputs (``clone.propose=inputs``, the
  prior learned; and fixed at strength 2; and 20 inputs read for the context); the label with ``propose=inputs`` (the
  upper reference: it uses the class name); and real data;
* context followed: per class, the total-variation distance between the histogram of each non-class axis over the
  class's images (their prompts' encodings: on these procedural worlds, what the images show) and the class's true
  distribution (:meth:`pipeline.contexts.WorldContexts.distributions`), mean over axes and classes; the real row is the
  floor that sampling alone sets, at the same count per class;
* distribution, per class: FD, precision, recall and coverage of each class's images against as many real images of
  the class (the project's metrics, ``conf/metrics.yaml``'s features), mean over classes;
* CAS: the small CNN of :mod:`pipeline.metrics.cas` trained on each set alone, tested on real images (``cas-test``);
* label accuracy, renders (search and generation) and the clone's wall time.

  python scripts/evaluate_contexts.py --world shapes --context 0.3
  python scripts/evaluate_contexts.py --world standin --context 0.3 --classes 100

Clones resume and CAS scores are kept under their sets' fingerprints, so a stopped run picks up where it stopped.
Results go to ``<out>/results.json`` and a marked block of ``--markdown`` (default ``<out>/results.md``).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

import numpy as np

from pipeline.evaluation import (LABELS, METHODS, NEEDS_CLASS_NAME, ROOT, cached, fmt, method_overrides, parse_methods, run_clone,
                                 sample_encodings, versions, write_results)

DEFAULT_METHODS = ("class_name_random", *(m for m in METHODS if METHODS[m].contexts))
WORLDS = {  # the settings each world's clones share; image size of its renders
    "shapes": (["model=procedural", "dataset=shapes", "grammar=shapes", "reward=learned_shapes", "search=qlearning_batched"], 32),
    "standin": (["experiment=confusable1000"], 40),
}


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--world", choices=sorted(WORLDS), default="shapes")
    p.add_argument("--context", default="0.3", help="dataset.context: a Dirichlet concentration, or 'none' (uniform)")
    p.add_argument("--context-seed", type=int, default=0)
    p.add_argument("--input-seed", type=int, default=0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--classes", type=int, default=100, help="standin: dataset.num_classes")
    p.add_argument("--images-per-class", type=int, default=None, help="default: shapes 30, standin 10")
    p.add_argument("--budget", type=int, default=None, help="env.budget (default: shapes 120, standin the preset's 48)")
    p.add_argument("--methods", default=",".join(DEFAULT_METHODS))
    p.add_argument("--cas-steps", type=int, default=None, help="CAS training steps (default: shapes 800, standin 3000)")
    p.add_argument("--n-cas-test", type=int, default=2000)
    p.add_argument("--out", type=Path, default=None, help="default runs/eval-contexts/<world>-<context>")
    p.add_argument("--markdown", type=Path, default=None, help="default <out>/results.md")
    p.add_argument("--block", default=None, help="the marked block of --markdown (default contexts-<world>-<context>)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--fresh", action="store_true")
    return p.parse_args()


def common_overrides(a: argparse.Namespace) -> list[str]:
    shapes = a.world == "shapes"
    ipc = a.images_per_class or (30 if shapes else 10)
    context = "null" if a.context.lower() in ("none", "null") else a.context
    return [*WORLDS[a.world][0], *([] if shapes else [f"dataset.num_classes={a.classes}"]), f"dataset.context={context}",
            f"dataset.context_seed={a.context_seed}", f"dataset.input_seed={a.input_seed}", f"seed={a.seed}",
            f"clone.images_per_class={ipc}", *([f"clone.shard_size={ipc}"] if shapes else []), "cluster=inline",
            "clone.progress=false", *a.overrides]


def context_distance(per_class: dict[str, np.ndarray], world, grammar) -> float:
    """Mean over classes and non-class axes of the total-variation distance between a class's histogram (``per_class``:
    class -> encodings ``[n, axes]``) and its true distribution."""
    from pipeline.contexts import total_variation

    axes = [(j, a) for j, a in enumerate(grammar.axes) if a.name != grammar.class_axis]
    tv = [total_variation({a.name: np.bincount(enc[:, j], minlength=len(a)) for j, a in axes}, world.contexts.distributions(c))
          for c, enc in per_class.items()]
    return float(np.mean(tv))


def min_entropy(per_class: dict[str, np.ndarray], grammar) -> float:
    """The lowest over non-class axes of the mean (over classes) normalised entropy of a class's choices (1 = even)."""
    from pipeline.metrics.judge import normalised_entropy

    axes = [(j, a) for j, a in enumerate(grammar.axes) if a.name != grammar.class_axis]
    return min(float(np.mean([normalised_entropy(enc[:, j], len(a)) for enc in per_class.values()])) for j, a in axes)


def bound_distance(dataset, grammar, per_class: int, inputs: int, alpha: float | None) -> float:
    """The context distance of a clone that reads its ``inputs`` inputs per class perfectly (their true attributes) and
    knows the world's true prior (symmetric Dirichlet ``alpha``): the posterior mean, stratified to ``per_class``
    images. What no reader of that many inputs can beat on average; ``alpha=None`` (uniform world) knows the truth."""
    from pipeline.clone.context_prior import stratified_counts
    from pipeline.contexts import total_variation

    axes = [a for a in grammar.axes if a.name != grammar.class_axis]
    tv = []
    for cls in dataset.classes():
        seen = [dataset.input_attributes(cls, j) for j in range(inputs)]
        counts = {}
        for a in axes:
            c = np.array([sum(s[a.name] == choice for s in seen) for choice in a.choices], np.float64)
            p = np.full(len(a), 1.0 / len(a)) if alpha is None else (c + alpha) / (c.sum() + alpha * len(a))
            counts[a.name] = stratified_counts(p, per_class)
        tv.append(total_variation(counts, dataset.world.contexts.distributions(cls.name)))
    return float(np.mean(tv))


def real_encodings(world, grammar, split: str, n: int, names: list[str]) -> dict[str, np.ndarray]:
    """The encodings of a real split's images (:class:`pipeline.metrics.sources.WorldImages`'s draws), per class."""
    from pipeline.shapes.split import sample_seed

    out: dict[str, list] = {}
    for i in range(n):
        attrs = world.sample_attributes(sample_seed(0, split, i), names[i % len(names)])
        out.setdefault(attrs[grammar.class_axis], []).append(grammar.encode(attrs))
    return {c: np.array(e) for c, e in out.items()}


def main() -> None:
    import torch
    from hydra.utils import instantiate

    import pipeline.clone as clone_api
    from pipeline.compose import load_config
    from pipeline.metrics.cas import classification_accuracy_score, load_labelled
    from pipeline.metrics.features import extract
    from pipeline.metrics.scores import score_sets
    from pipeline.metrics.sources import ShardImages, WorldImages

    a = parse_args()
    methods = parse_methods(a.methods, METHODS)
    torch.set_num_threads(2)
    out = a.out or ROOT / "runs" / "eval-contexts" / f"{a.world}-{a.context}"
    if a.fresh:
        shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    cfg = clone_api.load(common_overrides(a))
    dataset = instantiate(cfg.dataset)
    world, names = dataset.world, [c.name for c in dataset.all_classes()]
    grammar, size, per_class = world.grammar, WORLDS[a.world][1], int(cfg.clone.images_per_class)
    rows: dict[str, dict] = {}
    for m in methods:  # 1. one clone per method
        print(f"== clone: {LABELS[m]}", file=sys.stderr, flush=True)
        s = run_clone(out / m, common_overrides(a) + method_overrides(m, a.budget or (120 if a.world == "shapes" else None)))
        gen = s.get("generator_calls", {}).get("generation", {}).get("renders", 0)
        encodings = {c: np.array(e) for c, e in sample_encodings(out / m).items()}
        rows[m] = {"label_accuracy": s["label_accuracy"], "renders": s["search_renders"] + gen, "wall_s": s["wall_s_command"],
                   "images": s["images_written"], "command": s["command"], "tv": context_distance(encodings, world, grammar),
                   "entropy_min": min_entropy(encodings, grammar)}
    n = per_class * len(names)
    real = real_encodings(world, grammar, "cas-train", n, names)
    rows["real"] = {"tv": context_distance(real, world, grammar), "entropy_min": min_entropy(real, grammar)}
    alpha = world.contexts.concentration
    bounds = {k: bound_distance(dataset, grammar, per_class, k, alpha) for k in (5, 20)}  # the methods' input counts
    t_clones = time.perf_counter() - t_start
    sources = {m: ShardImages(str(out / m), size) for m in methods}
    sources["real"] = WorldImages(world, "cas-train", n, size, classes=names)
    mcfg = load_config("metrics", ["synthetic=none", "workers=0"])
    extractor = instantiate(mcfg.features)
    fx = dict(batch_size=256, workers=0, cache_dir=out / "feature_cache")
    real_val = extract(WorldImages(world, "val", n, size, classes=names), extractor, None, label="real val", **fx)
    test_source = WorldImages(world, "cas-test", a.n_cas_test, size, classes=names)
    test = load_labelled(test_source)
    steps = a.cas_steps or (800 if a.world == "shapes" else 3000)
    for name, src in sources.items():  # 2. per-class distribution metrics and CAS
        scores = score_sets(real_val, extract(src, extractor, None, label=name, **fx), k=int(mcfg.k), kid_subsets=10,
                            kid_subset_size=min(per_class, 1000), seed=a.seed, class_names=dict(enumerate(names)))["per_class"]
        for key in ("fd", "precision", "recall", "coverage"):
            rows[name][key] = float(np.mean([v[key] for v in scores.values()]))
        key = {"train": src.fingerprint, "test": test_source.fingerprint, "steps": steps, "seed": a.seed}
        cas, _ = cached(out / "cas" / f"{name}.json", key, lambda src=src, name=name: {
            k: v for k, v in classification_accuracy_score(load_labelled(src), test, len(names), steps, seed=a.seed, progress=False,
                                                           desc=f"CAS {name}", hflip=a.world == "shapes").items() if k != "per_class"})
        rows[name]["cas"] = cas["accuracy"]
        print(f"{LABELS[name]}: TV {rows[name]['tv']:.3f}, FD {rows[name]['fd']:.3f}, CAS {cas['accuracy']:.3f}", file=sys.stderr, flush=True)
    result = {"args": {**vars(a), "out": str(out), "markdown": str(a.markdown)}, "classes": len(names), "images_per_class": per_class,
              "budget": int(clone_api.load(common_overrides(a) + method_overrides(methods[0], a.budget or (120 if a.world == "shapes" else None))).env.budget),
              "cas_steps": steps, "extractor": extractor.name, "rows": rows, "bounds": bounds, "seconds": {"clones": t_clones, "total": time.perf_counter() - t_start},
              "command": "python scripts/evaluate_contexts.py " + " ".join(sys.argv[1:]), "versions": versions()}
    block = markdown(result)
    write_results(out, result, a.markdown or out / "results.md", a.block or f"contexts-{a.world}-{a.context}", block,
                  title=f"Contexts: {a.world}, context {a.context}")
    print(block)


def markdown(res: dict) -> str:
    from pipeline.markdown import table

    a = res["args"]
    world = "shapes world" if a["world"] == "shapes" else f"CLIP-like stand-in (`experiment=confusable1000`, {res['classes']} classes)"
    context = "uniform (`dataset.context=null`)" if a["context"].lower() in ("none", "null") else \
        f"contexts α = {a['context']} (`dataset.context={a['context']} dataset.context_seed={a['context_seed']}`)"
    lines = [f"{world[0].upper() + world[1:]}, {context}, {res['images_per_class']} images per class, input seed {a['input_seed']}, "
             f"run seed {a['seed']}, render budget {res['budget']} per class, `cluster=inline`. Context distance: mean total-variation "
             "distance of each class's attribute histogram to its true distribution (real data: the floor sampling sets at "
             f"this count). Per class: FD, precision, recall, coverage against as many real images (`{res['extractor']}` "
             f"features), mean over classes. Entropy within class: per non-class axis, the mean normalised entropy of a class's "
             f"choices (1 = even), the lowest axis. CAS: {res['cas_steps']} steps, tested on {a['n_cas_test']} real images.", ""]
    rows = []
    for name in (*METHODS, "real"):
        r = res["rows"].get(name)
        if r is None:
            continue
        clone = "renders" in r
        rows.append([LABELS[name], "yes" if name in NEEDS_CLASS_NAME else "no" if clone else "—", fmt(r["tv"]), fmt(r["entropy_min"], 2), fmt(r["fd"]),
                     fmt(r["precision"]), fmt(r["recall"]), fmt(r["coverage"]), fmt(r["cas"]),
                     fmt(r["label_accuracy"]) if clone else "—", str(r["renders"]) if clone else "—",
                     f"{r['wall_s']:.0f} s" if clone else "—"])
    lines.append(table(["method", "needs class name", "context distance ↓", "entropy within class (lowest axis)", "FD per class ↓", "precision", "recall", "coverage",
                        "CAS", "label accuracy", "renders", "clone wall time"], rows))
    if res.get("bounds"):
        lines += ["", "Bound on the context distance (no clone): each class's inputs read perfectly (their true attributes), "
                  "the world's true prior, the posterior mean stratified to the class's images: " +
                  "; ".join(f"{k} inputs {fmt(v)}" for k, v in res["bounds"].items()) + "."]
    lines += ["", "Command: `" + res["command"] + "`", "", "Versions: " + ", ".join(f"{k} {v}" for k, v in res["versions"].items()) + ".",
              "", "Clone commands (one per method; `paths.output_dir` differs):", ""]
    lines += [f"- {LABELS[n]}: `{r['command']}`" for n, r in res["rows"].items() if "command" in r]
    return "\n".join(lines).replace(f"{ROOT}/", "")


if __name__ == "__main__":
    main()
