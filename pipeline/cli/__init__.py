"""Console entry points (Hydra apps). Each is thin: compose config, build objects, call the package."""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path
from typing import Iterator

from hydra.errors import HydraException, InstantiationException
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from pipeline.errors import PipelineError

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
