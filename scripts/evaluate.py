#!/usr/bin/env python
"""Clone the shapes world with each dataset-generation method and score every clone against real data.

For each method (class-name prompting, class name + random attributes, the goal encoding, random search,
noisy diffusion gradient, RLDF Q-learning in goal mode (from the goal encoding, and from the paper's
noise start) and reward-only mode, and Q-learning with a colour excluded) this runs the real clone job (``pipeline.clone.run``, what ``scripts/clone.py`` calls: Ray workers, search, acceptance, verified
shards) with the same model, reward, seed and render budget, then scores the clone:

* a judge CNN of its own (``pipeline.metrics.judge``) reads every image: class accuracy, normalised
  entropy of each non-class attribute within a class, and the shortcut probe (the class told from the
  non-class readings alone);
* FD, KID, precision, recall, density, coverage (embedded tiny-CLIP features; ``pipeline.metrics``)
  against ``--n-real`` images of the real split ``val``, and the Vendi score of each class's features;
* CAS: a small CNN trained only on the clone, tested on real images of the split ``cas-test``.

Two reference rows come from real data: a real split (``cas-train``, as many images as one clone)
scored against ``val`` by the same metrics, and the same CNN trained on it. Results go to
``<out>/results.json`` and to a markdown file (tables between marker comments, so prose written
around them survives a rerun), with one contact sheet per method.

  python scripts/evaluate.py                  # full: 200 images per class (make eval)
  python scripts/evaluate.py --quick          # 20 images per class, smaller budgets (make eval-quick)

Re-running resumes: finished clones are reused (their recorded wall times are reported), so only
missing work is redone; ``--fresh`` starts over.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.clone.layout import Layout
from pipeline.evaluation import LABELS, METHODS, NEEDS_CLASS_NAME, ROOT, fmt, method_overrides, parse_methods, run_clone, versions, write_results

def _passed(row: dict, cls: str) -> str:
    """``passed/written`` of a class in a method's clone (its summary's per-class counts), or — without a clone."""
    c = row.get("clone")
    if not c or not c.get("images_requested"):  # a clone summarised before the counts existed
        return "—"
    written = c["images_requested"] // c["classes"] - c.get("shortfall", {}).get(cls, 0)
    return f"{written - c.get('not_passed', {}).get(cls, 0)}/{written}"


def search_stats(out: Path, class_names: list[str], grammar) -> dict:
    """Renders per class, accepted states (share of the states a search rendered), and whether each
    search's best state shows the input's class."""
    from pipeline.search.result import SearchResult

    renders, found, accepted, fraction = [], 0, [], []
    ci = grammar.axis_index(grammar.class_axis) if grammar.class_axis else None
    for k, name in enumerate(class_names):
        res = SearchResult.from_dict(json.loads(Path(Layout(str(out)).search(name)).read_text()))
        renders.append(res.renders)
        accepted.append(len(res.accepted))
        fraction.append(len(res.accepted) / max(1, len(res.candidates)))
        enc = res.best.encoding
        found += int(ci is not None and enc is not None and grammar.axes[ci].choices[enc[ci]] == name)
    return {"renders_median": float(np.median(renders)), "renders_min": int(min(renders)), "renders_max": int(max(renders)),
            "renders_total": int(sum(renders)), "classes_found": found, "accepted_states": accepted,
            "accepted_fraction": float(np.mean(fraction))}


def markdown(res: dict) -> str:
    from pipeline.markdown import table

    a = res["args"]
    rows = {n: res["rows"][n] for n in (*METHODS, "real") if n in res["rows"]}  # table order, whatever the run order
    lines = [f"Shapes world, {a['classes']} classes, {a['images_per_class']} images per class per method "
             f"({'quick mode' if a['quick'] else 'full run'}), input seed {a['input_seed']}, run seed {a['seed']}, "
             f"render budget {a['budget']} per class, model `{a['model']}`, reward `{a['reward']}`, {a['workers']} Ray workers. "
             f"Metrics: `{res['extractor']}` features, {a['n_real']} real `val` images; CAS tested on {a['n_cas_test']} real "
             f"`cas-test` images after {a['cas_steps']} training steps; judge: {res['judge']}.", ""]
    quality, dist = [], []
    for name, r in rows.items():
        m, s, j = r["metrics"], r.get("search"), r["judge"]
        renders = f"{fmt(s['renders_median'], 0)} ({s['renders_min']}–{s['renders_max']})" if s else "—"
        acc = f"{s['accepted_fraction']:.2f} ({int(np.median(s['accepted_states']))})" if s else "—"
        short = sum(r["clone"].get("shortfall", {}).values()) if "clone" in r else 0
        unpassed = sum(r["clone"].get("not_passed", {}).values()) if "clone" in r else 0
        label = fmt(r["clone"].get("label_accuracy")) if "clone" in r else "—"
        ent = " / ".join(f"{v:.2f}" for v in j["entropy"].values())
        quality.append([LABELS[name], "yes" if name in NEEDS_CLASS_NAME else "no" if s else "—", renders, acc,
                        f"{short} / {unpassed}" if "clone" in r else "—", label, f"{j['class_accuracy']:.3f}", ent, f"{j['shortcut_probe']:.3f}",
                        f"{r['vendi']:.2f}", fmt(r["cas"]["accuracy"])])
        kid = f"{m['kid']:.4f} ± {m['kid_std']:.4f}"
        wall = f"{r['clone']['wall_s_command']:.0f} s" if "clone" in r else "—"
        dist.append([LABELS[name], wall, fmt(m["fd"]), kid, fmt(m["precision"]), fmt(m["recall"]), fmt(m["density"]),
                     fmt(m["coverage"]), fmt(r["cas"]["accuracy"])])
    axes = " / ".join(next(iter(rows.values()))["judge"]["entropy"])
    lines.append(table(["method", "needs class name", "renders / class (median, range)", "accepted fraction (median accepted states)",
                        "images short / not passing", "label accuracy (prompt's class)", "judge: class accuracy", f"judge: entropy within class ({axes})", "shortcut probe ↓",
                        "Vendi (per class)", "CAS"], quality))
    lines += ["", table(["method", "clone wall time", "FD ↓", "KID ↓", "precision", "recall", "density", "coverage", "CAS"], dist)]
    excl = {n: r["judge"]["share"]["colour"]["red"] for n, r in rows.items() if "colour" in r["judge"]["share"]}
    lines += ["", "Share of images the judge reads as red: " + ", ".join(f"{LABELS[n]} {v:.3f}" for n, v in excl.items()) + "."]
    per_class = [[cls] + [f"{fmt(r['metrics_per_class'].get(cls, {}).get('fd'), 1)} / {fmt(r['cas']['per_class'].get(cls), 2)} / "
                          f"{_passed(r, cls)}" for r in rows.values()] for cls in res["class_names"]]
    lines += ["", "Per class: FD ↓ / CAS / images passing acceptance of those written.", "",
              table(["class"] + [LABELS[n] for n in rows], per_class)]
    lines += ["", "Random samples per class (rows: classes):", ""]
    for name, r in rows.items():
        lines.append(f"- {LABELS[name]}: ![{name}]({r['figure']})")
    t = res["seconds"]
    lines += ["", f"Wall times: clones {t['clones']:.0f} s, features and metrics {t['metrics']:.0f} s, "
              f"judge and CAS {t['cas']:.0f} s, total {t['total']:.0f} s.", "",
              "Command: `" + res["command"] + "`", "",
              "Versions: " + ", ".join(f"{k} {v}" for k, v in res["versions"].items()) + ".", "",
              "Clone commands (one per method; `paths.output_dir` differs):", ""]
    lines += [f"- {LABELS[n]}: `{r['clone']['command']}`" for n, r in rows.items() if "clone" in r]
    return "\n".join(lines).replace(f"{ROOT}/", "")  # paths relative to the repository, as a reader runs them


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="20 images per class, budget 64, short CAS training (< 10 min on 2 cores)")
    p.add_argument("--images-per-class", type=int, default=None, help="default 200 (quick: 20)")
    p.add_argument("--budget", type=int, default=None, help="renders per class for each search (default: env.budget; quick: 64)")
    p.add_argument("--methods", default=",".join(m for m in METHODS if not METHODS[m].contexts))
    p.add_argument("--classes", default=None, help="comma-separated subset of classes (default: all)")
    p.add_argument("--model", default=None, help="a model= option (default: conf/clone.yaml's)")
    p.add_argument("--reward", default=None, help="a reward= option (default: conf/clone.yaml's)")
    p.add_argument("--input-seed", type=int, default=0, help="which drawn input image each class is cloned from (dataset.input_seed)")
    p.add_argument("--context", type=float, default=None,
                   help="a world whose classes have contexts (dataset.context, a Dirichlet concentration): inputs, real splits and CAS test")
    p.add_argument("--context-seed", type=int, default=0, help="dataset.context_seed")
    p.add_argument("--judge-train", type=int, default=20000, help="real renders the judge is trained on")
    p.add_argument("--judge-steps", type=int, default=3000, help="judge training steps (cached in <out>/judge)")
    p.add_argument("--workers", type=int, default=2, help="Ray workers (one torch thread each)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--n-real", type=int, default=None, help="real val images for the metrics (default: as many as one clone)")
    p.add_argument("--n-cas-test", type=int, default=None, help="real images CAS is tested on (default 2000; quick: 500)")
    p.add_argument("--cas-steps", type=int, default=None, help="CAS classifier steps (default 1500; quick: 800)")
    p.add_argument("--out", type=Path, default=None, help="work folder (default runs/eval or runs/eval-quick)")
    p.add_argument("--markdown", type=Path, default=None, help="default docs/results.md (quick: <out>/results.md)")
    p.add_argument("--figures", type=Path, default=None, help="contact sheets (default docs/results (quick: <out>/figures))")
    p.add_argument("--block", default="eval", help="name of the marked block of --markdown the tables go to (default eval)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="extra Hydra override for every clone (repeatable), e.g. --set clone.batch_size=32")
    p.add_argument("--fresh", action="store_true", help="delete earlier clones in --out first")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True)
    return p.parse_args()


@dataclass
class Plan:
    """The evaluation's settings, resolved from the arguments (quick or full)."""

    a: argparse.Namespace
    methods: list[str]
    classes: list[str]  # cloned and scored
    class_names: list[str]  # every class of the world
    images_per_class: int
    budget: int | None
    out: Path
    md: Path
    figs: Path
    cas_steps: int
    n_cas_test: int

    @property
    def n_synth(self) -> int:
        return self.images_per_class * len(self.classes)

    def overrides(self) -> list[str]:
        """The settings every method's clone shares."""
        a, ipc = self.a, self.images_per_class
        common = [*([f"model={a.model}"] if a.model else []), *([f"reward={a.reward}"] if a.reward else []),
                  f"dataset.input_seed={a.input_seed}", f"seed={a.seed}", f"clone.images_per_class={ipc}",
                  *([f"dataset.context={a.context}", f"dataset.context_seed={a.context_seed}"] if a.context is not None else []),
                  f"clone.shard_size={min(ipc, 50)}", f"cluster.num_workers={a.workers}", "cluster.threads_per_worker=1",
                  f"clone.progress={'true' if a.progress else 'false'}", *a.overrides]
        if len(self.classes) < len(self.class_names):
            common.append(f"dataset.only=[{','.join(self.classes)}]")
        return common


