"""The progress bar counts renders from the workers' generator calls, not units, and its total converges on the
renders the units took."""

from pipeline.clone import progress
from pipeline.clone.dataset import ClassInfo
from pipeline.clone.plan import ClonePlan, SearchUnit
from pipeline.clone.progress import RenderProgress, render_estimate


class Answer:
    """What an actor method call returns here: the value, ready at once (stands in for a Ray object ref)."""

    def __init__(self, value):
        self.value = value


class Worker:
    """An actor handle's shape as the bar uses it: ``progress.options(concurrency_group=…).remote()``."""

    def __init__(self):
        self.renders, self.groups = 0, []
        worker = self

        class Method:
            def options(self, concurrency_group):
                worker.groups.append(concurrency_group)
                return self

            def remote(self):
                return Answer(worker.renders)

        self.progress = Method()


def test_the_bar_counts_renders_as_they_happen_and_takes_each_units_renders_when_it_ends(monkeypatch):
    monkeypatch.setattr(progress, "POLL_S", 0.0)
    classes = [ClassInfo(i, f"c{i}", f"c{i}") for i in range(3)]
    shards = ClonePlan(classes, 4, 12, "shuffled", 0).shard_units()
    env = {"budget": 48, "class_source": "rendered", "rendered_candidates": 4, "rendered_seeds": 8}
    clone = {"reuse_search_renders": True, "reuse_max_share": 0.25}
    searches = [SearchUnit(c) for c in classes]
    bar = RenderProgress([*searches, *shards], render_estimate(env, clone), enabled=False)
    assert bar.total == 3 * (48 + 32) + 9  # three searches, one shard of 12 images of which 3 may be search renders
    workers = {0: Worker(), 1: Worker()}
    ready, get = (lambda refs: refs), (lambda ref: ref.value)
    workers[0].renders, workers[1].renders = 16, 32  # renders of units still running: the bar moves before any unit ends
    bar.poll(workers, ready, get)  # asks
    bar.poll(workers, ready, get)  # reads the answers
    assert bar.renders == 48 and bar.bar.n == 48 and workers[0].groups[0] == progress.PROGRESS_GROUP
    assert "searching, 0 images" in bar.bar.postfix
    for unit in searches:
        bar.finished(unit, 70)
    bar.finished(shards[0], 11, images=12)
    assert bar.total == 3 * 70 + 11 and bar.images == 12 and "generating, 12 images" in bar.bar.postfix
    workers[0].renders = 10  # a restarted worker's count starts again: the bar keeps what it saw
    bar.poll(workers, ready, get)
    bar.poll(workers, ready, get)
    assert bar.renders == 48
    bar.close()
