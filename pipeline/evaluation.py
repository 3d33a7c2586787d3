"""What the evaluations (``scripts/evaluate.py``, ``make eval``; ``scripts/evaluate_standin.py``) share: the methods they
compare (``conf/eval/methods.yaml``), one clone per method run or resumed in this process, the versions a result was
made with, and one writer of the results (``results.json`` and a marked block of a markdown file)."""

from __future__ import annotations

import importlib.util
import json
import os
import platform
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from pipeline.clone.layout import Layout

ROOT = Path(__file__).resolve().parents[1]  # the repository (the package is installed editable: make setup)
METHODS_FILE = ROOT / "conf" / "eval" / "methods.yaml"


@dataclass(frozen=True)
class Method:
    name: str
    label: str
    overrides: tuple[str, ...]
    needs_class_name: bool = False
    contexts: bool = False  # compared by scripts/evaluate_contexts.py (the others: make eval, scripts/evaluate_standin.py)


def load_methods(path: Path = METHODS_FILE) -> dict[str, Method]:
    """The methods, in table order."""
    spec = yaml.safe_load(path.read_text())["methods"]
    return {name: Method(name, m["label"], tuple(_flat(m["overrides"])), bool(m.get("needs_class_name", False)),
                         bool(m.get("contexts", False))) for name, m in spec.items()}


def _flat(items: list) -> list[str]:
    """Overrides with YAML aliases of shared lists (``*paper``) spliced in."""
    return [x for item in items for x in (_flat(item) if isinstance(item, list) else [item])]


METHODS = load_methods()
LABELS = {**{m.name: m.label for m in METHODS.values()}, "real": "real data (held-out split)"}
NEEDS_CLASS_NAME = {m.name for m in METHODS.values() if m.needs_class_name}


def parse_methods(spec: str, allowed) -> list[str]:
    """``--methods``: comma-separated names, each one of ``allowed``; exits with one line naming the unknown ones."""
    methods = [m.strip() for m in spec.split(",") if m.strip()]
    unknown = sorted(set(methods) - set(allowed))
    if unknown:
        raise SystemExit(f"error: unknown method(s) {unknown}; choose from {list(allowed)}")
    return methods


def method_overrides(method: str, budget: int | None) -> list[str]:
    """A method's clone overrides; every search gets the same render budget (``env.budget``: conf's unless ``budget``)."""
    return ([f"env.budget={budget}"] if budget else []) + list(METHODS[method].overrides)


def run_clone(out: Path, overrides: list[str]) -> dict:
    """Run (or resume) one clone in this process; returns its summary plus the wall time of the run that
    generated it."""
    import pipeline.clone as clone_api
    from pipeline.errors import PipelineError

    record = out / "eval_clone.json"
    t0 = time.perf_counter()
    try:
        summary = clone_api.run(clone_api.load([f"paths.output_dir={out}", *overrides])).to_dict()
    except PipelineError as e:
        raise SystemExit(f"error: clone into {out}: {e} (after retraining models or changing settings, rerun with --fresh)") from None
    if summary["failures"] or summary["stopped"]:  # an incomplete clone is measured as it is (its shortfall is reported)
        raise SystemExit(f"error: clone into {out} failed: {summary['failures'] or summary['stopped']}; see {Layout(str(out)).log}")
    if summary["shards_written"] == 0 and record.is_file():  # resumed with nothing to do: keep the original timing
        return json.loads(record.read_text())
    summary["command"] = " ".join(["python scripts/clone.py", f"paths.output_dir={out}", *overrides])
    summary["wall_s_command"] = round(time.perf_counter() - t0, 1)
    record.write_text(json.dumps(summary, indent=1))
    return summary


def sample_encodings(folder: Path) -> dict[str, list[list[int]]]:
    """Class name -> the ``encoding`` of each of its samples, from a clone's shards (on a procedural world: what its
    images show)."""
    import tarfile

    out: dict[str, list[list[int]]] = {}
    for shard in sorted(Path(folder).glob("*.tar")):
        with tarfile.open(shard) as tar:
            for member in tar:
                if member.name.endswith(".json"):
                    sample = json.load(tar.extractfile(member))
                    out.setdefault(sample["class_name"], []).append(sample["encoding"])
    return out


def cached(path: Path, key: dict, compute) -> tuple[Any, bool]:
    """``compute()``'s result, kept in ``path`` under ``key`` (e.g. the training and test sets' fingerprints, steps and
    seed): a rerun, or a run stopped between sets, computes only what it has not. Also returns whether the result was
    kept from an earlier run."""
    if path.is_file():
        kept = json.loads(path.read_text())
        if kept.get("key") == key:
            return kept["value"], True
    value = compute()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"key": key, "value": value}, indent=1))
    tmp.replace(path)
    return value, False


def versions() -> dict:
    import importlib.metadata as md

    import diffusers
    import torch
    import torchmetrics
    import transformers

    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    except OSError:
        commit = ""
    return {"python": platform.python_version(), "torch": torch.__version__, "diffusers": diffusers.__version__,
            "transformers": transformers.__version__, "ray": md.version("ray") if importlib.util.find_spec("ray") else None, "torchmetrics": torchmetrics.__version__,
            "git_commit": commit or "unknown", "machine": f"{platform.machine()}, {os.cpu_count()} cores"}


def fmt(v, digits: int = 3) -> str:
    if v is None:
        return "—"
    if isinstance(v, float):
        return f"{v:.{digits}f}" if abs(v) < 1000 else f"{v:.0f}"
    return str(v)


def write_results(out: Path, result: dict[str, Any], markdown_file: Path, block_name: str, block: str, title: str) -> None:
    """``out/results.json``, and ``block`` between the markers of ``block_name`` in ``markdown_file`` (prose around it kept)."""
    from pipeline.markdown import replace_block

    (out / "results.json").write_text(json.dumps(result, indent=1))
    replace_block(markdown_file, block_name, block, title=title)
