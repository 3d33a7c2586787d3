"""``rldf-metrics``: FD, KID, precision/recall, density/coverage of a synthetic set against a real one."""

from __future__ import annotations

import json
import time

from hydra.utils import instantiate
from omegaconf import DictConfig

from pipeline.cli import app
from pipeline.metrics.features import extract
from pipeline.metrics.report import write_report
from pipeline.metrics.scores import score_sets
from pipeline.metrics.sources import FolderImages, WorldImages, clone_class_labels, open_source


def run(cfg: DictConfig) -> dict:
    world = None
    if str(cfg.real).startswith("shapes") or str(cfg.synthetic).startswith("shapes"):
        from pipeline.shapes.world import ShapesWorld

        world = ShapesWorld(instantiate(cfg.grammar), int(cfg.image_size), cfg.shapes_context, int(cfg.shapes_context_seed))
    # a real ImageFolder tree is labelled as the clone labelled its classes (an ImageNet-100 clone's cls values
    # are ImageNet-1k labels; its 100-folder tree would otherwise be numbered 0-99)
    labels = clone_class_labels(str(cfg.synthetic))
    real_src = open_source(str(cfg.real), int(cfg.image_size), world, int(cfg.shapes_n), labels)
    fake_src = open_source(str(cfg.synthetic), int(cfg.image_size), world, int(cfg.shapes_n))
    extractor = instantiate(cfg.features)
    t0 = time.perf_counter()
    common = dict(batch_size=int(cfg.batch_size), workers=int(cfg.workers), device=str(cfg.device), cache_dir=cfg.cache_dir)
    real = extract(real_src, extractor, cfg.n_real, label="real", **common)
    fake = extract(fake_src, extractor, cfg.n_fake, label="synthetic", **common)
    t_features = time.perf_counter() - t0
    names = {}
    for src in (real_src, fake_src):
        if isinstance(src, WorldImages):
            names = dict(enumerate(src.world.classes))
        elif isinstance(src, FolderImages):
            names = dict(src.classes)
    result = score_sets(real, fake, int(cfg.k), int(cfg.kid_subsets), int(cfg.kid_subset_size), int(cfg.seed), int(cfg.chunk), names)
    result.update(
        extractor=extractor.name, resize=f"PIL bicubic to {cfg.image_size}px, then {getattr(extractor, 'resize', 'none')}",
        k=int(cfg.k), real=real.description, synthetic=fake.description, features_cached={"real": real.cached, "synthetic": fake.cached},
        seconds={"features": round(t_features, 2), "metrics": round(time.perf_counter() - t0 - t_features, 2)},
    )
    paths = write_report(result, real, fake, cfg.paths.output_dir, names)
    print(json.dumps({"overall": result["overall"], "extractor": result["extractor"], "report": str(paths["html"])}, indent=1))
    return result


@app("metrics")
def main(cfg: DictConfig) -> None:
    """Score a synthetic image set against a real one (FD, KID, precision/recall, density/coverage), overall and
    per class; writes a JSON and an HTML report to paths.output_dir."""
    run(cfg)


if __name__ == "__main__":
    main()