def make_plan(a: argparse.Namespace, class_names: list[str]) -> Plan:
    methods = parse_methods(a.methods, METHODS)
    chosen = [c.strip() for c in a.classes.split(",")] if a.classes else list(class_names)
    bad = sorted(set(chosen) - set(class_names))
    if bad:
        raise SystemExit(f"error: unknown class(es) {bad}; the shapes world has {class_names}")
    quick = a.quick
    out = a.out or ROOT / "runs" / ("eval-quick" if quick else "eval")
    return Plan(a, methods, chosen, list(class_names), a.images_per_class or (20 if quick else 200),
                a.budget or (64 if quick else None), out,
                a.markdown or (out / "results.md" if quick else ROOT / "docs" / "results.md"),
                a.figures or (out / "figures" if quick else ROOT / "docs" / "results"),
                a.cas_steps or (800 if quick else 1500), a.n_cas_test or (500 if quick else 2000))


def distribution_metrics(plan: Plan, world, extractor, sources: dict, cfg) -> tuple[dict, dict]:
    """FD/KID/PRDC of every source against the real val split, and the mean per-class Vendi score, under
    conf/metrics.yaml's settings (``cfg``)."""
    import torch

    from pipeline.metrics.features import extract
    from pipeline.metrics.scores import score_sets
    from pipeline.metrics.sources import WorldImages
    from pipeline.metrics.vendi import per_class_vendi

    fx = dict(batch_size=int(cfg.batch_size), workers=int(cfg.workers), cache_dir=plan.out / "feature_cache")
    names = dict(enumerate(plan.class_names))
    real_val = extract(WorldImages(world, "val", plan.a.n_real or plan.n_synth, 32, classes=plan.classes), extractor, None,
                       label="real val", **fx)
    metrics, vendi = {}, {}
    for name, src in sources.items():
        fs = extract(src, extractor, None, label=name, **fx)
        metrics[name] = score_sets(real_val, fs, k=int(cfg.k), kid_subsets=int(cfg.kid_subsets), kid_subset_size=int(cfg.kid_subset_size),
                                   seed=plan.a.seed, class_names=names)
        vendi[name] = float(np.mean(list(per_class_vendi(torch.from_numpy(fs.features), torch.from_numpy(fs.labels)).values())))
    return metrics, vendi


