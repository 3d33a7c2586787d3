"""A clone's recorded identity: what counts as a change of settings on resume, and what does not."""

import json
import shutil

import pytest

from pipeline.clone import load
from pipeline.clone.identity import check_identity, fingerprint_path, identity_hash, run_identity
from pipeline.clone.layout import LAYOUT
from pipeline.errors import ConfigError
from pipeline.storage import Storage


@pytest.fixture
def weights(tmp_path):
    folder = tmp_path / "models" / "tiny"
    (folder / "unet").mkdir(parents=True)
    (folder / "unet" / "weights.bin").write_bytes(b"\x01" * 1000)
    (folder / "model_index.json").write_text("{}")
    return folder


def config(weights, **changes):
    cfg = {
        "seed": 0,
        "grammar": {"axes": [{"name": "object", "choices": ["circle", "star"]}]},
        "model": {"pretrained": str(weights), "device": "cuda", "max_batch_size": 64, "guidance_scale": 3.0},
        "reward": {"image_encoder": {"pretrained": "openai/clip-vit-large-patch14", "batch_size": 256}},
        "search": {"_target_": "pipeline.search.QLearning", "budget": 480},
        "env": {"mode": "goal"},
        "dataset": {"name": "shapes", "only": None},
        "clone": {"images_per_class": 40, "batch_size": 16, "progress": True, "max_attempts": 3},
        "cluster": {"num_workers": 8},
        "paths": {"output_dir": "/somewhere"},
    }
    for key, value in changes.items():
        node = cfg
        *parents, leaf = key.split(".")
        for k in parents:
            node = node[k]
        node[leaf] = value
    return cfg


def started(storage, cfg):
    """A first run that recorded its settings and committed output (one search result)."""
    check_identity(storage, cfg, "error")
    storage.write_bytes("searches/circle.json", b"{}")


def test_fingerprint_follows_content_not_location(weights, tmp_path):
    moved = tmp_path / "elsewhere"
    shutil.copytree(weights, moved)
    before = fingerprint_path(weights)
    assert before == fingerprint_path(moved)
    (moved / "unet" / "weights.bin").write_bytes(b"\x02" * 1000)  # retrained in place: same size, new bytes
    assert fingerprint_path(weights) != fingerprint_path(moved)
    (weights / "unet" / "extra.txt").write_text("x")  # a file added
    assert fingerprint_path(weights) != before


def test_identity_keeps_output_settings_and_drops_runtime_knobs(weights):
    ident = run_identity(config(weights))
    assert ident["model.pretrained"] == fingerprint_path(weights)
    assert ident["reward.image_encoder.pretrained"] == "openai/clip-vit-large-patch14"  # a hub id stays a name
    assert ident["search.budget"] == 480 and ident["clone.images_per_class"] == 40 and ident["seed"] == 0
    for runtime in ("model.device", "model.max_batch_size", "clone.batch_size", "clone.progress", "dataset.only",
                    "cluster.num_workers", "paths.output_dir", "reward.image_encoder.batch_size"):
        assert runtime not in ident
    same = config(weights, **{"model.device": "cpu", "clone.batch_size": 1, "cluster.num_workers": 1,
                              "paths.output_dir": "/other", "dataset.only": ["star"]})
    assert run_identity(same) == ident


def test_first_run_records_and_same_settings_resume(weights, tmp_path):
    storage = Storage(tmp_path / "out")
    assert check_identity(storage, config(weights), "error") == []
    record = json.loads(storage.read_bytes(LAYOUT.run_json))
    assert record["identity"] == run_identity(config(weights)) and record["history"] == []
    assert check_identity(storage, config(weights, **{"model.device": "cpu"}), "error") == []


@pytest.mark.parametrize("key, value, named", [
    ("search.budget", 64, "search.budget: 480 -> 64"),
    ("seed", 1, "seed: 0 -> 1"),
    ("model.guidance_scale", 5.0, "model.guidance_scale"),
    ("clone.images_per_class", 200, "clone.images_per_class"),
])
def test_changed_settings_are_refused_by_name(weights, tmp_path, key, value, named):
    storage = Storage(tmp_path / "out")
    started(storage, config(weights))
    with pytest.raises(ConfigError) as e:
        check_identity(storage, config(weights, **{key: value}), "error")
    assert named in str(e.value) and "clone.on_config_change=allow" in str(e.value)


