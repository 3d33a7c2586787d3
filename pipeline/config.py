"""The typed configuration: one dataclass schema per settings group, registered in Hydra's ConfigStore.

The values and their comments live in ``conf/`` (each group's YAML names its schema first in its defaults
list); a schema says only what a value may be: its type (checked by Hydra when the config is composed, so
``seed=abc`` fails before anything starts), its range or choices, and whether it is part of the dataset's
*identity* (recorded in ``run.json``, see :mod:`pipeline.clone.identity`) or a *runtime* knob that a resume
may change. :func:`validate` checks ranges, choices and the rules that span groups in one step.

The component groups (``grammar``, ``model``, ``reward``, ``search``, ``dataset``, ``features``) are built by
``_target_``: their schema is the target's constructor, whose parameters carry no defaults of their own
(``conf/`` holds them); :func:`validate` checks their keys against that signature without building anything.
"""

from __future__ import annotations

import dataclasses
import inspect
import re
import typing
from dataclasses import dataclass, field
from typing import Any, List, Optional

from hydra.core.config_store import ConfigStore
from hydra.utils import get_method
from omegaconf import MISSING, DictConfig, OmegaConf

from pipeline.env import RewardMode
from pipeline.errors import ConfigError
from pipeline.reading import CLASS_SOURCES
from pipeline.rewards import ACCEPTANCE_RULES, check_reward_weights


def setting(*, ge: float | None = None, le: float | None = None, choices: tuple[str, ...] | None = None,
            runtime: bool = False) -> Any:
    """A schema field: no default (``conf/`` gives it), an optional range or set of choices, and whether it is a
    runtime knob (left out of a clone's identity) rather than part of what a sample is."""
    return field(default=MISSING, metadata={"ge": ge, "le": le, "choices": choices, "runtime": runtime})


# the choices of the clone's settings, declared with the schema; the modules that act on them import them from here
SHARD_ORDERS = ("class", "shuffled")  # pipeline.clone.plan
VERIFY_MODES = ("fast", "deep")  # pipeline.clone.shards.verify_shard
IMAGE_FORMATS = ("png", "jpg", "webp")  # pipeline.clone.shards.encode_image
CONFIG_CHANGE_POLICIES = ("error", "allow")  # a resume under other settings: refuse, or record the change
ENV_MODES = tuple(m.value for m in RewardMode)
BACKENDS = ("ray", "inline")  # cluster.backend: Ray actors, or one worker in the driver's process
PROPOSALS = ("inputs", "random", "accepted")  # pipeline.clone.proposals, pipeline.clone.context_prior
FILL_MODES = ("best", "strict")  # pipeline.clone.worker: an image none of whose tries passed keeps its best, or is left out
STATE_SEEDS = ("per_state", "shared")  # pipeline.env.StateEvaluator


@dataclass
class CloneSettings:
    images_per_class: int = setting(ge=1)
    shard_size: int = setting(ge=1)
    shard_order: str = setting(choices=SHARD_ORDERS)
    shuffle_classes: Optional[int] = setting(ge=1)
    image_format: str = setting(choices=IMAGE_FORMATS)
    image_quality: int = setting(ge=1, le=100)
    reuse_search_renders: bool = setting()
    reuse_max_share: float = setting(ge=0, le=1)
    verify_images: bool = setting()
    propose: str = setting(choices=PROPOSALS)
    context_prior: Any = setting()  # empirical | a pseudo-count >= 0 (pipeline.clone.context_prior)
    fill: str = setting(choices=FILL_MODES)
    max_shortfall: float = setting(ge=0, le=1, runtime=True)
    verify: str = setting(choices=VERIFY_MODES, runtime=True)
    max_tries: int = setting(ge=1)
    batch_size: int = setting(ge=1, runtime=True)
    max_attempts: int = setting(ge=1, runtime=True)
    on_config_change: str = setting(choices=CONFIG_CHANGE_POLICIES, runtime=True)
    progress: bool = setting(runtime=True)
    worker_warmup: bool = setting(runtime=True)
    dry_run: bool = setting(runtime=True)
    throughput: Optional[float] = setting(ge=0, runtime=True)
    warmup_images: int = setting(ge=1, runtime=True)
    lease_timeout_s: float = setting(ge=1, runtime=True)
    lease_heartbeat_s: float = setting(ge=0.1, runtime=True)
    storage_retry_s: float = setting(ge=0, runtime=True)