def judged_rows(plan: Plan, world, sources: dict, metrics: dict, vendi: dict) -> tuple[dict, int]:
    """The judge's readings, CAS (train on each set, test on real cas-test images) and a contact sheet per source."""
    from pipeline.metrics.cas import classification_accuracy_score, load_labelled
    from pipeline.metrics.judge import judge_clone, train_judge
    from pipeline.metrics.sheets import class_contact_sheet
    from pipeline.metrics.sources import WorldImages

    a, names = plan.a, dict(enumerate(plan.class_names))
    judge = train_judge(world, a.judge_train, a.judge_steps, cache=plan.out / f"judge-{a.judge_train}-{a.judge_steps}")
    test = load_labelled(WorldImages(world, "cas-test", plan.n_cas_test, 32, classes=plan.classes))
    rows = {}
    for name, src in sources.items():
        train = load_labelled(src)
        judged = judge_clone(judge, world, train.images, train.labels, seed=a.seed)
        cas = classification_accuracy_score(train, test, len(plan.class_names), plan.cas_steps, seed=a.seed, class_names=names,
                                            progress=a.progress, desc=f"CAS {name}")
        fig = plan.figs / f"{name}.png"
        class_contact_sheet(train.images, train.labels.numpy(), {plan.class_names.index(c): c for c in plan.classes}, 8, a.seed, fig)
        m = metrics[name]["overall"]
        rows[name] = {"metrics": m, "metrics_per_class": metrics[name]["per_class"], "cas": cas, "judge": judged,
                      "vendi": vendi[name],
                      "figure": str(fig.relative_to(plan.md.parent)) if fig.is_relative_to(plan.md.parent) else str(fig)}
        print(f"{LABELS[name]}: FD {m['fd']:.3f}, precision {m['precision']:.3f}, recall {m['recall']:.3f}, "
              f"coverage {m['coverage']:.3f}, judge class {judged['class_accuracy']:.3f}, entropy min {judged['entropy_min']:.2f}, "
              f"shortcut {judged['shortcut_probe']:.3f}, CAS {cas['accuracy']:.3f}", file=sys.stderr, flush=True)
    return rows, int(len(test))


