"""`--pair-force`: forced names beside the rerank by word pairs — the student's continuations of
forced prefixes against `generate()` one at a time, the rescoring against greedy `nbest`'s own
scores, the choice within the margin against a brute-force check, a real student made to write a
name none of its candidates holds (and not without the option), through `translate` and the corpus
builder, and the option end to end."""
import json
import shutil

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import train as training
from data_prep.phrase_lexicon import WordPair
from data_prep.words import words
from models.generation import continue_greedily, nbest, sequence_scores
from models.grounded import GroundedSystem
from models.pair_rerank import PairLexicon
from test_pair_rerank import name_args
from test_translate import corpus_args
from training.options import PAIR_FORCE, PAIR_RERANK

ES = PairLexicon.of("es", [WordPair("elefante", "elephant", 0.9, 3), WordPair("chaleco", "safety vest", 0.7, 2)],
                    8, words, force=1.0)


@pytest.fixture(scope="module")
def system(run) -> GroundedSystem:
    return GroundedSystem.load(run / "model")


@pytest.fixture(scope="module")
def sources(test_split) -> list[str]:
    return [s for row in test_split["source"] for s in row][:12]


def test_the_prefixes_write_each_missing_phrase_at_every_word_boundary():
    assert ES.forced_prefixes("un elefante y un chaleco", "a big elephant") == [
        "safety vest", "a safety vest", "a big safety vest", "a big elephant safety vest"]
    assert ES.forced_prefixes("un elefante", "an elephant") == []  # nothing missing
    assert ES.forced_prefixes("un elefante", "") == ["elephant"]


def test_continuations_are_generate_one_at_a_time(system, sources):
    """Batched by prefix length, each continuation equals `generate()` given that one prefix."""
    student, tokenizer = system.student, system.source_tokenizer
    greedy = [row for ids in (student.generate(**tokenizer([s], return_tensors="pt"), do_sample=False, num_beams=1)
                              for s in sources) for row in ids.tolist()]
    prefixes = [row[1:1 + k] for row, k in zip(greedy, [0, 1, 2, 3] * 3)]  # the start token dropped
    prefixes[5] = list(reversed(prefixes[5]))  # prefixes the student would not write itself
    prefixes[9] = [greedy[0][1]] * 3
    batched = continue_greedily(student, tokenizer, sources, prefixes, batch_size=4)
    for source, prefix, got in zip(sources, prefixes, batched):
        one = student.generate(**tokenizer([source], return_tensors="pt"), do_sample=False, num_beams=1,
                               decoder_input_ids=torch.tensor([[student.config.decoder_start_token_id, *prefix]]))
        expected = one[0].tolist()
        assert got[:len(expected)] == expected and all(t == student.generation_config.pad_token_id
                                                        for t in got[len(expected):])
    assert [row[:len(g)] for row, g in zip(batched[::4], greedy[::4])] == greedy[::4]  # empty prefix: greedy
    too_long = continue_greedily(student, tokenizer, sources[:1], [[greedy[0][1]] * 80])[0]
    assert len(too_long) == student.generation_config.max_length and too_long[-1] == student.generation_config.eos_token_id


def test_the_rescoring_equals_greedy_nbests_own_scores(system, sources):
    texts, scores = nbest(system.student, system.source_tokenizer, sources, system.vocab.decode, size=1)
    flat = [t[0] for t in texts]
    labels = system.labels_for(flat)
    again = sequence_scores(system.student, system.source_tokenizer, sources, labels, batch_size=5)
    roundtrip = [system.vocab.decode([row[row >= 0].tolist()])[0] == t for row, t in zip(labels, flat)]
    assert sum(roundtrip) >= len(flat) - 1  # the text's ids are the ones generated
    kept = torch.tensor(roundtrip)
    torch.testing.assert_close(again[kept], scores[kept, 0], atol=1e-4, rtol=1e-4)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(["an elephant", "a safety vest", "a cat", "an elephant and a safety vest", ""]),
                min_size=1, max_size=6),
       st.data(), st.sampled_from([0.0, 0.5, 1.0, 10.0]))
def test_the_forced_choice_stays_within_the_margin(options, data, margin):
    lexicon = PairLexicon(ES.lang, ES.pairs, 8, words, margin)
    scores = [data.draw(st.sampled_from([-0.2, -0.6, -1.0, -3.0])) for _ in options]
    source = "un elefante y un chaleco"
    j = lexicon.choose_forced(source, options, scores)
    eligible = [k for k in range(len(options)) if scores[k] >= max(scores) - margin]
    named = [lexicon.named(o, lexicon.phrases(source)) for o in options]
    assert j in eligible and named[j] == max(named[k] for k in eligible)
    assert scores[j] == max(scores[k] for k in eligible if named[k] == named[j])
    assert j == min(k for k in eligible if named[k] == named[j] and scores[k] == scores[j])


