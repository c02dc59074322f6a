"""Unseen/seen concept accuracy (eval.concepts) against a recount with `re` word boundaries
(tests/concept_oracle.py), and its statistics against the bootstrap machinery."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from concept_oracle import recount
from eval.concepts import (ConceptMatcher, concept_accuracy, frequency_bin, seen_concepts, sentence_statistic,
                           with_kinds_of)
from eval.stats import Statistic, bootstrap_ci, paired_bootstrap, stratified_paired_bootstrap

NAMES = {"apple": ["red apple", "red apples"], "dog": ["dog"], "mouth": ["face with hand over mouth"],
         "pizza": ["pizza"], "t": ["T-shirt"]}
FREQUENCY = {"apple": 5, "dog": 1, "pizza": 2, "mouth": 130}  # "t": never named in training


def test_counts_seen_and_unseen_mentions_and_the_copy_floor():
    hyps = ["a red apple beside a dog.", "A T-shirt!", "a hotdog and pizza", "face with hand over mouthwash"]
    sources = ["una manzana roja y un perro", "una camiseta", "un perrito y una pizza", "cara con mano"]
    concepts = [["apple", "dog"], ["t"], ["dog", "pizza"], ["mouth"]]
    seen = seen_concepts([["apple"], ["pizza", "t"]])
    summary, stats = concept_accuracy(hyps, sources, concepts, ConceptMatcher.from_names(NAMES), seen,
                                      {"apple": 5, "dog": 1, "pizza": 2, "t": 0, "mouth": 9})
    # seen: apple (hit), t (hit), pizza (hit); unseen: dog (hit), dog in "hotdog" (miss), mouth in "mouthwash" (miss)
    assert summary["seen"] == {"mentions": 3, "correct": 3, "accuracy": 1.0, "copy": 1 / 3}
    assert summary["unseen"]["mentions"] == 3 and summary["unseen"]["correct"] == 1
    assert summary["unseen"]["copy"] == 0.0
    oracle = recount(hyps, concepts, seen, NAMES)
    assert (oracle["seen"], oracle["unseen"]) == ([3, 3], [1, 3])
    assert summary["sentences"][2] == {"unseen": ["dog"], "seen": ["pizza"], "correct": ["pizza"]}
    by = {b["train_captions"]: (b["correct"], b["mentions"]) for b in summary["by_frequency"]}
    assert by == {"0": (1, 1), "1": (1, 2), "2-3": (1, 1), "4-7": (1, 1), "8-15": (0, 1)}
    assert stats["concepts.unseen"].score == pytest.approx(1 / 3)
    ci = bootstrap_ci(stats["concepts.seen"], n_samples=50)
    assert ci["low"] == ci["high"] == 1.0


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.lists(st.sampled_from(sorted(NAMES)), max_size=3),
                          st.lists(st.sampled_from(["a", "red", "apple", "apples", "dog", "hotdog", "pizza", "t",
                                                    "shirt", "-", "face", "with", "hand", "over", "mouth", "!"]),
                                   max_size=12)), min_size=1, max_size=8),
       st.sets(st.sampled_from(sorted(NAMES))))
def test_agrees_with_the_regex_recount(items, seen):
    concepts = [ids for ids, _ in items]
    hyps = [" ".join(words) for _, words in items]
    sources = hyps[::-1]
    summary, statistics = concept_accuracy(hyps, sources, concepts, ConceptMatcher.from_names(NAMES), seen, FREQUENCY)
    oracle = recount(hyps, concepts, seen, NAMES, sources=sources, frequency=FREQUENCY)
    for kind in ("seen", "unseen"):
        correct, mentions = oracle[kind]
        assert [summary[kind]["correct"], summary[kind]["mentions"]] == oracle[kind]
        assert summary[kind]["copy"] == (oracle["copy"][kind] / mentions if mentions else None)
        if mentions:  # the statistic the intervals resample is the same ratio, rebuilt from the per-sentence ids
            assert statistics[f"concepts.{kind}"].score == pytest.approx(correct / mentions)
            assert sentence_statistic(summary["sentences"], kind).stats.tolist() == \
                statistics[f"concepts.{kind}"].stats.tolist()
        else:
            assert f"concepts.{kind}" not in statistics and sentence_statistic(summary["sentences"], kind) is None
    assert summary["sentences"] == oracle["sentences"]
    assert {b["train_captions"]: [b["correct"], b["mentions"]] for b in summary["by_frequency"]} == oracle["bins"]


def test_bad_inputs_are_refused():
    matcher = ConceptMatcher.from_names(NAMES)
    with pytest.raises(ValueError, match="2 translations, 1 sources"):
        concept_accuracy(["a", "b"], ["x"], [[]], matcher, set(), {})
    with pytest.raises(ValueError, match="missing from the inventory: \\['cat'\\]"):
        concept_accuracy(["a"], ["x"], [["cat"]], matcher, set(), {})
    with pytest.raises(ValueError, match="without an English name: \\['x'\\]"):
        ConceptMatcher.from_names({"x": ["  !  "]})


def test_frequency_bins_are_powers_of_two():
    assert [frequency_bin(n) for n in (0, 1, 2, 3, 4, 7, 8, 1000)] == ["0", "1", "2-3", "2-3", "4-7", "4-7", "8-15",
                                                                      "512-1023"]


def test_another_runs_split_keeps_the_concepts_and_hits():
    ours = [{"unseen": ["dog"], "seen": ["apple"], "correct": ["apple"]}, {"unseen": ["t"], "seen": [], "correct": []}]
    theirs = [{"unseen": ["apple", "dog"], "seen": [], "correct": []}, {"unseen": [], "seen": ["t"], "correct": ["t"]}]
    assert with_kinds_of(ours, theirs) == [{"unseen": ["dog", "apple"], "seen": [], "correct": ["apple"]},
                                           {"unseen": [], "seen": ["t"], "correct": []}]
    assert sentence_statistic(with_kinds_of(ours, theirs), "unseen").score == 0.5
    with pytest.raises(ValueError, match="other concepts"):
        with_kinds_of(ours, theirs[::-1])


def test_systems_no_resample_tells_apart_are_not_significant():
    """Both students at 0 of every unseen concept: sacreBLEU's formula would say p = 1/(n+1)."""
    zero = Statistic(np.array([[0.0, 2.0], [0.0, 1.0], [0.0, 3.0]]), lambda s: float(s[0] / s[1]))
    assert paired_bootstrap(zero, zero, n_samples=50)["p_value"] == 1.0
    assert stratified_paired_bootstrap([(zero, zero), (zero, zero)], n_samples=50)["p_value"] == 1.0
    other = Statistic(np.array([[1.0, 2.0], [0.0, 1.0], [2.0, 3.0]]), lambda s: float(s[0] / s[1]))
    assert paired_bootstrap(other, zero, n_samples=50)["p_value"] < 0.1
