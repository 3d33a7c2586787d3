"""The progress bar counts renders from the workers' generator calls, not units, and its total converges on the
renders the units took."""

from omegaconf import OmegaConf

from pipeline.clone import load, progress
from pipeline.clone.dataset import ClassInfo
from pipeline.clone.plan import ClonePlan, SearchUnit
from pipeline.clone.progress import RenderProgress, render_estimate


class Pool:
    """The pool's shape as the bar uses it (:class:`pipeline.clone.pool.WorkerPool`): workers, and a progress ref per
    worker read back without waiting; here each answer is ready at once."""

    def __init__(self, n):
        self.workers = {w: w for w in range(n)}
        self.renders = {w: 0 for w in range(n)}
        self.asked = []

    def ask_progress(self, wid, worker):
        self.asked.append(wid)
        return (wid, self.renders[wid])

    def ready(self, refs):
        return refs

    def get(self, ref):
        return ref[1]


def test_the_bar_counts_renders_as_they_happen_and_takes_each_units_renders_when_it_ends(monkeypatch):
    monkeypatch.setattr(progress, "POLL_S", 0.0)
    classes = [ClassInfo(i, f"c{i}", f"c{i}") for i in range(3)]
    shards = ClonePlan(classes, 4, 12, "shuffled", 0).shard_units()
    settings = OmegaConf.to_object(load(["env.budget=48", "env.class_source=rendered", "env.rendered_candidates=4", "env.rendered_seeds=8",
                                         "clone.reuse_search_renders=true", "clone.reuse_max_share=0.25"]))
    env, clone = settings.env, settings.clone
    searches = [SearchUnit(c) for c in classes]
    bar = RenderProgress([*searches, *shards], render_estimate(env, clone), enabled=False)
    assert bar.total == 3 * (48 + 32) + 9  # three searches, one shard of 12 images of which 3 may be search renders
    pool = Pool(2)
    pool.renders = {0: 16, 1: 32}  # renders of units still running: the bar moves before any unit ends
    bar.poll(pool)  # asks
    bar.poll(pool)  # reads the answers
    assert bar.renders == 48 and bar.bar.n == 48 and pool.asked[:2] == [0, 1]
    assert "searching, 0 images" in bar.bar.postfix
    for unit in searches:
        bar.finished(unit, 70)
    bar.finished(shards[0], 11, images=12)
    assert bar.total == 3 * 70 + 11 and bar.images == 12 and "generating, 12 images" in bar.bar.postfix
    pool.renders[0] = 10  # a restarted worker's count starts again: the bar keeps what it saw
    bar.poll(pool)
    bar.poll(pool)
    assert bar.renders == 48
    bar.close()
