"""Device and dtype choice from config strings ("auto", "cuda", "cpu"; "auto", "float16", "bfloat16", "float32"),
and the device decisions of a clone's workers: how many GPUs each gets, and a refusal when a worker that
was meant to have one sees none (a silent fp32 Stable Diffusion on CPU is hours, not minutes)."""

from __future__ import annotations

import os
from typing import Any

import torch

from pipeline.errors import ConfigError

_DTYPES = {"float16": torch.float16, "fp16": torch.float16, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
           "float32": torch.float32, "fp32": torch.float32}


def resolve_device(device: str = "auto") -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device '{device}' requested but this process sees no CUDA device ({visible_devices()}); "
                          "set device: auto to run on the CPU")
    return torch.device(device)


def visible_devices() -> str:
    v = os.environ.get("CUDA_VISIBLE_DEVICES")
    return "CUDA_VISIBLE_DEVICES unset" if v is None else f"CUDA_VISIBLE_DEVICES='{v}'"


def wants_gpu(model_cfg: Any) -> bool:
    """Whether a model config would run on a GPU given one: ``device: auto`` or ``cuda…`` (a procedural
    generator has no device)."""
    device = model_cfg.get("device") if hasattr(model_cfg, "get") else None
    return device is not None and (device == "auto" or str(device).startswith("cuda"))


def gpus_per_worker(configured: float | None, cluster_gpus: float, model_cfg: Any) -> float:
    """``cluster.gpus_per_worker``: as configured, or (null, ``cluster=local``'s default) one GPU per worker
    when the Ray cluster has GPUs and the model would use one, else none."""
    if configured is not None:
        return float(configured)
    return 1.0 if cluster_gpus >= 1 and wants_gpu(model_cfg) else 0.0


def check_worker_device(gpus: float, model_device: str | None) -> None:
    """Inside a worker: refuse to start on the CPU when the worker was given a GPU or its model asks for CUDA."""
    if torch.cuda.is_available():
        return
    if gpus > 0:
        raise ConfigError(f"this worker was given cluster.gpus_per_worker={gpus:g} GPU but sees no CUDA device "
                          f"({visible_devices()}, torch {torch.__version__}, CUDA build: {torch.version.cuda or 'no'}); "
                          "install a CUDA build of torch on every node, or set cluster.gpus_per_worker=0 to run on CPUs")
    if model_device and str(model_device).startswith("cuda"):
        raise ConfigError(f"model.device={model_device} but this worker sees no CUDA device ({visible_devices()}); "
                          "give workers GPUs (cluster.gpus_per_worker=1) or set model.device=auto")


def describe_device(device: torch.device | None, dtype: torch.dtype | None) -> dict[str, Any]:
    """What a worker runs on, for ``clone.log`` and the summary."""
    import importlib.metadata as md

    name = "cpu"
    if device is not None and device.type == "cuda":
        name = torch.cuda.get_device_name(device)
    try:
        diffusers = md.version("diffusers")
    except md.PackageNotFoundError:
        diffusers = None
    return {"device": str(device or "cpu"), "device_name": name, "dtype": str(dtype).replace("torch.", "") if dtype else None,
            "torch": torch.__version__, "cuda": torch.version.cuda, "diffusers": diffusers}


def resolve_dtype(dtype: str, device: torch.device) -> torch.dtype:
    """``auto``: float16 on CUDA, float32 on CPU (half precision on CPU is slow or unsupported)."""
    if dtype == "auto":
        return torch.float16 if device.type == "cuda" else torch.float32
    if dtype not in _DTYPES:
        raise ConfigError(f"dtype must be one of auto, {', '.join(_DTYPES)}; got '{dtype}'")
    return _DTYPES[dtype]
