"""Real-format builders on the fixtures of tests/fixtures/: every column of every row, the planted
missing image and empty caption counted, the validator passing, wrong layouts failing at once."""
import bz2
import csv
import gzip
import importlib.util
import io
import json
import shutil
import subprocess
import sys
from pathlib import Path

import datasets
import numpy as np
import openpyxl
import pytest
from PIL import Image

from data_prep.builders import BUILDERS, get_builder
from data_prep.builders.coco_captions import cocoid
from data_prep.builders.coco_cn import build_coco_cn
from data_prep.builders.coco_es import build_coco_es
from data_prep.builders.coco_mt import build_coco_mt
from data_prep.builders.files import InputError, LayoutError
from data_prep.builders.imagefolder import build_imagefolder
from data_prep.builders.multi30k import build_multi30k
from data_prep.builders.overlap import normalize_image_id, read_image_set
from data_prep.builders.xm3600 import build_xm3600
from data_prep.check import check_dataset

FIXTURES = Path(__file__).parent / "fixtures"
_spec = importlib.util.spec_from_file_location("make_fixtures", FIXTURES / "make_fixtures.py")
fx = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(fx)


def table(dsd: datasets.DatasetDict) -> dict[str, dict[str, dict]]:
    """split -> image_id -> row, with the image as its embedded bytes."""
    out = {}
    for split, ds in dsd.items():
        raw = ds.cast_column("image", datasets.Image(decode=False))
        out[split] = {row["image_id"]: row for row in raw}
    return out


def report_of(out: Path) -> dict:
    return json.loads((out / "build_report.json").read_text())


def assert_rows(dsd: datasets.DatasetDict, expected: dict[str, dict[str, dict]]) -> None:
    """Every column of every row equals the expectation; images are the original file bytes."""
    got = table(dsd)
    assert {s: sorted(rows) for s, rows in got.items()} == {s: sorted(rows) for s, rows in expected.items()}
    for split, rows in expected.items():
        for image_id, want in rows.items():
            row = got[split][image_id]
            assert row["image"]["bytes"] == Path(want["image"]).read_bytes(), (split, image_id)
            for col in ("lang", "source", "english", "parallel", "provenance"):
                assert row[col] == want[col], (split, image_id, col)
            pixels = np.asarray(Image.open(io.BytesIO(row["image"]["bytes"])).convert("RGB"))
            colour = fx.colour(want.get("colour_of") or Path(want["image"]).name)  # fixture colours follow names
            assert np.abs(pixels.astype(int) - colour).max() <= 3, (split, image_id)


def assert_planted_drops(out: Path, split: str, extra: dict | None = None) -> None:
    """The fixture's missing image and empty caption are counted in `split`; the validator passes."""
    dropped = report_of(out)["dropped"][split]
    assert dropped["missing image file"] == 1
    assert dropped["empty source caption"] == 1
    if extra is not None:
        assert dropped == {"missing image file": 1, "empty source caption": 1, **extra}
    result = check_dataset(out)
    assert result.ok, result.errors


def row(image, lang, source, english, parallel, provenance):
    return dict(image=image, lang=lang, source=source, english=english, parallel=parallel, provenance=provenance)


# --- fixtures are what the script writes -----------------------------------------------------------
def _content(path: Path):
    if path.suffix == ".xlsx":
        book = openpyxl.load_workbook(path, read_only=True)
        values = [list(r) for r in book.worksheets[0].iter_rows(values_only=True)]
        book.close()
        return values
    if path.suffix in (".jpg", ".png") and not path.name.startswith("._"):
        return np.asarray(Image.open(path)).tolist()
    if path.suffix == ".gz":
        return gzip.decompress(path.read_bytes())
    if path.suffix == ".bz2":
        return bz2.decompress(path.read_bytes())
    return path.read_bytes()


def test_fixtures_are_the_generator_output(tmp_path):
    fx.make_fixtures(tmp_path)
    made = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.is_file())
    committed = sorted(p.relative_to(FIXTURES) for p in FIXTURES.rglob("*")
                       if p.is_file() and p.name != "make_fixtures.py" and "__pycache__" not in p.parts)
    assert made == committed
    for rel in made:
        assert _content(tmp_path / rel) == _content(FIXTURES / rel), rel


