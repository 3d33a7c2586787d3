"""``rldf-metrics``: FD, KID, precision/recall, density/coverage of a synthetic set against a real one."""

from __future__ import annotations

import json
import logging
import time

from hydra.utils import instantiate
from omegaconf import DictConfig

from pipeline.cli import app
from pipeline.errors import ConfigError
from pipeline.metrics.features import extract
from pipeline.metrics.report import write_report
from pipeline.metrics.scores import score_sets
from pipeline.metrics.sources import FolderImages, LabelledFiles, WorldImages, clone_class_labels, open_source
from pipeline.torch_device import resolve_device

log = logging.getLogger("rldf.metrics")


def scoring_size(cfg: DictConfig, extractor) -> tuple[int, str | None]:
    """The side every image is resized to before the extractor: ``image_size``, else the extractor's input size; and a
    warning when that is not the size the extractor was made for."""
    made_for = getattr(extractor, "input_size", None)
    if cfg.image_size is None:
        if made_for is None:
            raise ConfigError(f"features {extractor.name} declares no input size: set image_size")
        return int(made_for), None
    size = int(cfg.image_size)
    if made_for is not None and size != made_for:
        return size, (f"images are scored at {size} px (image_size={size}) but {extractor.name} was made for {made_for} px: "
                      "its distances are not comparable with scores at its own size (image_size=null)")
    return size, None


def run(cfg: DictConfig) -> dict:
    extractor = instantiate(cfg.features)
    size, warning = scoring_size(cfg, extractor)
    if warning:
        log.warning(warning)
    device = resolve_device(str(cfg.device))
    world = None
    if str(cfg.real).startswith("shapes") or str(cfg.synthetic).startswith("shapes"):
        from pipeline.shapes.world import ShapesWorld

        world = ShapesWorld(instantiate(cfg.grammar), context=cfg.shapes_context, context_seed=int(cfg.shapes_context_seed))
    # a real ImageFolder tree is labelled as the clone labelled its classes (an ImageNet-100 clone's cls values
    # are ImageNet-1k labels; its 100-folder tree would otherwise be numbered 0-99)
    labels = clone_class_labels(str(cfg.synthetic))
    real_src = open_source(str(cfg.real), size, world, int(cfg.shapes_n), labels, cfg.real_labels)
    fake_src = open_source(str(cfg.synthetic), size, world, int(cfg.shapes_n))
    t0 = time.perf_counter()
    common = dict(batch_size=int(cfg.batch_size), workers=int(cfg.workers), device=str(device), cache_dir=cfg.cache_dir)
    real = extract(real_src, extractor, cfg.n_real, label="real", **common)
    fake = extract(fake_src, extractor, cfg.n_fake, label="synthetic", **common)
    t_features = time.perf_counter() - t0
    names = {}
    for src in (real_src, fake_src):
        if isinstance(src, WorldImages):
            names = dict(enumerate(src.world.classes))
        elif isinstance(src, (FolderImages, LabelledFiles)):
            names = dict(src.classes)
    result = score_sets(real, fake, int(cfg.k), int(cfg.kid_subsets), int(cfg.kid_subset_size), int(cfg.seed), int(cfg.chunk), names)
    result.update(
        extractor=extractor.name, image_size=size, extractor_input_size=getattr(extractor, "input_size", None),
        resize=f"PIL bicubic to {size}px, then {getattr(extractor, 'resize', 'none')}", device=str(device),
        **({"warning": warning} if warning else {}),
        k=int(cfg.k), real=real.description, synthetic=fake.description, features_cached={"real": real.cached, "synthetic": fake.cached},
        seconds={"features": round(t_features, 2), "metrics": round(time.perf_counter() - t0 - t_features, 2)},
    )
    paths = write_report(result, real, fake, cfg.paths.output_dir, names)
    print(json.dumps({"overall": result["overall"], "extractor": result["extractor"], "image_size": size, "report": str(paths["html"])}, indent=1))
    return result


@app("metrics")
def main(cfg: DictConfig) -> None:
    """Score a synthetic image set against a real one (FD, KID, precision/recall, density/coverage), overall and
    per class; writes a JSON and an HTML report to paths.output_dir."""
    run(cfg)


if __name__ == "__main__":
    main()
