"""Every option of every config group composes, is typed and validated, and instantiates; wrong values and
mismatched combinations are refused in one line, before anything is built."""

import dataclasses
import subprocess
from pathlib import Path

import pytest
from hydra.utils import instantiate
from omegaconf import OmegaConf

from pipeline.assembly import build_stack
from pipeline.compose import CONF_DIR, load_config
from pipeline.clone import cli_command, dry_run, load
from pipeline.config import CloneApp, is_runtime
from pipeline.errors import ConfigError, InputError


def options(group):
    return sorted(p.stem for p in (Path(CONF_DIR) / group).glob("*.yaml"))


@pytest.mark.parametrize("search", options("search"))
def test_search_configs_instantiate(search):
    stack = build_stack(load_config("run_search", [f"search={search}", "model=procedural", "reward=pixel_stats",
                                                   "reward.semantic_encoder.samples_per_choice=2"]))
    assert stack.search.name in search  # e.g. qlearning_batched builds a "qlearning"
    assert stack.grammar.size == 2880


def test_every_grammar_file_loads():
    from pipeline.grammar import Grammar

    for path in (Path(CONF_DIR) / "grammar").glob("*.yaml"):
        assert Grammar.from_yaml(path).size >= 1


GRAMMAR_OF = {"shapes": "shapes", "glyphs": "glyphs", "imagenet1k": "imagenet", "imagenet100": "imagenet", "imagenet21k": "imagenet",
              "imagefolder": "shapes", "webdataset": "shapes"}


REQUIRED = {"imagefolder": ["dataset.root=/data"], "webdataset": ["dataset.urls=/data/a.tar", "dataset.classes=[a,b]"]}


@pytest.mark.parametrize("dataset", options("dataset"))
def test_clone_configs_compose_and_validate(dataset):
    cfg = load([f"dataset={dataset}", f"grammar={GRAMMAR_OF[dataset]}", *REQUIRED.get(dataset, [])])
    assert cfg.dataset.name.startswith(dataset)  # glyphs names itself by its class count (glyphs1000)
    if dataset.startswith("imagenet") and dataset != "imagenet21k":
        assert len(cfg.dataset.classes) == 1000
        assert len(cfg.dataset.only or cfg.dataset.classes) == (100 if dataset == "imagenet100" else 1000)


def test_imagenet_21k_s_classes_are_a_list_of_their_own_with_unambiguous_prompts_and_groups():
    """21,841 classes from a class-list file (the config stays small), each with a prompt no other shares and a group
    of the grammar; ImageNet-1k's classes keep their groups; the file's content is part of the run identity."""
    from pipeline.clone.dataset import _parse_classes
    from pipeline.clone.identity import run_identity

    cfg = load(["dataset=imagenet21k", "grammar=imagenet"])
    classes = _parse_classes(cfg.dataset.classes)
    assert len(classes) == 21841 and len({c.prompt.lower() for c in classes}) == 21841 and len({c.id for c in classes}) == 21841
    grammar = instantiate(cfg.grammar)
    assert {c.group for c in classes} == set(grammar.groups)
    in1k = {c.wnid: c.group for c in _parse_classes(load(["dataset=imagenet1k", "grammar=imagenet"]).dataset.classes)}
    by_wnid = {c.wnid: c for c in classes}
    assert set(in1k) - set(by_wnid) == {"n04399382"}  # the teddy bear: the fall-2011 release lacks ImageNet-1k's synset
    assert all(by_wnid[w].group == g for w, g in in1k.items() if w in by_wnid)
    assert by_wnid["n02051845"].group == "birds" and by_wnid["n12096089"].group == "plants"  # pelican; a loosestrife
    ident = run_identity(OmegaConf.to_container(cfg, resolve=True))
    assert ident["dataset.classes"].startswith("sha256:")


EMBEDDED_MODELS = {"tiny_shapes", "procedural", "procedural_glyphs"}  # the rest name checkpoints not shipped here


