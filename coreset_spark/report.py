"""Pictures of a result: PNG plots and one self-contained HTML report (the PNGs are embedded).

Four kinds of figure, each a pure function of plain numbers (no Spark):

* :func:`plot_metric_vs_size`: a test metric against coreset size, coreset and uniform sampling
  side by side, with the full-data model as a horizontal line;
* :func:`plot_weights`: the distribution of the weights (log scale), coreset against uniform;
* :func:`plot_class_counts`: per class, the rows of the data, the rows kept in the coreset and the
  weight they carry (which must match the data);
* :func:`plot_stages`: time per stage.

:func:`html_report` assembles a title, tables and figures into one HTML file.

>>> import tempfile, pathlib
>>> d = pathlib.Path(tempfile.mkdtemp())
>>> plot_stages({"statistics": 1.5, "sample": 2.0}, d / "stages.png").name
'stages.png'
>>> "<img" in html_report("t", [("Stages", d / "stages.png")], [], d / "r.html").read_text()
True
"""

from __future__ import annotations

import base64
import html
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

COLOURS = {"coreset": "#1f77b4", "uniform": "#ff7f0e", "full": "#2ca02c", "data": "#7f7f7f"}


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_metric_vs_size(series: Mapping[str, Sequence[tuple[float, float]]], full: float | None, metric: str,
                        path: Path, title: str = "") -> Path:
    """``series``: method -> [(coreset rows, metric)], plotted against rows on a log axis; ``full``:
    the full-data model's value (a dashed line)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for method, points in series.items():
        if points:
            rows, values = zip(*sorted(points))
            ax.plot(rows, values, "-o", color=COLOURS.get(method), label=method)
    if full is not None and np.isfinite(full):
        ax.axhline(full, color=COLOURS["full"], linestyle="--", label="full data")
    ax.set_xscale("log")
    ax.set_xlabel("rows in the reduced data (log scale)")
    ax.set_ylabel(metric)
    ax.set_title(title or f"{metric} against coreset size")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_weights(weights: Mapping[str, np.ndarray], path: Path, title: str = "Distribution of the weights") -> Path:
    """Histograms of each set of weights on log-spaced bins, with their sum in the legend."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    positive = [np.asarray(w)[np.asarray(w) > 0] for w in weights.values()]
    low = min((float(w.min()) for w in positive if len(w)), default=1.0)
    high = max((float(w.max()) for w in positive if len(w)), default=10.0)
    bins = np.logspace(np.log10(low) - 0.05, np.log10(max(high, low * 1.01)) + 0.05, 40)
    for (name, w), pos in zip(weights.items(), positive):
        ax.hist(pos, bins=bins, alpha=0.6, color=COLOURS.get(name),
                label=f"{name}: {len(pos)} rows, weights sum to {float(np.sum(w)):,.0f}")
    ax.set_xscale("log")
    ax.set_xlabel("weight (input rows a kept row stands for, log scale)")
    ax.set_ylabel("kept rows")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_class_counts(classes: Sequence[Any], data_rows: Any, kept_rows: Any,
                      kept_weight: Any, path: Path, title: str = "Rows per class") -> Path:
    """Per class: rows in the data, rows kept in the coreset, and the coreset weight of the class
    (log scale; the weight bar should reach the data bar)."""
    plt = _pyplot()
    order = np.argsort(-np.asarray(data_rows, dtype=np.float64))[:30]  # the 30 largest classes
    labels = [str(classes[i]) for i in order]
    x = np.arange(len(order))
    fig, ax = plt.subplots(figsize=(max(6.4, 0.45 * len(order) + 2), 4.4))
    width = 0.28
    ax.bar(x - width, np.asarray(data_rows)[order], width, color=COLOURS["data"], label="rows in the data")
    ax.bar(x, np.asarray(kept_weight)[order], width, color=COLOURS["full"], label="coreset weight")
    ax.bar(x + width, np.asarray(kept_rows)[order], width, color=COLOURS["coreset"], label="rows kept in the coreset")
    ax.set_yscale("log")
    ax.set_xticks(x)
    ax.set_xticklabels(labels, rotation=45 if len(order) > 4 else 0, ha="right" if len(order) > 4 else "center",
                       fontsize=8)
    ax.set_ylabel("rows (log scale)")
    ax.set_title(title)
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_stages(seconds: Mapping[str, float], path: Path, title: str = "Time per stage") -> Path:
    """Horizontal bars, one per stage, in the order given, labelled with their seconds."""
    plt = _pyplot()
    names = list(seconds)
    values = [float(seconds[n]) for n in names]
    fig, ax = plt.subplots(figsize=(6.8, 0.38 * len(names) + 1.4))
    bars = ax.barh(np.arange(len(names)), values, color=COLOURS["coreset"])
    ax.set_yticks(np.arange(len(names)))
    ax.set_yticklabels(names, fontsize=8)
    ax.invert_yaxis()
    for bar, value in zip(bars, values):
        ax.text(bar.get_width(), bar.get_y() + bar.get_height() / 2, f" {value:.1f} s", va="center", fontsize=8)
    ax.set_xlabel("seconds")
    ax.set_xlim(0, max(values + [1.0]) * 1.18)
    ax.set_title(title)
    ax.grid(alpha=0.3, axis="x")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _table(rows: Sequence[Mapping[str, Any]]) -> str:
    if not rows:
        return ""
    head = list(rows[0])
    cells = "".join(f"<th>{html.escape(str(h))}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(_fmt(r.get(h)))}</td>" for h in head) + "</tr>" for r in rows)
    return f"<table><thead><tr>{cells}</tr></thead><tbody>{body}</tbody></table>"


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return "-" if not np.isfinite(value) else f"{value:.4g}"
    return "-" if value is None else str(value)


def html_report(title: str, figures: Sequence[tuple[str, Path]], tables: Sequence[tuple[str, Sequence[Mapping[str, Any]]]],
                path: Path, intro: str = "") -> Path:
    """One self-contained HTML file: the title, an introduction, tables, then the figures (embedded PNGs)."""
    parts = [f"<h1>{html.escape(title)}</h1>"]
    if intro:
        parts.append(f"<p>{html.escape(intro)}</p>")
    for caption, rows in tables:
        parts.append(f"<h2>{html.escape(caption)}</h2>{_table(rows)}")
    for caption, figure in figures:
        data = base64.b64encode(Path(figure).read_bytes()).decode("ascii")
        parts.append(f"<h2>{html.escape(caption)}</h2><img alt=\"{html.escape(caption)}\" "
                     f"src=\"data:image/png;base64,{data}\">")
    style = ("body{font-family:sans-serif;max-width:1000px;margin:2em auto;color:#222}"
             "table{border-collapse:collapse;margin:0.5em 0 1.5em}td,th{border:1px solid #ccc;padding:3px 8px;"
             "text-align:right;font-size:0.9em}th{background:#f3f3f3}img{max-width:100%}")
    path.write_text(f"<!doctype html><html><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title>"
                    f"<style>{style}</style></head><body>{''.join(parts)}</body></html>\n")
    return path
