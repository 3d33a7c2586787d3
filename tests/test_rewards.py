import numpy as np
import pytest

from helpers.components import SEGMENTATION
from pipeline.encoders.pixel_stats import PaletteSegmenter
from pipeline.errors import ConfigError
from pipeline.rewards import CompositeReward, EmbeddingReward, FeatureReward, SegmentationReward, build_reward


@pytest.fixture(scope="module")
def images(world):
    base = {"object": "star", "colour": "blue", "background": "white", "size": "large", "pattern": "solid"}
    return {
        "target": world.render(base, 1).image,
        "same": world.render(base, 1).image,
        "other_seed": world.render(base, 2).image,
        "colour": world.render({**base, "colour": "orange"}, 1).image,
        "everything": world.render({"object": "circle", "colour": "green", "background": "black", "size": "small", "pattern": "dotted"}, 1).image,
    }


@pytest.mark.parametrize("kind", ["segmentation", "features", "embedding"])
def test_each_reward_is_in_unit_range_and_ranks_sensibly(kind, encoder, images):
    reward = {
        "segmentation": SegmentationReward(PaletteSegmenter(), **SEGMENTATION),
        "features": FeatureReward(encoder),
        "embedding": EmbeddingReward(encoder),
    }[kind]
    prepared = reward.prepare(images["target"])
    names = ["same", "other_seed", "colour", "everything"]
    r = dict(zip(names, reward.score_many([images[n] for n in names], [prepared] * len(names))))
    assert all(0 <= v <= 1 + 1e-6 for v in r.values()), r
    assert r["same"] == pytest.approx(1.0, abs=1e-5)
    assert r["other_seed"] > r["colour"] > r["everything"]


def test_composite_is_the_weighted_mean(encoder, images):
    seg, feat = SegmentationReward(PaletteSegmenter(), **SEGMENTATION), FeatureReward(encoder)
    comp = CompositeReward({"segmentation": seg, "features": feat}, {"segmentation": 3.0, "features": 1.0})
    batch = [images["colour"], images["everything"]]
    expected = (3 * seg.score_many(batch, [seg.prepare(images["target"])] * len(batch))
                + feat.score_many(batch, [feat.prepare(images["target"])] * len(batch))) / 4
    np.testing.assert_allclose(comp.score(batch, comp.prepare(images["target"])), expected, rtol=1e-6)


def test_zero_weight_terms_are_not_computed(encoder):
    comp = build_reward(encoder, None, {"embedding": 1.0, "features": 0.0})
    assert list(comp.terms) == ["embedding"]


@pytest.mark.parametrize(
    "weights, message",
    [({"clip": 1.0}, "unknown reward 'clip'"), ({"embedding": -1.0}, "must be >= 0"), ({"embedding": 0.0}, "positive weight")],
)
def test_bad_weights(encoder, weights, message):
    with pytest.raises(ConfigError, match=message):
        build_reward(encoder, PaletteSegmenter(), weights, SEGMENTATION)


def test_segmentation_weight_needs_a_segmenter(encoder):
    with pytest.raises(ConfigError, match="segmenter is null"):
        build_reward(encoder, None, {"segmentation": 1.0})
