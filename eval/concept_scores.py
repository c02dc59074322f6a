"""The `concepts` section of a run's `eval/scores.json`: unseen- and seen-concept accuracy of the
trained student (`eval.concepts`) with seeded bootstrap intervals, the same for the untrained
student, the paired test against it, accuracy by training frequency, and per-sentence ids.

What the evaluation needs from training is passed in explicitly as `TrainingConcepts`: the
dataset's concept inventory, the concepts named by the training captions that have a human
translation in this run (the *seen* concepts) and each concept's training frequency (training
source captions naming it, translated or not). A dataset without the `source_concepts` column
has none, and its scores.json no section (docs/eval.md).
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, NotRequired

from pydantic import FiniteFloat
from typing_extensions import TypedDict

from data_prep.concepts import ConceptInventory, load_concepts
from data_prep.errors import InputError
from eval import stats
from eval.concepts import KINDS, ConceptMatcher, concept_accuracy

if TYPE_CHECKING:
    import datasets

COLUMN = "source_concepts"


class Interval(TypedDict):
    low: FiniteFloat
    high: FiniteFloat
    mean: FiniteFloat


class KindAccuracy(TypedDict):
    """One kind (unseen or seen) of one system: mentions, how many the translation names, the rate
    a copy of the source would get."""

    mentions: int
    correct: int
    accuracy: FiniteFloat | None  # None without mentions
    copy: FiniteFloat | None
    ci: NotRequired[Interval]


class FrequencyBin(TypedDict):
    train_captions: str  # log2 bin of training source captions naming the concept: "0", "1", "2-3", ...
    mentions: int
    correct: int
    accuracy: FiniteFloat
    unseen_mentions: int
    unseen_correct: int
    unseen_accuracy: FiniteFloat | None


class ConceptScores(TypedDict):
    unseen: KindAccuracy
    seen: KindAccuracy
    by_frequency: list[FrequencyBin]


class Training(TypedDict):
    seen_concepts: int  # concepts named by the training captions with a human translation
    translated_captions: int  # training captions with a human translation in this run
    captions: int  # training source captions
    concepts_named: int  # concepts named by any training caption


class ConceptSection(ConceptScores, total=False):
    """scores.json `concepts`."""

    training: Training
    inventory: int  # concepts in the dataset's concepts.json
    untrained: ConceptScores
    paired: dict[str, dict[str, FiniteFloat | int | None]]  # kind -> eval.stats.paired_bootstrap


class SentenceConcepts(TypedDict):
    """A scores.json sentence's concept ids: those it names, by kind, and those its translation names."""

    unseen: list[str]
    seen: list[str]
    correct: list[str]


@dataclass(frozen=True)
class TrainingConcepts:
    """What concept accuracy needs from a run's training (built by the trainer, read by the evaluation)."""

    inventory: ConceptInventory
    seen: frozenset[str]  # concepts named by a training caption with a human translation
    frequency: Mapping[str, int]  # concept -> training source captions naming it
    translated_captions: int
    captions: int

    @classmethod
    def of_run(cls, dataset_dir: str | Path, train: datasets.Dataset, rows: Sequence[int],
               human_keys: Collection[tuple[int, int]]) -> TrainingConcepts | None:
        """From the usable training `rows` and the (row, caption index) keys of the captions with a
        human translation in this run; None when the dataset's captions carry no concept ids. A
        dataset with concept ids but no concepts.json is an `InputError` (one line)."""
        if COLUMN not in train.column_names:
            return None
        try:
            inventory = load_concepts(dataset_dir)
        except InputError as exc:
            raise InputError(f"{exc}; its captions carry concept ids ({COLUMN}), and concept accuracy needs the "
                             "English names of the concepts") from None
        seen, frequency, captions = set(), Counter(), 0
        for row, item in zip(rows, train.select(rows).select_columns(["source", COLUMN])):
            for j, (source, ids) in enumerate(zip(item["source"], item[COLUMN])):
                if not source.strip():
                    continue
                captions += 1
                frequency.update(set(ids))
                if (row, j) in human_keys:
                    seen.update(ids)
        return cls(inventory, frozenset(seen), dict(frequency), len(human_keys), captions)

    @classmethod
    def at_fraction(cls, dataset_dir: str | Path, train: datasets.Dataset, rows: Sequence[int],
                    fraction: float | None, seed: int) -> TrainingConcepts | None:
        """`of_run` for a run at `--parallel-fraction fraction --seed seed`: its human translations are
        the hashed subset train.py draws (`data_prep.targets.TargetTable.from_dataset`). ValueError
        when the dataset has fewer translations than the fraction asks for."""
        from data_prep.targets import TargetTable

        human = TargetTable.from_dataset(train, rows, fraction=fraction, seed=seed)
        return cls.of_run(dataset_dir, train, rows, human.human_keys())

    def matcher(self) -> ConceptMatcher:
        return ConceptMatcher.from_names({c.id: c.english for c in self.inventory.concepts})


