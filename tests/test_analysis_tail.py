"""`python -m eval analyze RUN --parts tail` on micro runs of the concept world: its tables equal a
recount from the dataset, the run's scores.json and its saved round table (the human captions of
the hashed subset, a whole-word match of the concepts' English forms written here); a run without
a self-training round gets the frequency table and a note instead of the coverage."""
from __future__ import annotations

import json
import re
from collections import Counter

import pytest

import training
from concept_oracle import frequency_label, hashed_split
from data_prep.concepts import load_concepts
from data_prep.load import load_dataset_dir
from eval.__main__ import main as eval_main
from eval.analysis.summary import summary_lines
from tiny_run import tiny
from torch_threads import one_thread  # noqa: F401  (fixture)

pytestmark = pytest.mark.usefixtures("one_thread")
P, SEED = 0.1, 0


def train_run(cache, concept_world, out, *extra: str):
    assert training.main(tiny(cache, out, "--data-dir", str(concept_world), "--parallel-fraction", str(P),
                              "--seed", str(SEED), "--contrastive-weight", "0", "--pivot", "--pivot-threshold", "0",
                              "--steps", "12", "--checkpoint-every", "1000", "--eval-every", "1000",
                              "--eval-bootstrap", "0", *extra)) == 0
    return out


def analysed(run, tmp_path) -> dict:
    assert eval_main(["analyze", str(run), "--out", str(tmp_path / "an"), "--parts", "tail"]) == 0
    return json.loads((tmp_path / "an" / run.name / "analysis.json").read_text())["parts"]["tail"]


def words(text: str) -> str:
    return " " + " ".join(re.sub(r"[\W_]+", " ", text.lower()).split()) + " "


def recount(world, run) -> dict:
    """By training captions, by training pictures and by target coverage, counted from the files."""
    train = load_dataset_dir(world)["train"]
    english = {c.id: [words(e) for e in c.english] for c in load_concepts(world).concepts}
    human, _, _ = hashed_split(train, P, SEED)
    targets = {(i, j): train[i]["parallel"][j] for i, j in human}
    rounds = sorted((run / "targets").glob("round_*.jsonl"))
    for line in rounds[-1].read_text().splitlines():
        record = json.loads(line)
        targets[(record["row"], record["caption"])] = record["text"]
    named, total, pictures = Counter(), Counter(), Counter()
    for i, row in enumerate(train):
        shown = [set(ids) for source, ids in zip(row["source"], row["source_concepts"]) if source.strip()]
        pictures.update(set().union(*shown))
        for j, (source, ids) in enumerate(zip(row["source"], row["source_concepts"])):
            if source.strip():
                for c in set(ids):
                    total[c] += 1
                    named[c] += (i, j) in targets and any(e in words(targets[(i, j)]) for e in english[c])
    frequency, by_pictures, coverage = Counter(), Counter(), Counter()
    for sentence in json.loads((run / "eval" / "scores.json").read_text())["sentences"]:
        for c in sentence["concepts"]["unseen"]:
            right = c in sentence["concepts"]["correct"]
            band = frequency_label(total[c]) if total[c] else "0"
            cover = ("no training caption" if not total[c] else
                     "at least half" if 2 * named[c] >= total[c] else "under half")
            shown = frequency_label(pictures[c]) if pictures[c] else "0"
            for table, key in ((frequency, band), (by_pictures, shown), (coverage, cover)):
                table[(key, "mentions")] += 1
                table[(key, "right")] += right
    return {"frequency": frequency, "pictures": by_pictures, "coverage": coverage}


def test_the_tail_tables_equal_a_recount(cache, concept_world, tmp_path):
    run = train_run(cache, concept_world, tmp_path / "run", "--self-train-rounds", "1", "--self-train-start", "0.5")
    tail, oracle = analysed(run, tmp_path), recount(concept_world, run)
    assert tail["target_table"] == "round_01.jsonl"
    assert tail["unseen_mentions"] == sum(v for (_, kind), v in oracle["coverage"].items() if kind == "mentions") > 0
    assert {(r["training_captions"], k): r[k] for r in tail["by_training_captions"] for k in ("mentions", "right")} \
        == {k: v for k, v in oracle["frequency"].items() if oracle["frequency"][(k[0], "mentions")]}
    assert {(r["training_pictures"], k): r[k] for r in tail["by_training_pictures"] for k in ("mentions", "right")} \
        == {k: v for k, v in oracle["pictures"].items() if oracle["pictures"][(k[0], "mentions")]}
    assert {(c, k): v[k] for c, v in tail["by_target_coverage"].items() for k in ("mentions", "right")} \
        == {k: v for k, v in oracle["coverage"].items() if oracle["coverage"][(k[0], "mentions")]}
    assert sum(oracle["coverage"][(c, "mentions")] for c in ("under half", "at least half")) > 0  # a real test
    assert [label for label, _ in summary_lines({"parts": {"tail": tail}})] == [
        "unseen concepts named, by training captions", "unseen concepts named, by training pictures",
        "unseen concepts named, by how often the final targets name them"]


def test_without_a_round_the_coverage_is_not_guessed(cache, concept_world, tmp_path):
    run = train_run(cache, concept_world, tmp_path / "run", "--self-train-rounds", "0")
    tail = analysed(run, tmp_path)
    assert tail["target_table"] is None and tail["by_target_coverage"] is None
    assert "saved no self-training round" in tail["note"] and tail["by_training_captions"]
