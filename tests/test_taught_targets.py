"""Pivot targets that teach only the words their source explains, and the lexicons behind them:
Dice against a brute-force count, taught-word masks and the labels they leave scored against
masks written here, the agreeing replacement of pivot targets, the phrase lexicon's ranking."""
from types import SimpleNamespace

import datasets
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from data_prep.collate import taught_labels
from data_prep.phrase_lexicon import PhraseLexicon
from data_prep.pivot import english_words, explained_content, induce_lexicon, pivot_targets, taught_words
from data_prep.targets import Target, TargetTable
from models.decoding import IGNORE_INDEX
from training.data import explaining_units
from training.self_training import agreeing

# a tiny world: a rare name (teleférico / cableway, 2 pictures), frequent ones, two templates a side
NAMES = [("perro", "dog"), ("gato", "cat"), ("sol", "sun"), ("luna", "moon")]


def world() -> datasets.Dataset:
    rows = []
    for i in range(40):
        (sa, ea), (sb, eb) = NAMES[i % 4], NAMES[(i + 1) % 4]
        if i in (3, 17):
            sa, ea = "teleférico", "mountain cableway"
        rows.append({"image_id": str(i), "source": [f"hay un {sa}", f"una imagen de un {sb}"],
                     "english": [f"there is a {ea} on a red background", f"a picture of a {eb}"],
                     "parallel": ["", ""]})
    return datasets.Dataset.from_list(rows)


def test_dice_equals_a_brute_force_count_over_pictures():
    ds = world()
    lexicon = induce_lexicon(ds, list(range(40)), str.split, min_images=1)
    src = [{w for s in r["source"] for w in s.split()} for r in ds]
    eng = [{w for e in r["english"] for w in english_words(e)} for r in ds]
    for s_word, e_word in [("teleférico", "cableway"), ("perro", "dog"), ("perro", "cat"), ("hay", "there")]:
        both = sum(s_word in a and e_word in b for a, b in zip(src, eng))
        expected = 2 * both / (sum(s_word in a for a in src) + sum(e_word in b for b in eng))
        got = lexicon.dice([lexicon.source_vocab[s_word]], [lexicon.english_vocab[e_word]])[0, 0]
        assert got == pytest.approx(expected)
    assert lexicon.dice([lexicon.source_vocab["teleférico"]], [lexicon.english_vocab["cableway"]])[0, 0] == 1.0


def test_a_pivot_target_teaches_the_name_its_source_explains_not_the_other_captions_phrasing():
    ds = world()
    lexicon = induce_lexicon(ds, list(range(40)), str.split, min_images=1)
    mask = taught_words(lexicon, "una imagen de un teleférico".split(), "there is a mountain cableway on a red background",
                        threshold=0.3)
    words = "there is a mountain cableway on a red background".split()
    assert [w for w, t in zip(words, mask) if t] == ["mountain", "cableway"]
    # a word between two explained ones is taught with them ("meat on bone")
    assert taught_words(lexicon, ["perro", "gato"], "dog and cat", threshold=0.3) == (True, True, True)
    assert taught_words(lexicon, ["perro", "gato"], "dog and the red cat", threshold=0.3, gap=1)[:3] == (True, False,
                                                                                                       False)
    targets = pivot_targets(ds, list(range(40)), induce_lexicon(ds, list(range(40)), str.split, min_images=1),
                            str.split, skip=set(), threshold=0.0, taught=lexicon)
    assert all(t.taught is not None and len(t.taught) == len(t.text.split()) for t in targets.values())


def test_taught_labels_ignore_exactly_the_tokens_of_untaught_words():
    vocab = {w: i for i, w in enumerate("there is a mountain cable way on red background <end>".split())}
    pieces = {"cableway": ["cable", "way"]}  # one word, two tokens: the rule must follow tokens, not words

    def labels_for(texts):
        rows = []
        for text in texts:
            ids = [vocab[p] for w in text.split() for p in pieces.get(w, [w])] + [vocab["<end>"]]
            rows.append(ids + [IGNORE_INDEX] * (12 - len(ids)))
        return torch.tensor(rows)

    text = "there is a mountain cableway on a red background"
    mask = (False, False, True, True, True, False, False, False, False)
    targets = [Target(text, 1.0, "pivot", mask), Target("a mountain cableway"), Target(text, 1.0, "pivot")]
    labels = labels_for([t.text for t in targets])
    scored = taught_labels(labels_for, labels, targets)
    kept = [vocab["a"], vocab["mountain"], vocab["cable"], vocab["way"]]
    assert scored[0].tolist() == [IGNORE_INDEX] * 2 + kept + [IGNORE_INDEX] * 4 + [vocab["<end>"], IGNORE_INDEX]
    assert torch.equal(scored[1:], labels[1:])
    assert taught_labels(labels_for, labels[1:], targets[1:]) is None
    with pytest.raises(ValueError, match="2 taught flags for the 3 words"):
        Target("a b c", taught=(True, False))


