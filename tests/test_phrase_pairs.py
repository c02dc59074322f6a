"""`--lexicon-phrase-words`: source phrases no translation shows as a whole ("luna llena", whose
words translations show one by one), paired through the pictures with an English phrase — against
a brute-force count over pictures — and found again in a source by the rerank."""
import datasets
import pytest

from data_prep.phrase_lexicon import PhraseLexicon, WordPair, phrase_pairs
from data_prep.pivot import english_words
from data_prep.words import words
from models.pair_rerank import PairLexicon

FILLER = ["gato", "perro", "casa", "árbol", "coche", "libro", "mesa", "silla", "flor", "pez"]
PICTURES = ([("una luna llena", "a full moon")] * 2 + [("una luna", "a moon"), ("una taza llena", "a full cup")]
            + [("hojas al viento", "a leaf in wind")] * 3 + [("una taza roja", "a red cup")] * 2
            + [("un barco azul", "a blue boat")] + [(f"un {w}", f"a {w}") for w in FILLER for _ in range(8)])
SHOWN = [["una", "luna"], ["una", "taza", "llena"], ["una", "taza", "roja"]]  # the human-translated captions


def lexicon() -> tuple[PhraseLexicon, list[list[list[str]]]]:
    ds = datasets.Dataset.from_dict({"source": [[s] for s, _ in PICTURES], "english": [[e] for _, e in PICTURES]})
    return PhraseLexicon.induce(ds, list(range(len(ds))), "es"), [[s.split()] for s, _ in PICTURES]


def test_phrases_no_translation_shows_pair_with_the_name_of_their_pictures():
    lex, captions = lexicon()
    pairs = phrase_pairs(lex, captions, SHOWN, longest=4, joiner=" ")
    assert {p.source: p.english for p in pairs} == {"luna llena": "full moon", "hojas al viento": "leaf in wind"}
    # "taza roja" is shown as a whole; "barco azul" is in one picture; "una luna" starts with a template word;
    # "hojas al" and "al viento" are parts of "hojas al viento", with its pictures and its English phrase
    for pair in pairs:
        pictures = {i for i, c in enumerate(captions) if pair.source in " ".join(c[0])}
        english = {i for i, (_, e) in enumerate(PICTURES) if f" {pair.english} " in f" {' '.join(english_words(e))} "}
        assert pair.pictures == len(pictures) and pair.dice == pytest.approx(
            2 * len(pictures & english) / (len(pictures) + len(english)))
        assert pair.words == tuple(pair.source.split()) and pair.key == pair.source
    shorter = {p.source for p in phrase_pairs(lex, captions, SHOWN, longest=2, joiner=" ")}
    assert shorter == {"luna llena", "hojas al", "al viento"}  # no longer run holds them now
    unshown = {p.source for p in phrase_pairs(lex, captions, [], longest=2, joiner=" ")}
    assert "taza roja" in unshown and "taza llena" not in unshown  # one picture


def test_a_language_without_spaces_writes_its_phrases_without_them():
    lex, captions = lexicon()
    pairs = phrase_pairs(lex, captions, SHOWN, longest=4, joiner="")
    assert {p.source for p in pairs} == {"lunallena", "hojasalviento"}
    assert {p.key for p in pairs} == {"luna llena", "hojas al viento"}  # the rerank looks them up by words


def test_the_rerank_finds_a_phrase_and_its_words_in_a_source():
    es = PairLexicon.of("es", [WordPair("luna", "moon", 0.9, 3), WordPair("luna llena", "full moon", 1.0, 2,
                                                                          ("luna", "llena"))], 4, words)
    assert es.longest == 2
    assert es.phrases("Una luna llena y una luna") == ["full moon", "moon"]  # the longer run first, each once
    assert es.phrases("una llena luna") == ["moon"]  # a phrase is its words in order
    assert es.named("a full moon", es.phrases("una luna llena")) == 2
    source = "一个红色的苹果和一只猫"
    cut = words(source, "zh")
    zh = PairLexicon.of("zh", [WordPair("".join(cut[1:3]), "red thing", 1.0, 2, tuple(cut[1:3]))], 4, words)
    assert len(cut[1:3]) == 2 and zh.phrases(source) == ["red thing"]


def test_a_name_is_claimed_by_its_own_word_not_by_the_classifier_that_comes_with_it():
    """A word that comes with a name more often than the name's own word ("kl", a classifier, with
    "zorro" in 4 of its 5 pictures) does not claim the name: the word with the higher Dice does."""
    pictures = ([("kl zorro", "a fox")] * 4 + [("kl gato", "a cat")] + [("un gato", "a cat")] * 3
                + [("un zorro", "a fox")] + [(f"un {w} y un {w}", f"a {w} and a {w}") for w in FILLER[1:]
                                             for _ in range(11)])
    ds = datasets.Dataset.from_dict({"source": [[s] for s, _ in pictures], "english": [[e] for _, e in pictures]})
    lex = PhraseLexicon.induce(ds, list(range(len(ds))), "es")
    dice = dict(lex.candidates(lex.pictures_of("kl"), k=3))
    assert 4 <= len(lex.pictures_of("kl")) <= 0.05 * len(pictures) and dice["fox"] >= 0.5
    assert lex.claims() == {"zorro": {"fox"}, "gato": {"cat"}}
