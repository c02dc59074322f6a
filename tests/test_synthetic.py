"""The synthetic world: grammars, determinism, the parallel column as a real translation."""
import random
import re

import pytest

from data_prep.synthetic import chinese, english, spanish
from data_prep.synthetic.build import build_synthetic, make_sample
from data_prep.synthetic.descriptions import Description, Mention, relation_between
from data_prep.synthetic.parse import parse

SAMPLE_KW = dict(seed=7, captions_per_image=3, parallel_fraction=0.5, image_size=64)

# An oracle lexicon written independently of the grammar modules.
ES_GENDER = {"círculo": "m", "cuadrado": "m", "triángulo": "m", "estrella": "f", "cruz": "f",
             "círculos": "m", "cuadrados": "m", "triángulos": "m", "estrellas": "f", "cruces": "f"}
ES_PLURAL_NOUNS = {"círculos", "cuadrados", "triángulos", "estrellas", "cruces"}
ES_ADJ_FORMS = {  # form -> set of (gender, plural) it may agree with
    "rojo": {("m", False)}, "roja": {("f", False)}, "rojos": {("m", True)}, "rojas": {("f", True)},
    "amarillo": {("m", False)}, "amarilla": {("f", False)}, "amarillos": {("m", True)}, "amarillas": {("f", True)},
    "morado": {("m", False)}, "morada": {("f", False)}, "morados": {("m", True)}, "moradas": {("f", True)},
    "negro": {("m", False)}, "negra": {("f", False)}, "negros": {("m", True)}, "negras": {("f", True)},
    "pequeño": {("m", False)}, "pequeña": {("f", False)}, "pequeños": {("m", True)}, "pequeñas": {("f", True)},
    "verde": {("m", False), ("f", False)}, "verdes": {("m", True), ("f", True)},
    "azul": {("m", False), ("f", False)}, "azules": {("m", True), ("f", True)},
    "grande": {("m", False), ("f", False)}, "grandes": {("m", True), ("f", True)},
}
ES_DETERMINERS = {"un": ("m", False), "una": ("f", False), "dos": (None, True), "tres": (None, True), "cuatro": (None, True)}


def samples(n=150):
    return [make_sample(i, **SAMPLE_KW) for i in range(n)]


def check_spanish_agreement(caption: str) -> int:
    """Check every noun phrase of a Spanish caption; return how many noun phrases were checked."""
    words = caption.replace(",", "").split()
    checked = 0
    for i, w in enumerate(words):
        if w not in ES_GENDER:
            continue
        gender, plural = ES_GENDER[w], w in ES_PLURAL_NOUNS
        det_gender, det_plural = ES_DETERMINERS[words[i - 1]]
        assert det_plural == plural, caption
        assert det_gender in (None, gender), caption
        j = i + 1
        while j < len(words) and words[j] in ES_ADJ_FORMS:
            assert (gender, plural) in ES_ADJ_FORMS[words[j]], f"{words[j]!r} disagrees with {w!r} in {caption!r}"
            j += 1
        checked += 1
    return checked


def test_spanish_examples():
    assert spanish.mention(Mention(2, "circle", "red", "small")) == "dos círculos rojos pequeños"
    assert spanish.mention(Mention(1, "star", "blue", "large")) == "una estrella azul grande"
    assert spanish.mention(Mention(3, "cross", "yellow", None)) == "tres cruces amarillas"
    assert spanish.mention(Mention(1, "square", None, "small")) == "un cuadrado pequeño"
    d = Description("copula", (Mention(2, "star", "black", None), Mention(1, "circle", None, None)), "left")
    assert spanish.realise(d) == "dos estrellas negras están a la izquierda de un círculo"
    d1 = Description("copula", (Mention(1, "star", "black", None), Mention(1, "circle", None, None)), "below")
    assert spanish.realise(d1) == "una estrella negra está debajo de un círculo"


def test_spanish_agreement_on_generated_captions():
    n_phrases = sum(check_spanish_agreement(spanish.realise(d)) for s in samples() for d in s.source)
    assert n_phrases > 300