# --- COCO-CN -------------------------------------------------------------------------------------------
CN = FIXTURES / "coco-cn"
CN_COCO = CN / "coco"


def cn_expected():
    train_en, val_en = fx.CN_ENGLISH_TRAIN, fx.CN_ENGLISH_VAL
    prov = "coco-cn/{}/source=hw,english=hw,parallel=none"
    test_prov = "coco-cn/test/source=hw+ht,english=hw,parallel=hw"
    return {
        "train": {
            "000000296735": row(CN_COCO / "train2014/COCO_train2014_000000296735.jpg", "zh",
                                ["一间干净的卧室。", "一张床放在窗户旁边 ，阳光照进来。", "床上放着白色的寸衫。"],
                                train_en[296735], ["", "", ""], prov.format("train")),
            "000000043734": row(CN_COCO / "val2014/COCO_val2014_000000043734.jpg", "zh", ["两只狗在水里游永。"],
                                val_en[43734], [""], prov.format("train")),
        },
        "validation": {
            "000000319427": row(CN_COCO / "train2014/COCO_train2014_000000319427.jpg", "zh", ["一个男人在海上冲浪。"],
                                train_en[319427], [""], prov.format("validation")),
        },
        "test": {
            "000000503310": row(CN_COCO / "train2014/COCO_train2014_000000503310.jpg", "zh",
                                ["机舱里整齐地排列着座椅。", "飞机内一排排空座位。", "蓝色座椅的客机内部。",
                                 "有条纹座椅的飞机客舱。", "商用喷气式飞机里的座位和窗户。", "空飞机过道的景象。"],
                                train_en[503310], [""] + train_en[503310], test_prov),
            "000000316323": row(CN_COCO / "val2014/COCO_val2014_000000316323.jpg", "zh",
                                ["一个人站在桥下。", "一个男人在桥边拿着一个金属物体。", "一个人拿着一件闪亮的金属工具。",
                                 "有人在户外拿着一块金属。", "一个男人拿着一根金属棒站着。", "河边一个拿着金色金属物体的人。"],
                                val_en[316323], [""] + val_en[316323], test_prov),
        },
    }


def test_coco_cn(tmp_path):
    out = tmp_path / "cn"
    dsd = build_coco_cn(out, CN, show_progress=False)  # the files sit in CN/coco-cn-version1805/, COCO in CN/coco
    assert_rows(dsd, cn_expected())
    assert_planted_drops(out, "train", extra={})
    report = report_of(out)
    assert report["dropped"]["input"] == {"caption of an image in no split list": 1}
    notes = report["notes"]
    assert notes["input human-written captions"] == 10 and notes["input manual translations"] == 10
    assert notes["tags"]["000000296735"] == "卧室 床 窗户" and notes["images with tags"] == 6
    assert notes["test images from COCO train2014"] == 1 and notes["test images from COCO val2014"] == 1
    # every input caption is accounted for: 17 kept, 1 empty, 1 of an unlisted image, 1 of the image without a file
    assert {s: c["source"] for s, c in report["captions"].items()} == {"train": 4, "validation": 1, "test": 12}
    assert 17 + 3 == notes["input human-written captions"] + notes["input manual translations"]
    assert report["captions"]["test"]["parallel"] == 10


def test_coco_cn_typo_list_only_on_request(tmp_path):
    out = tmp_path / "typo"
    dsd = build_coco_cn(out, CN, typo_list=CN / "typos.txt", show_progress=False)
    rows = table(dsd)["train"]
    assert rows["000000296735"]["source"] == ["一间干净的卧室。", "一张床放在窗户旁边 ，阳光照进来。"]
    assert rows["000000043734"]["source"] == ["两只狗在水里游泳。"]
    report = report_of(out)
    assert report["dropped"]["train"]["known typo (--typo-list)"] == 1
    assert report["notes"]["typo fixes applied"] == 1


