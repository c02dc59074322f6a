"""The system table: one row per run (plus its untrained student when scored), each metric
with its 95% bootstrap interval, and the signatures/versions that make the numbers reproducible.

Metric keys are the statistic names of `eval.score` ("bleu", "bertscore.P",
"retrieval.t2i.R@1", "retrieval.grounding", ...), the same names its "paired" block uses, and
"concepts.unseen"/"concepts.seen": concept accuracy, from the `concepts` section of scores.json
(a dataset whose captions carry concept ids; `eval.concept_scores`).
"""
from __future__ import annotations

from eval.report.collect import Run

COLUMNS: tuple[tuple[str, str], ...] = (
    ("bleu", "BLEU"), ("chrf", "chrF"),
    ("bertscore.P", "BERTScore P"), ("bertscore.R", "BERTScore R"), ("bertscore.F", "BERTScore F"),
    ("lisascore.P", "LiSAScore P"), ("lisascore.R", "LiSAScore R"), ("lisascore.F", "LiSAScore F"),
    *((f"retrieval.{d}.R@{k}", f"{d} R@{k}") for d in ("t2i", "i2t") for k in (1, 5, 10)),
    ("retrieval.grounding", "grounding"),
    ("concepts.unseen", "unseen concepts"), ("concepts.seen", "seen concepts"),
)
LABELS = dict(COLUMNS)
PERCENT_SCALE = {"bleu", "chrf"}  # sacreBLEU's 0–100 scale; everything else is a fraction


def format_value(key: str, value: float | None) -> str:
    """How a metric value is printed in every rendering (HTML, Markdown)."""
    if value is None:
        return "–"
    return f"{value:.2f}" if key in PERCENT_SCALE else f"{value:.4f}"


def metric_cell(metrics: dict, key: str) -> dict | None:
    """{"value", "low", "high"} of one metric from an `eval.score` "metrics" block (interval
    bounds None when it was scored without bootstrap); None when the metric is absent."""
    family, _, part = key.partition(".")
    entry = metrics.get(family)
    if not isinstance(entry, dict):
        return None
    ci = entry.get("ci") or {}
    if not part:
        value, interval = entry.get("score"), ci
    elif family == "retrieval":
        translation = entry.get("translation") or {}
        direction, _, k = part.partition(".")
        value = translation.get(direction) if not k else (translation.get(direction) or {}).get(k)
        interval = ci.get(part) or {}
    else:
        value, interval = (entry.get("corpus") or {}).get(part), ci.get(part) or {}
    if value is None:
        return None
    return {"value": float(value), "low": interval.get("low"), "high": interval.get("high")}


def concept_cell(scores: dict | None, kind: str) -> dict | None:
    """{"value", "low", "high"} of one kind's concept accuracy from a `concepts` section (or its
    "untrained" block); None without the section or without mentions of that kind."""
    entry = (scores or {}).get(kind) or {}
    if entry.get("accuracy") is None:
        return None
    ci = entry.get("ci") or {}
    return {"value": float(entry["accuracy"]), "low": ci.get("low"), "high": ci.get("high")}


def _metrics_of(block: dict) -> dict:
    """An `eval.score` result or a bare "metrics" block (how "untrained" may be stored)."""
    return block.get("metrics", block) if isinstance(block, dict) else {}


def system_rows(runs: list[Run]) -> list[dict]:
    """[{"run", "system": "trained" | "untrained", "n_sentences", "cells": {key: cell}}]."""
    rows = []
    for run in runs:
        if run.scores is None:
            continue
        systems = [("trained", run.scores)]
        if isinstance(run.scores.get("untrained"), dict):
            systems.append(("untrained", run.scores["untrained"]))
        concepts = run.scores.get("concepts") or {}
        for system, block in systems:
            metrics = _metrics_of(block)
            cells = {key: c for key, _ in COLUMNS if not key.startswith("concepts.")
                     and (c := metric_cell(metrics, key)) is not None}
            section = concepts if system == "trained" else concepts.get("untrained")
            cells.update({f"concepts.{kind}": c for kind in ("unseen", "seen")
                          if (c := concept_cell(section, kind)) is not None})
            rows.append({"run": run.name, "system": system,
                         "n_sentences": block.get("n_sentences", run.scores.get("n_sentences")),
                         "cells": cells})
    return rows


def present_columns(rows: list[dict]) -> list[str]:
    """Metric keys that at least one row has, in table order."""
    return [key for key, _ in COLUMNS if any(key in r["cells"] for r in rows)]


def signatures(runs: list[Run]) -> dict[str, dict[str, list[str]]]:
    """{metric: {signature: [runs using it]}}: sacreBLEU signatures, the BERTScore hash and the
    LiSAScore signature; identical signatures across runs collapse to one line."""
    out: dict[str, dict[str, list[str]]] = {}
    for run in runs:
        metrics = (run.scores or {}).get("metrics") or {}
        for family, field in (("bleu", "signature"), ("chrf", "signature"),
                              ("bertscore", "hash"), ("lisascore", "signature")):
            sig = (metrics.get(family) or {}).get(field)
            if sig:
                out.setdefault(family, {}).setdefault(str(sig), []).append(run.name)
        boot = (run.scores or {}).get("bootstrap")
        if boot:
            sig = (f"n_samples:{boot.get('n_samples')}|seed:{boot.get('seed')}|"
                   f"confidence:{boot.get('confidence')}|{boot.get('method')}")
            out.setdefault("bootstrap", {}).setdefault(sig, []).append(run.name)
    return out


def versions(runs: list[Run]) -> dict[str, dict[str, str]]:
    """{run: {package: version}} as recorded in each scores.json."""
    return {run.name: dict((run.scores or {}).get("versions") or {}) for run in runs
            if (run.scores or {}).get("versions")}
