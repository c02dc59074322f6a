"""Unseen/seen concept accuracy (eval.concepts) against a recount written here with `re` word
boundaries, and its statistics against the bootstrap machinery."""
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from eval.concepts import ConceptMatcher, concept_accuracy, frequency_bin, seen_concepts
from eval.stats import bootstrap_ci

NAMES = {"apple": ["red apple", "red apples"], "dog": ["dog"], "mouth": ["face with hand over mouth"],
         "pizza": ["pizza"], "t": ["T-shirt"]}


def recount(hyps, concepts, seen, names):
    """The oracle: per kind, (correct, mentions) by `re` whole-word search, case-insensitive."""
    out = {"seen": [0, 0], "unseen": [0, 0]}
    for hyp, ids in zip(hyps, concepts):
        words = " ".join(re.findall(r"[^\W_]+", hyp.lower()))
        for c in set(ids):
            kind = "seen" if c in seen else "unseen"
            hit = any(re.search(r"(?<![^\W_])" + " ".join(re.findall(r"[^\W_]+", f.lower())) + r"(?![^\W_])", words)
                      for f in names[c])
            out[kind][0] += hit
            out[kind][1] += 1
    return out


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
    assert recount(hyps, concepts, seen, NAMES) == {"seen": [3, 3], "unseen": [1, 3]}
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
    summary, _ = concept_accuracy(hyps, hyps, concepts, ConceptMatcher.from_names(NAMES), seen, {})
    oracle = recount(hyps, concepts, seen, NAMES)
    for kind in ("seen", "unseen"):
        assert [summary[kind]["correct"], summary[kind]["mentions"]] == oracle[kind]
        assert summary[kind]["copy"] == (summary[kind]["accuracy"])  # hypothesis = source here


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