def main() -> None:
    import torch
    from hydra.utils import instantiate

    from pipeline.compose import load_config
    from pipeline.metrics.sources import WorldImages, ShardImages
    from pipeline.shapes.world import ShapesWorld

    a = parse_args()
    torch.set_num_threads(2)
    t_start = time.perf_counter()
    cfg = load_config("metrics", ["synthetic=none", "workers=0"])  # features extracted in this process, beside the clones' Ray
    grammar = instantiate(cfg.grammar)
    world = ShapesWorld(grammar, 32, a.context, a.context_seed)  # the real splits follow the clones' world
    plan = make_plan(a, list(world.classes))
    if a.fresh:
        for m in METHODS:
            shutil.rmtree(plan.out / m, ignore_errors=True)
    seconds = {}
    t0 = time.perf_counter()
    clones, stats = {}, {}
    for m in plan.methods:  # 1. one clone per method
        print(f"== clone: {LABELS[m]}", file=sys.stderr, flush=True)
        clones[m] = run_clone(plan.out / m, plan.overrides() + method_overrides(m, plan.budget))
        stats[m] = search_stats(plan.out / m, plan.classes, grammar)
    seconds["clones"] = time.perf_counter() - t0
    sources = {m: ShardImages(str(plan.out / m), 32) for m in plan.methods}
    sources["real"] = WorldImages(world, "cas-train", plan.n_synth, 32, classes=plan.classes)
    t0 = time.perf_counter()  # 2. distribution metrics, with a real-vs-real reference row
    extractor = instantiate(cfg.features)  # built once: the metrics' features and the name the results give them
    metrics, vendi = distribution_metrics(plan, world, extractor, sources, cfg)
    seconds["metrics"] = time.perf_counter() - t0
    t0 = time.perf_counter()  # 3. the judge's readings and CAS; contact sheets
    rows, n_test = judged_rows(plan, world, sources, metrics, vendi)
    seconds["cas"], seconds["total"] = time.perf_counter() - t0, time.perf_counter() - t_start
    for m in clones:
        rows[m]["clone"], rows[m]["search"] = clones[m], stats[m]
    write_result(plan, rows, n_test, seconds, extractor.name)