@dataclass
class ClusterSettings:
    """Where and how the workers run: all runtime (a run may resume on another cluster)."""

    backend: str = setting(choices=BACKENDS, runtime=True)  # ray: Ray actors; inline: one worker in the driver's process
    address: Optional[str] = setting(runtime=True)
    num_cpus: Optional[int] = setting(ge=1, runtime=True)
    num_workers: Any = setting(runtime=True)  # an integer >= 1, null (the cluster's size at the start) or auto (elastic)
    cpus_per_worker: float = setting(ge=0, runtime=True)
    gpus_per_worker: Optional[float] = setting(ge=0, runtime=True)  # null: 1 when the cluster has GPUs and the model uses one
    threads_per_worker: Optional[int] = setting(ge=1, runtime=True)
    units_per_worker: int = setting(ge=1, runtime=True)
    max_in_flight: int = setting(ge=1, runtime=True)
    max_worker_restarts: int = setting(ge=0, runtime=True)
    worker_start_timeout_s: float = setting(ge=0, runtime=True)
    stop_grace_s: float = setting(ge=0, runtime=True)
    connect_timeout_s: float = setting(ge=0, runtime=True)
    log_to_driver: bool = setting(runtime=True)


@dataclass
class EnvSettings:
    mode: str = setting(choices=ENV_MODES)
    goal_weight: float = setting(ge=0)
    goal_axes: Optional[List[str]] = setting()
    end_at_goal: bool = setting()
    horizon: int = setting(ge=1)
    reward_threshold: Optional[float] = setting()
    budget: Optional[int] = setting(ge=1)
    accept_threshold: float = setting(ge=0, le=1)
    acceptance: str = setting(choices=ACCEPTANCE_RULES)
    seeds_per_state: int = setting(ge=1)
    state_seeds: str = setting(choices=STATE_SEEDS)
    batch_size: int = setting(ge=1, runtime=True)
    render_ahead: bool = setting(runtime=True)
    start: Any = setting()  # auto | goal | noise | [indices] | {axis: choice}
    fix: Any = setting()  # {axis: choice} (Any: OmegaConf cannot merge a mapping into a null typed mapping)
    exclude: Any = setting()  # {axis: [choices]}
    class_candidates: Optional[int] = setting(ge=1)
    class_source: str = setting(choices=CLASS_SOURCES)
    rendered_candidates: int = setting(ge=2)
    rendered_seeds: int = setting(ge=1)


@dataclass
class PathSettings:
    runs_dir: str = setting(runtime=True)
    output_dir: str = setting(runtime=True)
    imagenet_root: str = setting(runtime=True)
    imagenet21k_root: str = setting(runtime=True)
    models_dir: str = setting(runtime=True)


@dataclass
class SearchAppBase:
    """What every app that searches composes: run seed, the MDP's settings and the components of a search."""

    seed: int = setting()
    env: EnvSettings = field(default_factory=EnvSettings)
    paths: PathSettings = field(default_factory=PathSettings)
    grammar: Any = MISSING
    model: Any = MISSING
    reward: Any = MISSING
    search: Any = MISSING


@dataclass
class CloneApp(SearchAppBase):
    """``scripts/clone.py`` (``conf/clone.yaml``)."""

    clone: CloneSettings = field(default_factory=CloneSettings)
    cluster: ClusterSettings = field(default_factory=ClusterSettings)
    dataset: Any = MISSING


@dataclass
class SearchApp(SearchAppBase):
    """``scripts/search.py`` and ``scripts/rldf_classes.py`` (``conf/run_search.yaml``)."""

    input_image: Optional[str] = setting()
    input_seed: int = setting()
    input_size: int = setting(ge=8)
    class_name: Optional[str] = setting()


@dataclass
class MetricsApp:
    """``scripts/metrics.py`` (``conf/metrics.yaml``)."""

    synthetic: str = setting()
    real: str = setting()
    real_labels: Optional[str] = setting()
    image_size: Optional[int] = setting(ge=8)
    n_real: Optional[int] = setting(ge=1)
    n_fake: Optional[int] = setting(ge=1)
    shapes_n: int = setting(ge=1)
    shapes_context: Optional[float] = setting()
    shapes_context_seed: int = setting()
    batch_size: int = setting(ge=1)
    workers: int = setting(ge=0)
    device: str = setting()
    k: int = setting(ge=1)
    kid_subsets: int = setting(ge=1)
    kid_subset_size: int = setting(ge=2)
    chunk: int = setting(ge=1)
    seed: int = setting()
    cache_dir: Optional[str] = setting()  # null: no feature cache
    paths: PathSettings = field(default_factory=PathSettings)
    grammar: Any = MISSING
    features: Any = MISSING


