"""Linear probes, fitted on one split and scored on another.

- **LM head** (docs/design.md §5, thesis §3.2.3): the test-time linear head from frozen decoder states
  to the English tokens, both protocols — `heldout` (fit on validation, score test) and `online`
  (trained during the test pass, prequential) — through `eval.system_eval.run_probes`.
- **attributes**: a logistic-regression probe (scikit-learn, standardised features) per task of
  `eval.analysis.labels`, fitted on the features of (at most `--limit` rows of) the training
  split and scored on the analysed test sentences, against the majority-class baseline (the fit
  split's most frequent label, scored on test). Features: `image` (the run's CLIP image tower),
  `english` (its text tower on the English captions), `student` (the CLIP-read translation of
  the source captions — the path the grounding loss trains; for the synthetic world only
  captions with a human translation, whose parse gives the labels).
"""
from __future__ import annotations

import warnings
from collections import Counter, defaultdict

import numpy as np
import torch
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from eval.analysis.labels import SyntheticLabels, TagLabels, label_source
from eval.analysis.plots import Plot
from eval.report.images import dataset_dir
from eval.system_eval import run_probes

KINDS = ("image", "english", "student")


def lm_head(ctx) -> dict:
    """Both protocols of the test-time LM head on the analysed test sentences."""
    return run_probes(ctx.system, ctx.dsd, ctx.scans, ctx.sentences, ("heldout", "online"))


def _rows_and_labels(ctx, split: str, source, rows: list[int], student_items: list[tuple[int, str, str]]):
    """{kind: (feature fn input, labels)} for one split; skipped rows counted per reason."""
    skipped: Counter = Counter()
    ds = ctx.dsd[split].select(rows).select_columns(["image_id", "english"])
    image_rows, image_labels, by_row = [], [], {}
    for row, item in zip(rows, ds):
        try:
            labels = source.image(item["image_id"], item["english"])
        except KeyError:
            skipped["image without labels"] += 1
            continue
        image_rows.append(row)
        image_labels.append(labels)
        by_row[row] = (labels, [e for e in item["english"] if e.strip()])
    texts, text_labels = [], []
    for labels, captions in by_row.values():
        for caption in captions:
            try:
                text_labels.append(source.caption(caption, labels))
                texts.append(caption)
            except ValueError:
                skipped["English caption outside the grammar"] += 1
    sources, source_labels = [], []
    for row, src, reference in student_items:
        if row not in by_row:
            continue
        try:
            source_labels.append(source.caption(reference, by_row[row][0]))
            sources.append(src)
        except ValueError:
            skipped["translation outside the grammar"] += 1
    return {"image": (image_rows, image_labels), "english": (texts, text_labels),
            "student": (sources, source_labels)}, skipped


def _features(ctx, split: str, kind: str, inputs: list) -> torch.Tensor:
    system = ctx.system
    if kind == "image":
        return system.image_features(ctx.dsd[split].select(inputs)["image"], ctx.batch_size).cpu()
    if kind == "english":
        return system.english_features(inputs, ctx.batch_size).cpu()
    return system.student_features(inputs, ctx.batch_size).cpu()


def _student_items(ctx, split: str, rows: list[int], synthetic: bool) -> list[tuple[int, str, str]]:
    """(row, source caption, text giving its labels) for the student features of a split."""
    if split == "test":
        items = [(s["row"], s["source"], s["references"][0]) for s in ctx.sentences]
        return [i for i, s in zip(items, ctx.sentences) if s["has_translation"] or not synthetic]
    out = []
    for row, item in zip(rows, ctx.dsd[split].select(rows).select_columns(["source", "parallel"])):
        for src, par in zip(item["source"], item["parallel"]):
            if src.strip() and (par.strip() or not synthetic):
                out.append((row, src, par))
    return out


def fit_probe(x_fit: np.ndarray, y_fit: list, x_test: np.ndarray, y_test: list) -> dict:
    """Logistic regression on standardised features; accuracy and the majority-class baseline."""
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(x_fit, y_fit)
    majority = Counter(y_fit).most_common(1)[0][0]
    predicted = model.predict(x_test)
    return {"accuracy": float(np.mean([p == t for p, t in zip(predicted, y_test)])),
            "majority_baseline": float(np.mean([t == majority for t in y_test])),
            "classes": len(set(y_fit)), "n_fit": len(y_fit), "n_test": len(y_test)}


