"""The page of a grounding ablation (`python -m eval report ABLATION_DIR`, where ABLATION_DIR was
written by `python -m eval ablation`): the table of every (system, parallel fraction) cell — mean
over seeds with its 95% t-interval, and the paired bootstrap difference to `ce` with its 95%
interval — and one figure per metric against the parallel fraction. On a dataset whose captions
carry concept ids, unseen- and seen-concept accuracy are two more metrics. Self-contained HTML, with
Markdown and JSON beside it, like the run report."""
from __future__ import annotations

import json
from html import escape
from pathlib import Path

from matplotlib.figure import Figure

from eval.report.figures import figure_uri
from eval.report.render import CSS

ABLATION_FILE = "ablation.json"
DECIMALS = {"chrF": 1, "BLEU": 1, "BERTScore F": 3, "LiSAScore F": 3, "R@1": 3, "unseen concepts": 3,
            "seen concepts": 3}


def present(result: dict) -> dict[str, int]:
    """The metrics some cell has, in table order (concept accuracy only where the dataset has concept ids)."""
    return {m: d for m, d in DECIMALS.items() if any(m in row["metrics"] for row in result["table"])}


def is_ablation(path: str | Path) -> bool:
    return (Path(path) / ABLATION_FILE).is_file()


def _mean(cell: dict | None, digits: int) -> str:
    if cell is None:
        return "–"
    text = f"{cell['mean']:.{digits}f}"
    return text + (f" [{cell['low']:.{digits}f}, {cell['high']:.{digits}f}]" if cell.get("low") is not None else "")


def _delta(test: dict | None, digits: int) -> str:
    if not test:
        return ""
    return f"{test['delta']:+.{digits}f} [{test['delta_low']:+.{digits}f}, {test['delta_high']:+.{digits}f}]"


def _significance(test: dict | None) -> str:
    """The cell's class: 'sig' (green) when the interval is above 0, 'worse' (red) when below."""
    if not test:
        return ""
    return " class='sig'" if test["delta_low"] > 0 else " class='worse'" if test["delta_high"] < 0 else ""


def metric_figure(result: dict, metric: str) -> str:
    """`metric` against the parallel fraction, one line per system, with its 95% interval over seeds."""
    fig = Figure(figsize=(4.6, 3.1))
    ax = fig.add_subplot()
    for i, system in enumerate(result["systems"]):
        rows = sorted((r for r in result["table"] if r["system"] == system and metric in r["metrics"]),
                      key=lambda r: r["fraction"])
        if not rows:
            continue
        x = [r["fraction"] for r in rows]
        cells = [r["metrics"][metric] for r in rows]
        y = [c["mean"] for c in cells]
        ax.plot(x, y, marker="o", markersize=3, color=f"C{i}", label=system)
        if all(c.get("low") is not None for c in cells):
            ax.fill_between(x, [c["low"] for c in cells], [c["high"] for c in cells], color=f"C{i}", alpha=0.15)
    ax.set_xscale("symlog", linthresh=0.01)
    fractions = sorted({r["fraction"] for r in result["table"]})
    ax.set_xticks(fractions, [f"{f:g}" for f in fractions])  # the grid's fractions, not the scale's decades
    ax.set_xlabel("parallel fraction P")
    ax.set_title(metric)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return figure_uri(fig)


def render_html(result: dict, figures: dict[str, str]) -> str:
    metrics = present(result)
    head = ("<tr><th>P</th><th>system</th><th>seeds</th>"
            + "".join(f"<th>{escape(m)}</th><th>Δ vs ce</th>" for m in metrics) + "<th>most repeated output</th></tr>")
    body = []
    for row in result["table"]:
        cells = []
        for metric, digits in metrics.items():
            test = row.get("vs_ce", {}).get(metric)
            style = _significance(test)
            cells.append(f"<td>{_mean(row['metrics'].get(metric), digits)}</td><td{style}>{_delta(test, digits)}</td>")
        body.append(f"<tr><td>{row['fraction']:g}</td><td><b>{escape(row['system'])}</b></td>"
                    f"<td>{len(row['seeds'])}</td>{''.join(cells)}<td>{row['most_repeated_output']:.1%}</td></tr>")
    flags = "".join(f"<li><b>{escape(s)}</b>: <code>{escape(' '.join(f) or '(train.py defaults)')}</code></li>"
                    for s, f in result["flags"].items())
    if result.get("train_args"):
        flags += f"<li>every run also: <code>{escape(' '.join(result['train_args']))}</code></li>"
    notes = ([f"runs missing or failed: {', '.join(result['missing'])}"] if result.get("missing") else []) \
        + result.get("notes", [])
    return "\n".join([
        f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>GroundMT grounding ablation</title>"
        f"<style>{CSS}</style></head><body>",
        "<h1>Does grounding help? Ablation over the parallel fraction</h1>",
        f"<p>Dataset: <code>{escape(result.get('data', ''))}</code>; seeds {result['seeds']}; "
        f"{result.get('steps', '?')} student steps per run. Each cell: the mean over seeds with its 95% "
        "t-interval; Δ vs ce: the paired bootstrap difference to <b>ce</b> at the same P on the same test "
        "sentences (stratified over seeds), 95% interval, green when it lies above 0, red when below. "
        "BLEU/chrF on sacreBLEU's 0–100 scale; R@1 = translation→image in batches of 32"
        + ("; unseen/seen concepts = the share of the test captions' concept mentions whose English name the "
           "translation contains, for concepts that no translated training caption at that P names (unseen) or "
           "that one does (seen); a system that reads no translation is counted with the split of ce at the same P"
           if "unseen concepts" in metrics or "seen concepts" in metrics else "") + ".</p>",
        "<ul>" + flags + "</ul>",
        "".join(f"<p class='small'>{escape(n)}</p>" for n in notes),
        f"<table>{head}{''.join(body)}</table>",
        '<div class="grid">' + "".join(f'<figure><img src="{uri}" alt="{escape(m)}"></figure>'
                                        for m, uri in figures.items()) + "</div>",
        "</body></html>"])


def render_markdown(result: dict) -> str:
    metrics = present(result)
    lines = ["# Does grounding help? Ablation over the parallel fraction", "",
             f"Seeds {result['seeds']}; mean over seeds [95% t-interval]; Δ: paired bootstrap vs ce [95%]."
             + (f" Every run also: `{' '.join(result['train_args'])}`." if result.get("train_args") else ""), "",
             "| P | system | " + " | ".join(f"{m} | Δ {m}" for m in metrics) + " | most repeated |",
             "|---|---|" + "---|---|" * len(metrics) + "---|"]
    for row in result["table"]:
        cells = [f"{_mean(row['metrics'].get(m), d)} | {_delta(row.get('vs_ce', {}).get(m), d)}"
                 for m, d in metrics.items()]
        lines.append(f"| {row['fraction']:g} | {row['system']} | " + " | ".join(cells)
                     + f" | {row['most_repeated_output']:.1%} |")
    return "\n".join(lines) + "\n"


def build_ablation_page(directory: str | Path, out: str | Path) -> dict:
    """Render `directory/ablation.json` to `out` (.html) with .md and .json beside it."""
    result = json.loads((Path(directory) / ABLATION_FILE).read_text())
    figures = {m: metric_figure(result, m) for m in present(result)}
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render_html(result, figures), encoding="utf-8")
    out.with_suffix(".md").write_text(render_markdown(result), encoding="utf-8")
    out.with_suffix(".json").write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    return {"notes": [], "files": {"html": str(out), "md": str(out.with_suffix(".md")),
                                   "json": str(out.with_suffix(".json"))}}
