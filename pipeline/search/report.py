"""Writes a search's outputs: the result as JSON, a PNG grid along the best trajectory, a reward curve."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from pipeline.env import GridEnv  # noqa: E402
from pipeline.grammar import Grammar  # noqa: E402
from pipeline.images import contact_grid, to_pil  # noqa: E402
from pipeline.search.result import SearchResult  # noqa: E402


def write_search_report(
    result: SearchResult, env: GridEnv, grammar: Grammar, out_dir: str | Path, input_image=None, max_cells: int = 32
) -> dict[str, Path]:
    """Write ``result.json``, ``trajectory.png`` and ``reward_curve.png`` under ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / "result.json", "grid": out / "trajectory.png", "plot": out / "reward_curve.png"}
    paths["json"].write_text(json.dumps(result.to_dict(), indent=1))

    states = result.best_trajectory or [c.encoding for c in result.top(8) if c.encoding is not None]
    prompts = [grammar.decode(s) for s in states] if states else [c.prompt for c in result.top(8)]
    if len(prompts) > max_cells:  # keep the start, the end, and evenly spaced states between
        step = (len(prompts) - 1) / (max_cells - 1)
        prompts = [prompts[round(i * step)] for i in range(max_cells)]
    images, labels = [], []
    if input_image is not None:
        images.append(input_image)
        labels.append("input")
    for p in prompts:
        for img in env.images(p)[:1]:
            images.append(to_pil(img))
            labels.append(f"{next((c.reward for c in result.candidates if c.prompt == p), float('nan')):.3f}")
    if images:
        contact_grid(images, cols=min(8, len(images)), labels=labels).save(paths["grid"])

    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=100)
    renders = [n for n, _ in result.trace]
    ax.scatter(renders, [c.reward for c in result.candidates], s=6, alpha=0.4, label="state reward")
    ax.step(renders, [r for _, r in result.trace], where="post", color="C3", label="best so far")
    ax.set_xlabel("renders (diffusion calls)")
    ax.set_ylabel("reward")
    ax.set_title(f"{result.method}: best {result.best.reward:.3f} after {result.renders} renders")
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(paths["plot"])
    plt.close(fig)
    return paths
