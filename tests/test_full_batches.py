"""Full generator calls in a clone (issue: full batches), on a real local Ray and the embedded diffusion model:
a shuffled shard's bytes and a search's result do not depend on the batch size or on what shared a call, a
worker's calls in a shuffled clone are full, and the summary says how full they were."""

import hashlib
import json
import threading

import pytest
from omegaconf import OmegaConf

import pipeline.clone as clone_api
from helpers.clone import TINY_SD, clone as clone_small
from helpers.components import CountingGenerator
from pipeline.clone.context_prior import write_contexts
from pipeline.clone.plan import SearchUnit
from pipeline.clone.worker import CloneWorker

pytestmark = pytest.mark.slow


def clone(out, *overrides, **kw):
    """The SMALL clone in this process (``cluster=inline``): what this module tests is not Ray (tests/test_clone_e2e.py
    and tests/test_cluster_e2e.py are), and an in-process worker starts in a second, not ten."""
    return clone_small(out, "cluster=inline", *overrides, **kw)


def files(out, pattern):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(out.glob(pattern))}


def test_shards_and_searches_are_byte_identical_at_batch_1_and_16_alone_or_pooled(tmp_path):
    full = clone(tmp_path / "b16", *TINY_SD, "clone.batch_size=16", "cluster.units_per_worker=4")
    one = clone(tmp_path / "b1", *TINY_SD, "clone.batch_size=1", "cluster.units_per_worker=1")
    assert full["images_written"] == one["images_written"] > 0
    shards = files(tmp_path / "b16", "shard-*.tar")
    assert len(shards) == 3 and shards == files(tmp_path / "b1", "shard-*.tar")
    assert files(tmp_path / "b16", "searches/*.json") == files(tmp_path / "b1", "searches/*.json")
    calls = full["generator_calls"]
    assert one["generator_calls"]["search"]["renders_per_call"] == 1.0 == one["generator_calls"]["generation"]["renders_per_call"]
    # three searches of 16 renders pooled in one worker: calls far fuller than one search's steps alone
    # (at batch 16 short calls also render states a search is likely to ask next: env.render_ahead, counted apart)
    search = calls["search"]
    assert search["renders_per_call"] > 4 and search["renders"] - search["ahead"] + search["ahead_used"] == full["search_renders"]
    assert 0 < search["ahead_used"] <= search["ahead"] and one["generator_calls"]["search"]["ahead"] == 0
    assert calls["generation"]["renders_per_call"] > 2 and calls["generation"]["batch_size"] == 16


def in_threads(pool, fn, units):
    """``fn`` on every unit, each in its own thread at once (as a worker's threaded actor runs them), all of
    them clients of the pool before any renders (a busy worker; otherwise thread start-up order decides the
    first calls)."""
    started = threading.Barrier(len(units))

    def run(u):
        with pool.client():
            started.wait()
            fn(u)

    threads = [threading.Thread(target=run, args=(u,)) for u in units]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
        assert not t.is_alive()


def test_a_shuffled_clone_renders_in_full_calls(tmp_path):
    """A worker in this process with its generator wrapped to record every call, running its units at once as
    its threaded actor does: the 10 classes' searches, then 10 shuffled shards of 13 images from 4 or more
    classes each. Nearly every call is full (short ones only as the units run dry), though no search step and no
    shard alone fills one."""
    out = tmp_path / "calls"
    cfg = clone_api.load([f"paths.output_dir={out}", "model=procedural", "reward=learned_shapes",
                          "clone.images_per_class=13", "clone.shard_size=13", "clone.shard_order=shuffled",
                          "clone.batch_size=16", "clone.reuse_search_renders=false", "env.budget=64", "search=qlearning_batched",
                          "clone.progress=false"])
    plan, _, _, _ = clone_api.api._prepare(cfg)
    worker = CloneWorker(OmegaConf.to_object(cfg))
    gen = CountingGenerator(worker.stack.generator)
    worker.pool.renderer.generator = gen
    in_threads(worker.pool, worker.search, [SearchUnit(c) for c in plan.classes])
    contexts = {c.id: json.loads(worker.storage.read_bytes(f"searches/{c.id}.json"))["info"]["context"] for c in plan.classes}
    write_contexts(worker.storage, contexts, worker.cfg.clone.context_prior)  # the driver's step between the phases
    search_calls = list(gen.batches)
    # a call is short only when every running search waits with fewer than 16 new renders between them: the
    # first (each search renders its start state alone), the last ones as the searches finish, rarely others
    # (thread timing moves a few renders between calls: bounds, not an exact pattern)
    assert sum(search_calls) >= 10 * 64 and sum(b < 16 for b in search_calls) <= len(search_calls) // 4, search_calls
    assert sum(search_calls) / len(search_calls) >= 13, search_calls  # one search's steps alone: 3-8
    gen.batches.clear()
    units = plan.shard_units()
    assert len(units) == 10 and all(len(u.classes) >= 4 for u in units)
    in_threads(worker.pool, worker.generate, units)
    assert sum(gen.batches) >= 130 and sum(b < 16 for b in gen.batches) <= 4, gen.batches  # the retries' tail
    stats = worker.pool.call_stats()
    assert stats["generation"].renders == sum(gen.batches) and stats["search"].renders == sum(search_calls)
    records = worker.manifest.records()
    assert sorted(records) == sorted(u.shard for u in units) and sum(r.count + r.missing for r in records.values()) == 130
