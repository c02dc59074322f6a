"""The long-tail world: determinism, concept ids checked by an oracle, Spanish agreement and Chinese
measure words against lexicons written here, the parallel column, independence of the two sides,
the coverage table against counts made by hand (and COCO-CN's row), other picture sets, the
teacher pool, `check` and the concept inventory file."""
import contextlib
import hashlib
import io
import json
import re
import tarfile
from collections import Counter, defaultdict
from pathlib import Path

import datasets
import pytest
from PIL import Image

from data_prep.__main__ import main as data_prep_main
from data_prep.build_report import BuildReport
from data_prep.check import check_dataset
from data_prep.concepts import load_concepts
from data_prep.coverage import Caption, coverage_table
from data_prep.errors import InputError
from data_prep.longtail import build as B
from data_prep.longtail.descriptions import Description, Mention
from data_prep.longtail.held_out import concept_prompts, held_out_pictures, rarest_third
from data_prep.writer import write_dataset

TINY = dict(images=12, image_size=32, captions_per_image=2, parallel_fraction=0.5)
TARBALL = Path(__file__).resolve().parents[2] / "shared" / "data" / "coco-cn-version1805.tar.gz"


@pytest.fixture(scope="module")
def builds(tmp_path_factory):
    """Tiny builds of one seed in es, zh and de (a language without templates), and es again."""
    root = tmp_path_factory.mktemp("longtail")
    out = {}
    for name, lang in (("es", "es"), ("zh", "zh"), ("de", "de"), ("es-again", "es")):
        out[name] = root / name
        B.build_longtail(out[name], lang=lang, seed=3, show_progress=False, **TINY)
    return out


@pytest.fixture(scope="module")
def worlds():
    return {lang: B.World(lang) for lang in ("es", "zh", "de", "ja")}


def rows(path, split="train"):
    ds = datasets.load_from_disk(str(path))[split].cast_column("image", datasets.Image(decode=False))
    return [dict(r, image=r["image"]["bytes"]) for r in ds]


def samples(world, n=250):
    """Records of `n` pictures of the world (no picture rendered) with every caption translated."""
    sampler = world.sampler("world")
    return [B.record(world, B.make_sample(world, sampler, i, stream="world", captions_per_image=3,
                                          parallel_fraction=1.0), "train") for i in range(n)]


# --- determinism -------------------------------------------------------------------------------------------
def test_same_seed_same_dataset(builds):
    for split in ("train", "validation", "test"):
        assert rows(builds["es"], split) == rows(builds["es-again"], split)
    a = json.loads((builds["es"] / "concepts.json").read_text())
    b = json.loads((builds["es-again"] / "concepts.json").read_text())
    assert a == b


def test_languages_describe_the_same_pictures(builds):
    es, zh, de = (rows(builds[k]) for k in ("es", "zh", "de"))
    for a, b, c in zip(es, zh, de):
        assert a["image_id"] == b["image_id"] == c["image_id"]
        assert a["image"] == b["image"] == c["image"]
        assert a["english"] == b["english"] == c["english"]
    assert [r["source"] for r in es] != [r["source"] for r in zh]
    # es and zh have the same grammar capabilities: the same descriptions, so the same concepts
    # (in the order of each text: a Chinese relation names its landmark first)
    assert [[sorted(c) for c in r["source_concepts"]] for r in es] == [[sorted(c) for c in r["source_concepts"]]
                                                                       for r in zh]


# --- concept ids, by an oracle -----------------------------------------------------------------------------
def finder(forms: dict[str, list[str]], spaced: bool):
    """`find(text) -> [(start, end, concept)]`: every occurrence of every surface form (whole words in
    spaced text, anywhere in unspaced text)."""
    def find(text):
        hits = []
        for cid, fs in forms.items():
            for f in fs:
                if f not in text:
                    continue
                pattern = rf"(?<!\w){re.escape(f)}(?!\w)" if spaced else re.escape(f)
                hits += [(m.start(), m.end(), cid) for m in re.finditer(pattern, text)]
        return hits
    return find


