"""The in-process clone API: what the CLI, ``make eval``, ``make bench`` and the tests call.

::

    from pipeline.clone import load, run
    summary = run(load(["experiment=shapes_demo", "paths.output_dir=runs/demo"]))

:func:`load` composes and validates ``conf/clone.yaml``; :func:`run` clones (resuming what the output folder
holds) and returns the :class:`~pipeline.clone.driver.CloneSummary`, also written to ``summary.json`` beside
the shards; :func:`dry_run` is the dry run (plan and cost estimate, nothing generated).
"""

from __future__ import annotations

import logging
import os
import socket
import sys
from functools import partial
from typing import Any, Callable, Sequence

import torch
from hydra.utils import get_class, instantiate
from omegaconf import DictConfig, OmegaConf

from pipeline.assembly import instantiate_model
from pipeline.clone.card import CardFacts
from pipeline.clone.dataset import ClassInfo
from pipeline.clone.driver import CloneDriver
from pipeline.clone.summary import CloneSummary
from pipeline.clone.inline_pool import local_resources
from pipeline.clone.pool import worker_count
from pipeline.clone.estimate import image_pixels, measure_throughput, plan_report, resources, search_render_bound
from pipeline.clone.reference_throughput import reference_throughput
from pipeline.clone.identity import check_identity, identity_hash, run_identity
from pipeline.clone.inventory import output_tags
from pipeline.clone.lease import Lease
from pipeline.clone.plan import ClonePlan
from pipeline.compose import REPO_ROOT, load_config
from pipeline.config import CloneApp, ClusterSettings
from pipeline.errors import ConfigError
from pipeline.grammar import Grammar
from pipeline.storage import Storage
from pipeline.torch_device import gpus_per_worker, wants_gpu

log = logging.getLogger("rldf.clone")


def load(overrides: Sequence[str] = ()) -> DictConfig:
    """``conf/clone.yaml`` with ``overrides``, typed and validated (:func:`pipeline.compose.load_config`)."""
    return load_config("clone", overrides)


def cli_command(*overrides: str) -> list[str]:
    """The clone CLI as a command line, for callers that need a process of their own (to kill it, signal it, or
    measure it alone)."""
    return [sys.executable, str(REPO_ROOT / "scripts" / "clone.py"), *overrides]


def _probe(address: str, timeout: float) -> None:
    """Fail in one line, within ``timeout`` seconds, when a ``host:port`` Ray address does not answer (``ray.init``
    itself retries for minutes). ``auto`` finds a cluster on this machine, and Ray says at once when there is none."""
    hostport = address.split("://", 1)[-1]
    if address == "auto" or ":" not in hostport:
        return
    host, port = hostport.rsplit(":", 1)
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except (OSError, ValueError) as e:
        raise _unreachable(address, getattr(e, "strerror", None) or str(e)) from None


def _unreachable(address: str, reason: str) -> ConfigError:
    return ConfigError(f"cannot reach a Ray cluster at cluster.address={address} ({reason}); start one "
                       "(`ray start --head`) or use cluster=local")


def _init_ray(cluster: DictConfig) -> None:
    """Start or join Ray."""
    import ray

    kwargs = {"include_dashboard": False, "log_to_driver": cluster.log_to_driver, "logging_level": logging.WARNING}
    if cluster.address:
        _probe(cluster.address, cluster.connect_timeout_s)
        try:
            ray.init(address=cluster.address, **kwargs)
        except ConnectionError as e:
            raise _unreachable(cluster.address, str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__) from None
    else:  # Ray finds this machine's GPUs itself
        if "RAY_AUTH_MODE" not in os.environ:  # Ray's default for a new local cluster: token auth on, said once here
            logging.getLogger(RAY_AUTH_LOGGER).addFilter(_ray_auth_notice)
            log.info("local Ray starts with token authentication (Ray's default; RAY_AUTH_MODE=disabled turns it off)")
        ray.init(num_cpus=cluster.num_cpus or os.cpu_count(), **kwargs)


