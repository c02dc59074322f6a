"""Builder for COCO-CN v201805: `python -m data_prep coco-cn --data-dir DATA --out DIR`.

COCO-CN (Li et al., 2019) gives 20,341 COCO images human-written Chinese captions (22,218
sentences), official train/val/test lists (18,341 / 1,000 / 1,000) and, for the 1,000 test
images, 5,000 human Chinese translations of their English COCO captions (`<id>#zhm#<k>` is the
translation of English caption k). A translation pair therefore has the Chinese translation as
`source[i]` and the English original as `parallel[i]` (see docs/data.md).
"""
from __future__ import annotations

import argparse
import re
from collections import Counter, defaultdict
from pathlib import Path
from typing import Unpack

import datasets

from ..build_report import BuildReport
from ..schema import HUMAN_TRANSLATED, HUMAN_WRITTEN, NONE, normalize_text, provenance
from ..text_files import numbered_lines, read_list
from . import coco_captions, overlap
from .coco_captions import COCO_LAYOUT, CocoEnglish, CocoImages, cocoid
from .files import LayoutError, find, require
from .skeleton import Build, BuildOptions, options_of

NAME = "coco-cn"
HELP = "COCO-CN v201805: human-written Chinese captions (+ human translations on test) with COCO English captions"
LAYOUT = f"""\
Expected layout (local files only):
DATA_DIR/                                   (--data-dir: the extracted coco-cn-version1805*.tar.gz,
                                             or the folder holding its coco-cn-version1805*/ folder)
  coco-cn_train.txt  coco-cn_val.txt  coco-cn_test.txt
                                            official splits, one id per line: COCO_train2014_000000296735
                                            (cocoid = last 12 digits)
  imageid.caption.txt                       human-written captions "<id>#<k><TAB><caption>"
                                            (v1.1 release name: imageid.human-written-caption.txt)
  imageid.manually-translated-caption.txt   test only: "<id>#zhm#<k><SPACE><caption>", the human Chinese
                                            translation of the image's k-th English COCO caption
  imageid.tags.txt                          optional, "<id><SPACE><tag> <tag> ..." -> build report
                                            (v1.1 release name: imageid.human-written-tags.txt)
  *.bosonseg.txt and macOS ._* entries      ignored
{COCO_LAYOUT}
(COCO_DIR defaults to DATA_DIR/coco.)

Output: train/validation/test = the official lists; image_id = cocoid; lang = zh;
source = human-written captions, then on test the 5 human translations; parallel = "" for written
captions, the translated English original for translations; english = the image's COCO captions.
provenance: coco-cn/<split>/source=hw,english=hw,parallel=none (test: source=hw+ht, parallel=hw).
Example: python -m data_prep coco-cn --data-dir data/raw/coco-cn --coco-dir data/raw/coco --out data/coco-cn"""

SPLIT_FILES = {"train": "coco-cn_train.txt", "validation": "coco-cn_val.txt", "test": "coco-cn_test.txt"}
WANTED = {
    **{split: [name] for split, name in SPLIT_FILES.items()},
    "captions": ["imageid.caption.txt", "imageid.human-written-caption.txt"],
    "translations": ["imageid.manually-translated-caption.txt"],
}
TAG_FILES = ("imageid.tags.txt", "imageid.human-written-tags.txt")

CAPTION_LINE = re.compile(r"^(?P<id>[^#\s]+)#(?P<k>\d+)\t(?P<text>.*)$")
TRANSLATION_LINE = re.compile(r"^(?P<id>[^#\s]+)#zhm#(?P<k>\d+) (?P<text>.*)$")


def find_root(data_dir: Path) -> Path:
    """`data_dir`, or its single `coco-cn-version1805*/` folder when the files are there (macOS `._*` ignored)."""
    if find(data_dir, [SPLIT_FILES["train"]]) is None and data_dir.is_dir():
        nested = sorted(p for p in data_dir.glob("coco-cn-version1805*") if p.is_dir())
        if nested:
            return nested[0]
    return data_dir


def read_numbered(path: Path, pattern: re.Pattern, report: BuildReport) -> dict[str, list[tuple[int, str]]]:
    """`id -> [(k, text), ...]` sorted by k; lines that do not match `pattern` are counted and skipped."""
    out: dict[str, list[tuple[int, str]]] = defaultdict(list)
    for number, line in numbered_lines(path):
        if not line.strip():
            continue
        match = pattern.match(line)
        if match is None:
            report.drop("input", f"malformed line in {path.name}", example=f"{path.name}:{number}: {line[:60]!r}")
            continue
        out[match["id"]].append((int(match["k"]), match["text"]))
    return {key: sorted(items, key=lambda item: item[0]) for key, items in out.items()}


def read_typo_list(path: Path) -> dict[str, str | None]:
    """Known-typo list: `sentence with [typo]` drops that caption; `sentence<TAB>correction` replaces it.

    The COCO-CN repository publishes `data/detected-typos.txt` in the first form (typos marked
    with brackets, no corrections)."""
    typos: dict[str, str | None] = {}
    for _, line in numbered_lines(path):
        marked, _, fix = line.partition("\t")
        key = normalize_text(re.sub(r"[\[\]]", "", marked))
        if key:
            typos[key] = normalize_text(fix) or None
    return typos


