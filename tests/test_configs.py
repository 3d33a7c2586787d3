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
    assert cfg.dataset.name == dataset
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
