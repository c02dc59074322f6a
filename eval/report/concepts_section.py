"""The report's Concepts section: per run whose scores.json has a `concepts` section (a dataset whose
captions carry concept ids, `eval.concept_scores`), unseen- and seen-concept accuracy of the trained
and the untrained student with their 95% intervals, the copy floor and the paired test against the
untrained student; and one figure, accuracy by the concept's training frequency (log2 bins of
training source captions naming it), one line per run, over all mentions and over unseen ones."""
from __future__ import annotations

from html import escape

from matplotlib.figure import Figure

from eval.concepts import KINDS, bin_order
from eval.report.collect import Run
from eval.report.figures import LINESTYLES, figure_uri

TITLE = "Concepts: did it translate the words it never saw translated?"
EXPLANATION = ("A concept mention of a test caption is <b>unseen</b> when no training caption with a human "
               "translation in the run names the concept, <b>seen</b> otherwise; it is translated when one of the "
               "concept's English names occurs in the translation as whole words. <b>copy</b>: what copying the "
               "source caption would get (names spelled alike in both languages), the floor. Accuracy with its "
               "95% bootstrap interval; Δ: paired bootstrap against the run's untrained student.")


def collect(runs: list[Run]) -> dict[str, dict]:
    """{run name: its scores.json `concepts` section}, for the runs that have one."""
    return {r.name: r.scores["concepts"] for r in runs if r.scores is not None and r.scores.get("concepts")}


def bins(section: dict[str, dict]) -> list[str]:
    """Every frequency bin any run has, in order ("0", "1", "2-3", ...)."""
    labels = {b["train_captions"] for s in section.values() for b in s["by_frequency"]}
    return sorted(labels, key=bin_order)


def frequency_figure(section: dict[str, dict]) -> str:
    """Accuracy against the concept's training frequency: all mentions (left), unseen mentions (right)."""
    labels = bins(section)
    fig = Figure(figsize=(9.0, 3.6), layout="constrained")
    axes = fig.subplots(1, 2, sharey=True)
    for ax, title, accuracy in ((axes[0], "all mentions", "accuracy"), (axes[1], "unseen mentions", "unseen_accuracy")):
        for r, (run, scores) in enumerate(section.items()):
            dodge = 0.06 * (r - (len(section) - 1) / 2)  # runs side by side, so that equal points stay visible
            points = [(labels.index(b["train_captions"]) + dodge, b[accuracy]) for b in scores["by_frequency"]
                      if b[accuracy] is not None]
            if points:
                ax.plot(*zip(*points), marker="o", markersize=4, linewidth=1.4, color=f"C{r % 10}",
                        linestyle=LINESTYLES[r % len(LINESTYLES)], label=run)
        ax.set_xticks(range(len(labels)), labels, fontsize=8, rotation=45, ha="right")  # wide bins stay legible
        ax.set_xlim(-0.5, len(labels) - 0.5)
        ax.set_ylim(-0.03, 1.03)
        ax.set_xlabel("training captions naming the concept (log2 bins)")
        ax.set_title(f"concept accuracy by training frequency: {title}", fontsize=9)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("share translated")
    axes[0].legend(fontsize=7, loc="best")
    return figure_uri(fig)


def _accuracy(kind: dict) -> str:
    if kind["accuracy"] is None:
        return "–"
    ci = kind.get("ci")
    return f"{kind['accuracy']:.3f}" + (f" [{ci['low']:.3f}, {ci['high']:.3f}]" if ci else "")


def _copy(kind: dict) -> str:
    return "–" if kind["copy"] is None else f"{kind['copy']:.3f}"


def _paired(test: dict | None) -> str:
    return "" if not test else f"Δ {test['delta']:+.3f}, p={test['p_value']:.3f}"


def _rows(section: dict[str, dict]):
    """(run, system, scores, paired tests or None) per table row: trained, then untrained."""
    for run, scores in section.items():
        yield run, "trained", scores, scores.get("paired")
        if "untrained" in scores:
            yield run, "untrained", scores["untrained"], None


