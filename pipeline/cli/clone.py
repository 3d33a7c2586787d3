"""``rldf-clone``: clone every class of a dataset into resumable WebDataset shards on Ray."""

from __future__ import annotations

import json
import shlex
import sys

from omegaconf import DictConfig

from pipeline.cli import app
from pipeline.clone import api
from pipeline.clone.summary import CloneSummary
from pipeline.clone.layout import LAYOUT


def report(summary: CloneSummary, cfg: DictConfig) -> int:
    """Print the summary, its label accuracy, a line per class short of its quota or misread (the first ten) and per
    failure; the exit status."""
    print(json.dumps(summary.to_dict(), indent=1))
    print(f"shards: {cfg.paths.output_dir} ({summary.shards_written} written, {summary.shards_reused} reused, "
          f"{len(summary.failures)} failed)")
    short = sorted(summary.shortfall.items())
    for cls_id, missing in short[:10]:
        print(f"warning: class '{cls_id}' is {missing} images short of clone.images_per_class={cfg.clone.images_per_class}: "
              f"no candidate reached env.accept_threshold in clone.max_tries tries and clone.fill=strict, or its search "
              f"evaluated no state (see its searches/ result)", file=sys.stderr)
    if len(short) > 10:
        print(f"warning: and {len(short) - 10} more classes short, {sum(n for _, n in short[10:])} images in all "
              f"('shortfall' in {LAYOUT.summary})", file=sys.stderr)
    skipped = [(cid, f) for cid, fs in sorted(summary.inputs_skipped.items()) for f in fs]
    for cid, f in skipped[:10]:
        print(f"warning: input skipped for class '{cid}': {f['why']}; the next image was read instead", file=sys.stderr)
    if len(skipped) > 10:
        print(f"warning: and {len(skipped) - 10} more input files skipped ('inputs_skipped' in {LAYOUT.summary})", file=sys.stderr)
    if summary.label_accuracy is not None:
        print(f"label accuracy: {summary.label_accuracy:.4f} (samples whose prompt asks for their label's class)")
    ids = sorted(summary.misread)
    for cls_id in ids[:10]:
        m = summary.misread[cls_id]
        shows = "its images show the label (env.class_source=label)" if cfg.env.class_source == "label" else f"its images show '{m['read']}'"
        how = "chosen by renders as" if cfg.env.class_source == "rendered" else "read as"
        print(f"warning: class '{cls_id}' ('{m['label']}') was {how} '{m['read']}' (p={m['prob']:.2f}) in its "
              f"{cfg.dataset.inputs_per_class} input image(s): {shows}", file=sys.stderr)
    if len(ids) > 10:
        print(f"warning: and {len(ids) - 10} more classes read as another class ('misread' in {LAYOUT.summary})", file=sys.stderr)
    if ids and cfg.env.class_source != "label":
        shown = ",".join(ids[:10]) + (",..." if len(ids) > 10 else "")
        remedy = ("env.class_source=label" if cfg.env.class_source == "rendered" and cfg.dataset.inputs_per_class >= 5
                  else "dataset.inputs_per_class=5 env.class_source=rendered (or env.class_source=label)")
        print(f"warning: redo the {len(ids)} misread classes with more inputs or the label, in a new paths.output_dir: "
              f"dataset.only=[{shown}] {remedy}", file=sys.stderr)
    if summary.ok:
        return 0
    if summary.incomplete and not summary.failures and summary.stopped is None:
        print(f"error: the clone is incomplete: {summary.incomplete} (the shards and {LAYOUT.summary} are written; "
              "clone.max_shortfall=1 accepts any outcome)", file=sys.stderr)
        return 3
    for f in summary.failures:
        how = "(not retried: the same input fails the same way)" if f.get("retried") is False else \
            f"after {f['attempts']} attempt{'s' if f['attempts'] != 1 else ''}"
        print(f"error: {f['unit']} failed {how}: {f['error']}", file=sys.stderr)
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
    command = " ".join(["python scripts/clone.py", *(shlex.quote(a) for a in sys.argv[1:])])
    return report(api.run(cfg, command=command), cfg)


if __name__ == "__main__":
    main()
