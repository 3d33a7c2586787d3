"""Full generator calls: the renderer scores each image against its own input, the pool merges the jobs of
concurrent searches into full calls, and a search's result does not depend on what it was pooled with."""

import json
import threading

import numpy as np
import pytest

from helpers.components import CountingGenerator, grid_env, make_search
from pipeline.env import StateEvaluator
from pipeline.errors import ConfigError
from pipeline.rendering import CallStats, Renderer, RenderJob, RenderPool, summarise_calls
from pipeline.search import SearchProblem


def jobs_for(grammar, reward, world, n, first=0, phase="search"):
    prompts = [grammar.decode(e) for e in list(grammar.grid())[:n]]
    targets = [reward.prepare(world.sample(5000 + (first + i) % 3).image) for i in range(n)]
    return [RenderJob(p, 10 + first + i, t, phase) for i, (p, t) in enumerate(zip(prompts, targets))]


def test_renderer_scores_each_image_against_its_own_input(grammar, generator, reward, world):
    gen = CountingGenerator(generator)
    jobs = jobs_for(grammar, reward, world, 10)
    out = Renderer(gen, reward, 4).render(jobs)
    assert gen.batches == [4, 4, 2]
    for job, r in zip(jobs, out):
        image = generator.generate([job.prompt], [job.seed])[0]
        assert np.array_equal(np.asarray(r.image), np.asarray(image))
        want, _ = reward.score_with_acceptance([image], job.target)
        assert r.reward == pytest.approx(float(want[0]), abs=1e-6)


class RewardCallSizes:
    """Wraps a reward, records the size of every reward call and declares ``per_image`` as told."""

    def __init__(self, inner, per_image: bool) -> None:
        self.inner, self.per_image, self.sizes = inner, per_image, []

    def score_many(self, images, targets):
        self.sizes.append(len(images))
        return self.inner.score_many(images, targets)


def test_a_short_call_pads_its_reward_call_only_for_a_reward_that_reads_by_batch(grammar, generator, reward, world):
    assert reward.per_image  # pixel statistics and the palette segmenter: numpy, image by image
    jobs = jobs_for(grammar, reward, world, 3)
    for declared, sizes in ((True, [3]), (False, [8])):  # a neural reward's call always has the batch size
        counted = RewardCallSizes(reward, declared)
        assert len(Renderer(generator, counted, 8).render_call(jobs)) == 3 and counted.sizes == sizes
    alone = [Renderer(generator, reward, 8).render_call([job])[0] for job in jobs]
    together = Renderer(generator, reward, 8).render_call(jobs)
    # exactly: what per_image promises (the score is NaN: this reward has no class term)
    assert np.array_equal([(r.reward, r.score) for r in alone], [(r.reward, r.score) for r in together], equal_nan=True)


def test_renderer_counts_calls_per_phase(grammar, generator, reward, world):
    r = Renderer(generator, reward, 4)
    r.render(jobs_for(grammar, reward, world, 6))
    r.render_call(jobs_for(grammar, reward, world, 2, phase="search") + jobs_for(grammar, reward, world, 2, phase="generation"))
    stats = r.call_stats()
    assert all(isinstance(s, CallStats) for s in stats.values())  # what a worker hands the driver, as is
    search, generation = stats["search"].to_dict(), stats["generation"].to_dict()
    assert search["calls"] == 3 and search["renders"] == 8 and search["batch_size"] == 4
    assert search["renders_per_call"] == pytest.approx(10 / 3, abs=0.01)  # calls of 4, 2 and 4 (a mixed call)
    assert search["partial_call_share"] == pytest.approx(1 / 3, abs=0.001)
    assert generation["calls"] == 1 and generation["renders_per_call"] == 4.0
    both = summarise_calls([stats, stats])
    assert both["search"]["calls"] == 6 and both["search"]["renders"] == 16 and both["search"]["batch_size"] == 4


def test_a_job_without_a_target_is_rendered_but_not_scored(grammar, generator, reward):
    out = Renderer(generator, reward, 4).render([RenderJob(grammar.decode((0, 0, 0, 0, 0)), 1, None, "generation")])
    assert np.isnan(out[0].reward) and np.isnan(out[0].score) and out[0].image.size == (32, 32)


def test_renderer_rejects_a_batch_size_below_one(generator, reward):
    with pytest.raises(ConfigError, match="batch_size"):
        Renderer(generator, reward, 0)