def test_coco_cn_overlap_report_and_drop(tmp_path):
    train2014 = CN_COCO / "annotations/captions_train2014.json"
    out = tmp_path / "overlap"
    dsd = build_coco_cn(out, CN, overlap_with=[str(train2014)], drop_overlap_from=["train"], show_progress=False)
    notes = report_of(out)["notes"]
    assert notes["overlap"] == {str(train2014): {"train": 2, "validation": 1, "test": 1}}
    assert notes[f"overlap test & {train2014}"] == 1
    assert sorted(table(dsd)["train"]) == ["000000043734"]  # 296735 and 9 (no image anyway) are COCO train2014
    assert report_of(out)["dropped"]["train"][f"image in {train2014} (--drop-overlap-from)"] == 2
    # a built dataset as the other set: COCO-CN's own test split
    other = read_image_set(f"{out}:test")
    assert other.ids == {"000000503310", "000000316323"}
    listed = read_image_set(str(CN / "coco-cn-version1805/coco-cn_test.txt"))
    assert listed.ids == other.ids


def test_coco_cn_2017_naming(tmp_path):
    """The same build with the images renamed to 2017 naming in train2017/ and val2017/."""
    coco = tmp_path / "coco"
    (coco / "annotations").mkdir(parents=True)
    for name in ("captions_train2014.json", "captions_val2014.json"):
        (coco / "annotations" / name).write_bytes((CN_COCO / "annotations" / name).read_bytes())
    renamed = {}
    for old in CN_COCO.glob("*2014/COCO_*.jpg"):
        folder = "train2017" if "train" in old.parent.name else "val2017"
        new = coco / folder / f"{old.name[-16:]}"
        new.parent.mkdir(exist_ok=True)
        new.write_bytes(old.read_bytes())
        renamed[old] = new
    dsd = build_coco_cn(tmp_path / "out", CN, coco_dir=coco, show_progress=False)
    expected = cn_expected()
    for rows in expected.values():
        for r in rows.values():
            r["image"], r["colour_of"] = renamed[r["image"]], r["image"].name
    assert_rows(dsd, expected)


# --- MS-COCO-ES ------------------------------------------------------------------------------------------
ES = FIXTURES / "coco-es"


def es_expected(variant: str):
    img = lambda folder, i: ES / "coco" / folder / f"{i:012d}.jpg"  # noqa: E731
    en, val_en = fx.ES_ENGLISH_TRAIN, fx.ES_ENGLISH_VAL
    prov = "coco-es/{}/source={},english=hw,parallel=none"
    human = {
        "000000000139": row(img("train2017", 139), "es", ["Un hombre montando una bicicleta por la calle."], en[139],
                            [""], prov.format("train", "ht")),
        "000000000285": row(img("train2017", 285), "es", ["Un oso pardo sentado en la hierba.",
                                                           "Un gran oso marrón mirando a la cámara."], en[285],
                            ["", ""], prov.format("train", "ht")),
    }
    train = human
    if variant == "both":
        train = dict(human)
        train["000000000139"] = row(img("train2017", 139), "es", ["Un hombre montando una bicicleta por la calle.",
                                                                   "Un hombre que monta una bicicleta en la calle."],
                                    en[139], ["", ""], prov.format("train", "ht+mt"))
        train["000000000724"] = row(img("train2017", 724), "es", ["Una señal de alto en una esquina de la calle."],
                                    en[724], [""], prov.format("train", "mt"))
    return {
        "train": train,
        "validation": {"000000000776": row(img("val2017", 776), "es", ["Tres osos de peluche en un estante.",
                                                                        "Animales de peluche sentados juntos."],
                                           val_en[776], ["", ""], prov.format("validation", "ht"))},
        "test": {"000000000785": row(img("val2017", 785), "es", ["Una mujer esquiando por una pendiente.",
                                                                  "Un esquiador con una chaqueta roja."],
                                     val_en[785], ["", ""], prov.format("test", "ht"))},
    }


@pytest.mark.parametrize("variant", ["human", "both"])
def test_coco_es(tmp_path, variant):
    out = tmp_path / variant
    dsd = build_coco_es(out, ES, train_variant=variant, show_progress=False)
    assert_rows(dsd, es_expected(variant))
    assert_planted_drops(out, "train", extra={})