def attributes(ctx) -> dict:
    """Attribute probes for every feature kind (see the module docstring)."""
    source, why = label_source(dataset_dir(ctx.run))
    if source is None:
        return {"skipped": why}
    synthetic = isinstance(source, SyntheticLabels)
    test_rows = list(dict.fromkeys(s["row"] for s in ctx.sentences))
    fit_rows = ctx.scans["train"].usable
    if isinstance(source, TagLabels):
        source.choose(ctx.dsd["train"].select(fit_rows)["image_id"])
        if not source.vocabulary:
            return {"skipped": "no training image of the analysed rows has tags"}
    try:
        fit, fit_skipped = _rows_and_labels(ctx, "train", source, fit_rows,
                                            _student_items(ctx, "train", fit_rows, synthetic))
        test, test_skipped = _rows_and_labels(ctx, "test", source, test_rows,
                                              _student_items(ctx, "test", test_rows, synthetic))
    except ValueError as err:  # a synthetic world that does not regenerate
        return {"skipped": str(err)}
    out = {"label_source": source.kind, "fit_split": "train", "test_split": "test",
           "skipped_rows": {"train": dict(fit_skipped), "test": dict(test_skipped)}, "features": {}}
    for kind in KINDS:
        (fit_in, fit_labels), (test_in, test_labels) = fit[kind], test[kind]
        if len(fit_in) < 2 or not test_in:
            out["features"][kind] = {"skipped": f"{len(fit_in)} fit and {len(test_in)} test items"}
            continue
        x_fit = _features(ctx, "train", kind, fit_in).double().numpy()
        x_test = _features(ctx, "test", kind, test_in).double().numpy()
        tasks, skipped = {}, Counter()
        for task in fit_labels[0]:
            y_fit, y_test = [lab[task] for lab in fit_labels], [lab[task] for lab in test_labels]
            if len(set(y_fit)) < 2:
                skipped["one class in the fit split"] += 1
                continue
            tasks[task] = fit_probe(x_fit, y_fit, x_test, y_test)
        families = defaultdict(list)
        for task, r in tasks.items():
            families[task.split(":")[0]].append(r)
        out["features"][kind] = {
            "n_fit": len(fit_in), "n_test": len(test_in), "tasks": tasks, "skipped_tasks": dict(skipped),
            "families": {f: {"accuracy": float(np.mean([r["accuracy"] for r in rs])),
                             "majority_baseline": float(np.mean([r["majority_baseline"] for r in rs])),
                             "tasks": len(rs)} for f, rs in families.items()}}
    return out


def analyse(ctx) -> tuple[dict, list[Plot]]:
    """The probes part: LM head (both protocols) and attribute probes, with their figures."""
    result = {"lm_head": lm_head(ctx), "attributes": attributes(ctx)}
    plots = []
    head = result["lm_head"]
    if "batch_losses" in head.get("online", {}):
        fig = Figure(figsize=(5.5, 3.4))
        ax = fig.add_subplot()
        losses = head["online"]["batch_losses"]
        ax.plot(range(1, len(losses) + 1), losses, marker="o", markersize=3, label="online: batch CE before its update")
        if "ce" in head.get("heldout", {}):
            ax.axhline(head["heldout"]["ce"], color="C1", linestyle="--", label="heldout: test CE (fit on validation)")
        ax.axhline(head["online"]["uniform_ce"], color="grey", linestyle=":", label="uniform (log V)")
        ax.set_xlabel("test batch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel("token cross-entropy (nats)")
        ax.set_title("Test-time linear LM head", fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
        plots.append(Plot("probe_lm_head.png", "Test-time LM head (online and heldout)",
                          "A linear head from the frozen decoder states to the reference tokens: the online "
                          "protocol's prequential batch losses (thesis §3.2.3) against the heldout protocol's "
                          "test CE and the uniform guess.", fig))
    attrs = result["attributes"]
    probed = {k: v for k, v in attrs.get("features", {}).items() if "families" in v and v["families"]}
    if probed:
        families = list(dict.fromkeys(f for v in probed.values() for f in v["families"]))
        fig = Figure(figsize=(6.0, 3.4))
        ax = fig.add_subplot()
        width = 0.8 / len(probed)
        for k, (kind, v) in enumerate(probed.items()):
            xs = [i + (k - (len(probed) - 1) / 2) * width for i in range(len(families))]
            acc = [v["families"].get(f, {}).get("accuracy", np.nan) for f in families]
            base = [v["families"].get(f, {}).get("majority_baseline", np.nan) for f in families]
            ax.bar(xs, acc, width * 0.9, color=f"C{k}", label=f"{kind} features")
            ax.scatter(xs, base, marker="_", s=300, color="black", zorder=3,
                       label="majority baseline" if k == 0 else None)
        ax.set_xticks(range(len(families)), families)
        ax.set_ylim(0, 1.05)
        ax.set_ylabel("test accuracy (mean over tasks)")
        ax.set_title(f"Attribute probes ({attrs['label_source']})", fontsize=10)
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
        ax.grid(alpha=0.3, axis="y")
        plots.append(Plot("probe_attributes.png", "Attribute probes", "Logistic-regression probes fitted on the "
                          "training split, scored on test; bars are accuracies (mean over a family's tasks), "
                          "black ticks the majority-class baseline.", fig))
    return result, plots
