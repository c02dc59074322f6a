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
from collections.abc import Iterable, Mapping, Sequence, Set
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


def bin_order(label: str) -> int:
    """Sort key of a `frequency_bin` label: its lower bound."""
    return int(label.split("-")[0])


def concept_accuracy(hyps: Sequence[str], sources: Sequence[str], concepts: Sequence[Sequence[str]],
                     matcher: ConceptMatcher, seen: Set[str],
                     train_frequency: Mapping[str, int]) -> tuple[dict, dict[str, Statistic]]:
    """Unseen- and seen-concept accuracy of `hyps` (aligned with `sources` and their concept ids).

    Returns the summary for `scores.json` — per kind mentions, correct, accuracy and the copy
    rate; accuracy by training frequency (`train_frequency`: training source captions naming each
    concept), over all mentions and over the unseen ones; per-sentence unseen/seen/correct ids —
    and per-sentence statistics (`concepts.unseen`, `concepts.seen`; `sentence_statistic`) for
    bootstrap intervals and paired tests."""
    if not (len(hyps) == len(sources) == len(concepts)):
        raise ValueError(f"{len(hyps)} translations, {len(sources)} sources, {len(concepts)} concept lists")
    unknown = sorted({c for cs in concepts for c in cs} - set(matcher.forms))
    if unknown:
        raise ValueError(f"concept ids missing from the inventory: {unknown[:5]}")
    counts = {kind: [0, 0, 0] for kind in KINDS}  # correct, mentions, copied
    bins: dict[str, dict[str, int]] = {}
    sentences = []
    for hyp, source, ids in zip(hyps, sources, concepts):
        entry = {kind: [] for kind in KINDS} | {"correct": []}
        for concept in dict.fromkeys(ids):  # a concept named twice counts once
            kind = "seen" if concept in seen else "unseen"
            hit = matcher.named(concept, hyp)
            counts[kind][0] += hit
            counts[kind][1] += 1
            counts[kind][2] += matcher.named(concept, source)
            entry[kind].append(concept)
            if hit:
                entry["correct"].append(concept)
            tally = bins.setdefault(frequency_bin(train_frequency.get(concept, 0)),
                                    dict.fromkeys(("mentions", "correct", "unseen_mentions", "unseen_correct"), 0))
            tally["mentions"] += 1
            tally["correct"] += hit
            tally["unseen_mentions"] += kind == "unseen"
            tally["unseen_correct"] += hit and kind == "unseen"
        sentences.append(entry)
    summary = {}
    for kind in KINDS:
        correct, mentions, copied = counts[kind]
        summary[kind] = {"mentions": mentions, "correct": correct,
                         "accuracy": correct / mentions if mentions else None,
                         "copy": copied / mentions if mentions else None}
    summary["by_frequency"] = [{"train_captions": label, **tally, "accuracy": tally["correct"] / tally["mentions"],
                                "unseen_accuracy": (tally["unseen_correct"] / tally["unseen_mentions"]
                                                    if tally["unseen_mentions"] else None)}
                               for label, tally in sorted(bins.items(), key=lambda kv: bin_order(kv[0]))]
    summary["sentences"] = sentences
    statistics = {f"concepts.{kind}": s for kind in KINDS if (s := sentence_statistic(sentences, kind)) is not None}
    return summary, statistics


def sentence_statistic(sentences: Sequence[Mapping[str, Sequence[str]]], kind: str) -> Statistic | None:
    """`[correct, mentions]` rows of one kind from per-sentence entries (`{"unseen", "seen",
    "correct"}`, as `concept_accuracy` and scores.json hold them): the statistic the intervals and
    paired tests resample; None when no sentence mentions a concept of that kind."""
    rows = np.array([[len(set(e[kind]) & set(e["correct"])), len(e[kind])] for e in sentences], dtype=np.float64)
    if not len(rows) or rows[:, 1].sum() == 0:
        return None
    return Statistic(rows, _ratio_or_zero)


def with_kinds_of(sentences: Sequence[Mapping[str, Sequence[str]]],
                  reference: Sequence[Mapping[str, Sequence[str]]]) -> list[dict]:
    """`sentences` with the unseen/seen split of `reference` (the same sentences, scored in a run
    whose training showed other translations): the concepts stay, their kind comes from `reference`."""
    if len(sentences) != len(reference):
        raise ValueError(f"{len(sentences)} sentences, {len(reference)} in the reference")
    out = []
    for entry, ref in zip(sentences, reference):
        named = [*entry["unseen"], *entry["seen"]]
        if set(named) != {*ref["unseen"], *ref["seen"]}:
            raise ValueError("the sentences name other concepts than the reference's: not the same test sentences")
        out.append({"unseen": [c for c in named if c in ref["unseen"]], "seen": [c for c in named if c in ref["seen"]],
                    "correct": list(entry["correct"])})
    return out


def _ratio_or_zero(summed: np.ndarray) -> float:
    """Accuracy of a resample; a resample without mentions of the kind scores 0 (rare, small tests)."""
    return float(summed[0] / summed[1]) if summed[1] else 0.0
