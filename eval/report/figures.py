"""Figures as inline PNG data URIs: training curves per key group, token-alignment heatmaps
(LSA next to greedy) and test-image thumbnails. Matplotlib's object API on the Agg canvas:
no pyplot state, no display needed."""
from __future__ import annotations

import base64
import io

from matplotlib import patheffects
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

LINESTYLES = ("-", "--", ":", "-.")


def png_data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def figure_png(fig: Figure, dpi: int = 90) -> bytes:
    """Render a figure to PNG bytes."""
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    return buf.getvalue()


def figure_uri(fig: Figure) -> str:
    """Render a figure to a PNG data URI."""
    return png_data_uri(figure_png(fig))


def image_uri(image, max_side: int = 224) -> str:
    """A PIL image as a PNG data URI, downscaled to at most `max_side` pixels."""
    img = image.convert("RGB")
    img.thumbnail((max_side, max_side))
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return png_data_uri(buf.getvalue())


def curve_figure(group: str, by_run: dict[str, dict[str, dict]], run_order: list[str]) -> str:
    """One plot for a key group: colour per key, line style per run (validation records as
    markers)."""
    fig = Figure(figsize=(5.2, 3.2))
    ax = fig.add_subplot()
    keys = list(dict.fromkeys(k for series in by_run.values() for k in series))
    colours = {k: f"C{i % 10}" for i, k in enumerate(keys)}
    for r, run in enumerate(name for name in run_order if name in by_run):
        for key, s in by_run[run].items():
            evaluation = key.endswith(")")
            ax.plot(s["step"], s["value"], color=colours[key],
                    linestyle="none" if evaluation else LINESTYLES[r % len(LINESTYLES)],
                    marker="o" if evaluation or len(s["step"]) == 1 else None, markersize=3,
                    linewidth=1.2, label=f"{key} · {run}" if len(by_run) > 1 else key)
    ax.set_title(group)
    ax.set_xlabel("step")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=6, loc="best")
    return figure_uri(fig)


def heatmap_figure(a: dict) -> str:
    """The cosine matrix twice: left with the one-to-one LSA matching (squares), right with
    BERTScore's greedy matching (o: hypothesis token's best reference token, +: reference
    token's best hypothesis token)."""
    h, w = len(a["hyp_tokens"]), len(a["ref_tokens"])
    fig = Figure(figsize=(min(4 + 0.55 * w, 16), min(1.6 + 0.3 * h, 10)))
    axes = fig.subplots(1, 2, sharey=True)
    panels = ((axes[0], f"LSA ({a['matching']})", a["scores"]["lsa"]),
              (axes[1], "greedy (BERTScore)", a["scores"]["greedy"]))
    for ax, title, prf in panels:
        im = ax.imshow(a["sim"], cmap="viridis", vmin=min(0.0, min(map(min, a["sim"]))), vmax=1.0,
                       aspect="auto")
        ax.set_xticks(range(w), a["ref_tokens"], rotation=60, ha="right", fontsize=7)
        ax.set_yticks(range(h), a["hyp_tokens"], fontsize=7)
        ax.set_xlabel("reference tokens")
        ax.set_title(f"{title}\nP={prf['P']:.3f} R={prf['R']:.3f} F={prf['F']:.3f}", fontsize=8)
    axes[0].set_ylabel("output tokens")
    lsa = [(j, i) for i, j in enumerate(a["lsa"]) if j >= 0]
    if lsa:
        axes[0].scatter(*zip(*lsa), marker="s", s=90, facecolors="none", edgecolors="red", linewidths=1.5)
    axes[1].scatter(a["greedy_hyp"], range(h), marker="o", s=60, facecolors="none",
                    edgecolors="red", linewidths=1.5, label="output → best ref")
    axes[1].scatter(range(w), a["greedy_ref"], marker="+", s=70, color="white", linewidths=1.5,
                    label="ref → best output",
                    path_effects=[patheffects.withStroke(linewidth=3, foreground="black")])
    axes[1].legend(fontsize=6, loc="upper right", framealpha=0.6)
    fig.colorbar(im, ax=list(axes), fraction=0.03, label="cosine")
    return figure_uri(fig)