def test_weights_retrained_in_place_are_a_change(weights, tmp_path):
    storage = Storage(tmp_path / "out")
    started(storage, config(weights))
    (weights / "unet" / "weights.bin").write_bytes(b"\x03" * 1000)
    with pytest.raises(ConfigError, match="model.pretrained: \"sha256:"):
        check_identity(storage, config(weights), "error")


def test_allow_records_the_change_and_keeps_history(weights, tmp_path):
    storage = Storage(tmp_path / "out")
    started(storage, config(weights))
    changes = check_identity(storage, config(weights, **{"search.budget": 64}), "allow")
    assert changes == ["search.budget: 480 -> 64"]
    record = json.loads(storage.read_bytes(LAYOUT.run_json))
    assert record["identity"]["search.budget"] == 64 and record["history"][0]["identity"]["search.budget"] == 480
    assert check_identity(storage, config(weights, **{"search.budget": 64}), "error") == []  # the new settings now resume


def test_a_setting_added_since_at_its_old_behaviour_is_not_a_change(weights, tmp_path):
    from pipeline.clone.identity import folder_identities

    storage = Storage(tmp_path / "out")
    started(storage, config(weights))  # a folder made before env.class_source and dataset.inputs_per_class existed
    old = identity_hash(run_identity(config(weights)))
    now = config(weights, **{"env.class_source": "read", "dataset.inputs_per_class": 1})
    assert check_identity(storage, now, "error") == []
    assert folder_identities(storage) == {old, identity_hash(run_identity(now))}  # the old outputs stay this folder's
    with pytest.raises(ConfigError, match="dataset.inputs_per_class: 1 -> 5"):
        check_identity(storage, config(weights, **{"env.class_source": "read", "dataset.inputs_per_class": 5}), "error")


def test_bad_policy_and_unreadable_record(weights, tmp_path):
    storage = Storage(tmp_path / "out")
    with pytest.raises(ConfigError, match="on_config_change must be one of"):  # the schema checks the choice, once
        load(["clone.on_config_change=ignore"])
    (tmp_path / "out" / LAYOUT.run_json).write_text("{not json")  # nothing committed: simply replaced
    assert check_identity(storage, config(weights), "error") == []
    assert json.loads(storage.read_bytes(LAYOUT.run_json))["identity"] == run_identity(config(weights))


def test_a_damaged_record_is_rebuilt_from_the_outputs_or_refused(weights, tmp_path):
    storage = Storage(tmp_path / "out")
    ours = identity_hash(run_identity(config(weights)))
    storage.write_bytes("shard-000000.tar", b"x")  # committed output
    (tmp_path / "out" / LAYOUT.run_json).write_text('{"identity": {"seed": 0, "grammar.na')  # truncated
    changes = check_identity(storage, config(weights), "error", output_tags=lambda: {ours})
    assert changes == ["run.json: unreadable (Unterminated string starting at: line 1 column 26 (char 25)), rebuilt"]
    assert json.loads(storage.read_bytes(LAYOUT.run_json))["identity_hash"] == ours
    (tmp_path / "out" / LAYOUT.run_json).write_text("")  # emptied, and the outputs name another run's settings
    with pytest.raises(ConfigError, match=r"run.json is unreadable .*identity 0123456789abcdef; this run's is " + ours):
        check_identity(storage, config(weights), "error", output_tags=lambda: {ours, "0123456789abcdef"})
    assert check_identity(storage, config(weights), "allow", output_tags=lambda: {"0123456789abcdef"})  # redone instead
    (tmp_path / "out" / LAYOUT.run_json).unlink()  # deleted
    assert check_identity(storage, config(weights), "error", output_tags=lambda: {ours, None}) == ["run.json: missing, rebuilt"]


@pytest.mark.parametrize("output", ["searches/circle.json", "manifest/shard-000000.json", "shard-000000.tar"])
def test_a_start_that_committed_nothing_blocks_nothing(weights, tmp_path, output):
    storage = Storage(tmp_path / "out")
    check_identity(storage, config(weights, **{"model.guidance_scale": 9.0}), "error")  # e.g. a start whose model failed to load
    assert check_identity(storage, config(weights), "error") == []  # the corrected command runs
    record = json.loads(storage.read_bytes(LAYOUT.run_json))
    assert record["identity"] == run_identity(config(weights)) and record["history"] == []
    storage.write_bytes(output, b"x")  # once anything is committed, the settings are the folder's
    with pytest.raises(ConfigError, match="model.guidance_scale"):
        check_identity(storage, config(weights, **{"model.guidance_scale": 9.0}), "error")
