"""The coco-cn builder on the real COCO-CN v201805 text files, with placeholder COCO images.

The archive lives outside the project (../shared/data, see its README) and is never copied into
it: the test extracts it to a temporary folder, writes an 8x8 JPEG for every listed image under
its real file name and placeholder English COCO captions, builds the whole dataset and checks
every image, caption and translation against an independent parse of the raw files.
"""
import io
import json
import tarfile
from collections import Counter, defaultdict
from pathlib import Path

import pytest
from PIL import Image

from data_prep import load_dataset_dir
from data_prep.builders.coco_cn import build_coco_cn
from data_prep.check import check_dataset

TARBALL = Path(__file__).resolve().parents[2] / "shared" / "data" / "coco-cn-version1805.tar.gz"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not TARBALL.is_file(), reason=f"real COCO-CN files not available ({TARBALL} is absent)"),
]


def english(cocoid: int, k: int) -> str:
    return f"Placeholder English caption {k} of image {cocoid}."


@pytest.fixture(scope="module")
def raw(tmp_path_factory):
    """Extracted archive + COCO folder with placeholder images and captions (2014 naming)."""
    root = tmp_path_factory.mktemp("coco-cn-real")
    with tarfile.open(TARBALL) as tar:
        tar.extractall(root, filter="data")
    files = root / "coco-cn-version1805"
    splits = {split: [line.strip() for line in (files / f"coco-cn_{name}.txt").read_text().split("\n") if line.strip()]
              for split, name in (("train", "train"), ("validation", "val"), ("test", "test"))}
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), (90, 140, 200)).save(buf, format="JPEG")
    jpeg = buf.getvalue()
    coco = root / "coco"
    images, annotations = defaultdict(list), defaultdict(list)
    for ids in splits.values():
        for image in ids:
            release, cocoid = image.split("_")[1], int(image[-12:])
            (coco / release).mkdir(parents=True, exist_ok=True)
            (coco / release / f"{image}.jpg").write_bytes(jpeg)
            images[release].append({"id": cocoid, "file_name": f"{image}.jpg"})
            annotations[release] += [{"image_id": cocoid, "id": len(annotations[release]), "caption": english(cocoid, k)}
                                     for k in range(5)]
    (coco / "annotations").mkdir()
    for release in images:
        (coco / "annotations" / f"captions_{release}.json").write_text(
            json.dumps({"images": images[release], "annotations": annotations[release]}))
    return root, files, splits


@pytest.fixture(scope="module")
def built(raw, tmp_path_factory):
    root, _, _ = raw
    out = tmp_path_factory.mktemp("built") / "coco-cn"
    train2014 = root / "coco" / "annotations" / "captions_train2014.json"
    build_coco_cn(out, root, overlap_with=[str(train2014)], show_progress=False)
    return out, train2014


def test_every_image_caption_and_translation_is_accounted_for(raw, built):
    _, files, splits = raw
    out, train2014 = built
    report = json.loads((out / "build_report.json").read_text())
    assert report["kept"] == {"train": 18341, "validation": 1000, "test": 1000}
    assert report["dropped_total"] == 0
    written = [line for line in (files / "imageid.caption.txt").read_text(encoding="utf-8").split("\n") if line]
    translated = [line for line in (files / "imageid.manually-translated-caption.txt").read_text(encoding="utf-8")
                  .split("\n") if line]
    assert (len(written), len(translated)) == (22218, 5000)
    notes = report["notes"]
    assert notes["input human-written captions"] == 22218 and notes["input manual translations"] == 5000
    per_image = Counter(line.split("\t", 1)[0].rsplit("#", 1)[0] for line in written)
    expected = {split: sum(per_image[i] for i in ids) for split, ids in splits.items()}
    expected["test"] += 5000
    assert {s: c["source"] for s, c in report["captions"].items()} == expected
    assert sum(expected.values()) == 22218 + 5000
    assert report["captions"]["test"]["parallel"] == 5000
    assert notes["images with tags"] == 20341
    in_train2014 = sum(i.startswith("COCO_train2014_") for i in splits["test"])
    assert notes["test images from COCO train2014"] == in_train2014 == 583
    assert notes["overlap"][str(train2014)]["test"] == 583


def test_rows_match_an_independent_parse(raw, built):
    _, files, splits = raw
    out, _ = built
    dsd = load_dataset_dir(out)
    rows = {split: {r["image_id"]: r for r in dsd[split].remove_columns("image")} for split in dsd}
    for split, ids in splits.items():
        assert sorted(rows[split]) == sorted(i[-12:] for i in ids)
    written = defaultdict(list)
    for line in (files / "imageid.caption.txt").read_text(encoding="utf-8").split("\n"):
        if line:
            key, text = line.split("\t", 1)
            written[key.rsplit("#", 1)[0][-12:]].append((int(key.rsplit("#", 1)[1]), text.strip()))
    split_of = {i[-12:]: split for split, ids in splits.items() for i in ids}
    for cocoid, caps in written.items():
        r = rows[split_of[cocoid]][cocoid]
        assert r["source"][:len(caps)] == [t for _, t in sorted(caps)]
        assert r["english"] == [english(int(cocoid), k) for k in range(5)]
    pairs = set()
    for r in rows["test"].values():
        pairs |= {(r["image_id"], s, p) for s, p in zip(r["source"], r["parallel"]) if p}
    expected = set()
    for line in (files / "imageid.manually-translated-caption.txt").read_text(encoding="utf-8").split("\n"):
        if line:
            key, text = line.split(" ", 1)
            image, _, k = key.split("#")
            expected.add((image[-12:], text.strip(), english(int(image[-12:]), int(k))))
    assert pairs == expected and len(expected) == 5000
    assert {r["provenance"] for r in rows["test"].values()} == {"coco-cn/test/source=hw+ht,english=hw,parallel=hw"}


def test_validator_passes(built):
    out, _ = built
    result = check_dataset(out)
    assert result.ok, result.errors[:5]
    assert result.counts == {"train": 18341, "validation": 1000, "test": 1000}
