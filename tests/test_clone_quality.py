"""Class-consistent diversity: the class-consistency reward, acceptance, balanced sampling, attribute
control and concept exclusion, a search that explores once it has the class, per-image verification."""

import json
import math
from collections import Counter

import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from helpers import ROOT
from helpers.components import CountingGenerator, grid_env, make_search
from pipeline.compose import CONF_DIR
from pipeline.encoders.pixel_stats import PixelStatsEncoder
from pipeline.encoders.shapes_cnn import ShapesCnnSemanticEncoder
from pipeline.env import StateEvaluator
from pipeline.rendering import Renderer
from pipeline.errors import ConfigError
from pipeline.rewards import build_reward
from pipeline.search import SearchProblem, SearchResult
from pipeline.search.result import Candidate
from pipeline.search.sampling import balanced_sequence

CNN = str(ROOT / "models" / "shapes_cnn")


@pytest.fixture(scope="module")
def semantic(grammar):
    return ShapesCnnSemanticEncoder(grammar, CNN)


@pytest.fixture(scope="module")
def class_reward(semantic):
    return build_reward(PixelStatsEncoder(), None, {"class": 1.0}, semantic_encoder=semantic)


def render(world, **attrs):
    base = {"object": "star", "colour": "red", "background": "white", "size": "large", "pattern": "solid"}
    return world.render({**base, **attrs}, 5).image


# ------------------------------------------------------------------ the reward
def test_class_consistency_keeps_the_class_and_ignores_the_rest(world, class_reward):
    prepared = class_reward.prepare(render(world))
    same_class = [render(world, colour=c, background=b) for c, b in (("blue", "black"), ("green", "grey"), ("yellow", "beige"))]
    other_class = [render(world, object=o) for o in ("circle", "square", "cross")]
    rewards, scores = class_reward.score_with_acceptance(same_class + other_class, prepared)
    assert (scores[:3] > 0.9).all() and (scores[3:] < 0.1).all()
    np.testing.assert_allclose(rewards, scores)


def test_acceptance_is_reported_even_when_not_rewarded(world, semantic):
    reward = build_reward(PixelStatsEncoder(), None, {"embedding": 1.0, "class": 0.0}, semantic_encoder=semantic)
    prepared = reward.prepare(render(world))
    r, c = reward.score_with_acceptance([render(world, object="circle")], prepared)
    assert c[0] < 0.1 and r[0] > 0.2  # similar colours and background, wrong class
    with pytest.raises(ConfigError, match="class"):
        build_reward(PixelStatsEncoder(), None, {"class": 1.0})