#: each app's config (``conf/<name>.yaml``) -> its schema, stored as ``<name>_schema`` (named in its defaults list)
APP_SCHEMAS: dict[str, type] = {"clone": CloneApp, "run_search": SearchApp, "metrics": MetricsApp}
#: the ``_target_`` groups: their constructors are their schemas
COMPONENT_GROUPS = ("grammar", "model", "reward", "search", "dataset", "features")
#: constructor parameters of the component groups that place or batch work and never change a sample's state,
#: prompt or seed (on CPU a padded call's pixels follow model.max_batch_size: keep it to resume byte-identically)
COMPONENT_RUNTIME_PARAMS = frozenset({"device", "batch_size", "max_batch_size", "pad_batches", "progress"})
#: constructor parameters that describe a component without changing what it draws (the model's licence, for the
#: dataset card): left out of a clone's identity like the runtime ones
COMPONENT_DESCRIPTIVE_PARAMS = frozenset({"license"})


def register() -> None:
    """Put the schemas in Hydra's ConfigStore (the YAML defaults lists name them)."""
    cs = ConfigStore.instance()
    for name, node in APP_SCHEMAS.items():
        cs.store(name=f"{name}_schema", node=node)


register()


# ------------------------------------------------------------------ what a key is
def _lookup(schema: type, key: str) -> tuple[dataclasses.Field, Any] | None:
    """The schema field of a dotted ``key`` and its type, or None where the schema does not type it."""
    owner: Any = schema
    found = None
    for part in key.split("."):
        if not (isinstance(owner, type) and dataclasses.is_dataclass(owner)):
            return None
        fields = {f.name: f for f in dataclasses.fields(owner)}
        if part not in fields:
            return None
        owner = typing.get_type_hints(owner)[part]
        found = (fields[part], owner)
    return found


def is_runtime(key: str, shard_order: str | None = None, schema: type = CloneApp) -> bool:
    """Whether ``key`` (dotted) is a runtime knob, left out of a clone's identity: marked so in the schema, or a
    component's placement or descriptive parameter (:data:`COMPONENT_RUNTIME_PARAMS`,
    :data:`COMPONENT_DESCRIPTIVE_PARAMS`). ``dataset.only`` (which classes this
    invocation clones) is runtime in class order, where each class's shards stand alone, and content when
    ``shard_order`` is shuffled, where every shard mixes the classes being cloned."""
    found = _lookup(schema, key)
    if found is not None:
        return bool(found[0].metadata.get("runtime"))
    if key == "dataset.only":
        return shard_order != "shuffled"
    return (key.split(".", 1)[0] in COMPONENT_GROUPS
            and key.rsplit(".", 1)[-1] in COMPONENT_RUNTIME_PARAMS | COMPONENT_DESCRIPTIVE_PARAMS)


_KINDS = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}


def type_error_line(key: str, message: str, schema: type = CloneApp) -> str:
    """One line for a value Hydra could not convert: ``seed must be an integer, got 'abc'``."""
    found, value = _lookup(schema, key), re.search(r"Value '(.*?)'", message)
    if found is None or value is None:
        return f"{key}: {message.splitlines()[0]}"
    args = [a for a in typing.get_args(found[1]) if a is not type(None)]  # Optional[int] -> int
    return f"{key} must be {_KINDS.get(args[0] if args else found[1], 'of another type')}, got {value.group(1)!r}"


# ------------------------------------------------------------------ validation
def _check_ranges(node: DictConfig, schema: type, prefix: str) -> None:
    for f in dataclasses.fields(schema):
        key = f"{prefix}{f.name}"
        sub = typing.get_type_hints(schema)[f.name]
        if isinstance(sub, type) and dataclasses.is_dataclass(sub):
            _check_ranges(node[f.name], sub, f"{key}.")
            continue
        low, high, choices = f.metadata.get("ge"), f.metadata.get("le"), f.metadata.get("choices")
        if low is None and high is None and not choices:
            continue  # nothing to check: the value is not even resolved (paths may name Hydra's run)
        value = node[f.name]
        if value is None:
            continue
        if choices and value not in choices:
            raise ConfigError(f"{key} must be one of {', '.join(choices)}, got {value!r}")
        if (low is not None and value < low) or (high is not None and value > high):
            bounds = f">= {low:g}" if high is None else f"in [{low:g}, {high:g}]"
            raise ConfigError(f"{key} must be {bounds}, got {value!r}")


