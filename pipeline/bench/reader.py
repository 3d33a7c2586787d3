"""``reader``: the stand-in's weightless reader, accuracy per attribute on random renders."""

from __future__ import annotations

import time

import numpy as np

from pipeline.markdown import table


def run(n: int) -> dict:
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


def lines(r: dict) -> list[str]:
    return [f"The stand-in's weightless reader (`pipeline/encoders/glyph_reader.py`) on {r['renders']} random renders "
            f"of the {r['classes']}-class glyphs world ({r['ms_per_image']} ms per image):", "",
            table(["attribute", "accuracy"], [[k, f"{v:.1%}"] for k, v in r["accuracy"].items()])]
