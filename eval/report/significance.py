"""Paired bootstrap tests of every run against the first (baseline) run, on matched sentences.

Sentences are matched by (image_id, source) — with an occurrence counter for repeated pairs —
so runs that wrote their test sentences in different orders still pair up; when the runs'
test sets differ, the report says so instead of giving a p-value. The test itself is
`eval.stats.paired_bootstrap` on `eval.stats.Statistic`s built from the stored per-sentence
values (BERTScore, LiSAScore, grounding) or from sacreBLEU's sufficient statistics of the
stored hypotheses and references (BLEU, chrF), exactly as `eval.score` builds them.
Retrieval recalls are not per-sentence in scores.json, so they get no paired test here. Concept
accuracy ("concepts.unseen", "concepts.seen") pairs from the per-sentence concept ids, and only
runs whose training showed the same concepts translated (the same unseen/seen split of every
sentence): with another split the two accuracies count other mentions.
"""
from __future__ import annotations

from collections import Counter

from eval import mt_metrics, stats
from eval.concepts import KINDS, sentence_statistic
from eval.report.collect import Run

PER_SENTENCE = {"bertscore.P", "bertscore.R", "bertscore.F", "lisascore.P", "lisascore.R",
                "lisascore.F", "retrieval.grounding"}
ROW_FIELD = {"retrieval.grounding": "grounding"}  # per-sentence field name where it differs


def sentence_keys(rows: list[dict]) -> list[tuple] | None:
    """(image_id, source, occurrence) per row; None when rows carry neither field."""
    if not rows or all(r.get("image_id") is None and r.get("source") is None for r in rows):
        return None
    seen: Counter = Counter()
    keys = []
    for r in rows:
        base = (r.get("image_id"), r.get("source"))
        keys.append((*base, seen[base]))
        seen[base] += 1
    return keys


def align(base_rows: list[dict], rows: list[dict]) -> list[int] | str:
    """Indices into `rows` in the baseline's sentence order, or the reason they cannot pair."""
    base_keys, keys = sentence_keys(base_rows), sentence_keys(rows)
    if base_keys is None or keys is None:
        return "sentences carry no image_id/source to match them by"
    if Counter(base_keys) != Counter(keys):
        only_base = len(set(base_keys) - set(keys))
        only_this = len(set(keys) - set(base_keys))
        return (f"test sets differ ({len(base_rows)} vs {len(rows)} sentences; {only_base} only "
                f"in the baseline, {only_this} only in this run): no paired test")
    where = {k: i for i, k in enumerate(keys)}
    return [where[k] for k in base_keys]


def _statistic(key: str, rows: list[dict], target_lang: str) -> stats.Statistic | None:
    if key in ("bleu", "chrf"):
        if any("hypothesis" not in r or "references" not in r for r in rows):
            return None
        metric, seg = mt_metrics.segment_statistics(key, [r["hypothesis"] for r in rows],
                                                    [r["references"] for r in rows],
                                                    target_lang=target_lang)
        return stats.Statistic(seg, lambda s, m=metric: mt_metrics.stats_to_score(m, s))
    if key.startswith("concepts."):
        if any("concepts" not in r for r in rows):
            return None
        return sentence_statistic([r["concepts"] for r in rows], key.partition(".")[2])
    field = ROW_FIELD.get(key, key)
    if key not in PER_SENTENCE or any(r.get(field) is None for r in rows):
        return None
    return stats.Statistic.mean([r[field] for r in rows])


def same_concept_split(base_rows: list[dict], rows: list[dict]) -> bool:
    """Whether aligned sentences put the same concepts in the same kind (unseen/seen) in both runs."""
    return all(set(a["concepts"][kind]) == set(b["concepts"][kind])
               for a, b in zip(base_rows, rows) for kind in KINDS)


def paired_vs_baseline(base: Run, run: Run, keys: list[str]) -> dict:
    """{"n_sentences", "tests": {key: paired_bootstrap result | {"reason"}}} or {"reason"}."""
    if base.scores is None or run.scores is None:
        return {"reason": "no scores.json"}
    base_rows, rows = base.sentences, run.sentences
    order = align(base_rows, rows)
    if isinstance(order, str):
        return {"reason": order}
    rows = [rows[i] for i in order]
    boot = base.scores.get("bootstrap") or {}
    n_samples, seed = boot.get("n_samples") or stats.DEFAULT_SAMPLES, boot.get("seed", stats.DEFAULT_SEED)
    idxs = stats.resample_indices(len(rows), n_samples, seed)
    lang = base.scores.get("target_lang", "en")
    tests = {}
    for key in keys:
        if key.startswith("concepts.") and all("concepts" in r for r in (*rows, *base_rows)) \
                and not same_concept_split(base_rows, rows):
            tests[key] = {"reason": "the runs' training showed other concepts translated (another unseen/seen "
                                    "split): no paired test"}
            continue
        system, baseline = _statistic(key, rows, lang), _statistic(key, base_rows, lang)
        if system is None or baseline is None:
            tests[key] = {"reason": "no per-sentence values in both runs"}
        else:
            tests[key] = stats.paired_bootstrap(system, baseline, idxs=idxs, seed=seed)
    return {"n_sentences": len(rows), "tests": tests}


def significance(runs: list[Run], keys: list[str]) -> dict[str, dict]:
    """{run name: paired_vs_baseline(...)} for every run after the first."""
    return {run.name: paired_vs_baseline(runs[0], run, keys) for run in runs[1:]}
