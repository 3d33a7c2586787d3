"""The 1000-class glyphs world (the ImageNet-scale stand-in): distinct classes, deterministic renders, and a
weightless reader that recognises the class on real renders."""

import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from pipeline.compose import CONF_DIR
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


def test_imagenet_21k_s_21841_glyphs_are_distinct_and_keep_the_first_ones():
    """Past what a 5x5 grid holds at MIN_DISTANCE, the sequence goes on one cell closer; every glyph stays distinct,
    and the first 1000 are the bitmaps every 1000-class world has always drawn (checked by the all-pairs test above)."""
    from pipeline.glyphs.world import DISTANT_GLYPHS, _ball

    n = 21841
    b = glyph_bitmaps(n)
    codes = (b.reshape(n, -1).astype(np.int64) << np.arange(25)).sum(1)
    assert (b[:1000] == glyph_bitmaps(1000)).all() and b[:, 0].any(1).all() and b[:, :, -1].any(1).all()

    def others_within(radius, upto):  # codes among the first `upto` with another of them within `radius` cells
        seen = np.zeros(1 << 25, np.int32)
        np.add.at(seen, codes[:upto], 1)
        ball = _ball(radius)[1:]
        return sum(int(seen[c ^ ball].sum() + seen[c] - 1) for c in codes[:upto].tolist())

    assert others_within(MIN_DISTANCE - 1, DISTANT_GLYPHS) == 0  # the first 10,000 differ in >= 5 cells
    assert others_within(MIN_DISTANCE - 2, n) == 0  # all 21,841 in >= 4


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


# ------------------------------------------------------------------ the CLIP-like stand-in (experiment=confusable1000)
def test_confusable_families_are_near_identical_siblings_of_distinct_bases():
    from pipeline.glyphs.world import MIN_FAMILY_DISTANCE

    b = glyph_bitmaps(1000, 4).reshape(250, 4, -1)
    assert ((b[:, 1:] != b[:, :1]).sum(-1) == 1).all()  # each sibling flips one cell of its family's base
    bases = b[:, 0]
    dist = (bases[:, None] != bases[None]).sum(-1) + np.eye(250, dtype=int) * 99
    assert dist.min() >= MIN_FAMILY_DISTANCE
    g = b.reshape(1000, 5, 5)
    assert g[:, 0].any(1).all() and g[:, -1].any(1).all() and g[:, :, 0].any(1).all() and g[:, :, -1].any(1).all()


def test_the_plain_glyphs_world_draws_what_it_drew_before_families_existed(dataset):
    import hashlib

    h = hashlib.sha256()
    for seed in range(20):
        h.update(np.asarray(dataset.world.sample(seed).image).tobytes())
    for cls in dataset.all_classes()[:20]:
        h.update(np.asarray(dataset.input_image(cls)).tobytes())
    # pinned from the code before confusable families and occlusion were added (commit bb154c5)
    assert h.hexdigest() == "9aebea3630e6a1dc30b4c3ef4ce360d0886af45688ebcd4780f91ba910d62e13"


@pytest.fixture(scope="module")
def confusable():
    from pipeline.assembly import build_stack

    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose(config_name="clone", overrides=["experiment=confusable1000"])
    data = instantiate(cfg.dataset)
    return build_stack(cfg, class_names=[c.prompt for c in data.all_classes()]), data


def test_the_stand_in_misreads_single_inputs_like_clip_among_siblings_only(confusable):
    from pipeline.reading import reader_accuracy

    stack, data = confusable
    acc = reader_accuracy(stack.semantic_encoder, stack.full_grammar, data.classes(), lambda c: [data.input_image(c)])["k=1"]
    assert 0.70 <= acc["top1"] <= 0.80 and acc["top5"] >= 0.90, acc  # CLIP ViT-L/14 on ImageNet: ≈ 0.75 / 0.94
    assert stack.generator.model_id == "procedural-glyphs@40px,family_size=4,occlusion=0.75"
    assert stack.semantic_encoder.bitmaps.shape == (1000, 25)
    np.testing.assert_array_equal(stack.semantic_encoder.bitmaps, glyph_bitmaps(1000, 4).reshape(1000, -1))
