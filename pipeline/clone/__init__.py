"""The clone job: every class of a dataset, searched and rendered into resumable WebDataset shards on Ray.

``run(load([...overrides]))`` is the in-process API, with ``dry_run`` (:mod:`pipeline.clone.api`);
``scripts/clone.py`` is its CLI. They are imported on first use: the submodules (plan, shards, layout) are
light and are imported by the config schema, which the API itself needs.
"""

from __future__ import annotations

from typing import Any

API = ("load", "run", "dry_run", "cli_command")


def __getattr__(name: str) -> Any:
    if name in API:
        from pipeline.clone import api

        return getattr(api, name)
    raise AttributeError(f"module 'pipeline.clone' has no attribute '{name}'")