def _with_intervals(summary: dict, statistics: dict[str, stats.Statistic], idxs, seed: int) -> None:
    for kind in KINDS:
        if (statistic := statistics.get(f"concepts.{kind}")) is not None:
            ci = stats.bootstrap_ci(statistic, idxs=idxs, seed=seed)
            summary[kind]["ci"] = {"low": ci["low"], "high": ci["high"], "mean": ci["mean"]}


def concept_section(hyps: Sequence[str], sources: Sequence[str], concepts: Sequence[Sequence[str]],
                    training: TrainingConcepts, *, untrained_hyps: Sequence[str] | None = None,
                    bootstrap: int = stats.DEFAULT_SAMPLES, seed: int = stats.DEFAULT_SEED
                    ) -> tuple[ConceptSection, list[SentenceConcepts]]:
    """The scores.json section and the per-sentence ids (aligned with `hyps`). Intervals and the
    paired test draw the resamples `eval.score` draws with the same `bootstrap` and `seed`, so they
    describe the same resampled corpora as the other metrics; `bootstrap` 0: no interval, no test."""
    matcher = training.matcher()
    section, statistics = concept_accuracy(hyps, sources, concepts, matcher, training.seen, training.frequency)
    sentences = section.pop("sentences")
    idxs = stats.resample_indices(len(hyps), bootstrap, seed) if bootstrap > 0 and hyps else None
    if idxs is not None:
        _with_intervals(section, statistics, idxs, seed)
    section["training"] = {"seen_concepts": len(training.seen), "translated_captions": training.translated_captions,
                           "captions": training.captions, "concepts_named": len(training.frequency)}
    section["inventory"] = len(training.inventory.concepts)
    if untrained_hyps is not None:
        base, base_statistics = concept_accuracy(untrained_hyps, sources, concepts, matcher, training.seen,
                                                 training.frequency)
        base.pop("sentences")
        if idxs is not None:
            _with_intervals(base, base_statistics, idxs, seed)
            section["paired"] = {kind: stats.paired_bootstrap(statistics[f"concepts.{kind}"],
                                                              base_statistics[f"concepts.{kind}"], idxs=idxs, seed=seed)
                                 for kind in KINDS if f"concepts.{kind}" in statistics}
        section["untrained"] = base
    return section, sentences


def summary_line(section: ConceptSection) -> str:
    """The line of a run's printed summary: unseen-concept accuracy x/y (copy, untrained), seen x/y."""
    def part(kind: str) -> str:
        k = section[kind]
        if not k["mentions"]:
            return "no mentions"
        extra = [f"copy {k['copy']:.3f}"]
        if "untrained" in section:
            extra.append(f"untrained {section['untrained'][kind]['correct']}/{k['mentions']}")
        return f"{k['correct']}/{k['mentions']} = {k['accuracy']:.3f} ({', '.join(extra)})"

    return f"  unseen-concept accuracy {part('unseen')}; seen {part('seen')}"
