"""An offline GPU node, as CI can make one: a fresh virtual environment holding only the node's own stack, the
wheelhouse installed into it with no index, no Ray there, and the GPU check run to its last stage (tiny scale, CPU)."""

import importlib.metadata as md
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import ROOT

pytestmark = pytest.mark.slow

#: what such a node has (issue 37: a site-provided PyTorch stack), at the versions tested here
NODE_STACK = ["torch", "transformers", "accelerate", "safetensors", "huggingface_hub", "numpy", "pillow", "scipy", "tqdm",
              "pyyaml", "fsspec"]
#: the check's stages but the compile (a CPU compile of the tiny UNet takes most of a minute; its build is tested
#: in test_gpu_bench.py); the Ray stages are left out by the check itself, since Ray is not installed
STAGES = "device,build_sd21,bare_sd21,diffusers_sd21,identity_sd21,clone_search,clone_generation,build_sdxl_turbo,bare_sdxl_turbo"


def node_stack(folder: Path) -> Path:
    """The node's own stack in one folder, for a fresh venv's path: a link to each package and module of NODE_STACK
    and of what they require, as installed here, with their metadata (pip lists what the path holds, so it finds
    them installed). Installing them into the venv instead (torch among them) took 51 s of the test's 98 s."""
    from packaging.requirements import Requirement

    folder.mkdir()
    found: dict[str, md.Distribution] = {}
    todo = list(NODE_STACK)
    while todo:
        name = todo.pop()
        key = re.sub(r"[-_.]+", "-", name).lower()
        if key in found:
            continue
        found[key] = dist = md.distribution(name)
        todo += [r.name for r in map(Requirement, dist.requires or ()) if not r.marker or r.marker.evaluate({"extra": ""})]
    for dist in found.values():
        site = Path(dist.locate_file(""))
        for top in {f.parts[0] for f in dist.files or () if f.parts[0] not in ("..", "__pycache__") and not f.name.endswith(".pth")}:
            if not (folder / top).exists():
                (folder / top).symlink_to(site / top)
    return folder