def build_coco_cn(
    out: str | Path,
    data_dir: str | Path,
    coco_dir: str | Path | None = None,
    typo_list: str | Path | None = None,
    **options: Unpack[BuildOptions],
) -> datasets.DatasetDict:
    """Build COCO-CN from local files (layout in `LAYOUT`) and save it at `out`."""
    data_dir = Path(data_dir)
    coco_dir = coco_captions.coco_dir_of(coco_dir, data_dir)
    files = require(find_root(data_dir), WANTED, layout=LAYOUT, builder=NAME)
    if typo_list is not None and not Path(typo_list).is_file():
        raise LayoutError(f"{NAME}: --typo-list {typo_list} is not a file")
    run = Build(NAME, out, data_dir=str(data_dir), coco_dir=str(coco_dir),
                typo_list=str(typo_list) if typo_list else None, **options)
    report = run.report
    english = coco_captions.load_english(coco_dir)
    images = CocoImages(coco_dir)
    report.note("input files", {key: str(path) for key, path in files.items()})
    report.note("english captions from", [str(p) for p in english.files])

    split_ids = {split: read_list(files[split]) for split in SPLIT_FILES}
    written = read_numbered(files["captions"], CAPTION_LINE, report)
    translated = read_numbered(files["translations"], TRANSLATION_LINE, report)
    report.note("input images", sum(len(ids) for ids in split_ids.values()))
    report.note("input human-written captions", sum(len(v) for v in written.values()))
    report.note("input manual translations", sum(len(v) for v in translated.values()))
    listed = {image_id for ids in split_ids.values() for image_id in ids}
    for name, table in (("caption", written), ("translation", translated)):
        for image_id in sorted(set(table) - listed):
            report.drop("input", f"{name} of an image in no split list", example=image_id, count=len(table[image_id]))

    tag_path = find(files["train"].parent, TAG_FILES)
    if tag_path is not None:
        tags = {}
        for _, line in numbered_lines(tag_path):
            image_id, _, text = line.strip().partition(" ")
            if image_id in listed:
                tags[cocoid(image_id)] = text.strip()
        report.note("tags", tags)
        report.note("images with tags", len(tags))

    typos = read_typo_list(Path(typo_list)) if typo_list else {}
    if typo_list:
        report.note("typo list entries", len(typos))
    stats: Counter = Counter()
    splits = {split: [_record(split, image_id, written.get(image_id, []), translated.get(image_id, []),
                              english, images, typos, report, stats)
                      for image_id in ids]
              for split, ids in split_ids.items()}
    for key, n in sorted(stats.items()):
        report.note(key, n)
    origin = {cocoid(i): "COCO " + i.split("_")[1] for i in listed if i.startswith("COCO_")}
    overlap.note_origins(splits, origin.get, report, NAME)
    return run.finish(splits)


def _record(split: str, raw_id: str, written: list[tuple[int, str]], translated: list[tuple[int, str]],
            english: CocoEnglish, images: CocoImages, typos: dict[str, str | None], report: BuildReport,
            stats: Counter) -> dict:
    """One image: written captions (parallel ""), then translations (parallel = the English original k)."""
    image_id = cocoid(raw_id)
    eng = english.get(image_id)
    stats[f"{split} images without COCO English captions"] += not eng
    source, parallel = [], []
    for kind, items in (("written", written), ("translated", translated)):
        for k, text in items:
            key = normalize_text(text)
            if key in typos:
                if typos[key] is None:
                    report.drop(split, "known typo (--typo-list)", example=image_id)
                    continue
                text = typos[key]
                stats["typo fixes applied"] += 1
            source.append(text)
            if kind == "written":
                parallel.append("")
            else:
                parallel.append(eng[k] if k < len(eng) else "")
                stats["translations without their English original"] += k >= len(eng)
    codes = dict(source=HUMAN_WRITTEN, english=HUMAN_WRITTEN, parallel=NONE)
    if translated:
        codes = dict(source=f"{HUMAN_WRITTEN}+{HUMAN_TRANSLATED}" if written else HUMAN_TRANSLATED,
                     english=HUMAN_WRITTEN, parallel=HUMAN_WRITTEN)
    return {
        "image": images.path(image_id),
        "image_id": image_id,
        "lang": "zh",
        "source": source,
        "english": eng,
        "parallel": parallel,
        "provenance": provenance(NAME, split, **codes),
    }


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-dir", type=Path, required=True, help="COCO-CN files (layout below)")
    coco_captions.add_arguments(parser)
    parser.add_argument("--typo-list", type=Path, default=None, metavar="FILE",
                        help="apply a known-typo list (COCO-CN's data/detected-typos.txt: listed captions are "
                             "dropped; lines 'caption<TAB>correction' replace the caption). Off by default.")
    overlap.add_arguments(parser)


def build(args: argparse.Namespace) -> datasets.DatasetDict:
    return build_coco_cn(args.out, args.data_dir, coco_dir=args.coco_dir, typo_list=args.typo_list,
                         **options_of(args))
