from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Callable

import pytest
import webdataset as wds

# Ray's local clusters use token authentication by default and say so on stderr at every start, unless
# RAY_AUTH_MODE is set; the first in-process ray.init sets it for this process and its children. Set it (to the
# same default) before anything imports ray, which reads it at import, so the clone subprocesses' stderr is the
# same whatever the test order.
os.environ.setdefault("RAY_AUTH_MODE", "token")

import pipeline.clone as clone_api
from pipeline.compose import component, env_settings, group_settings
from pipeline.clone.layout import Layout
from pipeline.env import GridEnv
from pipeline.encoders.pixel_stats import PaletteSegmenter, PixelStatsEncoder
from pipeline.generators.procedural import ProceduralGenerator
from pipeline.grammar import Grammar
from pipeline.rewards import build_reward
from pipeline.shapes.world import ShapesWorld

ROOT = Path(__file__).resolve().parents[1]
#: Reward 1's settings as conf/reward/pixel_stats.yaml gives them (rewards built by hand use conf's values)
SEGMENTATION = group_settings("reward", "pixel_stats")["segmentation"]


# ------------------------------------------------------------------ components with conf/'s values
def grid_env(grammar, evaluator, start=(0, 0, 0, 0, 0), goal=None, **overrides) -> GridEnv:
    """The MDP under conf/'s env settings, with ``overrides`` (e.g. ``mode="reward_only", budget=None``)."""
    return GridEnv.from_settings(grammar, evaluator, start, goal, env_settings(**overrides))


def make_search(option: str, **params):
    """``search=<option>`` as conf/ builds it, with ``params`` replacing its values."""
    return component("search", option, **params)




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
    return build_reward(encoder, PaletteSegmenter(), {"segmentation": 1.0, "features": 1.0, "embedding": 1.0}, SEGMENTATION)


class CountingGenerator:
    """Wraps a generator and records every (prompt, seed) it is asked to render, and each batch's size."""

    def __init__(self, inner) -> None:
        self.inner, self.model_id, self.calls, self.batches = inner, inner.model_id, [], []

    def generate(self, prompts, seeds):
        self.calls.extend(zip(prompts, seeds))
        self.batches.append(len(prompts))
        return self.inner.generate(prompts, seeds)


def free_port() -> int:
    """A TCP port nothing listens on right now (for the servers the tests start on 127.0.0.1)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def crash_when(cmd: list[str], ready: Callable[[], bool], timeout: float = 600) -> None:
    """Start ``cmd`` (a clone) and SIGKILL it with its whole process family (driver, Ray and its workers: the
    machine "crashes") as soon as ``ready()`` holds."""
    import psutil

    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None and not ready():
        time.sleep(0.05)
    for p in [proc] + psutil.Process(proc.pid).children(recursive=True):
        try:
            os.kill(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.wait()


def count(folder: Path, pattern: str) -> int:
    return len(list(folder.glob(pattern))) if folder.exists() else 0


# ------------------------------------------------------------------ the clone end to end
CLASSES = "dataset.only=[circle,square,star,cross]"
SMALL = ["model=procedural", "reward=learned_shapes", CLASSES, "clone.images_per_class=12", "clone.shard_size=4", "clone.progress=false",
         "env.budget=64", "search=noisy_gradient", "cluster.num_cpus=2"]


def clone(out, *overrides, ok=True) -> dict:
    """The clone API in this process (Ray started and stopped by it) with the SMALL settings; its summary."""
    s = clone_api.run(clone_api.load([f"paths.output_dir={out}", *SMALL, *overrides])).to_dict()
    if ok:
        assert s["ok"], s
    return s


def clone_cmd(out, *overrides):
    """The CLI, for what only a process shows: its exit status, its stderr, a SIGKILL or a signal."""
    return clone_api.cli_command(f"paths.output_dir={out}", *SMALL, *overrides)


def clone_cli(out, *overrides):
    return subprocess.run(clone_cmd(out, *overrides), cwd=ROOT, capture_output=True, text=True, timeout=600)


def last_summary(out) -> dict:
    """The summary the latest run wrote beside the shards (how a test reads a run it started as a process)."""
    return json.loads(Path(Layout(str(out)).summary).read_text())


def sample_hashes(out):
    """key -> sha256 of the sample's fields; fails on duplicate keys."""
    out_hashes = {}
    shards = Layout(str(out)).shard_files()
    for s in wds.WebDataset(shards, shardshuffle=False, empty_check=False):
        key = s["__key__"]
        assert key not in out_hashes, f"duplicate key {key}"
        h = hashlib.sha256()
        for field in ("png", "cls", "json"):
            h.update(s[field])
        out_hashes[key] = h.hexdigest()
    return out_hashes


@pytest.fixture(scope="session")
def reference(tmp_path_factory):
    """A clean clone with the SMALL settings, shared by every test that compares against one: (folder, summary, hashes)."""
    out = tmp_path_factory.mktemp("reference")
    return out, clone(out), sample_hashes(out)
