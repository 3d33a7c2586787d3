"""Console entry points (Hydra apps). Each is thin: compose config (:func:`pipeline.compose.load_config`), build
objects, call the package. :func:`app` wraps a ``run(cfg)`` function as a console command: a bad value ends in one
line (``error: seed must be an integer, got 'abc'``) and exit status 2 instead of Hydra's multi-line report, and
``--cfg`` prints the composed config. Nothing in the package imports this one.
"""

from __future__ import annotations

import contextlib
import functools
import sys
from pathlib import Path
from typing import Callable, Iterator, Sequence

from hydra.errors import HydraException, InstantiationException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from pipeline.compose import load_config
from pipeline.errors import PipelineError


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