def check_component(group: str, node: Any) -> None:
    """A component group's keys are parameters of its ``_target_`` (recursively for nested components)."""
    if not isinstance(node, DictConfig) or "_target_" not in node:
        return
    try:
        target = get_method(node._target_)
    except Exception as e:  # noqa: BLE001 - Hydra wraps import errors in several types
        raise ConfigError(f"{group}._target_: cannot import '{node._target_}' ({str(e).splitlines()[0]})") from None
    params = inspect.signature(target).parameters
    open_kwargs = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    for key in node:
        if str(key).startswith("_"):
            continue
        if key not in params and not open_kwargs:
            raise ConfigError(f"{group}.{key} is not a setting of {node._target_} (it takes: "
                              f"{', '.join(n for n in params if n not in ('self', 'args', 'kwargs'))})")
        if OmegaConf.is_missing(node, key):
            raise ConfigError(f"{group}.{key} must be set (e.g. {group}.{key}=...)")
        check_component(f"{group}.{key}", node._get_node(key))  # not resolved: interpolations are checked where they point


def _check_combination(cfg: DictConfig) -> None:
    """Rules that span groups: the dataset's classes must fit the grammar."""
    if "dataset" not in cfg or "grammar" not in cfg:
        return
    ds, grammar = cfg.dataset, cfg.grammar
    world = {"ShapesDataset": "shapes", "GlyphsDataset": "glyphs"}.get(str(ds.get("_target_", "")).rsplit(".", 1)[-1])
    if world and grammar.name != world:
        raise ConfigError(f"dataset={ds.name} draws its inputs from the {world} world, which grammar={grammar.name} "
                          f"does not describe; use grammar={world}")
    classes = ds.get("classes")
    if isinstance(classes, str):  # a class-list file
        from pipeline.clone.dataset import read_class_list

        classes = read_class_list(classes)
    groups = {c.get("group") for c in classes if isinstance(c, (DictConfig, dict))} - {None} if classes else set()
    if groups and not set(groups) <= set((grammar.get("groups") or {}).keys()):
        known = sorted((grammar.get("groups") or {}).keys())
        missing = sorted(set(groups) - set(known))
        hint = (f" (its groups: {', '.join(known)}); use one of those, or add yours to the grammar's `groups`" if known
                else "; use a grammar with groups (grammar=imagenet)")
        raise ConfigError(f"dataset={ds.name} puts its classes in groups ({', '.join(missing[:4])}{'…' if len(missing) > 4 else ''}) "
                          f"that grammar={grammar.name} has no vocabulary for{hint}")


def _check_workers(cfg: DictConfig) -> None:
    n = cfg.cluster.num_workers if "cluster" in cfg else None
    if n is not None and n != "auto" and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
        raise ConfigError(f"cluster.num_workers must be an integer >= 1, auto (one per GPU or slot the cluster has now, "
                          f"growing as nodes join) or null, got {n!r}")


def _check_reward(cfg: DictConfig) -> None:
    reward = cfg.get("reward")
    if isinstance(reward, DictConfig) and "weights" in reward:  # before Ray starts, not when a worker builds it
        check_reward_weights(OmegaConf.to_container(reward.weights, resolve=True), reward.get("segmenter") is not None)


def _check_context_prior(cfg: DictConfig) -> None:
    if "clone" in cfg and "context_prior" in cfg.clone:
        from pipeline.clone.context_prior import check_strength

        check_strength(cfg.clone.context_prior)


def validate(cfg: DictConfig, schema: type = CloneApp) -> None:
    """Ranges, choices, component keys and cross-group rules, in one step before anything starts. Types were
    checked when the config was composed against the schema."""
    _check_ranges(cfg, schema, "")
    _check_workers(cfg)
    _check_reward(cfg)
    _check_context_prior(cfg)
    for group in COMPONENT_GROUPS:
        if group in cfg:
            check_component(group, cfg[group])
    _check_combination(cfg)

