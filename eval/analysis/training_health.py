"""Embedding health and collapse diagnostics (docs/design.md §7): over training, and on the final test features.

- `over_training`: the validation records of `RUN/metrics.jsonl` (`"split": "validation"`,
  keys `health/<axis>/<stat>`, written by train.py) as one curve per axis and statistic.
- `final`: `eval.health.health_report` on the exported model's test features — each analysed
  test image, its first English caption through the text tower, and its first source caption
  through the student's CLIP-read path (the same three axes train.py validates) — with in-batch
  R@1 against the image, expert uniqueness, and `collapse_warnings`.
"""
from __future__ import annotations

import torch
from matplotlib.figure import Figure

from eval.analysis.plots import Plot
from eval.health import collapse_warnings, health_report


def over_training(records: list[dict]) -> dict:
    """{stat: {axis: {"step": [...], "value": [...]}}} from validation records."""
    curves: dict = {}
    for record in records:
        if record.get("split") != "validation":
            continue
        for key, value in record.items():
            parts = key.split("/")
            if len(parts) == 3 and parts[0] == "health" and isinstance(value, (int, float)):
                series = curves.setdefault(parts[2], {}).setdefault(parts[1], {"step": [], "value": []})
                series["step"].append(record["step"])
                series["value"].append(float(value))
    return curves


@torch.no_grad()
def final(ctx) -> dict:
    first: dict = {}
    for s in ctx.sentences:
        first.setdefault(s["row"], s)
    rows = list(first)
    if len(rows) < 2:
        return {"skipped": f"needs at least 2 test images, found {len(rows)}"}
    system = ctx.system
    english = [next(e for e in caps if e.strip()) for caps in ctx.dsd["test"].select(rows)["english"]]
    axes = {"image": system.image_features(ctx.dsd["test"].select(rows)["image"], ctx.batch_size).cpu(),
            "english": system.english_features(english, ctx.batch_size).cpu(),
            "student": system.student_features([first[r]["source"] for r in rows], ctx.batch_size).cpu()}
    report = health_report(axes, reference="image", batch_size=min(32, len(rows)))
    return {"axes": report, "warnings": collapse_warnings(report), "images": len(rows)}


def analyse(ctx) -> tuple[dict, list[Plot]]:
    result = {"over_training": over_training(ctx.run.metrics), "final": final(ctx)}
    if not result["over_training"]:
        result["over_training_note"] = "metrics.jsonl has no validation health records"
    plots = []
    curves = result["over_training"]
    if curves:
        stats = list(curves)
        fig = Figure(figsize=(3.3 * min(len(stats), 4), 2.9 * ((len(stats) + 3) // 4)))
        axes = fig.subplots((len(stats) + 3) // 4, min(len(stats), 4), squeeze=False).ravel()
        for ax, stat in zip(axes, stats):
            for k, (axis, s) in enumerate(curves[stat].items()):
                ax.plot(s["step"], s["value"], marker="o", markersize=3, color=f"C{k}", label=axis)
                if stat in result["final"].get("axes", {}).get(axis, {}):
                    ax.axhline(result["final"]["axes"][axis][stat], color=f"C{k}", linestyle=":", linewidth=1)
            ax.set_title(stat.replace("_", " "), fontsize=9)
            ax.set_xlabel("step", fontsize=8)
            ax.grid(alpha=0.3)
            ax.legend(fontsize=6)
        for ax in axes[len(stats):]:
            ax.set_visible(False)
        plots.append(Plot("health.png", "Embedding health over training",
                          "Validation embedding-health statistics per axis over training (metrics.jsonl); dotted "
                          "lines: the same statistic on the final test features.", fig))
    return result, plots
