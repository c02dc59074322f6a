"""Unseen/seen concept accuracy where a user reads results, end to end on a tiny long-tail world
(tests/conftest.py `concept_world`): a micro run's scores.json `concepts` section equals a recount
from hyp.txt, the dataset and the run's hashed subset of human translations (tests/concept_oracle.py),
its intervals a bootstrap written here; the printed summary carries it; the report renders its
section, figure and paired tests; a dataset without concept ids has none."""
from __future__ import annotations

import json
import shutil
from collections import Counter

import datasets
import numpy as np
import pytest

import training
from concept_oracle import hashed_split, recount
from data_prep.concepts import load_concepts
from data_prep.errors import InputError
from data_prep.load import load_dataset_dir
from eval.concept_scores import TrainingConcepts
from eval.report import build_report
from tiny_run import tiny
from torch_threads import one_thread  # noqa: F401  (fixture)

pytestmark = pytest.mark.usefixtures("one_thread")
P, SEED, BOOTSTRAP = 0.1, 0, 100
KINDS = ("unseen", "seen")


@pytest.fixture(scope="module")
def concept_run(tmp_path_factory, cache, concept_world):
    """A micro run on the concept world with 10% of its training captions translated (~15 s)."""
    out = tmp_path_factory.mktemp("concept-run") / "run"
    assert training.main(tiny(cache, out, "--data-dir", str(concept_world), "--parallel-fraction", str(P),
                              "--steps", "40", "--lr", "5e-3", "--warmup-steps", "5", "--checkpoint-every", "1000",
                              "--eval-every", "1000", "--eval-bootstrap", str(BOOTSTRAP), "--seed", str(SEED))) == 0
    return out


def expected(world, hyps: list[str]) -> dict:
    """The recount: the hashed subset of P of the training captions (lowest `caption_hash` first),
    the concepts it names, every concept's training captions, the test captions' concepts."""
    dsd = load_dataset_dir(world)
    train = dsd["train"]
    human, seen, captions = hashed_split(train, P, SEED)
    frequency = Counter(c for r in train for source, ids in zip(r["source"], r["source_concepts"]) if source.strip()
                        for c in set(ids))
    sources, concepts = [], []
    for r in dsd["test"]:
        for source, ids in zip(r["source"], r["source_concepts"]):
            if source.strip():
                sources.append(source)
                concepts.append(ids)
    english = {c.id: c.english for c in load_concepts(world).concepts}
    oracle = recount(hyps, concepts, seen, english, sources=sources, frequency=frequency)
    oracle.update(training={"seen_concepts": len(seen), "translated_captions": len(human), "captions": captions,
                            "concepts_named": len(frequency)}, inventory=len(english))
    return oracle


