"""The clone job: every class of a dataset, searched and rendered into resumable WebDataset shards by workers (Ray
actors, or one in this process with ``cluster=inline``).

``run(load([...overrides]))`` is the in-process API, with ``dry_run`` (:mod:`pipeline.clone.api`);
``scripts/clone.py`` is its CLI. The API is imported on first use, so that a module of this package (the folder
layout, say) can be imported without Hydra, webdataset or Ray.
"""

from typing import Any

__all__ = ["load", "run", "dry_run", "cli_command"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from pipeline.clone import api

        return getattr(api, name)
    raise AttributeError(f"module 'pipeline.clone' has no attribute '{name}'")
