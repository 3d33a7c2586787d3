"""The 1000-class glyphs world (the ImageNet-scale stand-in): distinct classes, deterministic renders, and a
weightless reader that recognises the class on real renders."""

import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from pipeline.cli import CONF_DIR
from pipeline.encoders.glyph_reader import GlyphReader
from pipeline.errors import ConfigError
from pipeline.generators.procedural import ProceduralGenerator
from pipeline.glyphs.world import MIN_DISTANCE, glyph_bitmaps


@pytest.fixture(scope="module")
def dataset():
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose(config_name="clone", overrides=["experiment=glyphs1000"])
    return instantiate(cfg.dataset)


def test_glyphs_are_1000_distinct_bitmaps_that_fill_their_grid():
    b = glyph_bitmaps(1000)
    flat = b.reshape(1000, -1)
    dist = (flat[:, None, :] != flat[None, :, :]).sum(-1) + np.eye(1000, dtype=int) * 99
    assert dist.min() >= MIN_DISTANCE
    assert b[:, 0].any(1).all() and b[:, -1].any(1).all() and b[:, :, 0].any(1).all() and b[:, :, -1].any(1).all()
    assert (glyph_bitmaps(10) == b[:10]).all()  # a prefix of one sequence: glyph 007 is the same in every world


def test_reader_recognises_the_class_of_real_renders(dataset):
    world = dataset.world
    reader = GlyphReader(dataset.grammar)
    renders = [world.sample(seed) for seed in range(600)]
    read = reader.encode([r.image for r in renders])
    truth = [dataset.grammar.encode(r.attributes) for r in renders]
    accuracy = {a.name: float(np.mean([x[k] == t[k] for x, t in zip(read, truth)])) for k, a in enumerate(dataset.grammar.axes)}
    assert accuracy["object"] >= 0.99 and accuracy["background"] >= 0.99 and accuracy["size"] >= 0.95, accuracy
    probs = reader.probabilities([renders[0].image])[0][0]
    assert probs.shape == (1000,) and probs.argmax() == truth[0][0] and probs.max() > 0.9


def test_glyph_dataset_and_generator(dataset):
    assert len(dataset.classes()) == 1000 and dataset.classes()[42].name == "glyph 042"
    gen = ProceduralGenerator(dataset.grammar, 40, world="glyphs")
    prompt = "a large red striped glyph 042 on a black background"
    a, b = gen.generate([prompt, prompt], [3, 3])
    assert a.tobytes() == b.tobytes() and a.size == (40, 40)
    assert GlyphReader(dataset.grammar).encode([a])[0][0] == 42
    with pytest.raises(ConfigError, match="model.world must be one of shapes, glyphs"):
        ProceduralGenerator(dataset.grammar, 40, world="fonts")