def test_coco_es_reads_csv_like_xlsx(tmp_path):
    data = tmp_path / "csv"
    data.mkdir()
    for xlsx in ES.glob("*.xlsx"):
        book = openpyxl.load_workbook(xlsx, read_only=True)
        with open(data / f"{xlsx.stem}.csv", "w", newline="", encoding="utf-8") as f:
            csv.writer(f).writerows(book.worksheets[0].iter_rows(values_only=True))
        book.close()
    dsd = build_coco_es(tmp_path / "out", data, coco_dir=ES / "coco", show_progress=False)
    assert_rows(dsd, es_expected("human"))


def test_coco_es_damaged_workbook_is_an_input_error(tmp_path):
    data = tmp_path / "es"
    shutil.copytree(ES, data)
    (data / "validation.xlsx").write_bytes((data / "validation.xlsx").read_bytes()[:100])
    with pytest.raises(InputError, match=r"validation.xlsx: not a readable .xlsx workbook"):
        build_coco_es(tmp_path / "out", data, coco_dir=ES / "coco", show_progress=False)
    assert not (tmp_path / "out").exists()


# --- COCO-MT ---------------------------------------------------------------------------------------------
MT = FIXTURES / "coco-mt"


def test_coco_mt(tmp_path):
    out = tmp_path / "mt"
    dsd = build_coco_mt(out, MT, "es", show_progress=False)
    img = lambda folder, i: MT / "coco" / folder / f"COCO_{folder}_{i:012d}.jpg"  # noqa: E731
    prov = "coco-mt/{}/source=mt,english=hw,parallel=hw"
    assert_rows(dsd, {
        "train": {
            "000000000036": row(img("train2014", 36), "es", ["una mujer sosteniendo un paraguas .",
                                                              "una señora con un paraguas amarillo ."],
                                fx.MT_ENGLISH_TRAIN[36], ["a woman holding an umbrella .", "a lady with a yellow umbrella ."],
                                prov.format("train")),
            "000000000049": row(img("train2014", 49), "es", ["un caballo marrón pastando ."], fx.MT_ENGLISH_TRAIN[49],
                                ["a brown horse grazing ."], prov.format("train")),
        },
        "validation": {
            "000000000042": row(img("val2014", 42), "es", ["un perro sentado en un sofá .", "un perro pequeño en el sofá ."],
                                fx.MT_ENGLISH_VAL[42], ["a dog sitting on a couch .", "a small dog on the sofa ."],
                                prov.format("validation")),
        },
    })
    assert_planted_drops(out, "train", extra={"malformed line in coco_mt_train.jsonl.bz2": 1})
    with pytest.raises(ValueError, match=r"trg_lang='fr'.*\['de', 'es'\]"):
        build_coco_mt(tmp_path / "fr", MT, "fr", show_progress=False)


# --- Multi30k --------------------------------------------------------------------------------------------
M30K = FIXTURES / "multi30k" / "data"


def test_multi30k_task1(tmp_path):
    out = tmp_path / "m30k"
    dsd = build_multi30k(out, M30K, lang="de", show_progress=False)
    img = lambda name: M30K / "flickr30k-images" / name  # noqa: E731
    en, de = fx.M30K_TASK1["train"]
    prov = "multi30k/{}/source=ht,english=hw,parallel=hw"
    (ven,), (vde,) = fx.M30K_TASK1["val"]
    (ten,), (tde,) = fx.M30K_TASK1["test_2016_flickr"]
    assert_rows(dsd, {
        "train": {"1000092795": row(img("1000092795.jpg"), "de", [de[0]], [en[0]], [en[0]], prov.format("train"))},
        "validation": {"1018148011": row(img("1018148011.jpg"), "de", [vde], [ven], [ven], prov.format("validation"))},
        "test": {"1007129816": row(img("1007129816.jpg"), "de", [tde], [ten], [ten], prov.format("test"))},
    })
    # image 10002456's only German line is empty: the caption and then the image are dropped
    assert_planted_drops(out, "train", extra={"no source caption": 1})