def named_concepts(text, find):
    """The concepts a caption names, in order: occurrences not inside a longer occurrence."""
    hits = find(text)
    outer = [h for h in hits if not any(o[0] <= h[0] and h[1] <= o[1] and (o[1] - o[0]) > (h[1] - h[0])
                                        for o in hits)]
    return [cid for _, _, cid in sorted(set(outer))]


@pytest.mark.parametrize("lang", ["es", "zh", "de", "ja"])
def test_source_concepts_are_the_concepts_each_caption_names(worlds, lang):
    world = worlds[lang]
    inventory = world.inventory()
    find_src = finder({c.id: list(c.source) for c in inventory.concepts}, spaced=lang not in ("zh", "ja"))
    find_en = finder({c.id: list(c.english) for c in inventory.concepts}, spaced=True)
    checked = 0
    for rec in samples(world):
        assert len(rec["source_concepts"]) == len(rec["source"]) == len(rec["parallel"])
        for text, parallel, ids in zip(rec["source"], rec["parallel"], rec["source_concepts"]):
            assert named_concepts(text, find_src) == ids, text
            assert sorted(named_concepts(parallel, find_en)) == sorted(ids), parallel
            checked += 1
    assert checked == 750


# --- grammar against lexicons written here -----------------------------------------------------------------
# Spanish name -> (gender, plural) of its head noun, from a dictionary; and nouns taking "un" before stressed a
ES_LEXICON = {
    "manzana roja": ("f", False), "delfín": ("m", False), "mano abierta": ("f", False), "avión": ("m", False),
    "pez tropical": ("m", False), "gafas": ("f", True), "libros": ("m", True), "flor marchita": ("f", False),
    "nube": ("f", False), "llave": ("f", False), "fantasma": ("m", False), "mapa mundial": ("m", False),
    "tranvía": ("m", False), "corazón rojo": ("m", False), "cara sonriendo": ("f", False), "paraguas": ("m", False),
    "autobús": ("m", False), "pantalones cortos": ("m", True), "uvas": ("f", True), "camión articulado": ("m", False),
    "televisión": ("f", False), "serpiente": ("f", False), "nariz": ("f", False), "cactus": ("m", False),
    "cruz latina": ("f", False), "moto": ("f", False), "guion ondulado": ("m", False), "luces de policía": ("f", True),
    "águila": ("f", False), "ancla": ("f", False), "hacha": ("f", False), "planeta con anillos": ("m", False),
}
ES_UN_BEFORE_STRESSED_A = {"águila", "ancla", "hacha"}
ES_SIZE = {("small", "m", False): "pequeño", ("small", "f", False): "pequeña", ("small", "m", True): "pequeños",
           ("small", "f", True): "pequeñas", ("large", "m", False): "gran", ("large", "f", False): "gran",
           ("large", "m", True): "grandes", ("large", "f", True): "grandes"}


def concept_named(world, name):
    ids = [cid for cid, n in world.source.names.items() if n == name]
    assert len(ids) == 1, name
    return ids[0]


def test_spanish_articles_sizes_and_copula_agree(worlds):
    world = worlds["es"]
    other = concept_named(world, "delfín")
    for name, (gender, plural) in ES_LEXICON.items():
        cid = concept_named(world, name)
        article = ("unas" if gender == "f" else "unos") if plural else \
            ("un" if gender == "m" or name in ES_UN_BEFORE_STRESSED_A else "una")
        assert world.source.mention(Mention(cid, None)) == f"{article} {name}"
        for size in ("small", "large"):
            sized_article = ("unas" if gender == "f" else "unos") if plural else ("un" if gender == "m" else "una")
            assert world.source.mention(Mention(cid, size)) == f"{sized_article} {ES_SIZE[size, gender, plural]} {name}"
        copula = world.source.realise(Description("copula", (Mention(cid, None), Mention(other, None)), "left"))
        assert copula == f"{article} {name} {'están' if plural else 'está'} a la izquierda de un delfín"


ZH_MEASURE_WORDS = {
    "海豚": "只", "热带鱼": "条", "书": "本", "汽车": "辆", "红苹果": "个", "玫瑰": "朵", "松树": "棵", "伞": "把",
    "飞机": "架", "帆船": "艘", "红心": "颗", "领带": "条", "眼镜": "副", "袜子": "双", "T恤": "件", "礼帽": "顶",
    "手机": "部", "大象": "头", "马": "匹", "床": "张", "猫脸": "张", "满月": "轮",
    "蜡烛": "支", "香蕉": "根", "戒指": "枚", "手表": "块", "葡萄": "串", "电池": "节", "火车": "列",
}