def offline_env() -> dict[str, str]:
    """pip with no index and no find-links but those on the command line (this machine's pip config adds some)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    return {**env, "PIP_CONFIG_FILE": os.devnull, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}


def run(cmd, **kw):
    p = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=900, **kw)
    assert p.returncode == 0, f"{' '.join(map(str, cmd))}\n{p.stdout[-2000:]}\n{p.stderr[-3000:]}"
    return p


def test_the_wheelhouse_installs_offline_on_a_node_stack_and_the_gpu_check_runs_there(tmp_path):
    wheels, venv, checkout = tmp_path / "wheelhouse", tmp_path / "venv", tmp_path / "checkout"
    made = run([sys.executable, ROOT / "scripts" / "wheelhouse.py", "--out", wheels, "--have", " ".join(NODE_STACK), "--ray", "0"], cwd=ROOT)
    names = {w.name.split("-")[0].lower() for w in wheels.glob("*.whl")}
    assert {"diffusers", "hydra_core", "omegaconf", "antlr4_python3_runtime", "webdataset", "setuptools"} <= names
    assert not names & {"ray", "torch", "transformers"}
    assert sum(w.stat().st_size for w in wheels.glob("*.whl")) < 40 * 2**20 and "MiB in all" in made.stdout

    run([sys.executable, "-m", "venv", venv])
    py = venv / "bin" / "python"
    site = run([py, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"]).stdout.strip()
    Path(site, "node_stack.pth").write_text(f"{node_stack(tmp_path / 'node-stack')}\n")  # the node's own stack
    assert run([py, "-c", "import torch, transformers; print(torch.__version__)"]).stdout.strip() == md.version("torch")
    tracked = run(["git", "ls-files"], cwd=ROOT).stdout.split()  # the checkout the node receives
    for rel in tracked:
        (checkout / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / rel, checkout / rel)
    run([py, "-m", "pip", "install", "--quiet", "--no-index", "--find-links", wheels, "-e", checkout], env=offline_env())
    no_ray = subprocess.run([py, "-c", "import ray"], capture_output=True, text=True)
    assert no_ray.returncode != 0 and "No module named 'ray'" in no_ray.stderr

    out = tmp_path / "gpu.jsonl"
    run([py, "scripts/bench.py", "--only", "gpu", "--gpu-scale", "tiny", "--gpu-stages", STAGES, "--out", out], cwd=checkout)
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    stages = {x["stage"]: x for x in lines[2:]}
    assert list(stages) == [*STAGES.split(","), "end"] and all(stages[s]["ok"] for s in STAGES.split(","))
    assert stages["device"]["ray_installed"] is False and stages["clone_generation"]["images"] == 8


def stub_wheel(folder: Path, name: str, version: str) -> None:
    """A wheel that holds only the metadata of ``name`` ``version`` (no files, no requirements): what pip's resolver
    reads of a package the node already has."""
    import zipfile

    dist = f"{re.sub(r'[-.]+', '_', name)}-{version}"
    info = f"{dist}.dist-info"
    files = {f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
             f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: rldf-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n"}
    files[f"{info}/RECORD"] = "".join(f"{p},,\n" for p in files) + f"{info}/RECORD,,\n"
    with zipfile.ZipFile(folder / f"{dist}-py3-none-any.whl", "w") as z:
        for path, text in files.items():
            z.writestr(path, text)


def test_make_wheelhouse_s_node_profile_resolves_against_the_node_s_own_versions(tmp_path):
    """`make wheelhouse`'s default: the lent node's Python 3.12 and platform, its packages left out, at most 40 MiB. pip's
    resolver (a dry run: the node's CUDA torch cannot be installed here) takes the project's requirements from that
    wheelhouse and from the node's packages at the node's own versions, with nothing to download, upgrade or replace."""
    import importlib.util

    import tomllib

    spec = importlib.util.spec_from_file_location("wheelhouse", ROOT / "scripts" / "wheelhouse.py")
    wheelhouse = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(wheelhouse)
    node = wheelhouse.read_node(ROOT / "constraints" / "lent-node.txt")
    wheels, stubs = tmp_path / "wheelhouse", tmp_path / "node"
    made = run([sys.executable, ROOT / "scripts" / "wheelhouse.py", "--out", wheels, "--node", ROOT / "constraints" / "lent-node.txt",
                "--python-version", "3.12", "--platform", "manylinux_2_28_x86_64", "--ray", "0", "--max-mb", "40"], cwd=ROOT)
    assert "MiB in all" in made.stdout and not {w.name.split("-")[0].lower() for w in wheels.glob("*.whl")} & {"torch", "transformers"}
    stubs.mkdir()
    for name, version in node.items():  # the node's packages, at its versions where known (else at this machine's)
        try:
            stub_wheel(stubs, name, version or md.version(name))
        except md.PackageNotFoundError:  # unversioned and not here (timm): nothing the project needs
            pass
    requirements = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    report = tmp_path / "report.json"
    run([sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--no-index", "--find-links", wheels,
         "--find-links", stubs, "--python-version", "3.12", "--platform", "manylinux_2_28_x86_64", "--implementation", "cp",
         "--only-binary=:all:", "--report", report, "-c", ROOT / "constraints" / "lent-node.txt", *requirements], env=offline_env())
    chosen = {wheelhouse.canonical(x["metadata"]["name"]): (x["metadata"]["version"], x["download_info"]["url"])
              for x in json.loads(report.read_text())["install"]}
    for name, version in node.items():
        if name in chosen and version:
            assert chosen[name][0] == version, (name, chosen[name])  # the node's own version, never another
    assert all(("/node/" in url) == (name in node) for name, (_, url) in chosen.items())  # the rest from the wheelhouse
    assert {"diffusers", "hydra-core", "webdataset", "torch", "transformers", "huggingface-hub"} <= set(chosen)