def test_multi30k_both_tasks(tmp_path):
    dsd = build_multi30k(tmp_path / "m30k", M30K, lang="de", tasks=[1, 2], show_progress=False)
    rows = table(dsd)
    en, de = fx.M30K_TASK1["train"]
    first = rows["train"]["1000092795"]
    t2 = lambda lang: [fx.m30k_task2("train", "1000092795.jpg", k, lang) for k in range(1, 6)]  # noqa: E731
    assert first["source"] == [de[0]] + t2("de")
    assert first["parallel"] == [en[0]] + [""] * 5
    assert first["english"] == [en[0]] + t2("en")
    assert first["provenance"] == "multi30k/train/source=ht+hw,english=hw,parallel=hw"
    second = rows["train"]["10002456"]  # its task-1 German line is empty: only the 5 task-2 captions remain
    assert second["source"] == [fx.m30k_task2("train", "10002456.jpg", k, "de") for k in range(1, 6)]
    assert second["parallel"] == [""] * 5
    assert second["provenance"] == "multi30k/train/source=ht+hw,english=hw,parallel=none"
    assert check_dataset(tmp_path / "m30k").ok


# --- XM3600 ----------------------------------------------------------------------------------------------
XM = FIXTURES / "xm3600"


def test_xm3600(tmp_path):
    out = tmp_path / "xm"
    dsd = build_xm3600(out, XM, "es", show_progress=False)
    assert list(dsd) == ["test"]
    prov = "xm3600/test/source=hw,english=hw,parallel=none"
    caps = fx.XM_CAPTIONS
    assert_rows(dsd, {"test": {
        "000411001ff7dd4f": row(XM / "images/000411001ff7dd4f.jpg", "es", [caps["000411001ff7dd4f"]["es"][0]],
                                caps["000411001ff7dd4f"]["en"], [""], prov),
        "00042f3a6f1e4e1a": row(XM / "images/00042f3a6f1e4e1a.jpg", "es", caps["00042f3a6f1e4e1a"]["es"],
                                caps["00042f3a6f1e4e1a"]["en"], [""], prov),
    }})
    assert_planted_drops(out, "test", extra={})
    with pytest.raises(ValueError, match=r"languages present: \['en', 'es', 'zh'\]"):
        build_xm3600(tmp_path / "fr", XM, "fr", show_progress=False)


# --- image folders ---------------------------------------------------------------------------------------
def test_imagefolder_jsonl(tmp_path):
    root = FIXTURES / "imagefolder"
    out = tmp_path / "if"
    dsd = build_imagefolder(out, root, "es", show_progress=False)
    prov = "imagefolder/{}/source=hw,english=hw,parallel={}"
    assert_rows(dsd, {
        "train": {
            "photos/casa": row(root / "photos/casa.png", "es", ["una casa roja junto al mar", "la casa es roja"],
                               ["a red house by the sea"], ["a red house by the sea", ""], prov.format("train", "ht")),
            "photos/perro": row(root / "photos/perro.png", "es", ["un perro negro"], ["a black dog", "a dog on the grass"],
                                [""], prov.format("train", "none")),
        },
        "test": {"photos/gato": row(root / "photos/gato.png", "es", ["un gato blanco"], ["a white cat"], ["a white cat"],
                                    prov.format("test", "ht"))},
    })
    assert_planted_drops(out, "test", extra={})


def test_imagefolder_csv_split_folders(tmp_path):
    root = FIXTURES / "imagefolder-csv"
    out = tmp_path / "ifcsv"
    dsd = build_imagefolder(out, root, "es", name="linguist", source_origin="hw", parallel_origin="ht",
                            show_progress=False)
    prov = "linguist/{}/source=hw,english=hw,parallel={}"
    assert_rows(dsd, {
        "train": {
            "casa": row(root / "train/casa.png", "es", ["una casa roja", "la casa junto al mar"], ["a red house"],
                        ["a red house", ""], prov.format("train", "ht")),
            "perro": row(root / "train/perro.png", "es", ["un perro, negro"], ["a black dog"], [""],
                         prov.format("train", "none")),
        },
        "test": {"gato": row(root / "test/gato.png", "es", ["un gato blanco"], ["a white cat"], [""],
                             prov.format("test", "none"))},
    })
    assert_planted_drops(out, "test", extra={})


