"""Seeded bootstrap confidence intervals and paired bootstrap tests for corpus metrics.

One mechanism for every metric, the one sacreBLEU uses (`sacrebleu --confidence`,
`--paired-bs`): each metric provides per-item sufficient statistics `[N, K]` and an
`aggregate` that turns their column sums into a corpus score. BLEU/chrF statistics come
from sacreBLEU itself (`eval.mt_metrics.segment_statistics`); sentence-averaged metrics
(BERTScore, LiSAScore, grounding cosine, retrieval hits) use `[value, 1]` rows, whose
aggregate is the mean. Resampling indices are drawn exactly as sacreBLEU draws them
(`default_rng(seed).choice(N, (n, N))`), so with the same seed our BLEU/chrF intervals and
p-values equal sacreBLEU's (tested). Retrieval resamples queries over a fixed gallery.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

DEFAULT_SEED = 12345  # sacreBLEU's default SACREBLEU_SEED
DEFAULT_SAMPLES = 1000


@dataclass(frozen=True)
class Statistic:
    """Per-item sufficient statistics and the map from their column sums to a corpus score."""

    stats: np.ndarray  # [N, K]
    aggregate: Callable[[np.ndarray], float]

    @classmethod
    def mean(cls, values) -> Statistic:
        """The corpus score is the mean of per-item values."""
        v = np.asarray(values, dtype=np.float64).reshape(-1)
        if v.size == 0:
            raise ValueError("cannot bootstrap an empty list of values")
        if not np.all(np.isfinite(v)):
            raise ValueError("per-item values contain NaN or inf")
        return cls(np.stack([v, np.ones_like(v)], axis=1), _ratio)

    @property
    def score(self) -> float:
        """The full-corpus score (sums in float64: exact for integer counts)."""
        return float(self.aggregate(self.stats.sum(0, dtype=np.float64)))

    def resampled(self, idxs: np.ndarray) -> np.ndarray:
        """Corpus score of every resample (rows of `idxs`)."""
        return np.array([self.aggregate(self.stats[row].sum(0)) for row in idxs], dtype=np.float64)


def _ratio(summed: np.ndarray) -> float:
    return float(summed[0] / summed[1])


def bootstrap_bytes(n_samples: int, n_items: int) -> int:
    """Memory the bootstrap of `n_items` items takes: the int64 resampling indices `[n_samples,
    n_items]` (what dominates), plus a few float64 score arrays per statistic."""
    return 8 * n_samples * (n_items + 64)


def resample_indices(n_items: int, n_samples: int = DEFAULT_SAMPLES,
                     seed: int = DEFAULT_SEED) -> np.ndarray:
    """[n_samples, n_items] bootstrap indices, drawn as sacreBLEU draws them."""
    if n_items < 1 or n_samples < 1:
        raise ValueError(f"need n_items >= 1 and n_samples >= 1, got {n_items}, {n_samples}")
    return np.random.default_rng(seed).choice(n_items, size=(n_samples, n_items), replace=True)


def percentile_interval(scores: np.ndarray) -> tuple[float, float]:
    """95% interval by sacreBLEU's order statistics (the n//40-th from each end)."""
    s = np.sort(np.asarray(scores, dtype=np.float64))
    lo = len(s) // 40
    return float(s[lo]), float(s[len(s) - lo - 1])


def bootstrap_ci(statistic: Statistic, *, n_samples: int = DEFAULT_SAMPLES,
                 seed: int = DEFAULT_SEED, idxs: np.ndarray | None = None) -> dict:
    """{"score", "mean", "low", "high", "n_samples", "seed"}: a seeded 95% bootstrap interval.
    Pass `idxs` to share one set of resamples across metrics."""
    if idxs is None:
        idxs = resample_indices(len(statistic.stats), n_samples, seed)
    scores = statistic.resampled(idxs)
    low, high = percentile_interval(scores)
    return {"score": statistic.score, "mean": float(scores.mean()), "low": low, "high": high,
            "n_samples": int(len(idxs)), "seed": seed}


def paired_bootstrap(system: Statistic, baseline: Statistic, *, n_samples: int = DEFAULT_SAMPLES,
                     seed: int = DEFAULT_SEED, idxs: np.ndarray | None = None) -> dict:
    """Paired bootstrap test (Koehn 2004, as `sacrebleu --paired-bs`): both systems are scored
    on the same resamples; the p-value is that of the observed |difference| under the
    resampled differences shifted to mean zero (sacreBLEU's `_paired_bs_test`, with its +1
    correction). Also gives a 95% interval of `system − baseline`. Two systems that no resample
    tells apart (every resampled difference and the observed one exactly 0: the same outputs, or
    both 0 of every concept) get p = 1, where sacreBLEU's formula would give 1/(n+1)."""
    if len(system.stats) != len(baseline.stats):
        raise ValueError(f"paired test needs the same items: {len(system.stats)} vs "
                         f"{len(baseline.stats)}")
    if idxs is None:
        idxs = resample_indices(len(system.stats), n_samples, seed)
    sys_scores, base_scores = system.resampled(idxs), baseline.resampled(idxs)
    observed = abs(system.score - baseline.score)
    sample_diffs = np.abs(sys_scores - base_scores)
    centred = sample_diffs - sample_diffs.mean()
    p_value = _p_value(centred, observed, sample_diffs)
    low, high = percentile_interval(sys_scores - base_scores)
    return {"system": system.score, "baseline": baseline.score,
            "delta": system.score - baseline.score, "delta_low": low, "delta_high": high,
            "p_value": float(p_value), "n_samples": int(len(idxs)), "seed": seed}


def _p_value(centred: np.ndarray, observed: float, differences: np.ndarray) -> float:
    """sacreBLEU's p-value (with its +1 correction); 1 when nothing differs in any resample."""
    if observed == 0 and not np.any(differences):
        return 1.0
    return (np.sum(centred > observed) + 1) / (len(centred) + 1)


def stratified_paired_bootstrap(pairs: list[tuple[Statistic, Statistic]], *, n_samples: int = DEFAULT_SAMPLES,
                                seed: int = DEFAULT_SEED) -> dict:
    """Paired bootstrap of the mean, over strata, of `system − baseline` — e.g. one stratum per
    training seed, each with its own test items shared by both systems. Every resample draws each
    stratum's items with replacement (independently per stratum, paired within it), so the
    interval covers the test-set noise of every stratum; the spread between strata enters through
    their mean. Returns {"delta", "delta_low", "delta_high", "p_value", "strata", "n_samples", "seed"};
    the p-value is two-sided, as in `paired_bootstrap`."""
    if not pairs:
        raise ValueError("need at least one (system, baseline) pair")
    deltas = np.zeros(n_samples)
    observed = 0.0
    for k, (system, baseline) in enumerate(pairs):
        if len(system.stats) != len(baseline.stats):
            raise ValueError(f"stratum {k}: paired test needs the same items: {len(system.stats)} vs "
                             f"{len(baseline.stats)}")
        idxs = resample_indices(len(system.stats), n_samples, seed + k)
        deltas += system.resampled(idxs) - baseline.resampled(idxs)
        observed += system.score - baseline.score
    deltas /= len(pairs)
    observed /= len(pairs)
    centred = np.abs(deltas) - np.abs(deltas).mean()
    p_value = _p_value(centred, abs(observed), deltas)
    low, high = percentile_interval(deltas)
    return {"delta": observed, "delta_low": low, "delta_high": high, "p_value": float(p_value),
            "strata": len(pairs), "n_samples": n_samples, "seed": seed}
