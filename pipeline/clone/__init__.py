"""The clone job: every class of a dataset, searched and rendered into resumable WebDataset shards on Ray.

``run(load([...overrides]))`` is the in-process API, with ``dry_run`` (:mod:`pipeline.clone.api`);
``scripts/clone.py`` is its CLI.
"""

from pipeline.clone.api import cli_command, dry_run, load, run

__all__ = ["load", "run", "dry_run", "cli_command"]
