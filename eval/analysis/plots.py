"""The analysis figures: matplotlib's object API on the Agg canvas (no pyplot state), written as
PNG files next to analysis.json. Each part builds its figures with these helpers and hands them
back as `Plot`s; `eval.analysis.analyze_run` saves them."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from eval.report.figures import figure_png


@dataclass
class Plot:
    """A figure with its file name (PNG, relative to the analysis directory) and what it shows."""

    file: str
    title: str
    caption: str
    figure: Figure

    def save(self, directory: Path) -> dict:
        (directory / self.file).write_bytes(figure_png(self.figure, dpi=100))
        return {"file": self.file, "title": self.title, "caption": self.caption}


def heatmap(ax, matrix: list[list[float | None]], rows: list[str], cols: list[str], *, vmin: float = 0.0,
            vmax: float = 1.0, cmap: str = "viridis", annotate: bool = True, fmt: str = "{:.2f}"):
    """Draw `matrix` (None = undefined, drawn grey and marked "–") on `ax`; returns the image."""
    values = np.array([[np.nan if v is None else v for v in row] for row in matrix], dtype=float)
    colours = matplotlib_cmap(cmap)
    image = ax.imshow(np.ma.masked_invalid(values), cmap=colours, vmin=vmin, vmax=vmax, aspect="auto")
    ax.set_xticks(range(len(cols)), cols, rotation=45, ha="right", fontsize=7)
    ax.set_yticks(range(len(rows)), rows, fontsize=7)
    if annotate and values.size <= 400:
        for i in range(values.shape[0]):
            for j in range(values.shape[1]):
                v = values[i, j]
                text = "–" if np.isnan(v) else fmt.format(v)
                dark_cell = not np.isnan(v) and (v - vmin) / max(vmax - vmin, 1e-12) < 0.6
                ax.text(j, i, text, ha="center", va="center", fontsize=6, color="white" if dark_cell else "black")
    return image


def matplotlib_cmap(name: str):
    """A colour map whose undefined (masked) cells are light grey."""
    from matplotlib import colormaps

    return colormaps[name].with_extremes(bad="#d9d9d9")
