"""``rldf-clone``: clone every class of a dataset into resumable WebDataset shards on Ray."""

from __future__ import annotations

import json
import logging
import os
import socket
import sys

import hydra
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from pipeline.assembly import instantiate_model
from pipeline.cli import CONF_DIR, user_errors
from pipeline.clone.checks import check_clone_config
from pipeline.clone.estimate import measure_throughput, plan_report, search_render_bound
from pipeline.clone.identity import check_identity
from pipeline.clone.plan import ClonePlan
from pipeline.errors import ConfigError
from pipeline.storage import Storage

log = logging.getLogger("rldf.clone")


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


def _init_ray(cluster: DictConfig) -> int:
    """Start or join Ray; return the number of workers to run."""
    import ray

    kwargs = {"include_dashboard": False, "log_to_driver": bool(cluster.log_to_driver), "logging_level": logging.WARNING}
    if cluster.address:
        _probe(str(cluster.address), float(cluster.connect_timeout_s))
        try:
            ray.init(address=cluster.address, **kwargs)
        except ConnectionError as e:
            raise _unreachable(str(cluster.address), str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__) from None
    else:
        ray.init(num_cpus=cluster.num_cpus or os.cpu_count(), **kwargs)
    if cluster.num_workers:
        return int(cluster.num_workers)
    res = ray.cluster_resources()
    if cluster.gpus_per_worker:
        n = int(res.get("GPU", 0) // cluster.gpus_per_worker)
        if n < 1:
            raise ConfigError(f"cluster.gpus_per_worker={cluster.gpus_per_worker} but the Ray cluster has {res.get('GPU', 0)} GPUs")
        return n
    return max(1, int(res.get("CPU", 1) // cluster.cpus_per_worker))


def summary_from_output(stdout: str) -> dict:
    """The JSON summary that :func:`run` prints, read back from the command's stdout (for scripts and tests
    that run ``scripts/clone.py`` as a subprocess)."""
    return json.loads(stdout[stdout.index("{") : stdout.rindex("}") + 1])


def run(cfg: DictConfig) -> int:
    check_clone_config(cfg)  # types and ranges, before anything is written or started
    dataset = instantiate(cfg.dataset)
    c = cfg.clone
    plan = ClonePlan(dataset.classes(), int(c.images_per_class), int(c.shard_size), str(c.shard_order), int(cfg.seed))
    search = instantiate(cfg.search)  # validates the search config before any worker starts
    grammar = instantiate(cfg.grammar)
    if not grammar.class_axis:  # acceptance and verification read the class axis
        raise ConfigError(f"grammar '{grammar.name}' has no class_axis: a clone keeps each input's class, "
                          "so the grammar must name it")
    grammar.restrict(cfg.env.fix, cfg.env.exclude)  # a bad env.fix / env.exclude fails here, in one line
    if c.dry_run:
        grammar = grammar.with_choices(grammar.class_axis, [c.prompt for c in dataset.all_classes()])
        measured = c.throughput is None
        if measured:
            model = instantiate_model(cfg.model, grammar)
            prompt = grammar.decode([0] * len(grammar.axes))
            throughput = measure_throughput(model, prompt, int(c.warmup_images), int(c.batch_size))
        else:
            throughput = float(c.throughput)
        workers = int(cfg.cluster.num_workers or 1)
        report = plan_report(plan, search_render_bound(search, cfg.env, grammar), throughput, workers, measured)
        print(json.dumps(report, indent=1))
        return 0

    from pipeline.clone.driver import CloneDriver

    cfg_dict = OmegaConf.to_container(cfg, resolve=True)
    # a resume under other settings fails here, before Ray starts
    changes = check_identity(Storage(cfg.paths.output_dir), cfg_dict, str(c.on_config_change))
    cfg_dict["cluster"]["num_workers"] = _init_ray(cfg.cluster)
    summary = CloneDriver(cfg_dict, plan, identity_changes=changes).run()
    out = summary.to_dict()
    print(json.dumps(out, indent=1))
    print(f"shards: {cfg.paths.output_dir} ({summary.shards_written} written, {summary.shards_reused} reused, "
          f"{len(summary.failures)} failed)")
    for cls_id, missing in sorted(summary.shortfall.items()):
        print(f"warning: class '{cls_id}' is {missing} images short of clone.images_per_class={plan.images_per_class}: "
              f"no candidate reached env.accept_threshold in clone.max_tries tries (see its searches/ result)", file=sys.stderr)
    if not summary.ok:
        for f in summary.failures:
            print(f"error: {f['unit']} failed after {f['attempts']} attempts: {f['error']}", file=sys.stderr)
        if summary.stopped:
            print(f"error: stopped with {summary.units_left} units left: {summary.stopped}; every committed shard is valid, "
                  "run the same command again to resume", file=sys.stderr)
        return 1
    return 0


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="clone")
def main(cfg: DictConfig) -> None:
    with user_errors():
        code = run(cfg)
    sys.exit(code)


if __name__ == "__main__":
    main()
