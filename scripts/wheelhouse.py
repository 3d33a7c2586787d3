#!/usr/bin/env python
"""``make wheelhouse``: every wheel an offline node needs to run the project, in one folder.

An HPC GPU node often has no network and a site-provided PyTorch stack. This collects, for that node's Python
and platform, the runtime dependencies of the project it does not have, at the versions installed (and tested)
here, plus setuptools, which builds the project's editable install from its checkout there (the project's
configs, ``conf/``, and shipped models, ``models/``, live in the checkout beside the package). A package published
only as a source distribution (``antlr4-python3-runtime``, which Hydra needs) is built into a wheel here; it must be
pure Python. On the node::

    pip install --no-index --find-links wheelhouse -e .          # add [ray] when the wheelhouse holds Ray

A node profile (``--node constraints/lent-node.txt``, ``make wheelhouse``'s default) names the node's own packages,
with their versions where known: they are left out, and every wheel collected must accept those versions (a
``diffusers`` that needs another ``huggingface-hub`` than the node's stops the build, naming both). ``--max-mb`` fails
a wheelhouse larger than what travels with the checkout.

Usage: python scripts/wheelhouse.py [--out wheelhouse] [--node constraints/lent-node.txt] [--have "torch transformers ..."]
       [--python-version 3.12] [--platform manylinux_2_28_x86_64] [--ray 0|1] [--max-mb 40]
"""

from __future__ import annotations

import argparse
import importlib.metadata as md
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]
PROJECT = "rldf-pipeline"
BUILD = ["setuptools"]  # what `pip install -e .` needs to build the project there (pyproject's build-system)


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def closure(have: set[str], extras: set[str], python_version: str) -> dict[str, str]:
    """name -> version of every runtime dependency of the project (with ``extras``), and theirs, that the node
    does not have (``have``), at the versions installed here."""
    env = {"python_version": python_version, "python_full_version": f"{python_version}.0"}
    wanted: dict[str, str] = {}
    todo = [(PROJECT, set(extras))]
    seen: set[tuple[str, frozenset[str]]] = set()
    while todo:
        name, want_extras = todo.pop()
        if (name, frozenset(want_extras)) in seen:
            continue
        seen.add((name, frozenset(want_extras)))
        try:
            dist = md.distribution(name)
        except md.PackageNotFoundError:
            raise SystemExit(f"wheelhouse: {name} is not installed here, so its version is unknown: `make setup` first"
                             f"{' (with the ray extra)' if 'ray' in extras else ''}") from None
        for line in dist.requires or []:
            req = Requirement(line)
            if req.marker is not None and not any(req.marker.evaluate({**env, "extra": e}) for e in (want_extras or {""})):
                continue
            dep = canonical(req.name)
            if dep in have:
                continue
            wanted[dep] = md.version(req.name) if _installed(req.name) else ""
            todo.append((req.name, set(req.extras)))
    wanted.pop(canonical(PROJECT), None)
    missing = sorted(n for n, v in wanted.items() if not v)
    if missing:
        raise SystemExit(f"wheelhouse: {', '.join(missing)} not installed here: `make setup` first")
    return wanted


def read_node(path: Path) -> dict[str, str | None]:
    """A node profile (a pip constraints file): package -> its version on the node (None: there, version not listed)."""
    out: dict[str, str | None] = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            req = Requirement(line)
            pins = [s.version for s in req.specifier if s.operator == "=="]
            out[canonical(req.name)] = pins[0] if pins else None
    return out


def conflicts(wanted: dict[str, str], node: dict[str, str | None], python_version: str) -> list[str]:
    """Where a collected package (at the version installed here), or the project, asks for another version of a package
    the node has than the node's own."""
    env = {"python_version": python_version, "python_full_version": f"{python_version}.0", "extra": ""}
    found = []
    for name in [PROJECT, *sorted(wanted)]:
        try:
            dist = md.distribution(name)
        except md.PackageNotFoundError:
            continue
        for line in dist.requires or []:
            req = Requirement(line)
            have = node.get(canonical(req.name))
            if have is None or (req.marker is not None and not req.marker.evaluate(env)):
                continue
            if not req.specifier.contains(have, prereleases=True):
                found.append(f"{name} {dist.version} needs {req.name}{req.specifier}, the node has {have}")
    return found


def _installed(name: str) -> bool:
    try:
        md.version(name)
        return True
    except md.PackageNotFoundError:
        return False