def test_targets_with_taught_words_survive_a_save_and_load(tmp_path):
    table = TargetTable({(0, 1): Target("a red sun", 0.5, "pivot", (False, False, True)), (1, 0): Target("a moon")})
    table.save(tmp_path / "t.jsonl")
    assert TargetTable.load(tmp_path / "t.jsonl").targets == table.targets
    assert '"taught"' not in (tmp_path / "t.jsonl").read_text().splitlines()[1]


def test_agreeing_replaces_a_pivot_target_only_with_a_translation_that_names_its_specific_taught_words():
    ds = world()
    rare = induce_lexicon(ds, list(range(40)), str.split, min_images=1)
    pivot = Target("there is a mountain cableway on a red background", 0.8, "pivot",
                   (False, False, True, True, True, False, False, False, False))
    initial = TargetTable({(3, 0): pivot, (17, 0): pivot, (5, 0): Target("human text"),
                           (6, 0): Target("a picture of a dog", 0.9, "pivot")})
    best = {(3, 0): "there is a cat", (17, 0): "there is a mountain cableway", (6, 0): "a picture of a cat",
            (8, 1): "a picture of a sun"}
    kept = {(8, 1): Target("a picture of a sun", 1.0, "self"), (6, 0): Target("a picture of a cat", 1.0, "self")}
    out, agreed = agreeing(kept, initial, best, rare, weight=1.0)
    assert out[(3, 0)] is pivot  # the translation misses "cableway": the pivot stays
    assert out[(17, 0)] == Target("there is a mountain cableway", 1.0, "self")
    # "dog" is in half the pictures: not a word few pictures show, so the translation may replace it
    assert out[(6, 0)] == Target("a picture of a cat", 1.0, "self")
    assert out[(8, 1)].origin == "self" and (5, 0) not in out and agreed == 2


def test_the_phrase_lexicon_ranks_by_dice_over_pictures():
    ds = world()
    lexicon = PhraseLexicon.induce(ds, list(range(40)), "es")
    pictures = lexicon.pictures_of("teleférico")
    assert pictures == {3, 17}
    ranked = lexicon.candidates(pictures, k=50)
    assert ranked[0][1] == 1.0 and "mountain cableway" in [p for p, d in ranked if d == 1.0]
    dog = lexicon.pictures_of("perro")
    best = lexicon.candidates(dog, k=1)[0]
    both = sum(1 for i in range(40) if i in dog and "dog" in {w for e in ds[i]["english"] for w in english_words(e)})
    assert best[1] == pytest.approx(2 * both / (len(dog) + len(lexicon.english[best[0]])))
    assert lexicon.pictures_of("perr") == set()  # whole words where the language writes spaces
    assert PhraseLexicon.induce(ds, list(range(40)), "zh").pictures_of("perr") == lexicon.pictures_of("perro")


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(st.text(alphabet="aAbñ ,.-_1", max_size=12), min_size=1, max_size=3), min_size=1, max_size=6),
       st.text(alphabet="aAbñ ,.-_1", max_size=6))
def test_a_source_word_is_looked_up_in_the_index_as_a_scan_of_the_captions_finds_it(captions, phrase):
    """Where the language writes spaces, a one-word look-up reads the word index built with the
    lexicon; the oracle is the scan of every picture's normalised captions that phrases use."""
    ds = datasets.Dataset.from_dict({"source": captions, "english": [["a thing"]] * len(captions)})
    lexicon = PhraseLexicon.induce(ds, list(range(len(captions))), "es")
    needle = " " + " ".join(phrase.lower().replace(",", " ").replace(".", " ").replace("-", " ").replace("_", " ")
                            .split()) + " "
    scanned = frozenset(i for i, text in enumerate(lexicon.sources) if needle.strip() and needle in text)
    assert lexicon.pictures_of(phrase) == scanned
    for word in {w for text in lexicon.sources for w in text.split()}:
        assert lexicon.pictures_of(word) == frozenset(i for i, text in enumerate(lexicon.sources) if f" {word} " in text)