def test_chinese_measure_words(worlds):
    world = worlds["zh"]
    for name, word in ZH_MEASURE_WORDS.items():
        cid = concept_named(world, name)
        assert world.source.mention(Mention(cid, None)) == f"一{word}{name}"
        assert world.source.mention(Mention(cid, "small")) == f"一{word}小小的{name}"
    # names that are not noun phrases are said as emoji, the name quoted
    cid = concept_named(world, "笑哭了")
    assert world.source.mention(Mention(cid, None)) == "一个“笑哭了”表情"


def test_english_articles(worlds):
    world = worlds["es"]
    names = {n: cid for cid, n in world.english.names.items()}
    expected = {"eagle": "an eagle", "unicorn": "a unicorn", "sos button": "an sos button", "hourglass done":
                "an hourglass done", "red apple": "a red apple", "books": "a books emoji", "fog": "a fog emoji",
                "umbrella": "an umbrella", "x-ray": "an x-ray",
                "eight o’clock": "a clock showing eight o’clock", "no smoking": "a no smoking sign",
                "one-piece swimsuit": "a one-piece swimsuit", "euro banknote": "a euro banknote"}
    for name, text in expected.items():
        assert world.english.mention(Mention(names[name], None)) == text
    assert world.english.mention(Mention(names["eagle"], "large")) == "a large eagle"


# --- the parallel column and the independence of the two sides ---------------------------------------------
ES_RELATIONS = {"a la izquierda de": "to the left of", "a la derecha de": "to the right of", "encima de": "above",
                "debajo de": "below", "junto a": "next to"}
ES_COLORS = {"rojo": "red", "naranja": "orange", "amarillo": "yellow", "verde": "green", "azul": "blue",
             "morado": "purple", "rosado": "pink", "gris": "grey", "blanco": "white"}


def masked(text, find):
    """`text` with every concept name it contains replaced by "#" (so size words inside names don't count)."""
    for start, end, _ in sorted(find(text), key=lambda h: h[0] - h[1]):
        text = text[:start] + "#" * (end - start) + text[end:] if "#" not in text[start:end] else text
    return text


def test_parallel_is_the_exact_english_of_the_same_description(worlds):
    """The translation names the same concepts in the same order, the same relation, ground colour
    and sizes (read off both texts by this test's own lexicon)."""
    world = worlds["es"]
    inventory = world.inventory()
    find_src = finder({c.id: list(c.source) for c in inventory.concepts}, spaced=True)
    find_en = finder({c.id: list(c.english) for c in inventory.concepts}, spaced=True)
    for rec in samples(world, n=150):
        for text, parallel in zip(rec["source"], rec["parallel"]):
            assert named_concepts(text, find_src) == named_concepts(parallel, find_en)
            text, parallel = masked(text, find_src), masked(parallel, find_en)
            rel_es = [en for es, en in ES_RELATIONS.items() if f" {es} " in text]
            rel_en = [en for en in ES_RELATIONS.values() if f" {en} " in parallel]
            assert rel_es == rel_en, (text, parallel)
            color_es = re.search(r"con fondo (\w+)$", text)
            color_en = re.search(r"on an? (\w+) background$", parallel)
            assert (ES_COLORS[color_es[1]] if color_es else None) == (color_en[1] if color_en else None)
            sizes_es = re.findall(r"\b(pequeñ[oa]s?|gran|grandes) ", text)
            sizes_en = re.findall(r"\b(small|large) ", parallel)
            assert ["small" if s.startswith("peque") else "large" for s in sizes_es] == sizes_en, (text, parallel)


def test_source_and_english_captions_are_written_independently(worlds):
    """A picture's English captions are not the translations of its source captions: another subset or
    order of its objects in a large share of the pairs, and rarely the very sentence."""
    world = worlds["es"]
    inventory = world.inventory()
    find_en = finder({c.id: list(c.english) for c in inventory.concepts}, spaced=True)
    pairs = other_objects = same_sentence = 0
    for rec in samples(world, n=200):
        for ids, eng, translation in zip(rec["source_concepts"], rec["english"], rec["parallel"]):
            pairs += 1
            other_objects += named_concepts(eng, find_en) != ids
            same_sentence += eng == translation
    assert other_objects / pairs > 0.3, other_objects / pairs
    assert same_sentence / pairs < 0.15, same_sentence / pairs