# ------------------------------------------------------------------ acceptance and sampling
def result_with_scores(scores, tau=0.5):
    cands = [Candidate(f"p{i}", s, (i % 3, i // 3), s) for i, s in enumerate(scores)]
    return SearchResult("toy", cands, len(cands), [], accept_threshold=tau)


def test_acceptance_is_an_absolute_threshold():
    res = result_with_scores([0.2, 0.6, 0.49, 0.9, 0.5])
    assert [c.prompt for c in res.accepted] == ["p1", "p3", "p4"]
    assert {c.prompt for c in res.sample(12, seed=0, axes=[0, 1])} == {"p1", "p3", "p4"}
    assert result_with_scores([0.1, 0.2]).sample(5, seed=0) == []  # nothing accepted: nothing to sample, no padding


def test_balanced_sampler_covers_a_full_grid_evenly():
    grid = [(a, b) for a in range(3) for b in range(3)]
    picks = balanced_sequence(grid, 9, axes=[0, 1], seed=3)
    for axis in (0, 1):
        assert set(Counter(grid[i][axis] for i in picks).values()) == {3}
    assert len(set(picks)) >= 6  # greedy: not always a perfect design, but mostly fresh states
    picks = balanced_sequence(grid, 27, axes=[0, 1], seed=3)
    for axis in (0, 1):
        assert set(Counter(grid[i][axis] for i in picks).values()) == {9}
    assert picks == balanced_sequence(grid, 27, axes=[0, 1], seed=3)
    assert picks != balanced_sequence(grid, 27, axes=[0, 1], seed=4)


def test_balanced_sampler_evens_out_a_lopsided_pool():
    # axis 0 takes value 2 in one state out of ten: it is reused so that every value is as common
    pool = [(0, k) for k in range(5)] + [(1, k) for k in range(4)] + [(2, 0)]
    picks = balanced_sequence(pool, 30, axes=[0], seed=0)
    assert Counter(pool[i][0] for i in picks) == {0: 10, 1: 10, 2: 10}
    # a shuffled-and-cycled pool (the old sampler) would give value 2 only 3 picks of 30


# ------------------------------------------------------------------ attribute control, exclusion
def test_restrict_fixes_and_excludes(grammar):
    sub = grammar.restrict({"background": "white"}, {"colour": ["red", "orange"]})
    assert sub.axis("background").choices == ("white",)
    assert "red" not in sub.axis("colour").choices and len(sub.axis("colour")) == 6
    full_enc = grammar.encode({"object": "star", "colour": "red", "background": "black", "size": "large", "pattern": "solid"})
    enc = sub.translate(full_enc, grammar)
    assert sub.describe(enc)["background"] == "white" and sub.describe(enc)["colour"] == "magenta"  # nearest kept neighbour
    assert grammar.translate(enc, sub) == grammar.encode(sub.describe(enc))
    for fix, exclude, message in (({"shape": "x"}, {}, "no attribute 'shape'"), ({}, {"colour": ["mauve"]}, "'mauve' is not a choice"),
                                  ({"colour": "red"}, {"colour": ["red"]}, "also excluded"),
                                  ({}, {"size": ["small", "medium", "large"]}, "every choice")):
        with pytest.raises(ConfigError, match=message):
            grammar.restrict(fix, exclude)


def compose_clone(*overrides):
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        return compose(config_name="clone", overrides=["model=procedural", "reward=learned_shapes", *overrides])


def test_the_search_never_renders_excluded_or_unfixed_choices(world):
    from pipeline.assembly import build_stack, make_env

    stack = build_stack(compose_clone("search=qlearning_batched", "env.budget=160", "env.fix={background: white}",
                                      "env.exclude={colour: [red, orange]}"))
    counting = CountingGenerator(stack.generator)
    stack.generator = counting
    env = make_env(stack, render(world, colour="red", background="black"), seed=1)
    res = stack.search.run(SearchProblem(env, seed=1))
    said = [stack.full_grammar.extract(p) for p, _ in counting.calls]
    colours = {stack.full_grammar.axes[1].choices[s["colour"]] for s in said}
    assert colours.isdisjoint({"red", "orange"}) and len(colours) == 6
    accepted_colours = {stack.grammar.describe(c.encoding)["colour"] for c in res.accepted}
    assert len(accepted_colours) == 6  # the search walked every allowed colour of the input's class
    assert {stack.full_grammar.axes[2].choices[s["background"]] for s in said} == {"white"}


def test_start_is_the_goal_in_goal_mode_and_noise_without_a_goal(world):
    from pipeline.assembly import build_stack, make_env

    target = render(world, object="cross", colour="teal", background="grey")
    goal_env = make_env(build_stack(compose_clone()), target, seed=1)  # env.start=auto
    assert goal_env.start == goal_env.goal and goal_env.grammar.describe(goal_env.start)["object"] == "cross"
    noise = make_env(build_stack(compose_clone("env.start=noise")), target, seed=1).start
    assert make_env(build_stack(compose_clone("env.mode=reward_only")), target, seed=1).start == noise != goal_env.goal
    with pytest.raises(ConfigError, match="env.start=goal needs env.mode=goal"):
        make_env(build_stack(compose_clone("env.mode=reward_only", "env.start=goal")), target, seed=1)


def test_the_class_axis_of_a_search_is_the_inputs_likeliest_classes(world):
    from pipeline.assembly import build_stack, make_env

    target = render(world, object="cross", colour="teal", background="grey")
    stack = build_stack(compose_clone("env.class_candidates=3"))
    env = make_env(stack, target, seed=1)
    probs = stack.semantic_encoder.probabilities([target])[0][0]
    names = stack.full_grammar.axis("object").choices
    likeliest = [names[i] for i in np.argsort(-probs)[:3]]
    assert env.grammar.axis("object").choices == tuple(likeliest) and likeliest[0] == "cross"
    assert env.grammar.describe(env.start)["object"] == "cross" and env.grammar.shape[1:] == stack.grammar.shape[1:]
    assert make_env(build_stack(compose_clone("env.class_candidates=20")), target, seed=1).grammar.shape == stack.grammar.shape


# ------------------------------------------------------------------ the search explores inside the class
def cnn_env(grammar, generator, reward, target, budget):
    ev = StateEvaluator(Renderer(generator, reward, 64), target, seeds=[123])
    return grid_env(grammar, ev, (0, 0, 0, 0, 0), goal=None, mode="reward_only", budget=budget)


@pytest.mark.slow  # a full search of 480 renders
@pytest.mark.parametrize("seed", [0, 1])
def test_qlearning_keeps_the_class_and_covers_the_other_axes(seed, grammar, generator, class_reward, world):
    target = render(world, object="pentagon", colour="blue", background="grey")
    q = make_search("qlearning_batched")  # conf/search/qlearning_batched.yaml: the clone's search
    res = q.run(SearchProblem(cnn_env(grammar, generator, class_reward, target, 480), seed=seed))
    acc = res.accepted
    assert len(acc) >= 120 and all(grammar.describe(c.encoding)["object"] == "pentagon" for c in acc)
    for axis in range(1, 5):  # every value of every non-class axis appears among the accepted states
        assert len({c.encoding[axis] for c in acc}) == grammar.shape[axis]


# ------------------------------------------------------------------ per-image verification
def write_search(worker, cls, prompts):
    g = worker.stack.grammar
    cands = [Candidate(p, 1.0, g.parse(p), 1.0) for p in prompts]
    res = SearchResult("hand-made", cands, len(cands), [], accept_threshold=0.5)
    worker.storage.write_bytes(f"searches/{cls.id}.json", json.dumps(res.to_dict()).encode())


def hand_made_shards(tmp_path, *overrides):
    """A worker over hand-written searches (star: it "accepted" circle states too, as a confused encoder might;
    cross: its only state renders a circle) and each class's one shard of 6 images."""
    from pipeline.clone.plan import ClonePlan
    from pipeline.clone.worker import CloneWorker

    cfg = compose_clone(f"paths.output_dir={tmp_path}", "clone.images_per_class=6", "clone.shard_size=6", "clone.max_tries=3",
                        "clone.reuse_search_renders=false", *overrides)  # the searches are written by hand, without renders
    worker = CloneWorker(OmegaConf.to_object(cfg))
    classes = {c.name: c for c in worker.dataset.classes()}
    shard_of = {u.classes[0].name: u for u in ClonePlan(list(classes.values()), 6, 6, "class", 0).shard_units()}
    write_search(worker, classes["star"], ["a large red solid star on a white background", "a small blue dotted circle on a black background",
                                           "a medium green striped star on a grey background"])
    write_search(worker, classes["cross"], ["a large red solid circle on a white background"])
    return worker, shard_of


def test_strict_fill_replaces_images_below_tau_and_leaves_out_what_never_passes(tmp_path):
    """clone.fill=strict clone.propose=accepted: the behaviour before either existed."""
    worker, shard_of = hand_made_shards(tmp_path, "clone.fill=strict", "clone.propose=accepted")
    out = worker.generate(shard_of["star"])
    assert out.images == 6 and out.missing == 0 and out.renders > 6
    metas = [json.loads(s) for s in tar_members(tmp_path / out.record.shard, ".json")]
    assert all("star" in m["prompt"] and m["score"] >= 0.5 and m["accepted"] is True and not m["proposed"] for m in metas)
    assert any(m["attempt"] > 0 for m in metas)
    # cross: every candidate renders another class; nothing is padded, the shortfall is recorded
    out = worker.generate(shard_of["cross"])
    assert out.images == 0 and out.missing == 6 and out.renders == 18
    assert out.record.missing == 6 and out.record.count == 0 and not out.record.failed_by_class


def test_best_fill_keeps_the_best_try_of_an_image_that_never_passes_and_says_so(tmp_path):
    worker, shard_of = hand_made_shards(tmp_path, "clone.fill=best", "clone.propose=accepted")
    out = worker.generate(shard_of["cross"])
    assert out.images == 6 and out.missing == 0 and out.renders == 18
    metas = [json.loads(s) for s in tar_members(tmp_path / out.record.shard, ".json")]
    assert all(m["accepted"] is False and m["score"] < 0.5 for m in metas)
    assert out.record.failed_by_class == {"cross": 6} and out.record.missing == 0
    out = worker.generate(shard_of["star"])  # what passes is unchanged
    assert out.images == 6 and not out.record.failed_by_class


def test_proposals_spread_the_non_class_axes_and_keep_the_class(tmp_path):
    """clone.propose=random: each image keeps an accepted state's class and takes a fresh, evenly spread combination of
    the non-class axes; every image is still verified (star's accepted circle states render no circle image)."""
    worker, shard_of = hand_made_shards(tmp_path, "clone.fill=strict", "clone.propose=random")
    out = worker.generate(shard_of["star"])
    metas = [json.loads(s) for s in tar_members(tmp_path / out.record.shard, ".json")]
    assert out.images == 6 and all("star" in m["prompt"] and m["accepted"] is True for m in metas)
    assert sum(m["proposed"] for m in metas) >= 4 and all(math.isnan(m["reward"]) for m in metas if m["proposed"])
    g = worker.stack.full_grammar
    for axis, least in (("colour", 4), ("background", 3)):  # the two accepted star states hold 2 values of each
        j = g.axis_index(axis)
        values = [m["encoding"][j] for m in metas]
        assert len(set(values)) >= least, (axis, values)


def tar_members(path, suffix):
    import tarfile

    with tarfile.open(path) as tar:
        return [tar.extractfile(m).read() for m in tar if m.name.endswith(suffix)]