@pytest.mark.parametrize("model", options("model"))
def test_model_configs_instantiate_or_say_where_the_weights_are(model):
    from pipeline.assembly import instantiate_model
    from pipeline.grammar import Grammar

    grammar = "glyphs" if model == "procedural_glyphs" else "shapes"
    cfg = load_config("run_search", [f"model={model}", f"grammar={grammar}"])
    if model in EMBEDDED_MODELS:
        assert instantiate_model(cfg.model, instantiate(cfg.grammar)).model_id
    else:
        with pytest.raises(Exception) as err:  # Hydra wraps the loader's one-line InputError
            instantiate_model(cfg.model, Grammar.from_yaml(Path(CONF_DIR) / "grammar" / "shapes.yaml"))
        assert isinstance(err.value.__cause__ or err.value, InputError)


@pytest.mark.parametrize("reward", options("reward"))
def test_reward_configs_are_built_by_target(reward):
    from pipeline.rewards import RewardModels

    cfg = load_config("run_search", [f"reward={reward}"])
    assert cfg.reward._target_ == "pipeline.rewards.RewardModels" and cfg.reward.semantic_encoder._partial_
    if reward in ("learned_shapes", "pixel_stats"):
        models = instantiate(cfg.reward, _convert_="all")
        assert isinstance(models, RewardModels)


def test_the_shapes_cnn_is_loaded_once_for_its_three_roles():
    models = instantiate(load_config("run_search", []).reward, _convert_="all")
    semantic = models.semantic_encoder(grammar=instantiate(load_config("run_search", []).grammar))
    assert models.segmenter.net is models.feature_encoder.net is semantic.cnn.net


@pytest.mark.parametrize("override, message", [
    ("seed=abc", "seed must be an integer, got 'abc'"),
    ("clone.shard_size=abc", "clone.shard_size must be an integer, got 'abc'"),
    ("clone.verify_images=maybe", "clone.verify_images must be true or false, got 'maybe'"),
    ("cluster.cpus_per_worker=lots", "cluster.cpus_per_worker must be a number, got 'lots'"),
    ("clone.verify=quick", "clone.verify must be one of fast, deep, got 'quick'"),
    ("clone.shard_order=random", "clone.shard_order must be one of class, shuffled"),
    ("clone.images_per_class=0", "clone.images_per_class must be >= 1, got 0"),
    ("env.horizon=0", "env.horizon must be >= 1, got 0"),
    ("env.budget=0", "env.budget must be >= 1, got 0"),
    ("reward.weights.embedding=-1", "reward.weights.embedding must be >= 0, got -1"),  # was found by a worker, after Ray
    ("cluster.max_in_flight=0", "cluster.max_in_flight must be >= 1, got 0"),
    ("env.accept_threshold=1.5", "env.accept_threshold must be in [0, 1], got 1.5"),
    ("env.mode=dream", "env.mode must be one of reward_only, goal"),
    ("clone.image_format=gif", "clone.image_format must be one of png, jpg, webp"),
    ("cluster.typo=1", "Could not override 'cluster.typo'"),
    ("+search.typo=1", "search.typo is not a setting of pipeline.search.QLearning"),
    ("+reward.image_encoder.typo=1", "reward.image_encoder.typo is not a setting of pipeline.encoders.clip.ClipEncoder"),
    ("dataset=imagenet1k", "dataset=imagenet1k puts its classes in groups"),
    ("dataset=imagefolder", "dataset.root must be set"),
    ("grammar=glyphs", "dataset=shapes draws its inputs from the shapes world, which grammar=glyphs does not describe"),
])
def test_wrong_values_and_combinations_are_refused_in_one_line(override, message):
    with pytest.raises(ConfigError) as err:
        load([override])
    assert message in str(err.value) and "\n" not in str(err.value)


def test_the_cli_says_it_in_one_line_and_exits_2(tmp_path):
    """The console command as a process, once: the exit status and the one line a shell sees (the other invalid
    settings run it in-process, tests/test_clone_e2e.py)."""
    p = subprocess.run(cli_command(f"paths.output_dir={tmp_path / 'out'}", "dataset=imagenet1k"), capture_output=True, text=True)
    assert p.returncode == 2 and p.stderr.count("\n") == 1 and p.stderr.startswith("error: dataset=imagenet1k puts")
    assert not (tmp_path / "out").exists()  # nothing written before the settings are checked