# --- the coverage table ------------------------------------------------------------------------------------
def hashed_rank(image_id, index, seed):
    """The test's own copy of the subset rule: blake2b of "seed:image_id:index", 8 bytes, smallest first."""
    return int.from_bytes(hashlib.blake2b(f"{seed}:{image_id}:{index}".encode(), digest_size=8).digest(), "big")


def test_coverage_table_counts_by_hand(tmp_path):
    train_rows = {"t1": ["un gato negro", "un perro"], "t2": ["una casa roja"], "t3": ["un gato y una casa"]}
    test_rows = {"s1": ["un gato", "un pez rojo"], "s2": ["una casa negra y un perro"]}

    def record(image_id, captions, split):
        return {"image": Image.new("RGB", (4, 4)), "image_id": image_id, "lang": "es", "source": captions,
                "english": ["x"], "parallel": [""] * len(captions), "provenance": f"hand/{split}/source=hw"}

    out = tmp_path / "hand"
    write_dataset({"train": [record(k, v, "train") for k, v in train_rows.items()],
                   "test": [record(k, v, "test") for k, v in test_rows.items()]}, out, BuildReport("hand"),
                  show_progress=False)
    # P = 1: seen = all training words; test tokens: un gato | un pez rojo | una casa negra y un perro (11)
    # unseen: pez, rojo ("roja" is another word), negra -> 3 of 11; covered: "un gato" only -> 1 of 3
    # P = 0: every token unseen, no caption covered
    # P = 0.5: round(0.5 * 4) = 2 captions of smallest hash
    captions = [(k, i, c) for k, v in train_rows.items() for i, c in enumerate(v)]
    chosen = sorted(captions, key=lambda t: hashed_rank(t[0], t[1], 7))[:2]
    seen = {w for _, _, c in chosen for w in c.split()}
    test_words = [c.split() for v in test_rows.values() for c in v]
    unseen_half = sum(w not in seen for ws in test_words for w in ws) / 11
    covered_half = sum(all(w in seen for w in ws) for ws in test_words) / 3
    capture = io.StringIO()
    with contextlib.redirect_stdout(capture):
        assert data_prep_main(["stats", str(out), "--fractions", "0,0.5,1", "--seed", "7", "--draws", "1",
                               "--json"]) == 0
    table = json.loads(capture.getvalue())
    assert table["word_types"] == len({"un", "gato", "negro", "perro", "una", "casa", "roja", "y"})
    assert table["test_tokens"] == 11 and table["train_captions"] == 4 and table["test_captions"] == 3
    rows_ = table["fractions"]
    assert rows_["0"]["test_tokens_unseen"] == 1.0 and rows_["0"]["test_captions_covered"] == 0.0
    assert rows_["1"]["test_tokens_unseen"] == pytest.approx(3 / 11)
    assert rows_["1"]["test_captions_covered"] == pytest.approx(1 / 3)
    assert rows_["0.5"]["test_tokens_unseen"] == pytest.approx(unseen_half)
    assert rows_["0.5"]["test_captions_covered"] == pytest.approx(covered_half)


def test_coverage_of_unspaced_text_counts_words():
    """Chinese is counted in words (jieba), not characters: 苹果 seen makes 苹果 seen."""
    train = [Caption("a", 0, ("一个", "苹果"))]
    test = [Caption("b", 0, ("一个", "苹果")), Caption("b", 1, ("一只", "海豚"))]
    table = coverage_table(train, test, (1.0,))
    assert table["fractions"]["1"]["test_tokens_unseen"] == 0.5
    from data_prep.words import words
    assert words("一个红苹果", "zh") == ["一个", "红", "苹果"]
    assert words("una manzana, roja", "es") == ["una", "manzana", ",", "roja"]


