"""``metrics.json`` and a self-contained ``report.html`` (tables, contact sheets, plots embedded)."""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from pipeline.images import contact_grid  # noqa: E402
from pipeline.metrics.features import FeatureSet  # noqa: E402

COLUMNS = ("fd", "kid", "precision", "recall", "density", "coverage", "n_real", "n_fake")


def _png(fig_or_image) -> str:
    buf = io.BytesIO()
    if isinstance(fig_or_image, Image.Image):
        fig_or_image.save(buf, format="PNG")
    else:
        fig_or_image.savefig(buf, format="png", dpi=100, bbox_inches="tight")
        plt.close(fig_or_image)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return html.escape(str(v))


def _table(rows: list[tuple[str, dict]]) -> str:
    head = "<tr><th>set</th>" + "".join(f"<th>{c}</th>" for c in COLUMNS) + "</tr>"
    body = "".join(
        f"<tr><td>{html.escape(name)}</td>" + "".join(f"<td>{_fmt(r.get(c, '–'))}</td>" for c in COLUMNS) + "</tr>"
        for name, r in rows
    )
    return f"<table>{head}{body}</table>"


def write_report(result: dict[str, Any], real: FeatureSet, fake: FeatureSet, out_dir: str | Path, names: dict[int, str]) -> dict[str, Path]:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / "metrics.json", "html": out / "report.html"}
    paths["json"].write_text(json.dumps(result, indent=1))

    per = result["per_class"]
    worst_first = sorted(per.items(), key=lambda kv: -kv[1].get("fd", 0.0))
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>rldf metrics</title><style>"
        "body{font-family:sans-serif;margin:2em;max-width:1100px} table{border-collapse:collapse;margin:1em 0}"
        "td,th{border:1px solid #ccc;padding:3px 8px;text-align:right} td:first-child{text-align:left}"
        "img{image-rendering:pixelated;max-width:100%} .sheet{margin:0.6em 0}</style></head><body>",
        "<h1>Distribution metrics</h1>",
        f"<p><b>Feature extractor:</b> {html.escape(result['extractor'])} &mdash; distances from different extractors are not comparable.<br>"
        f"<b>Real:</b> {html.escape(real.description)} ({len(real)} images)<br>"
        f"<b>Synthetic:</b> {html.escape(fake.description)} ({len(fake)} images)<br>"
        f"<b>Resize:</b> {html.escape(result['resize'])}; k = {result['k']} for precision/recall/density/coverage.</p>",
        *([f"<p><b>Warning:</b> {html.escape(result['warning'])}</p>"] if result.get("warning") else []),
        "<h2>Overall</h2>", _table([("all classes", result["overall"])]),
    ]
    if per:
        parts += ["<h2>Per class (worst FD first)</h2>", _table(worst_first)]
        fig, ax = plt.subplots(figsize=(max(6, 0.35 * len(per)), 3.2))
        ax.bar([n for n, _ in worst_first], [r.get("fd", np.nan) for _, r in worst_first], color="C0")
        ax.set_ylabel("FD")
        ax.set_title("per-class Fréchet distance")
        ax.tick_params(axis="x", rotation=70)
        parts.append(f"<img src='{_png(fig)}'>")
        fig, ax = plt.subplots(figsize=(4.5, 4.5))
        for name, r in per.items():
            if "precision" in r:
                ax.scatter(r["recall"], r["precision"], s=18)
                ax.annotate(name, (r["recall"], r["precision"]), fontsize=7)
        ax.set_xlim(-0.02, 1.02)
        ax.set_ylim(-0.02, 1.02)
        ax.set_xlabel("recall")
        ax.set_ylabel("precision")
        ax.set_title("precision / recall per class")
        parts.append(f"<img src='{_png(fig)}'>")
        parts.append("<h2>Contact sheets (top row real, bottom row synthetic)</h2>")
        for name, r in worst_first:
            lab = r["label"]
            rows = [real.thumbs.get(lab, np.zeros((0, 1, 1, 3), np.uint8)), fake.thumbs.get(lab, np.zeros((0, 1, 1, 3), np.uint8))]
            cols = max(1, max(len(x) for x in rows))
            cells = []
            for row in rows:
                imgs = [Image.fromarray(a) for a in row] + [Image.new("RGB", (8, 8), (255, 255, 255))] * (cols - len(row))
                cells += imgs
            sheet = contact_grid(cells, cols=cols, cell=64)
            parts.append(f"<div class='sheet'><b>{html.escape(name)}</b> (FD {_fmt(r.get('fd', '–'))})<br><img src='{_png(sheet)}'></div>")
    parts.append("</body></html>")
    paths["html"].write_text("\n".join(parts))
    return paths
