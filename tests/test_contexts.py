"""Classes by name, worlds with contexts, and each class's context read from its inputs (clone.propose=inputs)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import pipeline.clone as clone_api
from pipeline.clone.context_prior import (estimate_prior, posterior, propose_from_context, reading, stratified_counts,
                                          stratified_values)
from pipeline.clone.dataset import ShapesDataset
from pipeline.contexts import WorldContexts, total_variation
from pipeline.errors import ConfigError
from pipeline.glyphs.world import GlyphWorld, glyph_name
from pipeline.grammar import Grammar
from pipeline.search.result import Candidate
from pipeline.seeding import rng_for
from pipeline.shapes.world import ShapesWorld

ROOT = Path(__file__).resolve().parents[1]
SHAPES = Grammar.from_yaml(ROOT / "conf/grammar/shapes.yaml")
GLYPHS = Grammar.from_yaml(ROOT / "conf/grammar/glyphs.yaml")
SHAPES_CNN = str(ROOT / "models/shapes_cnn")


def shuffled(grammar: Grammar) -> Grammar:
    """The grammar with its class axis in sorted order (an ImageFolder's label order)."""
    return grammar.with_choices(grammar.class_axis, sorted(grammar.axis(grammar.class_axis).choices))


# ------------------------------------------------------------------ worlds with contexts
@pytest.mark.parametrize("world, namespace", [(ShapesWorld(SHAPES), "shapes-attributes"), (GlyphWorld(GLYPHS), "glyph-attributes")])
def test_a_world_without_contexts_draws_what_it_drew_before(world, namespace):
    """dataset.context=null: each axis an even draw, in axis order, from the seed's generator (the class replaced after)."""
    for seed in range(50):
        rng = rng_for(namespace, seed)
        before = {a.name: a.choices[int(rng.integers(len(a)))] for a in world.grammar.axes}
        assert world.sample_attributes(seed) == before
        assert world.sample_attributes(seed, world.classes[3]) == {**before, "object": world.classes[3]}


def test_each_class_of_a_context_world_follows_its_own_distribution():
    world = ShapesWorld(SHAPES, context=0.3, context_seed=1)
    for cls in ("star", "circle"):
        counts = {a.name: np.zeros(len(a)) for a in SHAPES.axes[1:]}
        for seed in range(3000):
            attrs = world.sample_attributes(seed, cls)
            assert attrs["object"] == cls
            for a in SHAPES.axes[1:]:
                counts[a.name][a.choices.index(attrs[a.name])] += 1
        assert total_variation(counts, world.contexts.distributions(cls)) < 0.03
    star, circle = world.contexts.distributions("star"), world.contexts.distributions("circle")
    assert total_variation({k: 1000 * v for k, v in star.items()}, circle) > 0.2  # classes differ
    drawn = [world.sample_attributes(seed)["object"] for seed in range(2000)]  # the class itself is drawn evenly
    assert min(drawn.count(c) for c in SHAPES.axis("object").choices) > 150
    # by name: the same class has the same context whatever order the class axis lists it in, and another seed another
    assert all(np.array_equal(WorldContexts(shuffled(SHAPES), 0.3, 1).distributions("star")[a], star[a]) for a in star)
    assert not np.array_equal(WorldContexts(SHAPES, 0.3, 2).distributions("star")["background"], star["background"])
    with pytest.raises(ConfigError, match="dataset.context must be > 0"):
        WorldContexts(SHAPES, 0.0)


def test_the_glyph_world_and_its_inputs_follow_contexts():
    names = [glyph_name(k) for k in range(20)]
    grammar = GLYPHS.with_choices("object", names)
    world = GlyphWorld(grammar, context=0.2, context_seed=0)
    truth = world.contexts.distributions(names[4])
    draws = [world.sample_attributes(s, names[4])["background"] for s in range(2000)]
    freq = np.array([draws.count(c) for c in grammar.axis("background").choices]) / len(draws)
    assert np.abs(freq - truth["background"]).max() < 0.04


# ------------------------------------------------------------------ the prior and the estimate
def simulated_readings(world: ShapesWorld, inputs: int) -> list[dict]:
    """Each class's context reading from ``inputs`` drawn inputs, read exactly (one-hot)."""
    out = []
    for c in world.classes:
        draws = [world.sample_attributes(7000 + j, c) for j in range(inputs)]
        axes = {a.name: {"choices": list(a.choices),
                         "mean": list(np.mean([np.eye(len(a))[a.choices.index(d[a.name])] for d in draws], axis=0))}
                for a in world.grammar.axes[1:]}
        out.append({"inputs": inputs, "axes": axes})
    return out


def test_the_empirical_prior_is_strong_where_classes_share_a_distribution_and_weak_where_they_differ():
    uniform = {p.axis: p.strength for p in estimate_prior(simulated_readings(ShapesWorld(SHAPES), 5))}
    peaked = {p.axis: p.strength for p in estimate_prior(simulated_readings(ShapesWorld(SHAPES, context=0.3), 5))}
    assert min(uniform.values()) > 3 * max(peaked.values()), (uniform, peaked)
    fixed = estimate_prior(simulated_readings(ShapesWorld(SHAPES, context=0.3), 5), 2.0)
    assert {p.strength for p in fixed} == {2.0} and all(abs(sum(p.mean) - 1) < 1e-9 for p in fixed)


def test_a_class_estimate_is_its_reading_smoothed_towards_the_prior():
    r = {"inputs": 4, "axes": {"size": {"choices": ["small", "medium", "large"], "mean": [1.0, 0.0, 0.0]}}}
    prior = [{"axis": "size", "choices": ["small", "medium", "large"], "mean": [0.2, 0.4, 0.4], "strength": 4.0, "classes": 3}]
    np.testing.assert_allclose(posterior(r, prior)["size"], [0.6, 0.2, 0.2])
    other_vocabulary = [{**prior[0], "choices": ["tiny", "medium", "large"]}]  # another group's: not this axis's prior
    np.testing.assert_allclose(posterior(r, other_vocabulary)["size"], [1.0, 0.0, 0.0])


def test_a_class_images_follow_its_estimate_as_closely_as_whole_images_allow():
    p = np.array([0.55, 0.3, 0.1, 0.05])
    for n in (1, 7, 30):
        counts = stratified_counts(p, n)
        assert counts.sum() == n and np.abs(counts - n * p).max() < 1
        for block in range(3):  # each block of n proposals holds exactly those counts
            values = [stratified_values(p, n, block * n + i, ("class", 1)) for i in range(n)]
            assert np.array_equal(np.bincount(values, minlength=len(p)), counts)
    base = Candidate("a large red solid star on a white background", 1.0, SHAPES.encode(
        {"object": "star", "colour": "red", "background": "white", "size": "large", "pattern": "solid"}), 1.0)
    picks = [propose_from_context(SHAPES, base, {2: np.array([0.0, 0.0, 0.25, 0.75])}, 8, j, 5) for j in range(8)]
    assert [SHAPES.describe(c.encoding)["background"] for c in picks].count("black") == 6
    assert all(SHAPES.describe(c.encoding)["object"] == "star" and c.reward != c.reward for c in picks)  # a proposal: no reward


# ------------------------------------------------------------------ classes by name
def test_the_shapes_reader_reads_classes_by_name_in_any_order():
    from pipeline.encoders.shapes_cnn import ShapesCnnSemanticEncoder

    world = ShapesWorld(SHAPES)
    images = [world.sample(s).image for s in range(12)]
    own, sorted_ = ShapesCnnSemanticEncoder(SHAPES, SHAPES_CNN), ShapesCnnSemanticEncoder(shuffled(SHAPES), SHAPES_CNN)
    p, q = own.probabilities(images)[0], sorted_.probabilities(images)[0]
    order = [SHAPES.axis("object").choices.index(c) for c in shuffled(SHAPES).axis("object").choices]
    np.testing.assert_allclose(q, p[:, order], atol=1e-6)
    five = SHAPES.with_choices("object", ["star", "circle", "cross", "square", "diamond"])  # a dataset of fewer classes
    r = ShapesCnnSemanticEncoder(five, SHAPES_CNN).probabilities(images)[0]
    np.testing.assert_allclose(r.sum(1), 1, atol=1e-6)
    assert [five.axis("object").choices[i] for i in r.argmax(1)] == [
        max(("star", "circle", "cross", "square", "diamond"), key=lambda c: p[n, SHAPES.axis("object").choices.index(c)]) for n in range(12)]
    with pytest.raises(ConfigError, match="does not read the class 'banana'"):
        ShapesCnnSemanticEncoder(SHAPES.with_choices("object", ["star", "banana"]), SHAPES_CNN)


def test_the_glyph_reader_reads_classes_by_name_in_any_order():
    from pipeline.encoders.glyph_reader import GlyphReader

    names = [glyph_name(k) for k in range(12)]
    grammar = GLYPHS.with_choices("object", names)
    reverse = GLYPHS.with_choices("object", names[::-1])
    images = [GlyphWorld(grammar).sample(s).image for s in range(10)]
    p, q = GlyphReader(grammar).probabilities(images)[0], GlyphReader(reverse).probabilities(images)[0]
    np.testing.assert_allclose(q, p[:, ::-1], atol=1e-6)
    with pytest.raises(ConfigError, match="no class 'tench'"):
        GlyphReader.check_classes(["glyph 001", "tench"])


def test_a_class_no_fixed_head_reader_knows_is_refused_in_one_line_before_anything_runs(tmp_path):
    root = tmp_path / "data"
    for name in ("star", "banana"):
        (root / name).mkdir(parents=True)
        ShapesWorld(SHAPES).sample(0).image.save(root / name / "0.png")
    out = tmp_path / "out"
    cfg = clone_api.load([f"paths.output_dir={out}", "dataset=imagefolder", f"dataset.root={root}", "cluster=inline"])
    with pytest.raises(ConfigError, match="does not read the class 'banana'") as err:
        clone_api.run(cfg)
    assert "\n" not in str(err.value) and not out.exists()


# ------------------------------------------------------------------ CLIP over a grammar's groups (the ImageNet path)
def test_a_group_context_is_read_by_clip_over_the_group_vocabulary():
    from pipeline.assembly import build_stack
    from pipeline.compose import load_config

    cfg = load_config("clone", ["grammar=imagenet", "dataset=imagefolder", "dataset.root=.", "reward=clip_imagenet", f"reward.image_encoder.pretrained={ROOT / 'models/tiny_clip'}",
                                "reward.image_encoder.device=cpu", "reward.segmenter=null", "reward.semantic_encoder.prompts_per_choice=2",
                                "model=tiny_shapes"])
    stack = build_stack(cfg, class_names=["tench", "goldfish", "toaster"])
    encoder, grammar = stack.context_reader("aquatic", ["tench", "goldfish"])
    assert grammar.axis("scene").choices == tuple(aquatic_scenes()) and grammar.axis("object").choices == ("tench", "goldfish")
    assert stack.context_reader("aquatic", ["tench", "goldfish"])[0] is encoder  # one reader per group
    assert stack.context_reader(None)[0] is stack.semantic_encoder
    images = [ShapesWorld(SHAPES, 64).sample(s).image for s in range(3)]
    r = reading(encoder, grammar, images)
    assert r["inputs"] == 3 and "object" not in r["axes"] and r["axes"]["scene"]["choices"] == list(aquatic_scenes())
    assert all(abs(sum(a["mean"]) - 1) < 1e-4 for a in r["axes"].values())


def aquatic_scenes() -> list[str]:
    """The aquatic group's scenes, as conf/grammar/imagenet.yaml lists them."""
    import yaml

    return yaml.safe_load((ROOT / "conf/grammar/imagenet.yaml").read_text())["groups"]["aquatic"]["scene"]


# ------------------------------------------------------------------ a clone, end to end (in this process)
@pytest.fixture(scope="module")
def context_folder(tmp_path_factory):
    """An ImageFolder of the shapes classes in sorted folder order (not the reader's), 8 images each, drawn from a
    world with contexts (α = 0.3)."""
    root = tmp_path_factory.mktemp("context-folder")
    dataset = ShapesDataset(SHAPES, inputs_per_class=8, context=0.3, context_seed=11, input_seed=5)
    for c in dataset.classes():
        (root / c.name).mkdir()
        for j, im in enumerate(dataset.inputs(c)):
            im.image.save(root / c.name / f"{j:03d}.png")
    return root, dataset.world


def folder_clone(out, root, *overrides) -> dict:
    return clone_api.run(clone_api.load([
        f"paths.output_dir={out}", "dataset=imagefolder", f"dataset.root={root}", "dataset.inputs_per_class=5",
        "env.class_source=rendered", "model=procedural", "cluster=inline", "clone.images_per_class=12", "clone.shard_size=12",
        "env.budget=48", "clone.progress=false", *overrides])).to_dict()


def context_distance(out: Path, world: ShapesWorld) -> float:
    from pipeline.evaluation import sample_encodings

    tv = []
    for cls, enc in sample_encodings(out).items():
        enc = np.array(enc)
        tv.append(total_variation({a.name: np.bincount(enc[:, j], minlength=len(a)) for j, a in enumerate(SHAPES.axes) if j},
                                  world.contexts.distributions(cls)))
    return float(np.mean(tv))


def test_a_sorted_image_folder_clones_every_class_as_itself_and_follows_each_class_context(tmp_path, context_folder):
    root, world = context_folder
    s = folder_clone(tmp_path / "inputs", root, "clone.propose=inputs", "dataset.context_inputs=8")
    assert s["ok"] and s["label_accuracy"] == 1.0 and not s["misread"], s
    random = folder_clone(tmp_path / "random", root, "clone.propose=random")
    assert random["label_accuracy"] == 1.0
    followed, spread = context_distance(tmp_path / "inputs", world), context_distance(tmp_path / "random", world)
    assert followed < 0.6 * spread, (followed, spread)
    contexts = json.loads((tmp_path / "inputs" / "contexts.json").read_text())
    assert len(contexts["classes"]) == 10 and {p["axis"] for p in contexts["priors"]} == {"colour", "background", "size", "pattern"}
    result = json.loads((tmp_path / "inputs" / "searches" / "star.json").read_text())
    assert result["info"]["context"]["inputs"] == 8  # five read for the class, eight for its context
    card = (tmp_path / "inputs" / "README.md").read_text()
    assert "## Each class's context" in card and "| star |" in card
    assert not (tmp_path / "random" / "contexts.json").exists()


def test_the_dry_run_counts_the_inputs_read_for_each_class_context(tmp_path):
    cfg = clone_api.load(["experiment=imagenet100_sd21", "clone.dry_run=true", f"dataset.root={tmp_path}",
                          f"paths.output_dir={tmp_path / 'o'}", "clone.throughput=1.0"])
    report = clone_api.dry_run(cfg)
    assert report["input_images_read_per_class"] == 50 and report["input_images_read"] == 50 * 100
    random = clone_api.dry_run(clone_api.load(["experiment=imagenet100_sd21", "clone.dry_run=true", f"dataset.root={tmp_path}",
                                               f"paths.output_dir={tmp_path / 'o'}", "clone.throughput=1.0", "clone.propose=random"]))
    assert random["input_images_read_per_class"] == 5


def test_clip_reads_a_class_by_its_name_whatever_the_class_order():
    from pipeline.encoders.clip import ClipEncoder, ClipZeroShotSemanticEncoder

    clip = ClipEncoder(str(ROOT / "models/tiny_clip"), device="cpu")
    images = [ShapesWorld(SHAPES, 64).sample(s).image for s in range(6)]
    p = ClipZeroShotSemanticEncoder(SHAPES, clip, prompts_per_choice=2).probabilities(images)[0]
    q = ClipZeroShotSemanticEncoder(shuffled(SHAPES), clip, prompts_per_choice=2).probabilities(images)[0]
    order = [SHAPES.axis("object").choices.index(c) for c in shuffled(SHAPES).axis("object").choices]
    np.testing.assert_allclose(q, p[:, order], atol=1e-5)
