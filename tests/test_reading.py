"""What the clone reads in a class's input images: k inputs, the label-anchored class, label accuracy and the
classes whose reading is not their label (issue: right labels when the reader errs)."""

import json

import numpy as np
import pytest
import webdataset as wds

import pipeline.clone as clone_api
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from PIL import Image

from helpers.clone import clone as clone_small
from helpers.components import CountingGenerator
from pipeline.assembly import build_stack, make_env, read
from pipeline.compose import CONF_DIR
from pipeline.clone.dataset import ImageFolderDataset
from pipeline.clone.layout import Layout
from pipeline.errors import ConfigError, InputError
from pipeline.reading import choose_by_renders, rendered_candidates, settle
from pipeline.search import SearchProblem
from pipeline.seeding import derive_seed


def clone(out, *overrides, **kw):
    """The SMALL clone in this process (``cluster=inline``): what this module tests is not Ray (tests/test_clone_e2e.py
    and tests/test_cluster_e2e.py are), and an in-process worker starts in a second, not ten."""
    return clone_small(out, "cluster=inline", *overrides, **kw)


def compose_clone(*overrides):
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        return compose(config_name="clone", overrides=["model=procedural", "reward=learned_shapes", *overrides])


@pytest.fixture(scope="module")
def shapes():
    """The shapes world's stack and dataset (the shipped shapes CNN reads the inputs), input seed 0."""
    cfg = compose_clone("search=qlearning_batched", "env.budget=96")
    dataset = instantiate(cfg.dataset, inputs_per_class=5)
    return build_stack(cfg, class_names=[c.prompt for c in dataset.all_classes()]), dataset


def octagon(dataset):
    return next(c for c in dataset.all_classes() if c.name == "octagon")


def test_k_inputs_are_deterministic_and_the_first_is_the_single_input(shapes):
    _, dataset = shapes
    cls = octagon(dataset)
    first, again = dataset.inputs(cls), dataset.inputs(cls)
    assert len(first) == 5 and len({i.ref for i in first}) == 5
    assert [i.ref for i in first] == [i.ref for i in again]
    assert all(np.array_equal(np.asarray(a.image), np.asarray(b.image)) for a, b in zip(first, again))
    assert np.array_equal(np.asarray(first[0].image), np.asarray(dataset.input_image(cls)))  # k = 1 is the paper's input
    assert len({np.asarray(i.image).tobytes() for i in first}) == 5  # five different images


def test_one_input_reads_as_before_and_five_fix_a_misread(shapes):
    stack, dataset = shapes
    cls = octagon(dataset)
    images = [i.image for i in dataset.inputs(cls)]
    one = read(stack, images[:1])
    assert one.goal == stack.semantic_encoder.encode(images[:1])[0]  # the single-input reading, unchanged
    np.testing.assert_array_equal(one.class_target, stack.reward.prepare(images[0])["class"].dist)
    assert (one.read_class, one.label) == ("circle", None)  # input seed 0's octagon: the CNN's one known misread
    five = read(stack, images)
    assert five.read_class == "octagon" and five.read_prob > one.read_prob
    probs = stack.semantic_encoder.probabilities(images)[stack.full_grammar.axis_index("object")]
    np.testing.assert_allclose(five.class_target, probs.mean(0), rtol=1e-6)  # the mean of the five distributions


def test_the_label_fixes_the_class_axis_and_the_search_never_renders_another_class(shapes):
    stack, dataset = shapes
    cls = octagon(dataset)
    reading = read(stack, [dataset.input_image(cls)], label=cls.prompt)
    axis = stack.full_grammar.axis_index("object")
    assert reading.read_class == "circle" and stack.full_grammar.describe(reading.goal)["object"] == "octagon"
    assert reading.class_target.argmax() == reading.goal[axis] and reading.class_target.sum() == 1.0  # p(label | render)
    counting = CountingGenerator(stack.generator)
    stack.generator = counting
    try:
        env = make_env(stack, reading, seed=3)
        res = stack.search.run(SearchProblem(env, seed=3))
    finally:
        stack.generator = counting.inner
    rendered = {stack.full_grammar.axes[axis].choices[stack.full_grammar.extract(p)["object"]] for p, _ in counting.calls}
    assert rendered == {"octagon"} and len(counting.calls) > 10
    assert res.accepted and list(env.grammar.axis("object").choices) == ["octagon"]
    with pytest.raises(ConfigError, match="not a class"):
        read(stack, [dataset.input_image(cls)], label="dodecahedron")


def test_imagefolder_inputs_are_the_sorted_files_from_input_index(tmp_path):
    for name in ("b.png", "a.png", "c.png"):
        (tmp_path / "cat").mkdir(exist_ok=True)
        Image.new("RGB", (8, 8), (ord(name[0]), 0, 0)).save(tmp_path / "cat" / name)
    data = ImageFolderDataset(str(tmp_path), input_index=1, inputs_per_class=2)
    cls = data.classes()[0]
    assert [i.ref for i in data.inputs(cls)] == ["cat/b.png", "cat/c.png"]
    with pytest.raises(InputError, match="inputs_per_class=3"):
        ImageFolderDataset(str(tmp_path), input_index=1, inputs_per_class=3).inputs(cls)
    with pytest.raises(ConfigError, match="inputs_per_class"):
        ImageFolderDataset(str(tmp_path), inputs_per_class=0)


