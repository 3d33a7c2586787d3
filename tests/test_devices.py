"""Device decisions of a clone's workers, checked on a CPU machine by faking what the device query answers."""

import dataclasses

import pytest
import torch
from omegaconf import OmegaConf

from pipeline.clone.api import _place_workers, load, worker_count
from pipeline.errors import ConfigError
from pipeline.torch_device import check_worker_device, describe_device, gpus_per_worker, resolve_device, wants_gpu

SD = {"device": "auto"}
PROCEDURAL = {"grammar": "shapes"}  # no device key: draws without a network


@pytest.mark.parametrize("configured, gpus, model, want", [
    (None, 8, SD, 1.0),  # cluster=local on an 8-GPU box: a GPU per worker
    (None, 0, SD, 0.0),  # a laptop: CPU workers
    (None, 8, PROCEDURAL, 0.0),  # a model with no device never takes a GPU
    (None, 8, {"device": "cpu"}, 0.0),
    (None, 8, {"device": "cuda:0"}, 1.0),
    (0, 8, SD, 0.0),  # said explicitly: as said
    (0.5, 8, SD, 0.5),
])
def test_gpus_per_worker(configured, gpus, model, want):
    assert gpus_per_worker(configured, gpus, OmegaConf.create(model)) == want


def cluster(**kw):
    """``cluster=local``'s settings, typed as the driver gets them, with ``kw`` replacing some."""
    base = OmegaConf.to_object(load(["cluster=local"])).cluster
    return dataclasses.replace(base, **{"num_workers": None, "gpus_per_worker": 0.0, "cpus_per_worker": 1, **kw})


def test_worker_count_follows_the_gpus():
    assert worker_count(cluster(gpus_per_worker=1.0), {"CPU": 64, "GPU": 8}) == 8
    assert worker_count(cluster(gpus_per_worker=0.5), {"CPU": 64, "GPU": 2}) == 4
    assert worker_count(cluster(), {"CPU": 16, "GPU": 8}) == 16
    assert worker_count(cluster(num_workers=3, gpus_per_worker=1.0), {"CPU": 16, "GPU": 8}) == 3
    with pytest.raises(ConfigError, match="gpus_per_worker=1 but the cluster has 0 GPUs"):
        worker_count(cluster(gpus_per_worker=1.0), {"CPU": 16})


def test_cluster_local_on_a_gpu_machine_gives_each_worker_its_gpu(capsys):
    cfg = OmegaConf.create({"cluster": {"gpus_per_worker": None}, "model": SD})
    settings = cluster(gpus_per_worker=None)
    _place_workers(cfg, settings, {"CPU": 96, "GPU": 8}, started=True)
    assert settings.gpus_per_worker == 1.0 and settings.num_workers == 8
    assert "8 GPUs found: one GPU per worker" in capsys.readouterr().err


def test_gpus_left_unused_are_reported(capsys):
    cfg = OmegaConf.create({"cluster": {"gpus_per_worker": 0}, "model": SD})
    settings = cluster()
    _place_workers(cfg, settings, {"CPU": 16, "GPU": 2}, started=True)
    assert settings.num_workers == 16 and "2 GPUs but cluster.gpus_per_worker=0" in capsys.readouterr().err


def test_a_worker_given_a_gpu_that_sees_none_refuses_to_start(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    with pytest.raises(ConfigError, match=r"gpus_per_worker=1 GPU but sees no CUDA device \(CUDA_VISIBLE_DEVICES=''"):
        check_worker_device(1.0, "auto")
    with pytest.raises(ConfigError, match="model.device=cuda but this worker sees no CUDA device"):
        check_worker_device(0.0, "cuda")
    check_worker_device(0.0, "auto")  # a CPU worker of a device-auto model runs on the CPU
    check_worker_device(0.0, None)
    with pytest.raises(ConfigError, match="sees no CUDA device"):
        resolve_device("cuda")


def test_a_worker_with_its_gpu_starts(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    check_worker_device(1.0, "auto")
    check_worker_device(1.0, "cuda")


def test_wants_gpu_and_the_device_record():
    assert wants_gpu(OmegaConf.create(SD)) and not wants_gpu(OmegaConf.create(PROCEDURAL))
    d = describe_device(torch.device("cpu"), torch.float32)
    assert d["device"] == "cpu" and d["device_name"] == "cpu" and d["dtype"] == "float32" and d["torch"] == torch.__version__
    assert d["diffusers"]


class OutOfMemoryAbove:
    """A generator that raises CUDA's out-of-memory error for calls above ``limit`` images."""

    def __init__(self, inner, limit, max_batch_size=16):
        self.inner, self.limit, self.model_id, self.max_batch_size = inner, limit, inner.model_id, max_batch_size
        self.calls = []

    def generate(self, prompts, seeds):
        self.calls.append(len(prompts))
        if len(prompts) > self.limit:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return self.inner.generate(prompts, seeds)


def test_out_of_memory_halves_the_batch_for_good(grammar, generator, reward, caplog):
    from pipeline.rendering import Renderer, RenderJob, RenderPool

    gen = OutOfMemoryAbove(generator, 5)
    pool = RenderPool(Renderer(gen, reward, 16))
    jobs = [RenderJob(grammar.decode(e), i, None, "generation") for i, e in enumerate(list(grammar.grid())[:16])]
    out = pool.render(jobs)
    assert len(out) == 16 and [r.image.tobytes() for r in out] == [im.tobytes() for im in generator.generate(
        [j.prompt for j in jobs], [j.seed for j in jobs])]
    assert gen.calls[:3] == [16, 8, 4] and pool.batch_size == 4 and gen.max_batch_size == 4
    assert pool.renderer.backoffs == [8, 4] and "oom_backoff" in caplog.text
    gen.calls.clear()
    pool.render(jobs)
    assert gen.calls == [4, 4, 4, 4]  # the halved size stays


def test_out_of_memory_at_batch_one_fails_in_one_line(grammar, generator, reward):
    from pipeline.errors import PipelineError
    from pipeline.rendering import Renderer, RenderJob

    r = Renderer(OutOfMemoryAbove(generator, 0), reward, 4)
    with pytest.raises(PipelineError, match="CUDA out of memory rendering one image"):
        r.render([RenderJob(grammar.decode((0, 0, 0, 0, 0)), 1)])