@pytest.mark.skipif(not TARBALL.is_file(), reason=f"real COCO-CN files not available ({TARBALL} is absent)")
def test_coco_cn_row(capsys):
    """The stats command on the real tarball equals this test's own count of its segmented captions."""
    with tarfile.open(TARBALL) as tar:
        files = {Path(m.name).name: tar.extractfile(m).read().decode("utf-8") for m in tar.getmembers()
                 if m.isfile() and not Path(m.name).name.startswith("._")}
    split = {line.strip(): s for s in ("train", "test") for line in files[f"coco-cn_{s}.txt"].split("\n") if line.strip()}
    captions = defaultdict(list)
    for line in files["imageid.caption.bosonseg.txt"].split("\n"):
        if line.strip():
            key, _, rest = line.partition(" ")
            image, k = key.split("#")
            if image in split:
                captions[split[image]].append((image[-12:], int(k), [t.rpartition(":")[0] for t in rest.split()]))
    train, test = captions["train"], captions["test"]
    assert len({w for *_, ws in train for w in ws}) == 6797
    chosen = sorted(train, key=lambda c: hashed_rank(c[0], c[1], 0))[:round(0.05 * len(train))]
    seen = {w for *_, ws in chosen for w in ws}
    unseen = sum(w not in seen for *_, ws in test for w in ws) / sum(len(ws) for *_, ws in test)
    covered = sum(all(w in seen for w in ws) for *_, ws in test) / len(test)
    assert data_prep_main(["stats", "--coco-cn", str(TARBALL), "--fractions", "0.05", "--draws", "1", "--json"]) == 0
    table = json.loads(capsys.readouterr().out)
    assert table["word_types"] == 6797
    assert table["fractions"]["0.05"]["test_tokens_unseen"] == pytest.approx(unseen)
    assert table["fractions"]["0.05"]["test_captions_covered"] == pytest.approx(covered)
    assert 0.06 < unseen < 0.085 and 0.45 < covered < 0.53  # the 7.2% / 49.5% is one such draw


# --- other picture sets, the pool, check, the inventory file ----------------------------------------------
COLOURS = {"1f34e": (255, 0, 0), "1f42c": (0, 0, 255), "1f680": (0, 255, 0), "2693": (255, 0, 255),
           "1f4da": (0, 255, 255)}


@pytest.fixture(scope="module")
def picture_dir(tmp_path_factory):
    """Five solid-colour 'pictographs' named like Twemoji's, a sequence, a corrupt PNG and a text file."""
    folder = tmp_path_factory.mktemp("pictures")
    for cid, rgb in COLOURS.items():
        Image.new("RGBA", (20, 10), rgb + (255,)).save(folder / f"{cid}.png")
    Image.new("RGBA", (8, 8), (1, 2, 3, 255)).save(folder / "1f1e6-1f1e8.png")
    (folder / "1f436.png").write_bytes(b"not a png")
    (folder / "README.txt").write_text("credits")
    return folder


def test_other_picture_set(tmp_path, picture_dir):
    out = tmp_path / "own"
    dsd = B.build_longtail(out, lang="fr", images=30, seed=1, image_size=32, pictures=picture_dir, show_progress=False)
    inventory = load_concepts(out)
    assert sorted(c.id for c in inventory.concepts) == sorted(COLOURS)
    report = json.loads((out / "build_report.json").read_text())
    assert report["notes"]["concept candidates dropped"]["picture cannot be decoded"] == 1
    assert report["notes"]["emoji entries that are not concepts"]["other files in the picture folder (not <hex>.png)"] == 2
    # every picture shows exactly the colours of the concepts it lists (pixels of pure colour)
    for row in dsd["train"]:
        colours = set(row["image"].convert("RGB").getdata())
        shown = {cid for cid, rgb in COLOURS.items() if rgb in colours}
        assert set().union(*map(set, row["source_concepts"])) <= shown
    assert check_dataset(out).ok


