"""Console entry points (Hydra apps). Each is thin: compose config, build objects, call the package.

:func:`load_config` composes ``conf/<name>.yaml`` with command-line style overrides through Hydra's compose
API, typed by its schema (:mod:`pipeline.config`) and validated; the CLIs, ``make eval``, ``make bench`` and the
tests all get their configs from it. :func:`app` wraps a ``run(cfg)`` function as a console command: a bad
value ends in one line (``error: seed must be an integer, got 'abc'``) and exit status 2 instead of Hydra's
multi-line report, and ``--cfg`` prints the composed config.
"""

from __future__ import annotations

import contextlib
import functools
import os
import sys
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from hydra.core.utils import configure_log
from hydra.errors import HydraException, InstantiationException
from omegaconf import DictConfig, OmegaConf, open_dict
from omegaconf.errors import OmegaConfBaseException, ValidationError

from pipeline import config as schema_module
from pipeline.errors import ConfigError, PipelineError

# entry points print progress of their own; keep library chatter (weight-loading bars, notices) quiet
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")

#: the repository (the package is installed editable, inside it) and its Hydra config tree
REPO_ROOT = Path(__file__).resolve().parents[2]
CONF_DIR = str(REPO_ROOT / "conf")
# ${repo:} in configs: the repository root, so shipped models resolve from any working directory
OmegaConf.register_new_resolver("repo", lambda: str(REPO_ROOT), replace=True)


def _root_cause(exc: BaseException) -> BaseException:
    seen = exc
    while seen.__cause__ is not None or seen.__context__ is not None:
        nxt = seen.__cause__ or seen.__context__
        if isinstance(nxt, PipelineError):
            return nxt
        seen = nxt
    return exc


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """Turn configuration and input errors into one line on stderr and exit status 2."""
    try:
        yield
    except PipelineError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except (InstantiationException, HydraException, OmegaConfBaseException) as e:
        cause = _root_cause(e)
        msg = str(cause).strip().splitlines()[0] if str(cause).strip() else type(cause).__name__
        print(f"error: {msg}", file=sys.stderr)
        sys.exit(2)


def load_config(config_name: str, overrides: Sequence[str] = (), *, logging_setup: bool = False,
                job_name: str | None = None) -> DictConfig:
    """``conf/<config_name>.yaml`` composed with ``overrides`` (``key=value``, ``group=option``), its types checked
    against its schema (:data:`pipeline.config.APP_SCHEMAS`) by Hydra and its ranges and cross-group rules by
    :func:`pipeline.config.validate`.
    ``${hydra:…}`` interpolations resolve as under ``@hydra.main``. Raises :class:`ConfigError` in one line."""
    schema = schema_module.APP_SCHEMAS.get(config_name)
    try:
        with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3", job_name=job_name or config_name):
            cfg = compose(config_name=config_name, overrides=list(overrides), return_hydra_config=True)
    except (HydraException, OmegaConfBaseException) as e:
        cause = e.__cause__ if isinstance(e.__cause__, OmegaConfBaseException) else e
        key = getattr(cause, "full_key", None)
        if isinstance(cause, ValidationError) and key and schema is not None:
            raise ConfigError(schema_module.type_error_line(key, str(cause), schema)) from None
        lines = [str(x).strip().splitlines()[0] for x in dict.fromkeys((e, cause)) if str(x).strip()]
        raise ConfigError(" ".join(lines) or type(e).__name__) from None
    HydraConfig.instance().set_config(cfg)  # ${hydra:job.name} resolves from here on
    if schema is not None:
        schema_module.validate(cfg, schema)
    if logging_setup:
        _setup_logging(cfg.hydra)
    with open_dict(cfg):
        del cfg["hydra"]
    return cfg


def _setup_logging(hydra_cfg: DictConfig) -> None:
    """As ``@hydra.main`` does: the run folder exists, holds the job's log file if its logging config has one,
    and the logging config is applied."""
    run_dir = Path(hydra_cfg.run.dir).absolute()
    run_dir.mkdir(parents=True, exist_ok=True)
    OmegaConf.set_readonly(hydra_cfg, False)
    with open_dict(hydra_cfg):
        hydra_cfg.runtime.output_dir = str(run_dir)
    configure_log(hydra_cfg.job_logging, hydra_cfg.verbose)


def app(config_name: str) -> Callable[[Callable[[DictConfig], int | None]], Callable[[], None]]:
    """``@app("clone")`` over ``run(cfg) -> exit code``: the console command (``scripts/*.py``)."""

    def wrap(run: Callable[[DictConfig], int | None]) -> Callable[[], None]:
        @functools.wraps(run)
        def main(argv: Sequence[str] | None = None) -> None:
            args = list(sys.argv[1:] if argv is None else argv)
            if {"-h", "--help"} & set(args):
                print(f"usage: {Path(sys.argv[0]).name} [--cfg] [group=option] [key=value] ...\n\n"
                      f"{(run.__doc__ or '').strip()}\n\nsettings and their defaults: conf/{config_name}.yaml; "
                      f"types and ranges: pipeline/config.py")
                return
            show = "--cfg" in args
            with user_errors():
                cfg = load_config(config_name, [a for a in args if a != "--cfg"], logging_setup=not show,
                                  job_name=Path(sys.argv[0]).stem)  # ${hydra:job.name}: the script's name, as under @hydra.main
                if show:
                    print(OmegaConf.to_yaml(cfg))
                    return
                code = run(cfg)
            sys.exit(code or 0)

        return main

    return wrap


def component(group: str, option: str, config_name: str = "run_search", **params: Any) -> Any:
    """``<group>=<option>`` built as conf/ builds it, ``params`` replacing its values (scripts and tests that need
    one component, e.g. ``component("search", "qlearning", episodes=64)``). The constructor's own error is raised
    as is, as for a caller building it directly."""
    from hydra.utils import instantiate

    cfg = load_config(config_name, [f"{group}={option}"])
    try:
        return instantiate(cfg[group], **params)
    except InstantiationException as e:
        raise (e.__cause__ or e) from None


@functools.lru_cache(maxsize=1)
def _env_defaults() -> tuple[tuple[str, Any], ...]:
    return tuple(OmegaConf.to_container(load_config("run_search").env).items())


def env_settings(**overrides: Any) -> dict[str, Any]:
    """``conf/env/default.yaml``'s values with ``overrides`` (keys it does not have are refused)."""
    base = dict(_env_defaults())
    unknown = set(overrides) - set(base)
    if unknown:
        raise ConfigError(f"not env settings: {sorted(unknown)}")
    return {**base, **overrides}

