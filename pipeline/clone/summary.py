"""A clone run's summary (``summary.json``, the CLI's last lines, the card's figures) and the rule that says when the run
fell short of its dataset (``clone.max_shortfall``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class CloneSummary:
    classes: int
    shards_total: int
    shards_written: int = 0
    shards_reused: int = 0
    searches_run: int = 0
    searches_reused: int = 0
    #: searches of this run whose best state names the input's own class (with env.class_candidates, the
    #: share of classes the cut class axis still found)
    searches_found_class: int = 0
    search_renders: int = 0  # renders the searches of this run spent
    images_written: int = 0
    images_from_search: int = 0  # of images_written, search renders reused (clone.reuse_search_renders)
    #: class -> image indices left out because no candidate passed verification (whole run, reused shards too)
    shortfall: dict[str, int] = field(default_factory=dict)
    #: class -> images written that did not pass acceptance (clone.fill=best kept the best of their tries)
    not_passed: dict[str, int] = field(default_factory=dict)
    images_requested: int = 0  # classes × clone.images_per_class
    #: why the clone falls short of clone.max_shortfall (None: it does not): missing or unpassed images, which classes
    incomplete: str | None = None
    #: the share of the clone's samples (every committed shard) whose prompt asks for the class of their label, and
    #: per class: on a procedural world, the share whose image shows its label (None: no record counts it)
    label_accuracy: float | None = None
    label_accuracy_by_class: dict[str, float] = field(default_factory=dict)
    #: class id -> {label, read, prob}: classes whose input image(s) the semantic encoder read as another class
    #: (with env.class_source=read their images show the class read, with rendered the class chosen; rerun them with dataset.only=[...])
    misread: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: class id -> the input files its search passed over (unreadable, empty, not images: each named once, with why)
    inputs_skipped: dict[str, list[dict[str, str]]] = field(default_factory=dict)
    #: committed shards rendered after a CUDA out-of-memory back-off (their records say at which call size): same prompts,
    #: seeds and noise as without it, pixels possibly not (kernels follow the batch size)
    shards_after_oom_backoff: int = 0
    corrupt_redone: dict[str, str] = field(default_factory=dict)
    failures: list[dict[str, Any]] = field(default_factory=list)
    workers_lost: int = 0
    nodes_left: int = 0  # cluster.num_workers=auto: workers whose node left the cluster (not failures)
    #: why the run stopped before its queue was empty (None: it ran to the end), and units left undone
    stopped: str | None = None
    units_left: int = 0
    wall_s: float = 0.0
    startup_s: float = 0.0  # starting workers (model loading), part of wall_s
    #: worker id -> what it ran on: device, device name, dtype, torch / CUDA / diffusers versions
    worker_devices: dict[str, dict[str, Any]] = field(default_factory=dict)
    worker_images_per_s: dict[str, float] = field(default_factory=dict)
    generator_images_per_s: float = 0.0  # generation renders per second inside generator calls
    #: per phase (search, generation): generator calls, renders, renders per call, share of calls below the
    #: batch size, seconds in calls, renders made ahead in short calls' free slots and how many of those were
    #: asked for later (env.render_ahead; all workers of this run)
    generator_calls: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """The run ended without failures or a stop, and made its dataset (clone.max_shortfall)."""
        return not self.failures and self.stopped is None and self.incomplete is None

    def to_dict(self) -> dict[str, Any]:
        d = dict(self.__dict__)
        d["images_per_s"] = round(self.images_written / self.wall_s, 3) if self.wall_s else 0.0
        work = self.wall_s - self.startup_s
        d["images_per_s_after_startup"] = round(self.images_written / work, 3) if work > 0 else 0.0
        d["ok"] = self.ok
        return d




def incompleteness(summary: CloneSummary, max_shortfall: float) -> str | None:
    """One line saying why the clone is not the dataset asked for, when more than ``max_shortfall`` (a fraction;
    ``clone.max_shortfall``) of the requested images are missing or did not pass acceptance; else None."""
    missing, unpassed = sum(summary.shortfall.values()), sum(summary.not_passed.values())
    want = summary.images_requested
    if not want or missing + unpassed <= max_shortfall * want:
        return None
    short = {c: summary.shortfall.get(c, 0) + summary.not_passed.get(c, 0) for c in {*summary.shortfall, *summary.not_passed}}
    worst = sorted(short, key=lambda c: (-short[c], c))
    named = ", ".join(f"{c} ({short[c]})" for c in worst[:5]) + (f" and {len(worst) - 5} more" if len(worst) > 5 else "")
    why = []
    if missing:
        why.append(f"{missing} missing (no render passed and clone.fill=strict, or the class had no state to render)")
    if unpassed:
        why.append(f"{unpassed} written without passing acceptance (the best of clone.max_tries renders, clone.fill=best)")
    return (f"{missing + unpassed} of {want} requested images ({(missing + unpassed) / want:.1%}) fall short, over "
            f"clone.max_shortfall={max_shortfall:g}: {'; '.join(why)}; in {len(worst)} classes: {named}")