def test_among_phrases_of_the_same_pictures_the_lexicon_picks_the_name_without_template_words():
    """Every phrase of "there is a mountain cableway on a red background" that holds a word of the
    two pictures ties at Dice 1; the pick is the longest with no template word ("a", "on", "red",
    words of more than 5% of the pictures) at either end — not "a mountain cableway" (first
    alphabetically, the order before) nor "cableway"."""
    ds = world()
    lexicon = PhraseLexicon.induce(ds, list(range(40)), "es")
    ranked = lexicon.candidates(lexicon.pictures_of("teleférico"), k=50)
    tied = [p for p, d in ranked if d == 1.0]
    assert {"a mountain cableway", "mountain cableway on", "cableway", "mountain cableway"} <= set(tied)
    assert ranked[0][0] == "mountain cableway"
    assert lexicon.template_word("a") and lexicon.template_word("red") and not lexicon.template_word("cableway")


def test_every_name_gives_a_rare_names_caption_the_pivot_target_its_agreement_missed():
    """The agreement's lexicon keeps words of 3 pictures or more, so "hay un teleférico" (2
    pictures) agrees with no English caption and gets no pivot target; with `every_name` it gets
    the caption of its picture that names the cableway, teaching only the name, at the threshold's
    weight — and every caption that had a target keeps the same one."""
    ds, rows = world(), list(range(40))
    lexicon, rare = induce_lexicon(ds, rows, str.split), induce_lexicon(ds, rows, str.split, min_images=1)
    before = pivot_targets(ds, rows, lexicon, str.split, skip=set(), threshold=0.5, taught=rare)
    after = pivot_targets(ds, rows, lexicon, str.split, skip=set(), threshold=0.5, taught=rare, every_name=True)
    assert (3, 0) not in before and (17, 0) not in before
    for key in [(3, 0), (17, 0)]:
        target = after[key]
        assert target.text == "there is a mountain cableway on a red background" and target.weight == 0.5
        assert [w for w, t in zip(target.text.split(), target.taught) if t] == ["mountain", "cableway"]
    assert {k: v for k, v in after.items() if k in before} == before and len(after) == len(before) + 2
    # a caption none of whose English captions holds an explained content word stays without a target
    assert explained_content(rare, (True,) * 4, "on a red background") == 0


def test_a_rare_word_split_into_common_pieces_is_explained_as_a_whole_word():
    """Pieces that every caption shares (here: single letters, accents folded) associate the rare
    "teleférico" with nothing, so its pivot target teaches no name; with the source words among the
    explaining units (`taught_units`, as `training.data.explaining_units` makes them with
    --pivot-source-words) the target teaches "mountain cableway" — for Spanish and for Chinese."""
    rows = []
    for i in range(40):
        (sa, ea), (sb, eb) = NAMES[i % 4], NAMES[(i + 1) % 4]
        if i in (3, 17):
            sa, ea = "teleférico", "mountain cableway"
        rows.append({"image_id": str(i), "source": [f"hay un {sa} con fondo rojo", f"una imagen de un {sb}"],
                     "english": [f"there is a {ea} on a red background", f"a picture of a {eb}"],
                     "parallel": ["", ""]})
    ds, keys = datasets.Dataset.from_list(rows), list(range(40))
    letters = lambda text: [c for c in text.replace("é", "e") if c != " "]  # noqa: E731
    with_words = lambda text: letters(text) + ["word:" + w for w in text.split()]  # noqa: E731

    def taught_names(units) -> list[str]:
        targets = pivot_targets(ds, keys, induce_lexicon(ds, keys, str.split), str.split, skip=set(), threshold=0.0,
                                taught=induce_lexicon(ds, keys, units, min_images=1), taught_units=units)
        target = targets[(3, 0)]
        return [w for w, t in zip(target.text.split(), target.taught) if t]

    assert "cableway" not in taught_names(letters)
    assert taught_names(with_words) == ["mountain", "cableway"]


def test_explaining_units_are_the_pieces_and_with_source_words_the_words_too():
    pieces = lambda text: ["▁" + c for c in text if c != " "]  # noqa: E731
    for lang, text, word in [("es", "Un Teleférico", "word:teleférico"), ("zh", "一个缆车", "word:缆车")]:
        cfg = SimpleNamespace(pseudo=SimpleNamespace(pivot_source_words=False), dataset=SimpleNamespace(lang=lang))
        data = SimpleNamespace(source_tokenizer=SimpleNamespace(tokenize=pieces))
        assert explaining_units(cfg, data)(text) == pieces(text)
        cfg.pseudo.pivot_source_words = True
        units = explaining_units(cfg, data)(text)
        assert units[:len(pieces(text))] == pieces(text) and word in units