def test_imagefolder_keeps_english_only_rows_as_teacher_data(tmp_path):
    """Rows without a source caption (no column, an empty list) but with English captions are kept and
    counted: a folder of English-captioned pictures is a teacher pool. A row with no caption at all is
    dropped with its reason; `check` accepts the result and says how many rows are English-only."""
    root = tmp_path / "pool"
    root.mkdir()
    for name in ("a", "b", "c", "d"):
        Image.new("RGB", (8, 8), "red").save(root / f"{name}.png")
    rows = [{"file_name": "a.png", "source": "una casa", "english": "a house", "parallel": "a house"},
            {"file_name": "b.png", "english": ["a dog", "a dog on grass"]},
            {"file_name": "c.png", "source": [], "english": "a cat"},
            {"file_name": "d.png", "source": [], "english": []}]
    (root / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "out"
    dsd = build_imagefolder(out, root, "en", show_progress=False)
    got = {r["image_id"]: r for r in dsd["train"]}
    assert sorted(got) == ["a", "b", "c"]
    assert got["b"]["source"] == [] and got["b"]["parallel"] == [] and got["b"]["english"] == ["a dog", "a dog on grass"]
    assert got["c"]["provenance"] == "pool/train/source=none,english=hw,parallel=none"
    assert got["a"]["provenance"] == "pool/train/source=hw,english=hw,parallel=ht"
    report = json.loads((out / "build_report.json").read_text())
    assert report["captions"]["train"]["english-only images"] == 2
    assert report["dropped"]["train"] == {"no caption": 1}
    result = check_dataset(out)
    assert result.ok and any("2 of 3 rows have English captions only" in w for w in result.warnings)


def test_imagefolder_paths_outside_the_folder_are_counted_skips_never_opened(tmp_path, monkeypatch):
    """`../x.png`, an absolute path and `../../../../etc/passwd` are dropped as `path outside the image
    folder` without being opened; a `..` that stays inside the folder (train/../photos) is fine."""
    root = tmp_path / "folder"
    (root / "photos").mkdir(parents=True)
    (root / "train").mkdir()
    Image.new("RGB", (8, 8), "red").save(root / "photos" / "a.png")
    Image.new("RGB", (8, 8), "blue").save(tmp_path / "secret.png")
    rows = [{"file_name": name, "source": "una casa", "english": "a house"}
            for name in ("../photos/a.png", "../../secret.png", str(tmp_path / "secret.png"), "../../../../etc/passwd")]
    (root / "train" / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    opened = []
    real_open = Image.open
    monkeypatch.setattr(Image, "open", lambda fp, *a, **k: opened.append(str(fp)) or real_open(fp, *a, **k))
    real_read = Path.read_bytes
    monkeypatch.setattr(Path, "read_bytes", lambda self: opened.append(str(self)) or real_read(self))
    dsd = build_imagefolder(tmp_path / "out", root, "es", show_progress=False)
    assert dsd["train"]["image_id"] == ["../photos/a"]
    report = json.loads((tmp_path / "out" / "build_report.json").read_text())
    assert report["dropped"]["train"] == {"path outside the image folder": 3}
    assert not any("secret" in p or "passwd" in p for p in opened), opened



def test_imagefolder_rows_of_the_wrong_type_or_broken_quotes_are_counted_drops(tmp_path):
    """A caption given as a number or an object, a lone surrogate, and a CSV quote never closed drop
    their own row with a counted reason; every other row, the ones after the broken quote included,
    is built."""
    root = tmp_path / "folder"
    (root / "train").mkdir(parents=True)
    (root / "test").mkdir()
    for name in ("a", "b", "c", "d"):
        Image.new("RGB", (8, 8), "red").save(root / "train" / f"{name}.png")
        Image.new("RGB", (8, 8), "blue").save(root / "test" / f"{name}.png")
    rows = [{"file_name": "a.png", "source": "una casa", "english": "a house"},
            {"file_name": "b.png", "source": 5, "english": "five"},
            {"file_name": "c.png", "source": ["un gato", {"es": "x"}], "english": "a cat"},
            {"file_name": "d.png", "source": "un \ud800 perro", "english": "a dog"}]
    (root / "train" / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (root / "test" / "metadata.csv").write_text('file_name,source,english\na.png,"una casa,a house\n'
                                                'b.png,un perro,a dog\nc.png,un gato,a cat\n')
    dsd = build_imagefolder(tmp_path / "out", root, "es", show_progress=False)
    assert dsd["train"]["image_id"] == ["a"] and dsd["test"]["image_id"] == ["b", "c"]
    report = json.loads((tmp_path / "out" / "build_report.json").read_text())
    assert report["dropped"]["input"] == {
        'field "source": expected a string or a JSON array, found a JSON number': 1,
        'field "source[1]": expected a string, found a JSON object': 1,
        "text that is not valid Unicode (a lone surrogate)": 1, "unterminated quote": 1}


# --- wrong layouts, help, helpers --------------------------------------------------------------------------
EMPTY_DIR_CALLS = {
    "coco-cn": (lambda d, o: build_coco_cn(o, d), ["coco-cn_train.txt", "coco-cn_val.txt", "coco-cn_test.txt",
                                                  "imageid.caption.txt", "imageid.manually-translated-caption.txt"]),
    "coco-es": (lambda d, o: build_coco_es(o, d), ["train_human_spanish.xlsx", "validation.xlsx", "test.xlsx"]),
    "coco-mt": (lambda d, o: build_coco_mt(o, d, "es"), ["coco_mt_train.jsonl", "coco_mt_dev.jsonl"]),
    "multi30k": (lambda d, o: build_multi30k(o, d, images=[d]), ["task1/raw/train.de", "task1/raw/val.en",
                                                                 "task1/image_splits/test_2016_flickr.txt"]),
    "xm3600": (lambda d, o: build_xm3600(o, d, "es"), ["captions.jsonl"]),
    "imagefolder": (lambda d, o: build_imagefolder(o, d, "es"), ["metadata.jsonl", "metadata.csv"]),
}


@pytest.mark.parametrize("name", sorted(EMPTY_DIR_CALLS))
def test_empty_folder_fails_at_once_listing_missing_files(tmp_path, name):
    call, expected = EMPTY_DIR_CALLS[name]
    with pytest.raises(LayoutError) as info:
        call(tmp_path, tmp_path / "out")
    message = str(info.value)
    for missing in expected:
        assert str(tmp_path / missing) in message, (missing, message)
    assert "Expected layout" in message
    assert not (tmp_path / "out").exists()


def test_coco_cn_without_coco_folder_names_it(tmp_path):
    (tmp_path / "data").mkdir()
    for f in (CN / "coco-cn-version1805").iterdir():
        (tmp_path / "data" / f.name).write_bytes(f.read_bytes())
    with pytest.raises(LayoutError, match="captions_train2014.json"):
        build_coco_cn(tmp_path / "out", tmp_path / "data")


def test_cli_help_documents_the_layout_and_bad_layout_is_one_error(tmp_path, capsys):
    result = subprocess.run([sys.executable, "-m", "data_prep", "coco-cn", "--help"], capture_output=True, text=True)
    assert result.returncode == 0
    assert "imageid.manually-translated-caption.txt" in result.stdout and "--typo-list" in result.stdout
    from data_prep.__main__ import main

    assert main(["coco-cn", "--data-dir", str(tmp_path), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: coco-cn: missing input files:") and str(tmp_path / "coco-cn_train.txt") in err
    from data_prep.__main__ import _parser

    for name in BUILDERS:
        if name in ("synthetic", "longtail"):  # the worlds read no input files
            continue
        with pytest.raises(SystemExit):
            _parser().parse_args([name, "--help"])
        text = capsys.readouterr().out
        assert "Expected layout" in text and get_builder(name).LAYOUT.splitlines()[1] in text, name


def test_overlap_options_are_checked_before_any_work(tmp_path):
    with pytest.raises(InputError, match="needs at least one --overlap-with"):
        build_coco_cn(tmp_path / "out", CN, drop_overlap_from=["train"])
    with pytest.raises(LayoutError, match="--overlap-with nowhere:test: not found"):
        build_xm3600(tmp_path / "out", XM, "es", overlap_with=["nowhere:test"])
    assert not (tmp_path / "out").exists()


def test_image_ids():
    assert cocoid(296735) == cocoid("296735") == cocoid(296735.0) == "000000296735"
    assert cocoid("COCO_train2014_000000296735") == cocoid("000000296735.jpg") == "000000296735"
    with pytest.raises(ValueError, match="not a COCO image id"):
        cocoid("flickr_123")
    assert normalize_image_id("COCO_val2014_000000043734.jpg") == "000000043734"
    assert normalize_image_id("1000092795.jpg") == "1000092795"
