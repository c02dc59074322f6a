"""Did the translation carry the concepts it never saw translated? Concept accuracy, seen and unseen.

For a world whose captions record the concepts they name (the `source_concepts` column and the
dataset's concept inventory, `concepts.json`), every concept mention of a test caption is
*unseen* when no training caption with a human translation names that concept, and *seen*
otherwise. A mention is translated when one of the concept's English surface forms occurs in the
translation as whole words (lower case, punctuation read as spaces). The *copy* rate is the same
test applied to the source caption itself: what a system that copies the source would get (names
that are spelled alike in both languages, "pizza"), the floor below which nothing was learned.

Each sentence contributes `[correct, mentions]` rows, so the corpus accuracy is a ratio of sums
and bootstraps like every other metric (`eval.stats.Statistic`).
"""
from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from eval.stats import Statistic

KINDS = ("unseen", "seen")
_NON_WORD = re.compile(r"[\W_]+", re.UNICODE)


def normalise(text: str) -> str:
    """Lower case, every run of non-word characters one space, padded: `" red apple "`."""
    return f" {_NON_WORD.sub(' ', text.lower()).strip()} "


@dataclass(frozen=True)
class ConceptMatcher:
    """Whole-word lookup of each concept's English surface forms in a text."""

    forms: Mapping[str, tuple[str, ...]]  # concept id -> normalised forms

    @classmethod
    def from_names(cls, english: Mapping[str, Iterable[str]]) -> ConceptMatcher:
        forms = {cid: tuple(sorted({normalise(f) for f in names if normalise(f).strip()})) for cid, names in
                 english.items()}
        empty = sorted(cid for cid, f in forms.items() if not f)
        if empty:
            raise ValueError(f"concepts without an English name: {empty[:5]}")
        return cls(forms)

    def named(self, concept: str, text: str) -> bool:
        """True when `text` holds one of the concept's English forms as whole words."""
        padded = normalise(text)
        return any(form in padded for form in self.forms[concept])


def seen_concepts(caption_concepts: Iterable[Sequence[str]]) -> set[str]:
    """The concepts named by the given training captions (those with a human translation)."""
    return {c for concepts in caption_concepts for c in concepts}


def frequency_bin(count: int) -> str:
    """Log2 bins of a concept's training frequency: 0, 1, 2-3, 4-7, ..."""
    if count <= 0:
        return "0"
    low = 2 ** int(math.log2(count))
    return str(low) if low == 1 else f"{low}-{2 * low - 1}"


def _bin_order(label: str) -> int:
    return int(label.split("-")[0])


def concept_accuracy(hyps: Sequence[str], sources: Sequence[str], concepts: Sequence[Sequence[str]],
                     matcher: ConceptMatcher, seen: set[str],
                     train_frequency: Mapping[str, int]) -> tuple[dict, dict[str, Statistic]]:
    """Unseen- and seen-concept accuracy of `hyps` (aligned with `sources` and their concept ids).

    Returns the summary for `scores.json` — per kind mentions, correct, accuracy and the copy
    rate; accuracy by training frequency (`train_frequency`: training source captions naming each
    concept); per-sentence unseen/seen/correct ids — and per-sentence statistics
    (`concepts.unseen`, `concepts.seen`) for bootstrap intervals and paired tests."""
    if not (len(hyps) == len(sources) == len(concepts)):
        raise ValueError(f"{len(hyps)} translations, {len(sources)} sources, {len(concepts)} concept lists")
    unknown = sorted({c for cs in concepts for c in cs} - set(matcher.forms))
    if unknown:
        raise ValueError(f"concept ids missing from the inventory: {unknown[:5]}")
    rows = {kind: np.zeros((len(hyps), 2)) for kind in KINDS}
    copy = dict.fromkeys(KINDS, 0)
    bins: dict[str, list[int]] = {}
    sentences = []
    for i, (hyp, source, ids) in enumerate(zip(hyps, sources, concepts)):
        entry = {kind: [] for kind in KINDS} | {"correct": []}
        for concept in dict.fromkeys(ids):  # a concept named twice counts once
            kind = "seen" if concept in seen else "unseen"
            hit = matcher.named(concept, hyp)
            rows[kind][i] += (hit, 1)
            copy[kind] += matcher.named(concept, source)
            entry[kind].append(concept)
            if hit:
                entry["correct"].append(concept)
            tally = bins.setdefault(frequency_bin(train_frequency.get(concept, 0)), [0, 0])
            tally[0] += hit
            tally[1] += 1
        sentences.append(entry)
    summary = {}
    for kind in KINDS:
        correct, mentions = rows[kind].sum(0)
        summary[kind] = {"mentions": int(mentions), "correct": int(correct),
                         "accuracy": correct / mentions if mentions else None,
                         "copy": copy[kind] / mentions if mentions else None}
    summary["by_frequency"] = [{"train_captions": label, "mentions": m, "correct": c, "accuracy": c / m}
                               for label, (c, m) in sorted(bins.items(), key=lambda kv: _bin_order(kv[0]))]
    summary["sentences"] = sentences
    statistics = {f"concepts.{kind}": Statistic(rows[kind], _ratio_or_zero)
                  for kind in KINDS if rows[kind][:, 1].sum() > 0}
    return summary, statistics


def _ratio_or_zero(summed: np.ndarray) -> float:
    """Accuracy of a resample; a resample without mentions of the kind scores 0 (rare, small tests)."""
    return float(summed[0] / summed[1]) if summed[1] else 0.0
