"""Fixtures the tests share; helpers they import are in ``tests/helpers/``."""

from __future__ import annotations

import os

import pytest
import torch

from helpers import ROOT  # first: it sets RAY_AUTH_MODE before anything imports ray
from helpers.clone import SHUFFLED, clone, sample_hashes
from helpers.components import SEGMENTATION
from helpers.s3 import s3_server as running_s3_server
from pipeline.encoders.pixel_stats import PaletteSegmenter, PixelStatsEncoder
from pipeline.generators.procedural import ProceduralGenerator
from pipeline.grammar import Grammar
from pipeline.rewards import build_reward
from pipeline.shapes.world import ShapesWorld


#: the test files that take longest, in that order (``--durations`` of make test-full on 2 cores): they start first, so
#: that the processes of a parallel run (make test-full: pytest-xdist, a file per process at a time) end together
LONGEST_FIRST = ["test_clone_e2e.py", "test_cluster_e2e.py", "test_offline_install.py", "test_standin_e2e.py", "test_search.py",
                 "test_evaluate.py", "test_object_store.py", "test_full_batches.py", "test_metrics.py", "test_cas.py",
                 "test_clone_quality.py", "test_gpu_bench.py"]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: the other files keep their order


def pytest_runtest_setup(item: pytest.Item) -> None:
    """The GPU tier (tests/test_gpu.py, ``make test-gpu``) runs where CUDA is, and skips elsewhere."""
    if item.get_closest_marker("gpu") and not torch.cuda.is_available():
        pytest.skip("the GPU tier needs a CUDA GPU")


def _share_the_cores() -> None:
    """In a parallel run each test process, and what it starts, gets its share of the cores for torch and OpenMP:
    processes that each use every core spend their time waiting on each other."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers > 1:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1  # macOS has none
        threads = max(1, cores // workers)
        os.environ["OMP_NUM_THREADS"] = str(threads)
        torch.set_num_threads(threads)


_share_the_cores()


@pytest.fixture(scope="session")
def grammar() -> Grammar:
    return Grammar.from_yaml(ROOT / "conf" / "grammar" / "shapes.yaml")


@pytest.fixture(scope="session")
def world(grammar) -> ShapesWorld:
    return ShapesWorld(grammar, 32)


@pytest.fixture(scope="session")
def generator(grammar) -> ProceduralGenerator:
    return ProceduralGenerator(grammar, 32)


@pytest.fixture(scope="session")
def encoder() -> PixelStatsEncoder:
    return PixelStatsEncoder()


@pytest.fixture(scope="session")
def reward(encoder):
    """The paper's three similarity rewards with conf's Reward 1 settings, and no class-consistency term: the search
    tests measure searches as optimisers against this reward's exhaustive optimum. ``reward=pixel_stats`` composed
    with a semantic encoder adds the term (weight 0, but it marks states accepted), and Q-learning then restarts
    from accepted states instead of its best one (docs/results.md, search cost): with that reward the goal-mode
    Q-learning test reaches 1 goal of 3 in its budget (the 1% tests still pass)."""
    return build_reward(encoder, PaletteSegmenter(), {"segmentation": 1.0, "features": 1.0, "embedding": 1.0}, SEGMENTATION)


@pytest.fixture(scope="session")
def reference(tmp_path_factory):
    """A clean clone with the SMALL settings, shared by every test that compares against one: (folder, summary, hashes)."""
    out = tmp_path_factory.mktemp("reference")
    return out, clone(out), sample_hashes(out)


@pytest.fixture(scope="session")
def shuffled(tmp_path_factory):
    """The SMALL clone in shuffled shards, in this process (``cluster=inline``): (folder, summary)."""
    out = tmp_path_factory.mktemp("shuffled")
    return out, clone(out, "cluster=inline", *SHUFFLED)


@pytest.fixture(scope="module")
def s3_server():
    """moto's S3-protocol server for a module's tests (:func:`helpers.s3.s3_server`): an ``s3fs`` filesystem on it."""
    for module in ("boto3", "s3fs", "moto.server"):
        pytest.importorskip(module, reason=f"{module} is not installed (pip install -e '.[dev]')")
    with running_s3_server() as fs:
        yield fs
