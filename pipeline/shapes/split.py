"""Emit a "real" shapes-world split (the reference distribution for metrics) as WebDataset shards or an ImageFolder tree."""

from __future__ import annotations

import io
import json
from pathlib import Path

from tqdm import tqdm

from pipeline.errors import ConfigError
from pipeline.seeding import derive_seed
from pipeline.shapes.world import ShapesWorld

FORMATS = ("webdataset", "imagefolder")


def sample_seed(seed: int, split: str, index: int) -> int:
    """The render seed of sample ``index`` of ``split`` (disjoint splits come from different names)."""
    return derive_seed("shapes-split", seed, split, index)


def write_split(
    world: ShapesWorld,
    out_dir: str | Path,
    n: int,
    split: str = "train",
    fmt: str = "webdataset",
    seed: int = 0,
    shard_size: int = 1000,
    progress: bool = True,
) -> list[Path]:
    """Write ``n`` samples; returns the shard files (webdataset) or the split's root folder (imagefolder).

    WebDataset samples carry ``png``, ``cls`` (object class index) and ``json`` (caption, attributes,
    seed); ImageFolder trees are ``out_dir/split/<class>/<index>.png``.
    """
    if n < 1:
        raise ConfigError(f"split size must be >= 1, got {n}")
    if fmt not in FORMATS:
        raise ConfigError(f"split format must be one of {FORMATS}, got '{fmt}'")
    out = Path(out_dir)
    classes = list(world.classes)
    samples = (world.sample(sample_seed(seed, split, i)) for i in range(n))
    bar = tqdm(samples, total=n, desc=f"shapes {split}", unit="img", disable=not progress)
    if fmt == "imagefolder":
        root = out / split
        for c in classes:
            (root / c).mkdir(parents=True, exist_ok=True)
        for i, r in enumerate(bar):
            r.image.save(root / r.attributes["object"] / f"{i:07d}.png")
        return [root]

    import webdataset as wds

    out.mkdir(parents=True, exist_ok=True)
    pattern = str(out / f"shapes-{split}-%06d.tar")
    with wds.ShardWriter(pattern, maxcount=shard_size, verbose=0) as sink:
        for i, r in enumerate(bar):
            buf = io.BytesIO()
            r.image.save(buf, format="PNG")
            meta = {"caption": r.caption, "attributes": r.attributes, "seed": sample_seed(seed, split, i), "split": split}
            sink.write({
                "__key__": f"{split}_{i:07d}",
                "png": buf.getvalue(),
                "cls": classes.index(r.attributes["object"]),
                "json": json.dumps(meta).encode(),
            })
    return sorted(out.glob(f"shapes-{split}-*.tar"))