def a_name_no_candidate_writes(system: GroundedSystem, sources: list[str], size: int):
    """A source, a word of it, and an English word of the student's vocabulary that none of its
    `size`-best candidates writes (written by its translation of another source)."""
    lists, _ = system.nbest(sources, size=size)
    written = {w for options in lists for o in options for w in o.split() if w.isalpha()}
    for source, options in zip(sources, lists):
        absent = sorted(w for w in written if all(w not in o.split() for o in options))
        if absent:
            return source, source.split()[0].lower(), absent[0]
    pytest.skip("every candidate list of the session's run writes every word")


@pytest.fixture(scope="module")
def unwritten(system, sources) -> tuple[str, str, str]:
    return a_name_no_candidate_writes(system, sources, 4)


def test_a_real_student_writes_a_name_no_candidate_holds_only_when_forced(system, unwritten):
    """With a pair whose English none of the 4-best candidates writes: the rerank alone cannot name it,
    forced names with a wide margin do (the student's own continuation around it), and a margin
    near 0 keeps the student's best-scored option."""
    source, word, english = unwritten
    system.pair_lexicon = PairLexicon("es", {word: english}, 4, words)
    assert english not in system.translate([source])[0].split()
    system.pair_lexicon = PairLexicon("es", {word: english}, 4, words, force=100.0)
    forced = system.translate([source])[0]
    assert english in forced.split()
    options = system.nbest([source], size=4)[0][0]
    assert forced not in options
    system.pair_lexicon = PairLexicon("es", {word: english}, 4, words, force=1e-6)
    tight = system.translate([source])[0]  # a forced option only if the student scores it best of all
    scored = sequence_scores(system.student, system.source_tokenizer, [source] * 6,
                             system.labels_for([tight, forced, *options]))
    assert float(scored[0]) >= float(scored.max()) - 1e-5


def test_a_run_with_forced_names_translates_and_builds_a_corpus_with_them(system, unwritten, run, data, tmp_path):
    """A run whose saved pairs carry the margin: `python -m translate text` and `corpus` translate as
    the system does, and the corpus summary says how it decoded."""
    from translate import Translator
    from translate.__main__ import main

    source, word, english = unwritten
    system.pair_lexicon = PairLexicon("es", {word: english}, 4, words, force=100.0)
    copy = tmp_path / "run"
    shutil.copytree(run, copy, ignore=shutil.ignore_patterns("checkpoints"))
    system.pair_lexicon.save(copy / "model")
    assert Translator.from_run(copy, device="cpu").translate([source]) == system.translate([source])
    out = tmp_path / "corpus"
    assert main(corpus_args(copy, data, out)) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["decoding"] == {"num_beams": 4, "rerank": None, "word_pairs": {"pairs": 1, "size": 4, "force": 100.0}}
    assert ("beam search, 4 beams; the n-best list reranked by the run's 1 word pairs, with forced names within 100 "
            "of the student's best") in (out / "summary.md").read_text()
    records = [json.loads(line) for line in (out / "corpus.jsonl").read_text().splitlines()]
    chosen = [r["translation"] for r in records if r["source"] == source]
    assert chosen and set(chosen) == set(system.translate([source]))


def test_pairs_saved_before_forced_names_read_back_without_them(tmp_path):
    ES.save(tmp_path)
    assert PairLexicon.load(tmp_path, words) == ES
    data = json.loads((tmp_path / "word_pairs.json").read_text())
    del data["force"]
    (tmp_path / "word_pairs.json").write_text(json.dumps(data))
    assert PairLexicon.load(tmp_path, words).force == 0.0


def test_the_default_recipe_forces_names_and_the_option_sets_or_refuses_them(cache, name_world, tmp_path, capsys):
    path, _ = name_world
    out = tmp_path / "run"
    assert training.main(name_args(path, cache, out, "--recipe", "ce+taught+pairs")) == 0
    assert (f"reranked by the 48 word pairs, with forced names within {PAIR_FORCE:g} of the student's best"
            in (out / "train.log").read_text())
    assert PairLexicon.load(out / "model", words).force == PAIR_FORCE
    assert json.loads((out / "config.json").read_text())["pair_force"] == PAIR_FORCE
    wide = tmp_path / "wide"
    assert training.main(name_args(path, cache, wide, "--recipe", "ce+taught+pairs", "--pair-force", "2.5")) == 0
    assert PairLexicon.load(wide / "model", words).force == 2.5 and "within 2.5 of" in (wide / "train.log").read_text()
    off = tmp_path / "off"
    assert training.main(name_args(path, cache, off, "--recipe", "ce+taught+pairs", "--pair-force", "0")) == 0
    log = (off / "train.log").read_text()
    assert f"{PAIR_RERANK}-best list, reranked by the 48 word pairs\n" in log and "forced" not in log
    code = training.main(name_args(path, cache, tmp_path / "refused", "--no-pivot", "--pair-force", "1"))
    assert code == 2
    assert capsys.readouterr().err.strip().endswith("--pair-force adds candidates to the rerank by word pairs, and "
                                                    "this run has none (--lexicon-pairs resolved to 0: no pivot "
                                                    "targets)")
