"""The clone job: every class of a dataset, searched and rendered into resumable WebDataset shards on Ray.

``run(load([...overrides]))`` is the in-process API (:mod:`pipeline.clone.api`); ``scripts/clone.py`` is its CLI.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

if TYPE_CHECKING:
    from omegaconf import DictConfig

    from pipeline.clone.driver import CloneSummary


def load(overrides: Sequence[str] = ()) -> "DictConfig":
    from pipeline.clone import api

    return api.load(overrides)


def run(cfg: "DictConfig") -> "CloneSummary":
    from pipeline.clone import api

    return api.run(cfg)


def dry_run(cfg: "DictConfig") -> dict[str, Any]:
    from pipeline.clone import api

    return api.dry_run(cfg)
