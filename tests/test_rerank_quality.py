"""benchmarks/rerank_quality.py on a micro run of the concept world: every system's unseen- and
seen-concept counts equal a regex recount (tests/concept_oracle.py) with the run's hashed subset of
human translations recounted from the dataset, greedy's equal the run's own eval/scores.json, the
paired difference against greedy is the difference of the accuracies, and a dataset without concept
ids gets no concept columns."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

import training
from concept_oracle import hashed_split, recount
from data_prep.concepts import load_concepts
from data_prep.load import load_dataset_dir
from eval.concept_scores import COLUMN
from tiny_run import tiny
from torch_threads import one_thread  # noqa: F401  (fixture)

pytestmark = [pytest.mark.benchmark, pytest.mark.usefixtures("one_thread")]
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

P, SEED, BOOTSTRAP = 0.1, 1, 50


@pytest.fixture(scope="module")
def bench():
    import rerank_quality

    return rerank_quality


@pytest.fixture(scope="module")
def concept_run(tmp_path_factory, cache, concept_world) -> Path:
    """A micro run on the concept world, evaluated (greedy) with concept accuracy in its scores.json:
    token CE on the human and image-pivoted targets, 120 steps (~13 s), enough to name concepts of
    both kinds (at 60 steps it names no unseen one)."""
    out = tmp_path_factory.mktemp("rerank-run") / "run"
    assert training.main(tiny(cache, out, "--data-dir", str(concept_world), "--parallel-fraction", str(P),
                              "--seed", str(SEED), "--contrastive-weight", "0", "--pivot", "--pivot-threshold", "0",
                              "--steps", "120", "--warmup-steps", "5", "--lr", "5e-3", "--checkpoint-every", "1000",
                              "--eval-every", "1000", "--eval-bootstrap", "0", "--no-eval-untrained")) == 0
    return out


@pytest.fixture(scope="module")
def result(bench, concept_run, tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("bench") / "r.json"
    assert bench.main(["--run", str(concept_run), "--sizes", "3", "--betas", "0,1", "--bootstrap", str(BOOTSTRAP),
                       "--out", str(out)]) == 0
    return json.loads(out.read_text(encoding="utf-8"))


def test_the_concept_columns_equal_a_recount(result, concept_run, concept_world):
    dsd = load_dataset_dir(concept_world)
    test = [(s, ids) for r in dsd["test"] for s, ids, t in zip(r["source"], r[COLUMN], r["parallel"])
            if s.strip() and t.strip()]
    _, seen, _ = hashed_split(dsd["train"], P, SEED)
    english = {c.id: c.english for c in load_concepts(concept_world).concepts}
    assert result["n_sentences"] == len(test)
    assert result["concepts"]["seen_concepts"] == len(seen)
    systems = result["systems"]
    assert list(systems) == ["greedy", "beam 3", "rerank clip, n-best 3, beta 0.0", "rerank clip, n-best 3, beta 1.0"]
    for name, system in systems.items():
        oracle = recount(system["hypotheses"], [ids for _, ids in test], seen, english)
        for kind in ("unseen", "seen"):
            correct, mentions = oracle[kind]
            got = system["concepts"][kind]
            assert (got["correct"], got["mentions"]) == (correct, mentions), (name, kind)
            assert got["accuracy"] == pytest.approx(correct / mentions)
    for kind in ("unseen", "seen"):  # both kinds mentioned and named: the recount is not of zeros
        assert any(system["concepts"][kind]["correct"] for system in systems.values()), kind
    scores = json.loads((concept_run / "eval" / "scores.json").read_text())["concepts"]
    for kind in ("unseen", "seen"):
        assert systems["greedy"]["concepts"][kind] == {k: scores[kind][k] for k in ("mentions", "correct", "accuracy")}


def test_the_paired_difference_is_against_greedy(result):
    greedy = result["systems"]["greedy"]["concepts"]
    assert "paired_vs_greedy" not in greedy
    for system in list(result["systems"].values())[1:]:
        paired = system["concepts"]["paired_vs_greedy"]["unseen"]
        assert paired["delta"] == pytest.approx(system["concepts"]["unseen"]["accuracy"] - greedy["unseen"]["accuracy"])
        assert paired["delta_low"] <= paired["delta"] <= paired["delta_high"]
        assert paired["n_samples"] == BOOTSTRAP
    # beta 0 is beam search: the same translations, no difference in any resample
    beam0 = result["systems"]["rerank clip, n-best 3, beta 0.0"]
    assert beam0["hypotheses"] == result["systems"]["beam 3"]["hypotheses"]


def test_without_concept_ids_no_concept_columns(bench, concept_run, concept_world):
    config = json.loads((concept_run / "config.json").read_text())
    train = load_dataset_dir(concept_world)["train"]
    assert bench.training_concepts(str(concept_world), train.remove_columns(COLUMN), config) is None
    assert bench.training_concepts(str(concept_world), train, config).seen == hashed_split(train, P, SEED)[1]