def bootstrap_interval(sentences: list[dict], kind: str) -> tuple[float, float]:
    """sacreBLEU's resampling and order statistics, over per-sentence [correct, mentions] of one kind."""
    rows = np.array([[len(set(e[kind]) & set(e["correct"])), len(e[kind])] for e in sentences], dtype=float)
    idxs = np.random.default_rng(12345).choice(len(rows), size=(BOOTSTRAP, len(rows)), replace=True)
    sums = rows[idxs].sum(1)
    ratios = np.sort(np.where(sums[:, 1] > 0, sums[:, 0] / np.maximum(sums[:, 1], 1), 0.0))
    return ratios[BOOTSTRAP // 40], ratios[BOOTSTRAP - BOOTSTRAP // 40 - 1]


def check_against(section: dict, oracle: dict) -> None:
    for kind in KINDS:
        correct, mentions = oracle[kind]
        assert (section[kind]["correct"], section[kind]["mentions"]) == (correct, mentions), kind
        assert section[kind]["copy"] == pytest.approx(oracle["copy"][kind] / mentions)
    assert {b["train_captions"]: [b["correct"], b["mentions"]] for b in section["by_frequency"]} == oracle["bins"]


def test_scores_json_concepts_equal_the_recount(concept_run, concept_world):
    scores = json.loads((concept_run / "eval" / "scores.json").read_text())
    section = scores["concepts"]
    oracle = expected(concept_world, (concept_run / "eval" / "hyp.txt").read_text().splitlines())
    assert oracle["unseen"][1] > 0 and oracle["seen"][1] > 0  # the world and P give both kinds
    check_against(section, oracle)
    assert [s["concepts"] for s in scores["sentences"]] == oracle["sentences"]
    assert section["training"] == oracle["training"] and section["inventory"] == oracle["inventory"] == 10

    untrained = expected(concept_world, (concept_run / "eval" / "untrained_hyp.txt").read_text().splitlines())
    check_against(section["untrained"], untrained)
    assert oracle["seen"][0] + oracle["unseen"][0] + untrained["seen"][0] + untrained["unseen"][0] > 0, \
        "no translation names any concept: the comparison above would not test the matching"

    for kind in KINDS:
        low, high = bootstrap_interval(oracle["sentences"], kind)
        assert (section[kind]["ci"]["low"], section[kind]["ci"]["high"]) == (pytest.approx(low), pytest.approx(high))
        assert section["untrained"][kind]["ci"]["low"] <= section["untrained"][kind]["accuracy"]
        test = section["paired"][kind]
        assert test["delta"] == pytest.approx(section[kind]["accuracy"] - section["untrained"][kind]["accuracy"])
        assert 0 < test["p_value"] <= 1 and test["n_samples"] == BOOTSTRAP

    log = (concept_run / "train.log").read_text()
    correct, mentions = oracle["unseen"]
    assert f"unseen-concept accuracy {correct}/{mentions} = " in log
    assert f"; seen {oracle['seen'][0]}/{oracle['seen'][1]} = " in log


def test_the_runs_report_has_the_concept_section(concept_run):
    html = (concept_run / "report.html").read_text()
    assert 'id="concepts-table"' in html and 'alt="concept accuracy by training frequency"' in html
    assert "<th>unseen concepts</th>" in html and "<th>seen concepts</th>" in html  # columns of the system table
    report = json.loads((concept_run / "report.json").read_text())
    assert set(report["concepts"]) == {"run"} and {"concepts.unseen", "concepts.seen"} <= set(report["columns"])
    assert "## Concepts: did it translate the words it never saw translated?" in (concept_run / "report.md").read_text()


def test_runs_pair_on_concepts_only_with_the_same_split(concept_run, tmp_path):
    def copy(name, move_seen_to_unseen=False):
        run = tmp_path / name
        (run / "eval").mkdir(parents=True)
        shutil.copy(concept_run / "config.json", run / "config.json")
        scores = json.loads((concept_run / "eval" / "scores.json").read_text())
        scores["run_id"] = name
        if move_seen_to_unseen:  # as if its training had shown no translation
            for s in scores["sentences"]:
                s["concepts"] = {"unseen": s["concepts"]["unseen"] + s["concepts"]["seen"], "seen": [],
                                 "correct": s["concepts"]["correct"]}
        (run / "eval" / "scores.json").write_text(json.dumps(scores))
        return run

    report = build_report([concept_run, copy("same"), copy("other", True)], tmp_path / "r.html", examples=0,
                          heatmaps=0)
    same = report["paired_vs_baseline"]["same"]["tests"]
    for kind in KINDS:
        assert same[f"concepts.{kind}"]["delta"] == 0 and same[f"concepts.{kind}"]["p_value"] == 1.0
        assert "another unseen/seen split" in report["paired_vs_baseline"]["other"]["tests"][f"concepts.{kind}"]["reason"]
    assert "chrf" in report["paired_vs_baseline"]["other"]["tests"]  # the other metrics still pair
    assert report["concepts"]["same"] == report["concepts"]["run"]
    assert "another unseen/seen split" in (tmp_path / "r.md").read_text()


def test_training_concepts_need_the_column_and_read_the_inventory(concept_world, tmp_path):
    assert TrainingConcepts.of_run(tmp_path, datasets.Dataset.from_dict({"source": [["un perro"]]}), [0], set()) is None
    train = load_dataset_dir(concept_world)["train"]
    with pytest.raises(InputError, match="no concept inventory.*carry concept ids"):
        TrainingConcepts.of_run(tmp_path, train, list(range(len(train))), set())
    got = TrainingConcepts.of_run(concept_world, train, [0], {(0, 1)})
    assert got.seen == set(train[0]["source_concepts"][1]) and got.captions == len(train[0]["source"])
