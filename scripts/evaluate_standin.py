#!/usr/bin/env python
"""Clone the CLIP-like stand-in (``experiment=confusable1000``: 1000 glyph classes in families of 4 near-identical
ones, 3 renders in 4 occluded) with each method and score each clone's labels and its CAS against real renders.

* methods: class name + random attributes; RLDF with the class read in 1 input (the paper), in 5, in 5 and chosen
  among the likeliest by renders (``env.class_source=rendered``), and from the label;
* label accuracy: the share of a clone's samples whose prompt's class is their label (the summary's; on this
  procedural world, the share whose image shows its label); classes misread: those whose reading is not their label;
  classes without images: those short of every image (on this world: no state of their search reached τ);
* entropy within class: per non-class axis, how evenly a class's samples spread over its choices (from the shards'
  encodings; class name + random attributes is the reference), where a 1000-class classifier finds shortcuts;
* CAS: the small CNN of :mod:`pipeline.metrics.cas`, without mirror augmentation (a mirrored glyph is another
  glyph), trained only on the clone and tested on ``--n-cas-test`` real renders (split ``cas-test``, class-balanced,
  occluded as the world occludes); a reference row trains it on as many real renders (split ``cas-train``) as one
  clone has images.

  python scripts/evaluate_standin.py            # the five clones and their scores; resumes (--fresh: start over)

Clones resume, and each set's CAS is kept in ``<out>/cas/`` under its training and test sets' fingerprints, steps and
seed, so a stopped run picks up where it stopped.

Results go to ``<out>/results.json`` and a marked block of ``--markdown`` (docs/results.md).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

from pipeline.evaluation import (LABELS, NEEDS_CLASS_NAME, ROOT, cached, fmt, method_overrides, parse_methods, run_clone, sample_encodings,
                                 versions, write_results)

METHODS = ("class_name_random", "qlearning", "qlearning_k5", "qlearning_k5_rendered", "qlearning_label")
IMAGE_SIZE = 40  # the stand-in's renders (conf/dataset/glyphs.yaml)


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--methods", default=",".join(METHODS))
    p.add_argument("--experiment", default="confusable1000", help="the stand-in preset (experiment=…)")
    p.add_argument("--input-seed", type=int, default=0, help="which drawn input images each class is cloned from")
    p.add_argument("--context", type=float, default=None,
                   help="a world whose classes have contexts (dataset.context): inputs and real renders follow them")
    p.add_argument("--context-seed", type=int, default=0, help="dataset.context_seed")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--images-per-class", type=int, default=None, help="default: the preset's (10)")
    p.add_argument("--n-cas-test", type=int, default=5000, help="real renders CAS is tested on (class-balanced)")
    p.add_argument("--cas-steps", type=int, default=6000,
                   help="CAS classifier training steps (batch 64; at 1500 the real-data reference learns nothing; 0: no CAS)")
    p.add_argument("--threads", type=int, default=2, help="torch threads for CAS training (1 beside another job on 2 cores)")
    p.add_argument("--out", type=Path, default=ROOT / "runs" / "eval-standin")
    p.add_argument("--markdown", type=Path, default=ROOT / "docs" / "results.md")
    p.add_argument("--block", default="eval-standin", help="the marked block of --markdown the table goes to")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="extra Hydra override for every clone (repeatable)")
    p.add_argument("--fresh", action="store_true", help="delete earlier clones and CAS scores in --out first")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True)
    return p.parse_args()


def common_overrides(a: argparse.Namespace) -> list[str]:
    return [f"experiment={a.experiment}", f"dataset.input_seed={a.input_seed}", f"seed={a.seed}",
            *([f"dataset.context={a.context}", f"dataset.context_seed={a.context_seed}"] if a.context is not None else []),
            *([f"clone.images_per_class={a.images_per_class}"] if a.images_per_class else []),
            f"clone.progress={'true' if a.progress else 'false'}", *a.overrides]


def main() -> None:
    import torch
    from hydra.utils import instantiate

    import pipeline.clone as clone_api

    a = parse_args()
    methods = parse_methods(a.methods, METHODS)
    torch.set_num_threads(a.threads)
    if a.fresh:
        for m in (*METHODS, "cas"):
            shutil.rmtree(a.out / m, ignore_errors=True)
    a.out.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    cfg = clone_api.load(common_overrides(a))
    per_class, grammar = int(cfg.clone.images_per_class), instantiate(cfg.grammar)
    rows: dict[str, dict] = {}
    for m in methods:  # 1. one clone per method
        print(f"== clone: {LABELS[m]}", file=sys.stderr, flush=True)
        s = run_clone(a.out / m, common_overrides(a) + method_overrides(m, None))
        rows[m] = {"clone": {k: s[k] for k in ("label_accuracy", "images_written", "search_renders", "wall_s_command", "command")},
                   "misread": len(s["misread"]), "shortfall": sum(s["shortfall"].values()),
                   "not_passed": sum(s.get("not_passed", {}).values()),
                   "empty_classes": sum(n >= per_class for n in s["shortfall"].values()),
                   "entropy": attribute_entropy(a.out / m, grammar)}
    t_clones = time.perf_counter() - t_start
    dataset = instantiate(cfg.dataset)
    t0 = time.perf_counter()
    kept, n_test = cas_scores(a, dataset, methods, per_class, rows)  # 2. CAS: train on each set only, test on real renders
    seconds = {"clones": t_clones, "cas": time.perf_counter() - t0, "total": time.perf_counter() - t_start}
    result = {"args": {"experiment": a.experiment, "input_seed": a.input_seed, "seed": a.seed, "classes": len(dataset.all_classes()),
                       "images_per_class": per_class, "budget": int(cfg.env.budget),
                       "n_cas_test": n_test, "cas_steps": a.cas_steps},
              "rows": rows, "seconds": seconds, "cas_kept": kept, "command": "python scripts/evaluate_standin.py " + " ".join(sys.argv[1:]),
              "versions": versions()}
    block = markdown(result)
    write_results(a.out, result, a.markdown, a.block, block, title="Results on the CLIP-like stand-in")
    print(block)
    print(f"\nresults: {a.markdown} (table), {a.out / 'results.json'}", file=sys.stderr)


def cas_scores(a: argparse.Namespace, dataset, methods: list[str], per_class: int, rows: dict[str, dict]) -> tuple[list[str], int]:
    """CAS of each method's clone and of real renders (a small CNN trained on each set alone, tested on real renders),
    into ``rows``; (the sets whose score was kept from an earlier run, the test set's size)."""
    from pipeline.metrics.cas import classification_accuracy_score, load_labelled
    from pipeline.metrics.sources import ShardImages, WorldImages

    names = [c.name for c in dataset.all_classes()]
    test_source = WorldImages(dataset.world, "cas-test", a.n_cas_test, IMAGE_SIZE, classes=names)
    test = load_labelled(test_source)
    sources = {m: ShardImages(str(a.out / m), IMAGE_SIZE) for m in methods}
    sources["real"] = WorldImages(dataset.world, "cas-train", per_class * len(names), IMAGE_SIZE, classes=names)
    kept = []
    for name, src in (sources.items() if a.cas_steps else ()):
        key = {"train": src.fingerprint, "test": test_source.fingerprint, "steps": a.cas_steps, "seed": a.seed}

        def score(src=src, name=name) -> dict:
            cas = classification_accuracy_score(load_labelled(src), test, len(names), a.cas_steps, seed=a.seed,
                                                progress=a.progress, desc=f"CAS {name}", hflip=False)
            cas.pop("per_class")  # 1000 classes: the overall figure is what the table reports
            return cas

        cas, was_kept = cached(a.out / "cas" / f"{name}.json", key, score)
        rows.setdefault(name, {})["cas"] = cas
        kept += [name] if was_kept else []
        print(f"{LABELS[name]}: CAS {cas['accuracy']:.3f} ({cas['n_train']} training images)", file=sys.stderr, flush=True)
    return kept, len(test)


def attribute_entropy(folder: Path, grammar) -> dict[str, float]:
    """Per non-class axis of ``grammar``, the normalised entropy of the samples' choices within a class (mean over
    classes with two images or more; 1 = even), from the shards' ``encoding``: on this procedural world, what the
    images show. Class name + random attributes draws them at random, so its row is the reference."""
    import numpy as np

    from pipeline.metrics.judge import normalised_entropy

    by_class = sample_encodings(folder)
    axes = [(j, a) for j, a in enumerate(grammar.axes) if a.name != grammar.class_axis]
    classes = [np.array(e) for e in by_class.values() if len(e) >= 2]
    return {a.name: float(np.mean([normalised_entropy(e[:, j], len(a)) for e in classes])) if classes else float("nan")
            for j, a in axes}


def markdown(res: dict) -> str:
    from pipeline.markdown import table

    a = res["args"]
    n = a["classes"] * a["images_per_class"]
    lines = [f"`experiment={a['experiment']}`, {a['classes']} classes, {a['images_per_class']} images per class, input seed "
             f"{a['input_seed']}, run seed {a['seed']}, render budget {a['budget']} per class. "
             + (f"CAS: the small CNN trained {a['cas_steps']} steps (batch 64, no mirror augmentation) on each set alone, tested "
                f"on {a['n_cas_test']} real renders (`cas-test`, class-balanced). " if a["cas_steps"] else "CAS not computed (`--cas-steps 0`). ")
             + "Passing acceptance: the share of the images written whose `json` says `accepted` (the rest are the best of "
             "`clone.max_tries` renders, `clone.fill=best`). Classes without images: short of every image (the summary's `shortfall`). Entropy "
             "within class: per non-class axis, the normalised entropy of the samples' prompt choices within a class (1 = "
             "even; class name + random attributes draws them at random, so its row is the reference).", ""]
    axes = next((list(r["entropy"]) for r in res["rows"].values() if "entropy" in r), [])
    rows = []
    for name in (*METHODS, "real"):
        r = res["rows"].get(name)
        if r is None:
            continue
        c = r.get("clone")
        rows.append([LABELS[name], "yes" if name in NEEDS_CLASS_NAME else "no" if c else "—",
                     fmt(c["label_accuracy"]) if c else "—", str(r["misread"]) if c else "—",
                     f"{c['images_written']} of {n}" if c else str(r["cas"]["n_train"]),
                     f"{1 - r.get('not_passed', 0) / c['images_written']:.1%}" if c and c["images_written"] else "—",
                     str(r["empty_classes"]) if c else "—",
                     " / ".join(f"{v:.2f}" for v in r["entropy"].values()) if c else "—",
                     str(c["search_renders"]) if c else "—", f"{c['wall_s_command']:.0f} s" if c else "—",
                     fmt(r["cas"]["accuracy"]) if "cas" in r else "—"])
    lines.append(table(["method", "needs class name", "label accuracy", "classes misread (read ≠ label)", "images",
                        "passing acceptance", "classes without images", f"entropy within class ({' / '.join(axes)})", "search renders", "clone wall time", "CAS"], rows))
    t = res["seconds"]
    kept = res.get("cas_kept") or []
    lines += ["", f"Wall times of this run: clones {t['clones']:.0f} s, CAS {t['cas']:.0f} s, total {t['total']:.0f} s"
              + (f" (the CAS of {', '.join(LABELS[k] for k in kept)} was kept from an earlier run of the same settings, in "
                 f"`cas/`, and not retrained)." if kept else "."), "",
              "Command: `" + res["command"] + "`", "",
              "Versions: " + ", ".join(f"{k} {v}" for k, v in res["versions"].items()) + ".", "",
              "Clone commands (one per method; `paths.output_dir` differs):", ""]
    lines += [f"- {LABELS[n]}: `{r['clone']['command']}`" for n, r in res["rows"].items() if "clone" in r]
    return "\n".join(lines).replace(f"{ROOT}/", "")


if __name__ == "__main__":
    main()
