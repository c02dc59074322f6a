"""`--pair-rerank`: the test-time rerank by word pairs — which phrases a source's words call for,
the choice against a brute-force check over random n-best lists, a real student's n-best list from
`generate()` reranked through `GroundedSystem.translate` and `translate`, the saved file, and the
option end to end (on by default where word pairs are read)."""
import json
import shutil

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import train as training
from data_prep.phrase_lexicon import WordPair
from data_prep.words import words
from models.grounded import GroundedSystem
from models.pair_rerank import PAIRS_FILE, PairLexicon
from models.typed_json import ReadBackError
from training.options import PAIR_RERANK

ES = PairLexicon.of("es", [WordPair("Elefante", "elephant", 0.9, 3), WordPair("piña", "pineapple", 0.8, 2),
                           WordPair("chaleco", "safety vest", 0.7, 2)], 8, words)


def test_the_phrases_a_source_calls_for_and_the_ones_a_candidate_names():
    assert ES.phrases("Un elefante, un chaleco y otro elefante") == ["elephant", "safety vest"]  # once each, in order
    assert ES.phrases("una elefanta") == []  # whole words only
    assert ES.named("an Elephant, and a safety-vest!", ["elephant", "safety vest"]) == 2
    assert ES.named("an elephants and a pine apple", ["elephant", "pineapple"]) == 0
    zh = PairLexicon.of("zh", [WordPair("斑马", "zebra", 1.0, 2)], 4, words)
    assert zh.phrases("一头斑马和一个苹果") == ["zebra"]  # jieba's words


candidate_words = st.lists(st.sampled_from(["elephant", "safety", "vest", "a", "and", "pineapple", "cat"]),
                           max_size=6).map(" ".join)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.lists(candidate_words, min_size=1, max_size=5),
                          st.sampled_from(["un elefante", "un chaleco y una piña", "nada", "piña y elefante"])),
                min_size=1, max_size=4), st.data())
def test_the_choice_names_the_most_phrases_then_follows_the_student(lists, data):
    import torch

    width = max(len(c) for c, _ in lists)
    candidates = [c + [""] * (width - len(c)) for c, _ in lists]
    sources = [s for _, s in lists]
    scores = torch.tensor([[data.draw(st.sampled_from([-0.5, -1.0, -2.0])) for _ in range(width)] for _ in lists])
    for source, options, row, j in zip(sources, candidates, scores, ES.choose(sources, candidates, scores)):
        phrases = ES.phrases(source)
        counts = [ES.named(c, phrases) for c in options]
        assert counts[j] == max(counts)  # no candidate names more
        best = [k for k in range(width) if counts[k] == max(counts)]
        assert float(row[j]) == max(float(row[k]) for k in best)  # among those, the student's best
        assert j == min(k for k in best if float(row[k]) == float(row[j]))  # then the earlier one


def a_pair_that_changes_the_choice(system: GroundedSystem, sources: list[str], size: int):
    """A source, a word of it and a word that only a lower candidate of its n-best list writes."""
    lists, _ = system.nbest(sources, size=size)
    for source, options in zip(sources, lists):
        best = set(options[0].split())
        for k, option in enumerate(options[1:], 1):
            new = [w for w in option.split() if w.isalpha() and w not in best]
            if new:
                return source, source.split()[0], new[0], k, options
    pytest.skip("every candidate list of the session's run repeats its best words")


def test_a_real_student_translates_with_the_candidate_its_pairs_call_for(run, test_split, tmp_path):
    """On the session's trained student: `translate` with a pair whose English only a lower
    candidate of `generate()`'s n-best list writes returns that candidate — through the system, and
    through a run whose model folder holds the pairs (`python -m translate` reads them)."""
    from translate import Translator

    system = GroundedSystem.load(run / "model")
    sources = [s for row in test_split["source"] for s in row][:16]
    source, word, english, k, options = a_pair_that_changes_the_choice(system, sources, 4)
    system.pair_lexicon = PairLexicon("es", {word.lower(): english}, 4, words)
    chosen = system.translate([source])[0]
    assert english in chosen.split() and chosen in options[1:]
    assert chosen == next(o for o in options if english in o.split())  # the best-scored of those that name it
    system.pair_lexicon = PairLexicon("es", {word.lower(): english}, 0, words)
    assert system.translate([source]) == Translator.from_run(run, device="cpu").translate([source])  # 0: greedy

    copy = tmp_path / "run"
    shutil.copytree(run, copy, ignore=shutil.ignore_patterns("checkpoints"))
    PairLexicon("es", {word.lower(): english}, 4, words).save(copy / "model")
    assert Translator.from_run(copy, device="cpu").translate([source]) == [chosen]


def test_the_saved_pairs_read_back_or_fail_in_one_line(tmp_path):
    ES.save(tmp_path)
    assert PairLexicon.load(tmp_path, words) == ES and PairLexicon.load(tmp_path / "none", words) is None
    data = json.loads((tmp_path / PAIRS_FILE).read_text())
    (tmp_path / PAIRS_FILE).write_text(json.dumps({**data, "size": -1}))
    with pytest.raises(ReadBackError, match='word_pairs.json: field "size"'):
        PairLexicon.load(tmp_path, words)


def name_args(path, cache, out, *extra):
    return ["--data-dir", str(path), "--clip", "groundmt-micro", "--student-preset", "micro", "--teacher-steps", "3",
            "--teacher-batch-size", "8", "--batch-size", "8", "--steps", "4", "--parallel-fraction", "0",
            "--self-train-rounds", "0", "--quiet", "--threads", "1", "--eval-bootstrap", "10", "--no-compare-ce",
            "--cache-dir", str(cache), "--out", str(out), *extra]


def test_the_default_recipe_saves_its_pairs_and_evaluates_with_the_rerank(cache, name_world, tmp_path):
    path, names = name_world
    out = tmp_path / "run"
    assert training.main(name_args(path, cache, out, "--recipe", "ce+taught+pairs")) == 0
    log = (out / "train.log").read_text()
    assert f"translations: the student's {PAIR_RERANK}-best list, reranked by the 48 word pairs" in log
    saved = PairLexicon.load(out / "model", words)
    assert saved.size == PAIR_RERANK and saved.pairs == names and json.loads(
        (out / "config.json").read_text())["pair_rerank"] == PAIR_RERANK
    greedy = tmp_path / "greedy"
    assert training.main(name_args(path, cache, greedy, "--recipe", "ce+taught+pairs", "--pair-rerank", "0")) == 0
    assert "translations: greedy (the 48 word pairs are saved, --pair-rerank 0)" in (greedy / "train.log").read_text()
    assert PairLexicon.load(greedy / "model", words).size == 0


def test_a_rerank_without_pairs_is_refused_once_the_recipe_is_known(cache, name_world, tmp_path, capsys):
    path, _ = name_world
    code = training.main(name_args(path, cache, tmp_path / "run", "--no-pivot", "--pair-rerank", "4"))
    assert code == 2
    assert capsys.readouterr().err.strip().endswith("--pair-rerank chooses translations by the word pairs, and this "
                                                    "run reads none (--lexicon-pairs resolved to 0: no pivot targets)")