def write_result(plan: Plan, rows: dict, n_test: int, seconds: dict, extractor: str) -> None:
    a = plan.a
    composed = clone_settings(plan)
    result = {
        "args": {"quick": a.quick, "classes": len(plan.classes), "images_per_class": plan.images_per_class,
                 "budget": composed["budget"], "seed": a.seed, "model": composed["model"],
                 "reward": composed["reward"], "input_seed": a.input_seed, "workers": a.workers,
                 "n_real": a.n_real or plan.n_synth, "n_cas_test": n_test, "cas_steps": plan.cas_steps},
        "class_names": plan.classes, "extractor": extractor, "rows": rows,
        "judge": f"ShapesNet trained on {a.judge_train} real `judge` renders for {a.judge_steps} steps (seed 7)",
        "seconds": seconds, "command": "python scripts/evaluate.py " + " ".join(sys.argv[1:]), "versions": versions(),
    }
    block = markdown(result)
    write_results(plan.out, result, plan.md, a.block, block, title="Results on the shapes world")
    print(block)
    print(f"\nresults: {plan.md} (tables), {plan.out / 'results.json'}, figures in {plan.figs}", file=sys.stderr)


def clone_settings(plan: Plan) -> dict:
    """The render budget and the model and reward options the clones ran with, as Hydra composed them (the
    arguments' overrides, else conf's defaults)."""
    from hydra.core.hydra_config import HydraConfig

    import pipeline.clone as clone_api

    cfg = clone_api.load(plan.overrides() + method_overrides(plan.methods[0], plan.budget))
    choices = HydraConfig.get().runtime.choices
    return {"budget": cfg.env.budget, "model": choices["model"], "reward": choices["reward"]}


if __name__ == "__main__":
    main()
