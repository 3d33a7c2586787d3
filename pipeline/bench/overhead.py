"""``overhead`` and ``scaling``: clone images/s over the bare generator's, and 2 workers over 1."""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from pathlib import Path


from pipeline.bench.common import clone
from pipeline.clone.layout import Layout
from pipeline.markdown import table


def run(model: str, images: int, batch: int, classes: list[str]) -> dict:
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


def lines(p: dict) -> list[str]:
    return [f"Pipeline (`{p['model']}`, {p['images']} images, batch {p['batch']}, one torch thread per worker; "
            f"worker start-up excluded: {p['worker_startup_s']['1']} s with 1 worker, {p['worker_startup_s']['2']} s with 2):", "",
            table(["measure", "images/s", "ratio", "target"], [
                ["bare generator, same model, batch, steps, prompts and seeds (1 thread)", p["bare_generator_images_per_s"], "—", "—"],
                ["clone end to end, 1 worker (Ray, PNG, tar, sha256, manifest)", p["clone_1_worker_images_per_s"],
                 f"**{p['overhead_ratio']:.3f}** of bare", "≥ 0.90"],
                ["clone end to end, 2 workers", p["clone_2_workers_images_per_s"], f"**{p['scaling_2_over_1']:.2f}×** of 1 worker", "—"],
            ])]
