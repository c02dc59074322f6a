"""Rendering a built report (the plain dict of `build_report`) as one self-contained HTML page
(inline CSS, every figure a data: URI, no scripts) and as Markdown; both read the same dict,
and the dict itself is report.json."""
from __future__ import annotations

from html import escape

from eval.report import analysis_section, concepts_section
from eval.report.systems import LABELS, format_value

CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:1.5em;color:#222;background:#fff}
h1{font-size:1.6em}h2{border-bottom:2px solid #ddd;padding-bottom:.2em;margin-top:1.6em}
table{border-collapse:collapse;margin:.5em 0;font-size:.85em}
th,td{border:1px solid #ccc;padding:.25em .5em;vertical-align:top;text-align:left}
th{background:#f0f3f7}td.num{text-align:right;white-space:nowrap}
.wide{overflow-x:auto}.ci{color:#666;font-size:.85em}.p{color:#555;font-size:.85em}
.sig{color:#0a6d2c;font-weight:bold}.worse{color:#a4161a;font-weight:bold}
tr.untrained td{font-style:italic;background:#fafafa}
tr.diff td{background:#fff3b0}.notes li{color:#8a5a00}
.grid{display:flex;flex-wrap:wrap;gap:1em}.grid figure{margin:0}
.example{border:1px solid #ddd;border-radius:6px;padding:.6em;margin:.6em 0;display:flex;gap:1em}
.example img.thumb{width:160px;height:auto;align-self:flex-start;image-rendering:pixelated;border:1px solid #ccc}
.kind{font-weight:bold;text-transform:uppercase;font-size:.8em;color:#345}
.small{font-size:.8em;color:#555}code{font-size:.85em;word-break:break-all}
"""


def _ci_text(cell: dict, key: str) -> str:
    if cell.get("low") is None or cell.get("high") is None:
        return "no CI"
    return f"[{format_value(key, cell['low'])}, {format_value(key, cell['high'])}]"


def _paired_text(test: dict | None, key: str) -> str:
    if not test:
        return ""
    if "reason" in test:
        return "n/a"
    return f"Δ {'+' if test['delta'] >= 0 else ''}{format_value(key, test['delta'])}, p={test['p_value']:.3f}"


def _test_for(report: dict, row: dict, key: str) -> dict | None:
    """The paired test shown in a table cell: trained rows of later runs vs the baseline."""
    if row["system"] != "trained" or row["run"] == report["baseline"]:
        return None
    entry = report["paired_vs_baseline"].get(row["run"]) or {}
    return (entry.get("tests") or {}).get(key) or ({"reason": entry["reason"]} if "reason" in entry else None)


# -- HTML -------------------------------------------------------------------------------------
def _html_table(report: dict) -> str:
    keys = report["columns"]
    head = "".join(f"<th>{escape(LABELS[k])}</th>" for k in keys)
    body = []
    for row in report["table"]:
        cells = []
        for key in keys:
            cell = row["cells"].get(key)
            if cell is None:
                cells.append('<td class="num">–</td>')
                continue
            test = _test_for(report, row, key)
            paired = _paired_text(test, key)
            sig = ' sig' if test and test.get("p_value", 1) < 0.05 else ''
            cells.append(f'<td class="num"><span class="v">{format_value(key, cell["value"])}</span>'
                         f'<br><span class="ci">{_ci_text(cell, key)}</span>'
                         + (f'<br><span class="p{sig}">{escape(paired)}</span>' if paired else "")
                         + "</td>")
        body.append(f'<tr class="system {row["system"]}" data-run="{escape(row["run"])}">'
                    f'<td>{escape(row["run"])}</td><td>{row["system"]}</td>'
                    f'<td class="num">{row.get("n_sentences") or "–"}</td>{"".join(cells)}</tr>')
    return (f'<div class="wide"><table id="systems"><thead><tr><th>run</th><th>system</th><th>n</th>'
            f'{head}</tr></thead><tbody>{"".join(body)}</tbody></table></div>')


def paired_reasons(report: dict) -> list[tuple[str, list[str], str]]:
    """Why a run ([] metrics: the whole run), or some of its metrics, got no paired test against the
    baseline (its "n/a" cells): (run, metric labels, reason)."""
    out = []
    for run, entry in report["paired_vs_baseline"].items():
        if "reason" in entry:
            out.append((run, [], entry["reason"]))
            continue
        by_reason: dict[str, list[str]] = {}
        for key, test in (entry.get("tests") or {}).items():
            if "reason" in test:
                by_reason.setdefault(test["reason"], []).append(LABELS.get(key, key))
        out += [(run, labels, reason) for reason, labels in by_reason.items()]
    return out


def _reason_text(run: str, labels: list[str], reason: str) -> str:
    return f"{run}" + (f" ({', '.join(labels)})" if labels else "") + f": {reason}"


def _html_paired_reasons(report: dict) -> str:
    items = [f"<li>{escape(_reason_text(*r))}</li>" for r in paired_reasons(report)]
    return f"<ul class='notes'>{''.join(items)}</ul>" if items else ""


def _html_untrained_paired(report: dict) -> str:
    blocks = report["paired_vs_untrained"]
    if not blocks:
        return ""
    keys = [k for k in LABELS if any(k in b for b in blocks.values())]
    head = "".join(f"<th>{escape(LABELS[k])}</th>" for k in keys)
    rows = "".join(f"<tr><td>{escape(run)}</td>"
                   + "".join(f'<td class="num">{escape(_paired_text(b.get(k), k)) or "–"}</td>' for k in keys)
                   + "</tr>" for run, b in blocks.items())
    return ("<h3>Trained vs untrained student (paired, from scores.json)</h3>"
            f'<div class="wide"><table><tr><th>run</th>{head}</tr>{rows}</table></div>')


def _html_side_by_side(rows: list[dict], runs: list[str], highlight: bool) -> str:
    if not rows:
        return "<p class='small'>none recorded</p>"
    head = "".join(f"<th>{escape(r)}</th>" for r in runs)
    body = "".join(f'<tr class="{"diff" if highlight and r["differs"] else "same"}"><td><code>'
                   f'{escape(r["key"])}</code></td>'
                   + "".join(f"<td>{escape(r['values'].get(n, '–'))}</td>" for n in runs) + "</tr>"
                   for r in rows)
    return f'<div class="wide"><table><tr><th>key</th>{head}</tr>{body}</table></div>'


def _html_signatures(report: dict) -> str:
    items = []
    for metric, sigs in report["signatures"].items():
        for sig, runs in sigs.items():
            items.append(f"<li><b>{escape(metric)}</b>: <code>{escape(sig)}</code>"
                         f" <span class='small'>({escape(', '.join(runs))})</span></li>")
    versions = report["versions"]
    packages = list(dict.fromkeys(p for v in versions.values() for p in v))
    rows = [{"key": p, "values": {r: v.get(p, "–") for r, v in versions.items()}} for p in packages]
    return (f"<h3>Metric signatures</h3><ul>{''.join(items) or '<li>none recorded</li>'}</ul>"
            "<h3>Package versions</h3>" + _html_side_by_side(rows, list(versions), highlight=False))


def _html_example(ex: dict, img: str | None, heat: str | None) -> str:
    refs = "".join(f"<li{' class=sig' if i == ex['best_reference'] else ''}>{escape(r)}</li>"
                   for i, r in enumerate(ex["references"]))
    scores = ", ".join(f"{k}={format_value(k, v)}" for k, v in ex["scores"].items())
    image = (f'<img class="thumb" src="{img}" alt="image {escape(str(ex["image_id"]))}">' if img
             else "<div class='small'>(no image)</div>")
    heat_html = (f'<figure><img src="{heat}" alt="token alignment heatmap"><figcaption class="small">'
                 "cosine of output vs best-reference tokens; left: one-to-one LSA matching, right: "
                 "greedy BERTScore matching</figcaption></figure>") if heat else ""
    return (f'<div class="example">{image}<div><div class="kind">{ex["kind"]} · sentence {ex["index"]}'
            f' · image {escape(str(ex["image_id"]))}</div>'
            f"<p><b>source</b>: {escape(str(ex['source'] or '–'))}<br><b>output</b>: "
            f"{escape(ex['hypothesis'])}</p><b>references</b> (best in green):<ol>{refs}</ol>"
            f"<p class='small'>{escape(scores)}</p>{heat_html}</div></div>")


def render_html(report: dict, figures: dict) -> str:
    """The whole page. `figures`: {"curves": {group: uri}, "images": {(run, index): uri},
    "heatmaps": {(run, index): uri}, "analysis": {(run, file): uri}, "concepts": uri or None}."""
    runs = [r["name"] for r in report["runs"]]
    parts = [f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
             f"<title>GroundMT translation report</title><style>{CSS}</style></head><body>",
             "<h1>GroundMT translation quality report</h1>",
             "<p>Runs: " + ", ".join(f"<b>{escape(r['name'])}</b> <code>{escape(r['path'])}</code>"
                                      for r in report["runs"])
             + f". Baseline for paired tests: <b>{escape(report['baseline'])}</b>.</p>"]
    if report["notes"]:
        parts.append("<h2>Notes</h2><ul class='notes'>"
                     + "".join(f"<li>{escape(n)}</li>" for n in report["notes"]) + "</ul>")
    parts.append("<h2>Systems</h2><p class='small'>Value, 95% bootstrap interval and, for later runs, "
                 "the paired bootstrap difference to the baseline with its p-value (green: p&lt;0.05). "
                 "BLEU/chrF on sacreBLEU's 0–100 scale; the rest are fractions.</p>")
    parts.append(_html_table(report) if report["table"] else "<p>No run has eval/scores.json.</p>")
    parts += [_html_paired_reasons(report), _html_untrained_paired(report), _html_signatures(report)]
    for title, key in (("Test-time probe", "probe"), ("Grounded in-batch R@1", "grounded")):
        if report[key]:
            parts.append(f"<h3>{title}</h3>" + _html_side_by_side(report[key], runs, highlight=False))
    if report.get("concepts"):
        parts.append(concepts_section.render_html(report["concepts"], figures["concepts"]))
    parts.append("<h2>Training curves</h2>")
    if figures["curves"]:
        parts.append('<div class="grid">' + "".join(
            f'<figure><img src="{uri}" alt="{escape(g)}"></figure>' for g, uri in figures["curves"].items())
            + "</div>")
    else:
        parts.append("<p>No metrics.jsonl records.</p>")
    if report.get("analysis"):
        parts.append(analysis_section.render_html(report["analysis"], figures["analysis"]))
    parts.append("<h2>Examples</h2><p class='small'>Best, median and worst sentences by LiSAScore F.</p>")
    for run, examples in report["examples"].items():
        parts.append(f"<h3>{escape(run)}</h3>" + "".join(
            _html_example(ex, figures["images"].get((run, ex["index"])),
                          figures["heatmaps"].get((run, ex["index"]))) for ex in examples))
    n_diff = sum(r["differs"] for r in report["configs"])
    parts.append(f"<h2>Configurations</h2><p class='small'>{n_diff} of {len(report['configs'])} keys "
                 "differ between runs (highlighted).</p>"
                 + _html_side_by_side(report["configs"], runs, highlight=True))
    parts.append("</body></html>")
    return "\n".join(parts)


# -- Markdown ---------------------------------------------------------------------------------
def _md(text) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def markdown_table_line(row: dict, keys: list[str]) -> str:
    """One system-table row as Markdown (value [low, high] per metric)."""
    cells = []
    for key in keys:
        cell = row["cells"].get(key)
        cells.append("–" if cell is None else f"{format_value(key, cell['value'])} {_ci_text(cell, key)}")
    return f"| {_md(row['run'])} | {row['system']} | {row.get('n_sentences') or '–'} | " + " | ".join(cells) + " |"


def render_markdown(report: dict) -> str:
    keys = report["columns"]
    lines = ["# GroundMT translation quality report", "",
             "Runs: " + ", ".join(f"`{r['name']}` ({r['path']})" for r in report["runs"])
             + f"; baseline: `{report['baseline']}`. Figures are in the HTML report.", ""]
    if report["notes"]:
        lines += ["## Notes", "", *(f"- {_md(n)}" for n in report["notes"]), ""]
    lines += ["## Systems", "", "Value [95% bootstrap interval].", "",
              "| run | system | n | " + " | ".join(LABELS[k] for k in keys) + " |",
              "|---|---|---|" + "---|" * len(keys),
              *(markdown_table_line(r, keys) for r in report["table"]), ""]
    if report["paired_vs_baseline"]:
        lines += [f"### Paired bootstrap vs `{report['baseline']}`", "",
                  "| run | " + " | ".join(LABELS[k] for k in keys) + " |", "|---|" + "---|" * len(keys)]
        for run, entry in report["paired_vs_baseline"].items():
            if "reason" in entry:
                lines.append(f"| {_md(run)} | {_md(entry['reason'])} |" + " |" * (len(keys) - 1))
            else:
                lines.append(f"| {_md(run)} | " + " | ".join(
                    _paired_text(entry["tests"].get(k), k) or "–" for k in keys) + " |")
        lines += ["", *(f"- n/a: {_md(_reason_text(*r))}" for r in paired_reasons(report) if r[1]), ""]
    lines += ["### Metric signatures", ""]
    for metric, sigs in report["signatures"].items():
        lines += [f"- {metric}: `{sig}` ({', '.join(runs)})" for sig, runs in sigs.items()]
    lines += ["", "### Package versions", ""]
    lines += [f"- {run}: " + ", ".join(f"{p} {v}" for p, v in vs.items()) for run, vs in report["versions"].items()]
    lines.append("")
    if report.get("concepts"):
        lines += concepts_section.render_markdown(report["concepts"])
    if report.get("analysis"):
        lines += analysis_section.render_markdown(report["analysis"])
    lines += ["## Examples", ""]
    for run, examples in report["examples"].items():
        lines += [f"### {run}", ""]
        for ex in examples:
            scores = ", ".join(f"{k}={format_value(k, v)}" for k, v in ex["scores"].items())
            lines += [f"- **{ex['kind']}** (sentence {ex['index']}, image {ex['image_id']}): {scores}",
                      f"  - source: {_md(ex['source'] or '–')}", f"  - output: {_md(ex['hypothesis'])}",
                      *(f"  - reference{' (best)' if i == ex['best_reference'] else ''}: {_md(r)}"
                        for i, r in enumerate(ex["references"]))]
        lines.append("")
    differing = [r for r in report["configs"] if r["differs"]]
    runs = [r["name"] for r in report["runs"]]
    lines += ["## Configuration differences", "",
              f"{len(differing)} of {len(report['configs'])} keys differ.", ""]
    if differing:
        lines += ["| key | " + " | ".join(map(_md, runs)) + " |", "|---|" + "---|" * len(runs),
                  *(f"| `{r['key']}` | " + " | ".join(_md(r["values"][n]) for n in runs) + " |"
                    for r in differing)]
    return "\n".join(lines) + "\n"