RAY_AUTH_LOGGER = "ray._private.authentication.authentication_token_setup"


def _ray_auth_notice(record: logging.LogRecord) -> bool:
    """Drops Ray's notice that a new local cluster enabled token authentication (the project says it in its own log);
    every other record of that logger passes."""
    return not record.getMessage().startswith("Token authentication is enabled for this Ray cluster")


def _prepare(cfg: DictConfig) -> tuple[ClonePlan, Any, Grammar, list[ClassInfo]]:
    """The plan, search, grammar (with the dataset's classes on its class axis) and every class of the dataset in
    label order, built (and so checked) before anything is written or started."""
    dataset = instantiate(cfg.dataset)
    c = cfg.clone
    plan = ClonePlan(dataset.classes(), c.images_per_class, c.shard_size, c.shard_order, cfg.seed, c.shuffle_classes)
    search = instantiate(cfg.search)
    grammar = instantiate(cfg.grammar)
    if not grammar.class_axis:  # acceptance and verification read the class axis
        raise ConfigError(f"grammar '{grammar.name}' has no class_axis: a clone keeps each input's class, "
                          "so the grammar must name it")
    grammar.restrict(cfg.env.fix, cfg.env.exclude)  # a bad env.fix / env.exclude fails here, in one line
    labels = list(dataset.all_classes())
    check_reader_classes(cfg.reward, [k.prompt for k in labels])
    return plan, search, grammar.with_choices(grammar.class_axis, [k.prompt for k in labels]), labels


def check_reader_classes(reward: DictConfig, names: list[str]) -> None:
    """A semantic encoder with a fixed set of classes reads classes by name, whatever order the dataset gives them; a
    class name it does not know is refused here, in one line, before anything runs (its ``check_classes``)."""
    node = reward.get("semantic_encoder")
    if node is None or "_target_" not in node:
        return
    check = getattr(get_class(node._target_), "check_classes", None)
    if check is not None:
        check(names, **{k: v for k, v in OmegaConf.to_container(node, resolve=True).items() if not k.startswith("_")})


def dry_run(cfg: DictConfig) -> dict[str, Any]:
    """The dry run: classes, shards, renders and device-hours of ``cfg``'s clone; writes nothing.

    Throughput per worker, in this order: ``clone.throughput`` if given; on a machine without CUDA, a model
    that would run on a GPU and has a row in :mod:`pipeline.clone.reference_throughput` is planned with
    that published figure; otherwise the model is loaded and timed here at the run's call size."""
    clone_plan, search, grammar, _ = _prepare(cfg)
    c = cfg.clone
    if c.throughput is not None:
        throughput, source = float(c.throughput), "clone.throughput"
    else:
        gpu_model_without_gpu = wants_gpu(cfg.model) and not torch.cuda.is_available()
        reference = reference_throughput(cfg.model) if gpu_model_without_gpu else None
        if reference is not None:
            throughput, source = reference
        elif gpu_model_without_gpu and "pretrained" in cfg.model and not _is_local(cfg.model.pretrained):
            raise ConfigError(f"the dry run cannot time model.pretrained={cfg.model.pretrained} without a GPU and has no "
                              "published figure for it: run the dry run on a GPU machine, or pass clone.throughput=<images/s per worker>")
        else:
            model = instantiate_model(cfg.model, grammar)
            throughput, source = measure_throughput(model, grammar, c.warmup_images, c.batch_size)
    bound, workers, cl = search_render_bound(search, cfg.env, grammar), _planned_workers(cfg.cluster.num_workers), cfg.cluster
    gpus = cl.gpus_per_worker if cl.gpus_per_worker is not None else (1 if wants_gpu(cfg.model) else 0)
    needs = resources(clone_plan, bound, image_pixels(cfg.model), str(c.image_format), workers, float(cl.cpus_per_worker),
                      float(gpus), int(cl.units_per_worker))
    return plan_report(clone_plan, bound, throughput, workers, source, inputs_read(cfg), needs)


