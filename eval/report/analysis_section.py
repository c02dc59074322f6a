"""The report's Analysis section: per run with an analysis (`python -m eval analyze`), its
headline lines (`eval.analysis.summary`), notes and figures (the PNG files next to
analysis.json, inlined as data URIs so the page stays self-contained)."""
from __future__ import annotations

from html import escape

from eval.analysis.summary import summary_lines
from eval.report.collect import Run
from eval.report.figures import png_data_uri


def collect(runs: list[Run], notes: list[str]) -> tuple[dict, dict]:
    """({run: {"dir", "summary", "figures", "notes"}}, {(run, file): data URI}); a listed figure
    whose file is gone is noted and left out."""
    section, uris = {}, {}
    for run in runs:
        if run.analysis is None:
            continue
        figures = []
        for fig in run.analysis.get("figures", []):
            path = run.analysis_dir / fig["file"]
            if not path.is_file():
                notes.append(f"{run.name}: analysis figure {path} is missing")
                continue
            uris[(run.name, fig["file"])] = png_data_uri(path.read_bytes())
            figures.append(fig)
        section[run.name] = {"dir": str(run.analysis_dir),  # for the Markdown's figure links
                             "shown_dir": f"{run.analysis_dir.parent.name}/{run.analysis_dir.name}",  # no local path
                             "summary": [list(x) for x in summary_lines(run.analysis)],
                             "figures": figures, "notes": run.analysis.get("notes", []),
                             "test_sentences": run.analysis.get("test_sentences")}
    return section, uris


def render_html(section: dict, uris: dict) -> str:
    parts = ["<h2 id='analysis'>Analysis</h2><p class='small'>From <code>python -m eval analyze</code> "
             "(docs/analysis.md): CKA maps, linear probes, parameter movement, token usage, embedding health.</p>"]
    for run, entry in section.items():
        rows = "".join(f"<tr><td>{escape(label)}</td><td>{escape(text)}</td></tr>" for label, text in entry["summary"])
        parts.append(f"<h3>{escape(run)}</h3><p class='small'>{entry['test_sentences']} test sentences; "
                     f"<code>{escape(entry['shown_dir'])}</code></p>"
                     f"<div class='wide'><table class='analysis'>{rows}</table></div>")
        if entry["notes"]:
            parts.append("<ul class='notes'>" + "".join(f"<li>{escape(n)}</li>" for n in entry["notes"]) + "</ul>")
        parts.append('<div class="grid">' + "".join(
            f'<figure><img src="{uris[(run, f["file"])]}" alt="{escape(f["title"])}" style="max-width:640px">'
            f'<figcaption class="small"><b>{escape(f["title"])}</b>. {escape(f["caption"])}</figcaption></figure>'
            for f in entry["figures"]) + "</div>")
    return "\n".join(parts)


def render_markdown(section: dict) -> list[str]:
    lines = ["## Analysis", ""]
    for run, entry in section.items():
        lines += [f"### {run}", "", f"{entry['test_sentences']} test sentences; files in `{entry['dir']}`.", "",
                  "| analysis | result |", "|---|---|",
                  *(f"| {label} | {text.replace('|', '/')} |" for label, text in entry["summary"]), ""]
        lines += [f"- {n}" for n in entry["notes"]]
        lines += [f"- figure: [{f['title']}]({entry['dir']}/{f['file']})" for f in entry["figures"]]
        lines.append("")
    return lines
