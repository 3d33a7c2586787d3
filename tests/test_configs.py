"""Every config group option composes and instantiates, so a broken YAML fails here."""

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from pipeline.assembly import build_stack
from pipeline.cli import CONF_DIR

SEARCHES = sorted(p.stem for p in (Path(CONF_DIR) / "search").glob("*.yaml"))


def compose_search(overrides):
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        return compose(config_name="run_search", overrides=overrides)


@pytest.mark.parametrize("search", SEARCHES)
def test_search_configs_instantiate(search):
    stack = build_stack(compose_search([f"search={search}", "model=procedural", "reward=pixel_stats",
                                        "reward.semantic_encoder.samples_per_choice=2"]))
    assert stack.search.name in search  # e.g. qlearning_batched builds a "qlearning"
    assert stack.grammar.size == 2880


def test_every_grammar_file_loads():
    from pipeline.grammar import Grammar

    for path in (Path(CONF_DIR) / "grammar").glob("*.yaml"):
        assert Grammar.from_yaml(path).size >= 1


@pytest.mark.parametrize("dataset", sorted(p.stem for p in (Path(CONF_DIR) / "dataset").glob("*.yaml")))
def test_clone_configs_compose(dataset):
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose(config_name="clone", overrides=[f"dataset={dataset}"])
    assert cfg.dataset.name.startswith(dataset)  # glyphs names itself by its class count (glyphs1000)
    if dataset.startswith("imagenet"):
        assert len(cfg.dataset.classes) == 1000
        assert len(cfg.dataset.only or cfg.dataset.classes) == (100 if dataset == "imagenet100" else 1000)


@pytest.mark.parametrize("model", sorted(p.stem for p in (Path(CONF_DIR) / "model").glob("*.yaml")))
def test_model_configs_compose(model):
    cfg = compose_search([f"model={model}"])
    assert cfg.model._target_.startswith("pipeline.generators.")


@pytest.mark.parametrize("reward", sorted(p.stem for p in (Path(CONF_DIR) / "reward").glob("*.yaml")))
def test_reward_configs_compose(reward):
    cfg = compose_search([f"reward={reward}"])
    assert set(cfg.reward.weights) <= {"class", "segmentation", "features", "embedding"}
    assert cfg.reward.semantic_encoder._partial_


EXPERIMENTS = sorted(p.stem for p in (Path(CONF_DIR) / "experiment").glob("*.yaml"))


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_experiment_composes_and_dry_runs_without_weights(experiment, tmp_path, capsys):
    """The presets' plans, with no model weights anywhere (clone.throughput given): a broken flagship config fails here."""
    import json

    from pipeline.cli.clone import run

    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose(config_name="clone", overrides=[f"experiment={experiment}", "clone.dry_run=true", "clone.throughput=1.5",
                                                        f"paths.output_dir={tmp_path / 'out'}"])
        if "root" in cfg.dataset:
            cfg.dataset.root = str(tmp_path)
    assert run(cfg) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["classes"] * cfg.clone.images_per_class == plan["total_images"] and plan["shards"] >= 1
    assert plan["device_hours_max"] > 0 and plan["shard_order"] == cfg.clone.shard_order
    assert not (tmp_path / "out").exists()  # a dry run writes nothing


def test_imagenet_classes_have_unambiguous_prompts_and_a_group():
    from hydra.utils import instantiate

    from pipeline.clone.dataset import _parse_classes
    from pipeline.grammar import Grammar

    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose(config_name="clone", overrides=["dataset=imagenet1k", "grammar=imagenet"])
    classes = _parse_classes(cfg.dataset.classes)
    prompts = [c.prompt.lower() for c in classes]
    assert len(classes) == 1000 and len(set(prompts)) == 1000 and len({c.id for c in classes}) == 1000
    by_wnid = {c.wnid: c.prompt for c in classes}
    # the names that collide in ImageNet: the corgi and the sweater, the bird and the machine, two swimsuits
    assert by_wnid["n02113186"] == "Cardigan Welsh corgi" and by_wnid["n02963159"] == "cardigan garment"
    assert by_wnid["n02012849"] == "crane bird" and by_wnid["n03126707"] == "crane machine"
    assert by_wnid["n03710637"] != by_wnid["n03710721"]
    grammar: Grammar = instantiate(cfg.grammar)
    full = grammar.with_choices("object", [c.prompt for c in classes])  # the flagship's class axis loads
    assert {c.group for c in classes} == set(grammar.groups)  # every class has a group, every group is used
    for group in grammar.groups:
        g = full.for_group(group)
        assert g.axis("object").choices == full.axis("object").choices and g.size >= full.size // 2
    shark = full.for_group(by_group(classes, "n01484850"))
    assert "in the open sea" in shark.axis("scene").choices and "in a kitchen" not in shark.axis("scene").choices


def by_group(classes, wnid):
    return next(c.group for c in classes if c.wnid == wnid)


def test_classes_named_alike_in_prompts_are_refused():
    from pipeline.clone.dataset import _parse_classes
    from pipeline.errors import ConfigError

    with pytest.raises(ConfigError, match="both named 'cardigan' in prompts"):
        _parse_classes([{"wnid": "n02113186", "name": "Cardigan", "prompt": "cardigan"}, {"wnid": "n02963159", "name": "cardigan"}])
    assert [c.prompt for c in _parse_classes([{"wnid": "a", "name": "crane", "prompt": "crane bird"}, {"wnid": "b", "name": "crane"}])] \
        == ["crane bird", "crane"]