def test_teacher_pool_shares_no_picture_with_the_translation_build(tmp_path, picture_dir):
    world_dir, pool_dir = tmp_path / "world", tmp_path / "pool"
    B.build_longtail(world_dir, lang="es", images=40, seed=2, image_size=32, pictures=picture_dir,
                     show_progress=False)
    B.build_longtail(pool_dir, lang="es", images=40, seed=2, image_size=32, pictures=picture_dir,
                     english_only=True, show_progress=False)
    pool = [r for s in ("train", "validation", "test") for r in rows(pool_dir, s)]
    world = [r for s in ("train", "validation", "test") for r in rows(world_dir, s)]
    assert all(r["source"] == [] and r["parallel"] == [] and r["source_concepts"] == [] and r["english"] for r in pool)
    assert not {r["image_id"] for r in pool} & {r["image_id"] for r in world}
    assert not {r["image"] for r in pool} & {r["image"] for r in world}
    report = json.loads((pool_dir / "build_report.json").read_text())
    assert report["captions"]["train"]["english-only images"] == len(rows(pool_dir, "train"))
    assert report["notes"]["concepts shown"]["pictures per concept: min / median / max"][0] >= 40 // 5
    assert check_dataset(pool_dir).ok


def test_check_validates_source_concepts(builds, tmp_path):
    assert check_dataset(builds["es"]).ok
    dsd = datasets.load_from_disk(str(builds["es"]))
    bad = dsd["test"].map(lambda r: {"source_concepts": [["nope"]] + r["source_concepts"]})
    damaged = tmp_path / "bad"
    datasets.DatasetDict({"train": dsd["train"], "validation": dsd["validation"], "test": bad}).save_to_disk(str(damaged))
    (damaged / "concepts.json").write_text((builds["es"] / "concepts.json").read_text())
    errors = check_dataset(damaged).errors
    assert any("source_concepts has 3 entries for 2 source captions" in e for e in errors)
    assert any("not in concepts.json: ['nope']" in e for e in errors)


def test_load_concepts_refuses_bad_files(tmp_path, builds):
    good = json.loads((builds["zh"] / "concepts.json").read_text())
    assert len(load_concepts(builds["zh"]).concepts) == len(good["concepts"])
    cases = {"not json": "{", "no concepts": json.dumps({"version": 1, "lang": "zh", "concepts": []}),
             "bad weight": json.dumps({**good, "concepts": [{**good["concepts"][0], "weight": -1}]}),
             "duplicate": json.dumps({**good, "concepts": good["concepts"] + good["concepts"][:1]})}
    for name, text in cases.items():
        path = tmp_path / f"{name}.json"
        path.write_text(text)
        with pytest.raises(InputError) as info:
            load_concepts(path)
        assert str(path) in str(info.value) and "\n" not in str(info.value), name
    with pytest.raises(InputError):
        load_concepts(tmp_path / "missing")


def test_held_out_pictures_cover_every_concept_once(picture_dir):
    world = B.World("es", pictures=picture_dir, image_size=32)
    pictures = held_out_pictures(world, copies=2)
    assert Counter(cid for cid, _ in pictures) == {cid: 2 for cid in COLOURS}
    for cid, image in pictures:
        assert COLOURS[cid] in set(image.getdata())
    assert [im.tobytes() for _, im in pictures] == [im.tobytes() for _, im in held_out_pictures(world, copies=2)]


def test_single_share_sets_the_share_of_single_object_pictures(worlds):
    world = worlds["es"]
    assert B.layout_weights("pool") == B.LAYOUT_WEIGHTS["pool"]
    assert B.layout_weights("pool", 0.5) == pytest.approx(B.LAYOUT_WEIGHTS["pool"])  # the default, spelled out
    assert B.layout_weights("world", 0.65) == pytest.approx((0.65, 0.125, 0.1, 0.125))  # the rest keeps its proportions
    sampler = world.sampler("pool")
    for share in (0.0, 0.8, 1.0):
        layouts = Counter(B.make_sample(world, sampler, i, stream="pool", captions_per_image=1, parallel_fraction=0,
                                        single_share=share).scene.layout for i in range(400))
        assert abs(layouts["single"] / 400 - share) < 4 * (share * (1 - share) / 400) ** 0.5 + 1e-9, (share, layouts)