def inputs_read(cfg: DictConfig) -> int:
    """Input images read per class: ``dataset.inputs_per_class``, or with ``clone.propose=inputs`` its
    ``dataset.context_inputs`` where that is more (what the dry run counts beside the renders)."""
    k, m = int(cfg.dataset.get("inputs_per_class", 1)), cfg.dataset.get("context_inputs")
    return max(k, int(m)) if cfg.clone.propose == "inputs" and m is not None else k


def _planned_workers(n: Any) -> int:
    return n if isinstance(n, int) and not isinstance(n, bool) else 1


def _is_local(ref: str) -> bool:
    return os.path.exists(os.path.expanduser(str(ref)))


def _place_workers(cfg: DictConfig, cluster: ClusterSettings, res: dict[str, float], started: bool) -> None:
    """The GPU decision and the worker count, into ``cluster`` (the settings the driver gets): ``cluster=local``
    on a GPU machine gives each worker one GPU (``gpus_per_worker: null``), and says so."""
    gpus = res.get("GPU", 0)
    cluster.gpus_per_worker = gpus_per_worker(cfg.cluster.gpus_per_worker, gpus, cfg.model)
    if cfg.cluster.gpus_per_worker is None and cluster.gpus_per_worker:
        print(f"{gpus:g} GPUs found: one GPU per worker (cluster.gpus_per_worker=0 runs on the CPUs)", file=sys.stderr)
    elif gpus and not cluster.gpus_per_worker and wants_gpu(cfg.model):
        print(f"warning: the Ray cluster has {gpus:g} GPUs but cluster.gpus_per_worker=0: the model runs on CPUs", file=sys.stderr)
    if cluster.num_workers != "auto" and (started or not cluster.num_workers):  # auto: the driver follows the cluster
        cluster.num_workers = worker_count(cluster, res)


def run(cfg: DictConfig, on_event: Callable[[dict], None] | None = None, command: str | None = None) -> CloneSummary:
    """Clone every class of ``cfg.dataset`` into ``paths.output_dir``, resuming what the folder already holds;
    returns the summary (also in ``summary.json``, and the folder's dataset card ``README.md``). The workers are
    Ray actors (Ray started here unless the caller has started it), or with ``cluster.backend=inline`` one worker
    in this process. ``on_event`` sees every event of ``clone.log`` as it is logged; ``command``: the command line
    that launched the run, for the card."""
    clone_plan, _, grammar, labels = _prepare(cfg)
    settings = OmegaConf.to_container(cfg, resolve=True)  # what the output depends on, as run.json records it
    typed: CloneApp = OmegaConf.to_object(cfg)  # what the driver, the pool and the workers read (it crosses Ray as is)
    identity = run_identity(settings)
    storage = Storage(cfg.paths.output_dir, cfg.clone.storage_retry_s)
    storage.probe()  # an object store that cannot be used says so in one line, in seconds
    # a folder another run holds, or a resume under other settings, fails here, before Ray starts
    with Lease(storage, identity_hash(identity), cfg.clone.lease_timeout_s, cfg.clone.lease_heartbeat_s) as lease:
        changes = check_identity(storage, settings, cfg.clone.on_config_change, identity, lambda: output_tags(storage))
        driver = partial(CloneDriver, plan=clone_plan, identity_changes=changes, lease=lease, identity=identity, on_event=on_event,
                         class_pos=grammar.axis_index(grammar.class_axis), card=CardFacts.of(typed, labels, command))
        if cfg.cluster.backend == "inline":
            _place_workers(cfg, typed.cluster, local_resources(), started=True)
            return driver(typed).run()
        try:
            import ray
        except ImportError:
            raise ConfigError("cluster.backend=ray needs Ray, which is not installed here: pip install 'rldf-pipeline[ray]' "
                              "(or the wheelhouse's Ray), or run one worker in this process with cluster=inline") from None

        started = not ray.is_initialized()
        if started:
            _init_ray(cfg.cluster)
        try:
            _place_workers(cfg, typed.cluster, ray.cluster_resources(), started)
            return driver(typed).run()
        finally:
            if started:
                ray.shutdown()