def render_html(section: dict[str, dict], figure: str) -> str:
    head = ("<tr><th rowspan=2>run</th><th rowspan=2>system</th><th rowspan=2>seen concepts / translated "
            "training captions</th>" + "".join(f"<th colspan=4>{kind}</th>" for kind in KINDS) + "</tr><tr>"
            + "<th>correct / mentions</th><th>accuracy [95%]</th><th>copy</th><th>Δ vs untrained</th>" * len(KINDS)
            + "</tr>")
    body = []
    for run, system, scores, paired in _rows(section):
        training = section[run].get("training") or {}
        cells = []
        for kind in KINDS:
            k, test = scores[kind], (paired or {}).get(kind)
            significant = test is not None and test["p_value"] < 0.05
            sig = " sig" if significant and test["delta"] > 0 else " worse" if significant and test["delta"] < 0 else ""
            cells.append(f'<td class="num">{k["correct"]} / {k["mentions"]}</td><td class="num">{_accuracy(k)}</td>'
                         f'<td class="num">{_copy(k)}</td><td class="num"><span class="p{sig}">'
                         f'{escape(_paired(test))}</span></td>')
        facts = (f"{training['seen_concepts']} / {training['translated_captions']}" if system == "trained" and training
                 else "")
        body.append(f'<tr class="{system}"><td>{escape(run)}</td><td>{system}</td><td class="num">{facts}</td>'
                    + "".join(cells) + "</tr>")
    labels = bins(section)
    freq_head = "<tr><th>run</th>" + "".join(f"<th>{escape(b)}</th>" for b in labels) + "</tr>"
    freq_rows = []
    for run, scores in section.items():
        by = {b["train_captions"]: b for b in scores["by_frequency"]}
        freq_rows.append(f"<tr><td>{escape(run)}</td>" + "".join(
            f'<td class="num">{by[b]["correct"]}/{by[b]["mentions"]}'
            f'<br><span class="ci">unseen {by[b]["unseen_correct"]}/{by[b]["unseen_mentions"]}</span></td>'
            if b in by else '<td class="num">–</td>' for b in labels) + "</tr>")
    return "\n".join([
        f"<h2 id='concepts'>{escape(TITLE)}</h2><p class='small'>{EXPLANATION}</p>",
        f'<div class="wide"><table id="concepts-table">{head}{"".join(body)}</table></div>',
        f'<figure><img src="{figure}" alt="concept accuracy by training frequency" style="max-width:900px">'
        "<figcaption class='small'>Share of concept mentions translated, by how many training source captions "
        "name the concept (translated or not), trained students; below: correct / mentions per bin.</figcaption>"
        "</figure>",
        f'<div class="wide"><table id="concepts-by-frequency">{freq_head}{"".join(freq_rows)}</table></div>'])


def render_markdown(section: dict[str, dict]) -> list[str]:
    lines = [f"## {TITLE}", "", "Unseen: named by no training caption with a human translation in the run. "
             "Accuracy [95% bootstrap interval]; copy: what copying the source gets; Δ: paired vs untrained. "
             "The accuracy-by-frequency figure is in the HTML report.", "",
             "| run | system | " + " | ".join(f"{k} correct / mentions | {k} accuracy | {k} copy | {k} Δ vs untrained"
                                              for k in KINDS) + " |",
             "|---|---|" + "---|---|---|---|" * len(KINDS)]
    for run, system, scores, paired in _rows(section):
        cells = [f"{scores[k]['correct']} / {scores[k]['mentions']} | {_accuracy(scores[k])} | {_copy(scores[k])} | "
                 f"{_paired((paired or {}).get(k)) or '–'}" for k in KINDS]
        lines.append(f"| {run.replace('|', '/')} | {system} | " + " | ".join(cells) + " |")
    labels = bins(section)
    lines += ["", "Correct / mentions by training captions naming the concept:", "",
              "| run | " + " | ".join(labels) + " |", "|---|" + "---|" * len(labels)]
    for run, scores in section.items():
        by = {b["train_captions"]: b for b in scores["by_frequency"]}
        lines.append(f"| {run.replace('|', '/')} | " + " | ".join(
            f"{by[b]['correct']}/{by[b]['mentions']}" if b in by else "–" for b in labels) + " |")
    return lines + [""]