def test_concept_prompts_are_pool_captions_and_the_rarest_third_is_rarest(worlds):
    world = worlds["es"]
    prompts = concept_prompts(world)
    assert set(prompts) == {e.id for e in world.entries}
    names = {e.id: world.english.names[e.id] for e in world.entries}
    for cid, text in prompts.items():  # the 'picture' frame as the pool writes it: "a picture of a/an ..."
        assert re.fullmatch(r"a picture of an? .+", text) and names[cid] in text
    assert prompts["1f34e"] == "a picture of a red apple"
    rare = rarest_third(world)
    assert len(rare) == len(world.entries) // 3
    assert max(world.weights[c] for c in rare) <= min(world.weights[e.id] for e in world.entries if e.id not in rare)


def test_bad_options_are_one_line_errors(tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        data_prep_main(["longtail", "--lang", "xx", "--out", str(tmp_path / "o")])
    assert info.value.code == 2
    assert data_prep_main(["longtail", "--pictures", str(tmp_path / "none"), "--out", str(tmp_path / "o")]) == 2
    assert data_prep_main(["stats", str(tmp_path / "none")]) == 2
    with pytest.raises(SystemExit) as info:
        data_prep_main(["longtail", "--single-share", "1.5", "--out", str(tmp_path / "o")])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("error:") == 4 and "Traceback" not in err


def test_line_art_redraws_every_picture_as_edges_on_white_and_destroys_nothing(tmp_path, capsys):
    """`python -m data_prep.longtail.line_art`: the same file names (other files ignored); a blank
    (transparent) picture is white in a dark one-pixel frame, a filled square is white inside and out with dark edges at
    its border; a non-empty --out, or --out the folder of the pictures it reads, is one line and exit 2."""
    import numpy as np
    from PIL import Image

    from data_prep.longtail.line_art import main as line_art

    pictures = tmp_path / "pictures"
    pictures.mkdir()
    Image.new("RGBA", (24, 24), (0, 0, 0, 0)).save(pictures / "1f600.png")
    square = Image.new("RGBA", (24, 24), (0, 0, 0, 0))
    square.paste((200, 30, 30, 255), (6, 6, 18, 18))
    square.save(pictures / "1f34e.png")
    (pictures / "notes.txt").write_text("not a picture")
    out = tmp_path / "lines"
    assert line_art(["--pictures", str(pictures), "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["1f34e.png", "1f600.png"]
    blank = np.asarray(Image.open(out / "1f600.png"))
    assert blank.shape == (24, 24, 3) and (blank[1:-1, 1:-1] == 255).all()  # white inside its frame
    assert (blank[0] == 0).all() and (blank[:, -1] == 0).all()  # the frame the filter leaves
    drawn = np.asarray(Image.open(out / "1f34e.png").convert("L")).astype(int)
    assert drawn[12, 12] == 255 and drawn[1, 1] == 255  # inside and outside the square
    assert drawn[5, 12] < 128 and drawn[12, 5] < 128  # its border
    before = sorted(p.name for p in out.iterdir())
    assert line_art(["--pictures", str(pictures), "--out", str(out)]) == 2
    assert line_art(["--pictures", str(pictures), "--out", str(pictures)]) == 2
    assert sorted(p.name for p in out.iterdir()) == before
    assert "is not empty" in capsys.readouterr().err


def test_examples_page_shows_each_world_by_its_folder_name_and_destroys_nothing(builds, tmp_path, capsys):
    """`python -m data_prep.longtail.examples`: one section per dataset, named by its folder (no local
    path), `--rows` pictures of `--split` each, with their captions; an existing --out is one line and
    exit 2 unless --overwrite."""
    import html

    from data_prep.longtail.examples import main as examples

    out = tmp_path / "examples.html"
    argv = [str(builds["es"]), str(builds["zh"]), "--rows", "2", "--split", "train", "--out", str(out)]
    assert examples(argv) == 0
    page = out.read_text(encoding="utf-8")
    assert page.count("<h2>") == 2 and "<h2>es — es, train split, first 2 pictures</h2>" in page
    assert str(builds["es"].parent) not in page
    assert page.count('<img src="data:image/png;base64,') == 4
    first = datasets.load_from_disk(str(builds["zh"]))["train"][0]
    assert all(html.escape(text) in page for text in (*first["source"], *first["english"]))
    out.write_text("mine")
    assert examples(argv) == 2 and out.read_text() == "mine"
    assert "Traceback" not in capsys.readouterr().err
    assert examples([*argv, "--overwrite"]) == 0 and out.read_text(encoding="utf-8") == page