def run_clients(pool, requests):
    """Each request list in its own client thread, handed over one request at a time; results per thread."""
    results, errors = [None] * len(requests), []
    started = threading.Barrier(len(requests))  # all are clients before any hands jobs over, as in a busy worker

    def client(k):
        try:
            with pool.client():
                started.wait()
                results[k] = [pool.render(req) for req in requests[k]]
        except BaseException as e:  # noqa: BLE001 - the test reads it
            errors.append(e)

    threads = [threading.Thread(target=client, args=(k,)) for k in range(len(requests))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
        assert not t.is_alive(), "a client never got its renders"
    return results, errors


def test_pool_merges_the_jobs_of_concurrent_clients_into_full_calls(grammar, generator, reward, world):
    gen = CountingGenerator(generator)
    pool = RenderPool(Renderer(gen, reward, 8))
    # four clients, each asking for 3 renders five times: alone, every call would hold 3
    requests = [[jobs_for(grammar, reward, world, 3, first=10 * k + 3 * j) for j in range(5)] for k in range(4)]
    results, errors = run_clients(pool, requests)
    assert not errors
    assert sum(gen.batches) == 60 and np.mean(gen.batches) > 6 and max(gen.batches) == 8
    for k in range(4):
        for req, got in zip(requests[k], results[k]):
            alone = Renderer(generator, reward, 8).render(req)
            assert [r.reward for r in got] == [r.reward for r in alone]
            assert all(np.array_equal(np.asarray(a.image), np.asarray(b.image)) for a, b in zip(got, alone))


def test_a_render_outside_a_client_is_not_kept_waiting(grammar, generator, reward, world):
    pool = RenderPool(Renderer(generator, reward, 8))
    assert len(pool.render(jobs_for(grammar, reward, world, 3))) == 3  # a guest: nobody else can add to its call


class FailingGenerator:
    """Fails every call that holds a prompt with ``bad`` in it."""

    def __init__(self, inner, bad):
        self.inner, self.bad, self.model_id = inner, bad, inner.model_id

    def generate(self, prompts, seeds):
        if any(self.bad in p for p in prompts):
            raise RuntimeError("CUDA error: device-side assert triggered")
        return self.inner.generate(prompts, seeds)


def test_a_failed_call_fails_its_requests_and_the_pool_goes_on(grammar, generator, reward, world):
    pool = RenderPool(Renderer(FailingGenerator(generator, "poison"), reward, 4))
    good = jobs_for(grammar, reward, world, 4)
    bad = [RenderJob("poison", 1, good[0].target)]
    results, errors = run_clients(pool, [[bad], [good[:2], good[2:]]])
    assert len(errors) <= 2 and any("device-side assert" in str(e) for e in errors)
    assert len(pool.render(good)) == 4  # later calls go on


def search_env(grammar, evaluator, start):
    return grid_env(grammar, evaluator, start, mode="reward_only", budget=60)


@pytest.mark.parametrize("option", ["qlearning_batched", "noisy_gradient"])
def test_a_search_result_is_the_same_alone_and_pooled(option, grammar, generator, reward, world):
    """Four searches on four inputs: alone (each its own renderer) and pooled in one worker's pool, the same
    traces, best states and accepted states."""
    inputs = [world.sample(7000 + k).image for k in range(4)]
    starts = [(k % 2, 0, 1, 0, k % 3) for k in range(4)]

    searches = [make_search(option) for _ in range(8)]  # composed here: Hydra's compose is not thread-safe

    def run(renderer, k):
        env = search_env(grammar, StateEvaluator(renderer, inputs[k], [123]), starts[k])
        result = searches[k + 4 * isinstance(renderer, RenderPool)].run(SearchProblem(env, seed=k)).to_dict()
        return json.dumps(result, sort_keys=True)  # NaN scores (no class term) compare equal as text

    solo = CountingGenerator(generator)
    alone = [run(Renderer(solo, reward, 16), k) for k in range(4)]
    gen = CountingGenerator(generator)
    pool = RenderPool(Renderer(gen, reward, 16))
    pooled: list = [None] * 4

    def client(k):
        with pool.client():
            pooled[k] = run(pool, k)

    threads = [threading.Thread(target=client, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert pooled == alone
    assert sum(gen.batches) == sum(solo.batches) == sum(json.loads(a)["renders"] for a in alone)
    assert np.mean(gen.batches) > 1.5 * np.mean(solo.batches)  # and the pooled calls were fuller


@pytest.mark.parametrize("pooled", [False, True])
def test_renders_ahead_change_no_result_and_save_calls(pooled, grammar, generator, reward, world):
    """Q-learning with env.render_ahead: short calls render its likely next states in their free slots; the
    result is the one without (trace, budget, best and accepted states), in fewer generator calls, and the
    renders made ahead and later asked for are counted."""
    inputs = [world.sample(7100 + k).image for k in range(3)]
    searches = [make_search("qlearning_batched") for _ in range(6)]

    def run(ahead):
        gen = CountingGenerator(generator)
        renderer = Renderer(gen, reward, 16)
        pool = RenderPool(renderer) if pooled else renderer
        out: list = [None] * len(inputs)

        def one(k):
            ev = StateEvaluator(pool, inputs[k], [123], render_ahead=ahead)
            env = search_env(grammar, ev, (k % 2, 1, 0, 1, k % 3))
            out[k] = json.dumps(searches[k + 3 * ahead].run(SearchProblem(env, seed=k)).to_dict(), sort_keys=True)

        if pooled:
            def client(k):
                with pool.client():
                    one(k)
            threads = [threading.Thread(target=client, args=(k,)) for k in range(len(inputs))]
            for t in threads:
                t.start()
            for t in threads:
                t.join(timeout=300)
        else:
            for k in range(len(inputs)):
                one(k)
        return out, gen, renderer.call_stats()["search"].to_dict()

    plain, gen0, stats0 = run(False)
    ahead, gen1, stats1 = run(True)
    assert ahead == plain
    asked = sum(json.loads(r)["renders"] for r in plain)
    assert stats0["ahead"] == stats0["ahead_used"] == 0 and stats0["renders"] == asked == len(gen0.calls)
    assert stats1["renders"] == len(gen1.calls) == asked - stats1["ahead_used"] + stats1["ahead"]
    assert 0 < stats1["ahead_used"] <= stats1["ahead"]
    assert len(gen1.batches) < len(gen0.batches)
    assert np.mean(gen1.batches) > np.mean(gen0.batches)
    print(f"pooled={pooled}: calls {len(gen0.batches)} -> {len(gen1.batches)}, ahead {stats1['ahead']} used {stats1['ahead_used']}")


class GuessSource:
    """An AheadSource that offers fixed jobs and records what it gets back."""

    def __init__(self, jobs):
        self.jobs, self.back = list(jobs), []

    def ahead_jobs(self, n):
        out, self.jobs = self.jobs[:n], self.jobs[n:]
        return [RenderJob(j.prompt, j.seed, j.target, j.phase, ahead=True) for j in out]

    def keep_ahead(self, job, rendered):
        self.back.append((job, rendered))


@pytest.mark.parametrize("pooled", [False, True])
def test_a_short_call_fills_its_free_slots_with_ahead_jobs(pooled, grammar, generator, reward, world):
    gen = CountingGenerator(generator)
    renderer = Renderer(gen, reward, 8)
    r = RenderPool(renderer) if pooled else renderer
    jobs = jobs_for(grammar, reward, world, 11)
    src = GuessSource(jobs[3:])
    out = r.render(jobs[:3], source=src)
    assert gen.batches == [8] and len(out) == 3 and len(src.back) == 5  # 3 asked + 5 guesses in one call
    alone = Renderer(generator, reward, 8).render(jobs[:8])
    for (job, got), want in zip(src.back, alone[3:]):
        assert np.array_equal(np.asarray(got.image), np.asarray(want.image)) and got.reward == want.reward
    stats = renderer.call_stats()["search"]
    assert stats.renders == 8 and stats.ahead == 5 and stats.ahead_used == 0
    r.note_ahead_used(2)
    assert renderer.call_stats()["search"].ahead_used == 2
    # a failed call hands its ahead jobs back (None), so the source may offer them again
    bad = RenderPool(Renderer(FailingGenerator(generator, "poison"), reward, 8)) if pooled else Renderer(FailingGenerator(generator, "poison"), reward, 8)
    src = GuessSource(jobs[:2])
    with pytest.raises(RuntimeError, match="device-side"):
        bad.render([RenderJob("poison", 1, jobs[0].target)], source=src)
    assert [rendered for _, rendered in src.back] == [None, None]
