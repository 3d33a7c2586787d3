"""Config composition: ``conf/<name>.yaml`` with command-line style overrides, typed by its schema and validated.

:func:`load_config` composes through Hydra's compose API, types the result by its schema (:mod:`pipeline.config`)
and validates it; the CLIs (:mod:`pipeline.cli`), the clone API, ``make eval``, ``make bench`` and the tests all get
their configs from it: there is one way to build a search or a clone.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from hydra.core.utils import configure_log
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf, open_dict
from omegaconf.errors import OmegaConfBaseException, ValidationError

from pipeline import config as schema_module
from pipeline.errors import ConfigError

# jobs print progress of their own; keep library chatter (weight-loading bars, notices) quiet, in the workers too
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")

#: the repository (the package is installed editable, inside it) and its Hydra config tree
REPO_ROOT = Path(__file__).resolve().parents[1]
CONF_DIR = str(REPO_ROOT / "conf")
# ${repo:} in configs: the repository root, so shipped models resolve from any working directory
OmegaConf.register_new_resolver("repo", lambda: str(REPO_ROOT), replace=True)


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