def test_chinese_examples_and_measure_words():
    assert chinese.mention(Mention(2, "circle", "red", None)) == "两个红色的圆"
    assert chinese.mention(Mention(1, "star", "blue", "small")) == "一颗蓝色的小星星"
    captions = [chinese.realise(d) for s in samples() for d in s.source]
    for c in captions:
        assert "二" not in c  # objects are counted with 两
        for m in re.finditer(r"[一两三四]([个颗])", c):
            rest = c[m.end():]
            noun = re.match(r"(?:[红绿蓝黄紫黑]色的)?[小大]?(圆|正方形|三角形|星星|十字)", rest)
            assert noun, c
            assert (m.group(1) == "颗") == (noun.group(1) == "星星"), c


def test_english_agreement_and_articles():
    assert english.mention(Mention(2, "cross", None, "large")) == "two large crosses"
    d = Description("there", (Mention(1, "circle", "red", None), Mention(2, "square", None, None)))
    assert english.realise(d) == "there is a red circle and two squares"
    assert english.realise(Description("there", (Mention(3, "star", None, None),))) == "there are three stars"
    assert english.article("orange") == "an"


def test_captions_are_true_of_the_scene():
    for s in samples():
        for d in s.english + s.source:
            for m in d.mentions:
                assert m.count == sum(m.matches(o) for o in s.scene.objects) >= 1
            if d.relation:
                assert d.relation in relation_between(s.scene, d.mentions[0], d.mentions[1])


def test_parallel_is_a_real_translation():
    """Parsing the parallel English recovers the source caption's description: realising it in
    Spanish or Chinese regenerates the source caption, and it names the scene's objects."""
    n = 0
    for s in samples():
        es, zh = make_sample_record(s, "es"), make_sample_record(s, "zh")
        for d, src_es, src_zh, par in zip(s.source, es["source"], zh["source"], es["parallel"]):
            if not par:
                continue
            parsed = parse(par)
            assert parsed == d
            assert spanish.realise(parsed) == src_es and chinese.realise(parsed) == src_zh
            n += 1
    assert n > 100


def make_sample_record(sample, lang):
    from data_prep.synthetic.build import record

    return record(sample, lang, "train")


def test_sources_are_not_translations_of_english():
    pairs = [(d, e) for s in samples() for d, e in zip(s.source, s.english)]
    assert sum(d == e for d, e in pairs) < 0.2 * len(pairs)


def test_determinism(tmp_path):
    a = build_synthetic(tmp_path / "a", images=30, seed=3, show_progress=False)
    b = build_synthetic(tmp_path / "b", images=30, seed=3, show_progress=False)
    c = build_synthetic(tmp_path / "c", images=30, seed=4, show_progress=False)
    for split in a:
        assert a[split].to_dict() == b[split].to_dict()
    assert a["train"]["source"] != c["train"]["source"]


def test_languages_share_images_and_english(tmp_path):
    es = build_synthetic(tmp_path / "es", lang="es", images=20, seed=1, show_progress=False)
    zh = build_synthetic(tmp_path / "zh", lang="zh", images=20, seed=1, show_progress=False)
    assert es["test"]["image_id"] == zh["test"]["image_id"]
    assert es["test"]["english"] == zh["test"]["english"]
    assert es["test"]["parallel"] == zh["test"]["parallel"]
    assert set(zh["test"]["lang"]) == {"zh"}


def test_parallel_fraction_is_respected():
    rng = random.Random(0)
    flags = [p for i in rng.sample(range(5000), 400) for p in make_sample(i, **SAMPLE_KW).has_parallel]
    assert abs(sum(flags) / len(flags) - 0.5) < 0.06


@pytest.mark.slow
def test_ten_thousand_images(tmp_path):
    from data_prep.check import check_dataset

    dsd = build_synthetic(tmp_path / "big", images=10_000, image_size=32, show_progress=False)
    assert {k: len(v) for k, v in dsd.items()} == {"train": 8000, "validation": 1000, "test": 1000}
    ids = [i for split in dsd.values() for i in split["image_id"]]
    assert len(set(ids)) == 10_000
    assert check_dataset(tmp_path / "big").ok


def test_evaluation_splits_are_fully_parallel(tmp_path):
    dsd = build_synthetic(tmp_path / "p", images=50, parallel_fraction=0.0, show_progress=False)
    assert all(p == "" for row in dsd["train"]["parallel"] for p in row)
    for split in ("validation", "test"):
        assert all(p for row in dsd[split]["parallel"] for p in row)