def test_identity_follows_the_schema_marks():
    runtime = {f"clone.{f.name}" for f in dataclasses.fields(CloneApp().clone) if f.metadata["runtime"]}
    assert runtime == {"clone.verify", "clone.batch_size", "clone.max_attempts", "clone.on_config_change", "clone.progress",
                       "clone.dry_run", "clone.throughput", "clone.warmup_images", "clone.worker_warmup", "clone.lease_timeout_s",
                       "clone.lease_heartbeat_s", "clone.storage_retry_s", "clone.max_shortfall"}
    assert all(is_runtime(f"cluster.{f.name}") for f in dataclasses.fields(CloneApp().cluster))
    assert is_runtime("env.batch_size") and not is_runtime("env.budget") and not is_runtime("seed")
    assert is_runtime("model.device") and not is_runtime("model.num_inference_steps")
    assert is_runtime("dataset.only", "class") and not is_runtime("dataset.only", "shuffled")


@pytest.mark.parametrize("experiment", options("experiment"))
def test_every_experiment_composes_and_dry_runs_without_weights(experiment, tmp_path):
    """The presets' plans, with no model weights anywhere (clone.throughput given): a broken flagship config fails here."""
    extra = [f"dataset.root={tmp_path}"] if experiment.startswith(("imagenet", "imagefolder")) else []
    for name in ("golden_retriever", "tabby-cat"):  # an own ImageFolder's classes (imagenet's trees are read lazily)
        (tmp_path / name).mkdir()
    cfg = load([f"experiment={experiment}", "clone.dry_run=true", "clone.throughput=1.5", f"paths.output_dir={tmp_path / 'out'}", *extra])
    plan = dry_run(cfg)
    assert plan["classes"] * cfg.clone.images_per_class == plan["total_images"] and plan["shards"] >= 1
    assert plan["device_hours_max"] > 0 and plan["shard_order"] == cfg.clone.shard_order
    need = plan["resources"]  # what the workers need besides a GPU
    assert need["per_worker"]["cpus"] == cfg.cluster.cpus_per_worker and need["disk_gb"]["total"] >= need["disk_gb"]["shards"] >= 0
    if experiment == "imagenet1k_sd21":  # 1.3 M JPEGs of 768 px at 2.5 bits per pixel; 16 searches of 496 RGB renders
        assert need["disk_gb"]["shards"] == 239.6 and need["per_worker"]["host_memory_gb_for_renders"] == 14.0
    assert not (tmp_path / "out").exists()  # a dry run writes nothing


def test_imagenet_classes_have_unambiguous_prompts_and_a_group():
    from pipeline.clone.dataset import _parse_classes
    from pipeline.grammar import Grammar

    cfg = load(["dataset=imagenet1k", "grammar=imagenet"])
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


def test_own_folders_name_classes_in_prompts_and_what_a_prompt_cannot_hold_is_refused(tmp_path):
    from pipeline.clone.dataset import ImageFolderDataset, _parse_classes
    from pipeline.errors import ConfigError

    for name in ("golden_retriever", "tabby-cat", ".cache"):
        (tmp_path / "mine" / name).mkdir(parents=True)
    data = ImageFolderDataset(str(tmp_path / "mine"))
    assert [(c.name, c.prompt, c.id) for c in data.classes()] == [("golden_retriever", "golden retriever", "golden_retriever"),
                                                                   ("tabby-cat", "tabby cat", "tabby-cat")]
    (tmp_path / "in" / "n01440764").mkdir(parents=True)
    with pytest.raises(ConfigError, match="folders named by WordNet id .* use dataset=imagenet1k"):
        ImageFolderDataset(str(tmp_path / "in"))
    with pytest.raises(ConfigError, match="cannot name a class in a prompt"):
        _parse_classes([{"name": "a <b>"}])


def test_classes_named_alike_in_prompts_are_refused():
    from pipeline.clone.dataset import _parse_classes
    from pipeline.errors import ConfigError

    with pytest.raises(ConfigError, match="both named 'cardigan' in prompts"):
        _parse_classes([{"wnid": "n02113186", "name": "Cardigan", "prompt": "cardigan"}, {"wnid": "n02963159", "name": "cardigan"}])
    assert [c.prompt for c in _parse_classes([{"wnid": "a", "name": "crane", "prompt": "crane bird"}, {"wnid": "b", "name": "crane"}])] \
        == ["crane bird", "crane"]