def download(spec: str, out: Path, python_version: str, platforms: list[str]) -> bool:
    """A wheel of ``spec`` for the node's Python and platform into ``out``; False when none is published."""
    cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:", "-d", str(out),
           "--python-version", python_version, "--implementation", "cp", *(a for p in platforms for a in ("--platform", p)), spec]
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode == 0:
        return True
    if "No matching distribution" in p.stderr or "Could not find a version" in p.stderr:
        return False
    raise SystemExit(f"wheelhouse: pip download {spec} failed:\n{p.stderr.strip()[-2000:]}")


def build_from_source(spec: str, out: Path) -> Path:
    """A wheel built here from ``spec``'s source distribution; it must be pure Python to run on the node."""
    with tempfile.TemporaryDirectory() as tmp:
        p = subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-binary=:all:", "-w", tmp, spec],
                           capture_output=True, text=True)
        if p.returncode != 0:
            raise SystemExit(f"wheelhouse: no wheel of {spec} is published and building one failed:\n{p.stderr.strip()[-2000:]}")
        (wheel,) = Path(tmp).glob("*.whl")
        if not wheel.name.endswith("-none-any.whl"):
            raise SystemExit(f"wheelhouse: {spec} is published only as source and builds a platform wheel here ({wheel.name}); "
                             "build it on a machine like the node")
        return Path(shutil.copy(wheel, out))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="wheelhouse", help="the folder (emptied first)")
    p.add_argument("--have", default="torch", help="packages the node already has, space- or comma-separated (skipped, "
                   "with what they need)")
    p.add_argument("--python-version", default=f"{sys.version_info.major}.{sys.version_info.minor}", help="the node's Python (default: this one's)")
    p.add_argument("--platform", default="", help="the node's platform tags, space- or comma-separated (default: this machine's), "
                   "e.g. manylinux_2_28_x86_64")
    p.add_argument("--ray", type=int, default=1, choices=[0, 1], help="1: include Ray (the project's [ray] extra); 0: leave it out "
                   "(cluster=inline runs without it)")
    p.add_argument("--node", type=Path, default=None, help="the node's packages and versions (a constraints file): left out, and "
                   "checked against every wheel's requirements")
    p.add_argument("--max-mb", type=float, default=None, help="fail when the wheels come to more MiB than this")
    a = p.parse_args()
    node = read_node(a.node) if a.node else {}
    have = {canonical(n) for n in re.split(r"[\s,]+", a.have) if n} | set(node)
    platforms = [t for t in re.split(r"[\s,]+", a.platform) if t] or _this_platform()
    out = Path(a.out)
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    wanted = closure(have, {"ray"} if a.ray else set(), a.python_version)
    for name in BUILD:
        wanted.setdefault(canonical(name), md.version(name))
    clash = conflicts(wanted, node, a.python_version)
    if clash:
        raise SystemExit("wheelhouse: these would not install beside the node's packages (" + str(a.node) + "):\n  " + "\n  ".join(clash))
    print(f"wheelhouse: {len(wanted)} packages for Python {a.python_version} on {platforms[0]}"
          f"{' and more' if len(platforms) > 1 else ''}; skipped (the node has them): {' '.join(sorted(have)) or 'none'}")
    built = []
    for name, version in sorted(wanted.items()):
        spec = f"{name}=={version}"
        if not download(spec, out, a.python_version, platforms):
            build_from_source(spec, out)
            built.append(name)
    wheels = sorted(out.glob("*.whl"))
    total = sum(w.stat().st_size for w in wheels)
    for w in wheels:
        print(f"  {w.stat().st_size / 2**20:7.2f} MiB  {w.name}")
    print(f"wheelhouse: {len(wheels)} wheels, {total / 2**20:.1f} MiB in all, in {out}/"
          f"{' (built here from source: ' + ', '.join(built) + ')' if built else ''}")
    print(f"on the node, in the project's checkout: pip install --no-index --find-links {out} -e .{'[ray]' if a.ray else ''}")
    if a.max_mb is not None and total > a.max_mb * 2**20:
        raise SystemExit(f"wheelhouse: {total / 2**20:.1f} MiB is more than --max-mb {a.max_mb:g} (what travels with the checkout): "
                         "leave Ray out (--ray 0) or name more of what the node has (--node, --have)")


def _this_platform() -> list[str]:
    """This machine's platform tags, most specific first (what pip itself accepts here)."""
    from packaging.tags import platform_tags

    return list(platform_tags())


if __name__ == "__main__":
    main()
