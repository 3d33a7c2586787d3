"""``rldf-clone``: clone every class of a dataset into resumable WebDataset shards on Ray."""

from __future__ import annotations

import json
import sys

from omegaconf import DictConfig

from pipeline.cli import app
from pipeline.clone import api
from pipeline.clone.driver import CloneSummary


def report(summary: CloneSummary, cfg: DictConfig) -> int:
    """Print the summary, a line per class short of its quota and per failure; the exit status."""
    print(json.dumps(summary.to_dict(), indent=1))
    print(f"shards: {cfg.paths.output_dir} ({summary.shards_written} written, {summary.shards_reused} reused, "
          f"{len(summary.failures)} failed)")
    for cls_id, missing in sorted(summary.shortfall.items()):
        print(f"warning: class '{cls_id}' is {missing} images short of clone.images_per_class={cfg.clone.images_per_class}: "
              f"no candidate reached env.accept_threshold in clone.max_tries tries (see its searches/ result)", file=sys.stderr)
    if summary.ok:
        return 0
    for f in summary.failures:
        print(f"error: {f['unit']} failed after {f['attempts']} attempts: {f['error']}", file=sys.stderr)
    if summary.stopped:
        print(f"error: stopped with {summary.units_left} units left: {summary.stopped}; every committed shard is valid, "
              "run the same command again to resume", file=sys.stderr)
    return 1


@app("clone")
def main(cfg: DictConfig) -> int:
    """Clone a dataset into resumable WebDataset shards. Re-running with the same paths.output_dir resumes;
    clone.dry_run=true prints the plan and a cost estimate instead."""
    if cfg.clone.dry_run:
        print(json.dumps(api.dry_run(cfg), indent=1))
        return 0
    return report(api.run(cfg), cfg)


if __name__ == "__main__":
    main()
