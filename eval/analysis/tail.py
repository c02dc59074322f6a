"""Where a run loses the concepts no human translation showed (`--parts tail`).

For every mention of an unseen concept in the test captions (`eval/scores.json`, `concepts` of each
sentence): how many training source captions name the concept, and in how many of those the run's
final targets hold one of its English forms (`eval.concepts.ConceptMatcher`, as the accuracy does).
The final targets are the human translations the run kept (`--parallel-fraction`, `--seed`) and its
last self-training round's table (`RUN/targets/round_NN.jsonl`, which carries the pivot targets it
kept); a run without a round saved none, and the part says so. Reported: the student's accuracy on
these mentions by training captions and by training pictures (log2 bins: a concept of one picture
comes with that picture's other objects in every caption, so co-occurrence alone cannot single out
its name) and by coverage — the concept is in no training
caption, in under half of its captions' targets, or in at least half — and, for the under-covered
concepts, what their captions' targets were: none, or of which origin. docs/ablation.md ("Levers for
the tail") reads it.
"""
from __future__ import annotations

from collections import Counter

from data_prep.collate import scan_usable
from data_prep.targets import TargetTable
from eval.analysis.plots import Plot
from eval.concept_scores import COLUMN, TrainingConcepts
from eval.concepts import bin_order, frequency_bin
from models.run_dir import RunDir

COVERAGE = ("no training caption", "under half", "at least half")


def final_targets(ctx, train, rows) -> tuple[TargetTable, str | None]:
    """The run's human targets and its last round's table, with the round file's name (None: no round)."""
    human = TargetTable.from_dataset(train, rows, fraction=ctx.run.config.get("parallel_fraction"),
                                     seed=int(ctx.run.config.get("seed", 0)))
    rounds = sorted(RunDir(ctx.run.path).targets_dir.glob("round_*.jsonl"))
    if not rounds:
        return human, None
    return human.with_pseudo(dict(TargetTable.load(rounds[-1]))), rounds[-1].name


def analyse(ctx) -> tuple[dict, list[Plot]]:
    train = ctx.dsd["train"]
    if COLUMN not in train.column_names or not ctx.run.sentences or "concepts" not in ctx.run.sentences[0]:
        return {"note": "the run's dataset carries no concept ids: no unseen concepts to follow"}, []
    rows = scan_usable(train, need_english=1, show_progress=False).usable
    targets, round_file = final_targets(ctx, train, rows)
    training = TrainingConcepts.of_run(ctx.run.config["data_path"], train, rows, targets.human_keys())
    matcher = training.matcher()
    captions: dict[str, list] = {}  # concept -> the targets of the training captions naming it (None: no target)
    pictures: Counter = Counter()  # concept -> the training pictures whose captions name it
    for row, item in zip(rows, train.select(rows).select_columns(["source", COLUMN])):
        named_here = set()
        for j, (source, ids) in enumerate(zip(item["source"], item[COLUMN])):
            if source.strip():
                named_here.update(ids)
                for concept in set(ids):
                    captions.setdefault(concept, []).append(targets.get((row, j)))
        pictures.update(named_here)

    def coverage(concept: str) -> str:
        given = captions.get(concept, [])
        if not given:
            return COVERAGE[0]
        named = sum(t is not None and matcher.named(concept, t.text) for t in given)
        return COVERAGE[2] if 2 * named >= len(given) else COVERAGE[1]

    covered = {c: coverage(c) for s in ctx.run.sentences for c in s["concepts"]["unseen"]}  # once per concept
    by_frequency, by_pictures, by_coverage, origins = Counter(), Counter(), Counter(), Counter()
    right_frequency, right_pictures, right_coverage = Counter(), Counter(), Counter()
    for sentence in ctx.run.sentences:
        for concept in sentence["concepts"]["unseen"]:
            right = concept in sentence["concepts"]["correct"]
            band, cover = frequency_bin(len(captions.get(concept, []))), covered[concept]
            by_frequency[band] += 1
            right_frequency[band] += right
            by_pictures[frequency_bin(pictures[concept])] += 1
            right_pictures[frequency_bin(pictures[concept])] += right
            by_coverage[cover] += 1
            right_coverage[cover] += right
    for concept, cover in covered.items():
        if cover == COVERAGE[1]:
            origins.update("none" if t is None else t.origin for t in captions[concept])

    def share(right: Counter, total: Counter, key: str) -> dict:
        return {"mentions": total[key], "right": right[key], "accuracy": right[key] / total[key]}

    result = {
        "unseen_mentions": sum(by_coverage.values()),
        "target_table": round_file,
        "by_training_captions": [{"training_captions": b, **share(right_frequency, by_frequency, b)}
                                 for b in sorted(by_frequency, key=bin_order)],
        "by_training_pictures": [{"training_pictures": b, **share(right_pictures, by_pictures, b)}
                                 for b in sorted(by_pictures, key=bin_order)],
        "by_target_coverage": ({c: share(right_coverage, by_coverage, c) for c in COVERAGE if by_coverage[c]}
                               if round_file else None),
        "under_covered_caption_targets": dict(origins) if round_file else None,
    }
    if round_file is None:
        result["note"] = "the run saved no self-training round: its pivot targets are not on disk, so coverage is not shown"
    return result, []