def shard_labels(out):
    """(class index, class index the sample's encoding names) of every sample, from the shards alone: the
    encoding is in the full grammar, whose class axis (the shapes grammar's first) lists the classes in label order."""
    return [(m["class_index"], m["encoding"][0]) for m in
            (json.loads(s["json"]) for s in wds.WebDataset(Layout(str(out)).shard_files(), shardshuffle=False, empty_check=False))]


@pytest.mark.slow  # a clone on Ray
def test_a_clone_reports_label_accuracy_and_its_misread_classes(tmp_path):
    s = clone(tmp_path / "read", "dataset.only=[octagon,star]")
    pairs = shard_labels(tmp_path / "read")
    assert s["label_accuracy"] == pytest.approx(sum(a == b for a, b in pairs) / len(pairs), abs=1e-6)
    assert s["label_accuracy_by_class"]["octagon"] < 0.5 < s["label_accuracy_by_class"]["star"]
    assert set(s["misread"]) == {"octagon"} and s["misread"]["octagon"]["read"] == "circle"
    info = json.loads((tmp_path / "read" / "searches" / "octagon.json").read_text())["info"]
    assert info["read_class"] == "circle" and info["inputs"] == ["input_seed=0/octagon/0"] and info["class_source"] == "read"

    s = clone(tmp_path / "label", "dataset.only=[octagon,star]", "env.class_source=label")
    pairs = shard_labels(tmp_path / "label")
    assert s["label_accuracy"] == 1.0 and all(a == b for a, b in pairs) and len(pairs) == 24
    assert set(s["misread"]) == {"octagon"}  # the reading is still reported: the label overrode it


@pytest.fixture(scope="module")
def standin():
    """The CLIP-like stand-in's first 40 classes (10 families of 4 near-identical glyphs), five inputs each, input seed 0."""
    cfg = clone_api.load(["experiment=confusable1000", "dataset.num_classes=40"])
    dataset = instantiate(cfg.dataset, inputs_per_class=5)
    return build_stack(cfg, class_names=[c.prompt for c in dataset.all_classes()]), dataset


def test_renders_choose_the_sibling_that_the_mean_of_five_inputs_misreads(standin):
    """class_source=rendered: the reader confuses occluded siblings the same way in inputs and renders, so the
    candidate whose renders it reads like the inputs is the right class more often than the likeliest class read."""
    stack, dataset = standin
    grammar = stack.full_grammar
    axis = grammar.axis_index(grammar.class_axis)
    seeds = [derive_seed("test-class-check", j) for j in range(8)]
    read_right = rendered_right = 0
    for cls in dataset.classes():
        reading = read(stack, [i.image for i in dataset.inputs(cls)])
        candidates = rendered_candidates(grammar, reading, 4)
        renders = {name: stack.generator.generate([prompt] * len(seeds), seeds) for name, prompt in candidates}
        chosen = choose_by_renders(stack.semantic_encoder, grammar, reading, renders)
        assert [n for n, _ in candidates][0] == reading.read_class and len({n for n, _ in candidates}) == 4
        assert chosen.read_class == chosen.label and chosen.class_source == "rendered"
        assert list(chosen.rendered["divergence"]) == [n for n, _ in candidates] and chosen.rendered["argmax"] == reading.read_class
        assert chosen.read_class == min(chosen.rendered["divergence"], key=chosen.rendered["divergence"].get)
        c = grammar.axis(grammar.class_axis).choices.index(chosen.read_class)
        assert chosen.goal[axis] == c and chosen.class_target[c] == 1.0 == chosen.class_target.sum()  # fixed, as a label
        assert chosen.read_prob == pytest.approx(float(reading.class_probs[c]))
        again = settle(grammar, reading, chosen.read_class, chosen.rendered)  # from a search result: nothing rendered
        assert again.goal == chosen.goal and np.array_equal(again.class_target, chosen.class_target)
        read_right += reading.read_class == cls.prompt
        rendered_right += chosen.read_class == cls.prompt
    assert rendered_right > read_right, (rendered_right, read_right)


@pytest.mark.slow  # a clone on Ray
def test_a_clone_with_classes_chosen_by_renders_fixes_them_and_counts_their_renders(tmp_path, grammar):
    out = tmp_path / "rendered"
    s = clone(out, "dataset.only=[octagon,star]", "env.class_source=rendered")
    names = dict(enumerate(grammar.axis("object").choices))  # label order: the class axis's
    results = {n: json.loads((out / "searches" / f"{n}.json").read_text()) for n in ("octagon", "star")}
    for name, res in results.items():
        info = res["info"]
        div = info["rendered"]["divergence"]
        assert info["class_source"] == "rendered" and len(div) == 4 and info["rendered"]["renders"] == 32
        assert info["read_class"] == min(div, key=div.get) and info["rendered"]["argmax"] in div
    assert s["search_renders"] == sum(r["renders"] for r in results.values()) + 2 * 32  # the candidates' renders count
    chosen = {name: res["info"]["read_class"] for name, res in results.items()}
    for label, shown in shard_labels(out):  # the class axis is fixed: every sample of a class shows the class chosen
        assert chosen[names[label]] == names[shown]
