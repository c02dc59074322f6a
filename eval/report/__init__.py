"""The translation quality report (`python -m eval report RUN [RUN ...] --out report.html`).

`build_report(runs, out)` reads run directories (`collect`), assembles one plain dict — the
system table with CIs (`systems`), paired tests against the first run (`significance`),
training-curve groups (`curves`), examples with images and token alignments (`examples`),
configs side by side (`side_by_side`), the analyses of `python -m eval analyze`
(`analysis_section`), unseen/seen concept accuracy where the runs have it (`concepts_section`) — draws the figures (`figures`) and writes
report.html (self-contained), report.md and report.json next to each other (`render`).
"""
from __future__ import annotations

import json
from pathlib import Path

from eval.report.cli import add_report_arguments, run_report

__all__ = ["build_report", "add_report_arguments", "run_report"]


def build_report(runs: list[str | Path], out: str | Path, *, examples: int = 2,
                 heatmaps: int = 1, analysis: str | Path | None = None) -> dict:
    """Build the report of `runs` (the first is the baseline) at `out` (an .html path; the .md
    and .json share its stem). `examples`: sentences per kind (best/median/worst) and run;
    `heatmaps`: how many of each kind get a token-alignment heatmap; `analysis`: the --out
    directory of `python -m eval analyze` (default: each RUN/analysis/). Returns the report dict
    (what report.json holds)."""
    from eval.report import analysis_section, concepts_section, curves, figures, render, significance, systems
    from eval.report.collect import attach_analyses, load_runs
    from eval.report.examples import run_examples
    from eval.report.side_by_side import side_by_side

    loaded = load_runs(list(runs))
    attach_analyses(loaded, analysis)
    notes = [n for run in loaded for n in run.notes]
    rows = systems.system_rows(loaded)
    columns = systems.present_columns(rows)
    scored = [r for r in loaded if r.scores is not None]
    report = {
        "runs": [{"name": r.name, "path": str(r.path)} for r in loaded],
        "baseline": loaded[0].name,
        "columns": columns,
        "table": rows,
        "paired_vs_baseline": significance.significance(loaded, columns),
        "paired_vs_untrained": {r.name: r.scores["paired"] for r in scored if r.scores.get("paired")},
        "signatures": systems.signatures(loaded),
        "versions": systems.versions(loaded),
        "probe": side_by_side({r.name: r.scores["probe"] for r in scored
                               if isinstance(r.scores.get("probe"), dict)}),
        "grounded": side_by_side({r.name: r.scores["grounded"] for r in scored
                                  if isinstance(r.scores.get("grounded"), dict)}),
        "configs": side_by_side({r.name: r.config for r in loaded}),
    }
    groups = curves.curve_groups(loaded)
    report["curves"] = {g: {run: list(series) for run, series in by_run.items()}
                        for g, by_run in groups.items()}
    figs: dict = {"curves": {g: figures.curve_figure(g, by_run, [r.name for r in loaded])
                             for g, by_run in groups.items()},
                  "images": {}, "heatmaps": {}}
    report["examples"] = {}
    for run in scored:
        chosen = run_examples(run, examples, heatmaps, notes)
        for ex in chosen:
            image, a = ex.pop("image"), ex["alignment"]
            ex["has_image"] = image is not None
            if image is not None:
                figs["images"][(run.name, ex["index"])] = figures.image_uri(image)
            if a is not None and a["hyp_tokens"] and a["ref_tokens"]:
                figs["heatmaps"][(run.name, ex["index"])] = figures.heatmap_figure(a)
        report["examples"][run.name] = chosen
    if not groups:
        notes.append("no training curves: no run has metrics.jsonl records")
    report["analysis"], figs["analysis"] = analysis_section.collect(loaded, notes)
    report["concepts"] = concepts_section.collect(loaded)
    figs["concepts"] = concepts_section.frequency_figure(report["concepts"]) if report["concepts"] else None
    report["notes"] = notes
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    report["files"] = {"html": str(out), "md": str(out.with_suffix(".md")),
                       "json": str(out.with_suffix(".json"))}
    out.write_text(render.render_html(report, figs), encoding="utf-8")
    out.with_suffix(".md").write_text(render.render_markdown(report), encoding="utf-8")
    out.with_suffix(".json").write_text(json.dumps(report, indent=1, ensure_ascii=False) + "\n",
                                        encoding="utf-8")
    return report
