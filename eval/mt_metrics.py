"""sacreBLEU BLEU and chrF, corpus- and sentence-level, with their reproducibility signatures.

Thin on purpose: sacreBLEU does the work; this file fixes the configuration (13a tokenisation,
`zh` only for Chinese targets, effective n-gram order for sentence BLEU as in
`sacrebleu.sentence_bleu`) and exposes the per-sentence sufficient statistics that the
bootstrap in `eval.stats` resamples — exactly what sacreBLEU's own `--confidence` does.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sacrebleu.metrics import BLEU, CHRF
from sacrebleu.metrics.base import Metric

from eval.references import References, reference_lists, to_streams

MT_METRICS = ("bleu", "chrf")


def make_metric(name: str, target_lang: str = "en", *, sentence_level: bool = False) -> Metric:
    """A fresh sacreBLEU metric object (fresh, because sacreBLEU caches the reference count)."""
    if name == "bleu":
        return BLEU(tokenize="zh" if target_lang == "zh" else "13a", effective_order=sentence_level)
    if name == "chrf":
        return CHRF()
    raise ValueError(f"unknown sacreBLEU metric {name!r}; expected one of {MT_METRICS}")


def corpus_score(name: str, hyps: Sequence[str], refs: References, *,
                 target_lang: str = "en") -> dict:
    """Corpus BLEU or chrF: {"score", "signature", details...} (scores on sacreBLEU's 0–100 scale)."""
    metric = make_metric(name, target_lang)
    result = metric.corpus_score(list(hyps), to_streams(reference_lists(hyps, refs)))
    out = {"score": float(result.score), "signature": str(metric.get_signature())}
    if name == "bleu":
        out.update(precisions=[float(p) for p in result.precisions], bp=float(result.bp),
                   ratio=float(result.ratio), sys_len=int(result.sys_len),
                   ref_len=int(result.ref_len))
    return out


def sentence_scores(name: str, hyps: Sequence[str], refs: References, *,
                    target_lang: str = "en") -> list[float]:
    """Per-sentence BLEU (effective order) or chrF, each against that sentence's references."""
    metric = make_metric(name, target_lang, sentence_level=True)
    return [float(metric.sentence_score(h, r).score)
            for h, r in zip(hyps, reference_lists(hyps, refs))]


def segment_statistics(name: str, hyps: Sequence[str], refs: References, *,
                       target_lang: str = "en") -> tuple[Metric, np.ndarray]:
    """(metric, per-sentence sufficient statistics [N, K]); a corpus score of any subset is
    `metric._compute_score_from_stats(stats[subset].sum(0)).score`, as sacreBLEU resamples.
    float32, as in sacreBLEU's resampler (counts are exact in float32 up to 2**24), so our
    bootstrap reproduces `sacrebleu --confidence` digit for digit."""
    metric = make_metric(name, target_lang)
    stats = metric._extract_corpus_statistics(list(hyps), to_streams(reference_lists(hyps, refs)))
    return metric, np.asarray(stats, dtype=np.float32)


def stats_to_score(metric: Metric, summed_stats: np.ndarray) -> float:
    """Corpus score from summed sufficient statistics (sacreBLEU's own aggregation)."""
    return float(metric._compute_score_from_stats(summed_stats).score)
