"""Builder for MS-COCO-ES: `python -m data_prep coco-es --data-dir DATA --out DIR`.

MS-COCO-ES (García, 2020; github.com/carlosGarciaHe/MS-COCO-ES) has 20,000 COCO captions of
4,000 images translated into Spanish by humans, plus machine-translated Spanish captions for
training. The spreadsheets give one caption per row (`image_id`, `caption`); rows are grouped
per image. The rows do not say which English caption each Spanish one translates, so `parallel`
stays empty and the pairing is recorded only as provenance (`source=ht` or `source=mt`).
"""
from __future__ import annotations

import argparse
import csv
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Unpack

import datasets
import openpyxl
from openpyxl.utils.exceptions import InvalidFileException

from ..build_report import BuildReport
from ..schema import HUMAN_TRANSLATED, HUMAN_WRITTEN, MACHINE_TRANSLATED, NONE, provenance
from ..text_files import numbered_lines
from . import coco_captions, overlap
from .coco_captions import COCO_LAYOUT, CocoEnglish, CocoImages, cocoid
from .files import InputError, LayoutError, require
from .skeleton import Build, BuildOptions, options_of

NAME = "coco-es"
HELP = "MS-COCO-ES: Spanish COCO captions (human- and machine-translated) with COCO English captions"
LAYOUT = f"""\
Expected layout (local files only; each spreadsheet may also be a .csv with the same columns):
DATA_DIR/                        (--data-dir: the repository's data/ folder)
  train_human_spanish.xlsx       train, human-translated Spanish     columns: image_id, caption
  train_machine_spanish.xlsx     train, machine-translated Spanish   (used with --train-variant machine|both)
  validation.xlsx  test.xlsx     human-translated Spanish
  english_captions.xlsx, train_machine_english.xlsx   not used (English comes from the COCO JSON)
{COCO_LAYOUT}
(COCO_DIR defaults to DATA_DIR/coco.) image_id may be 296735, 000000296735 or a COCO file name;
other columns are ignored; one row per caption, grouped per image in row order.

Output: image_id = cocoid; lang = es; source = Spanish captions; english = COCO captions;
parallel = "" (rows do not say which English caption they translate);
provenance: coco-es/<split>/source=ht|mt|ht+mt,english=hw,parallel=none.
Example: python -m data_prep coco-es --data-dir data/raw/MS-COCO-ES/data --coco-dir data/raw/coco --out data/coco-es"""

TRAIN_FILES = {"human": ("train_human_spanish", HUMAN_TRANSLATED), "machine": ("train_machine_spanish", MACHINE_TRANSLATED)}
EVAL_FILES = {"validation": "validation", "test": "test"}
TABLE_SUFFIXES = (".xlsx", ".csv")
REQUIRED_COLUMNS = ("image_id", "caption")


def read_table(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield `(row_number, {column: value})` of the first sheet of an .xlsx, or of a .csv; header names
    are matched case-insensitively and must include `image_id` and `caption`."""
    if path.suffix == ".xlsx":
        try:
            book = openpyxl.load_workbook(path, read_only=True, data_only=True)
        except (zipfile.BadZipFile, InvalidFileException, KeyError) as exc:
            raise InputError(f"{path}: not a readable .xlsx workbook ({exc}); a .csv with the same columns "
                             "also works") from None
        try:
            rows = list(book.worksheets[0].iter_rows(values_only=True))
        finally:
            book.close()
    else:
        rows = list(csv.reader(line + "\n" for _, line in numbered_lines(path)))
    header = [str(h).strip().lower() if h is not None else "" for h in (rows[0] if rows else [])]
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    if missing:
        raise LayoutError(f"{NAME}: {path} lacks columns {missing}; found {header}, expected {list(REQUIRED_COLUMNS)}")
    for number, values in enumerate(rows[1:], start=2):
        if any(v not in (None, "") for v in values):
            yield number, dict(zip(header, values))


def read_captions(path: Path, code: str, report: BuildReport, split: str) -> dict[str, list[tuple[str, str]]]:
    """`cocoid -> [(caption, provenance code), ...]` in row order; rows with an unusable image_id are counted."""
    grouped: dict[str, list[tuple[str, str]]] = {}
    for number, row in read_table(path):
        try:
            image_id = cocoid(row["image_id"])
        except ValueError:
            report.drop(split, f"bad image_id in {path.name}", example=f"{path.name}:{number}: {row['image_id']!r}")
            continue
        caption = row["caption"]
        grouped.setdefault(image_id, []).append(("" if caption is None else str(caption), code))
    return grouped


def build_coco_es(
    out: str | Path,
    data_dir: str | Path,
    coco_dir: str | Path | None = None,
    train_variant: str = "human",
    **options: Unpack[BuildOptions],
) -> datasets.DatasetDict:
    """Build MS-COCO-ES from local files (layout in `LAYOUT`) and save it at `out`."""
    variants = ("human", "machine") if train_variant == "both" else (train_variant,)
    if any(v not in TRAIN_FILES for v in variants):
        raise InputError(f"--train-variant must be human, machine or both, got {train_variant!r}")
    data_dir = Path(data_dir)
    coco_dir = coco_captions.coco_dir_of(coco_dir, data_dir)
    wanted = {variant: [TRAIN_FILES[variant][0] + s for s in TABLE_SUFFIXES] for variant in variants}
    wanted.update({split: [stem + s for s in TABLE_SUFFIXES] for split, stem in EVAL_FILES.items()})
    files = require(data_dir, wanted, layout=LAYOUT, builder=NAME)
    run = Build(NAME, out, data_dir=str(data_dir), coco_dir=str(coco_dir), train_variant=train_variant, **options)
    report = run.report
    english = coco_captions.load_english(coco_dir)
    images = CocoImages(coco_dir)
    report.note("input files", {key: str(path) for key, path in files.items()})

    tables: dict[str, list[dict[str, list[tuple[str, str]]]]] = {
        "train": [read_captions(files[v], TRAIN_FILES[v][1], report, "train") for v in variants],
        **{split: [read_captions(files[split], HUMAN_TRANSLATED, report, split)] for split in EVAL_FILES},
    }
    splits = {}
    for split, parts in tables.items():
        merged: dict[str, list[tuple[str, str]]] = {}
        for part in parts:
            for image_id, captions in part.items():
                merged.setdefault(image_id, []).extend(captions)
        report.note(f"input {split} captions", sum(len(c) for c in merged.values()))
        splits[split] = [_record(split, image_id, captions, english, images) for image_id, captions in merged.items()]
    overlap.note_origins(splits, english.release, report, NAME)
    return run.finish(splits)


def _record(split: str, image_id: str, captions: list[tuple[str, str]], english: CocoEnglish,
            images: CocoImages) -> dict:
    codes = "+".join(dict.fromkeys(code for _, code in captions))
    return {
        "image": images.path(image_id),
        "image_id": image_id,
        "lang": "es",
        "source": [text for text, _ in captions],
        "english": english.get(image_id),
        "parallel": [""] * len(captions),
        "provenance": provenance(NAME, split, source=codes, english=HUMAN_WRITTEN, parallel=NONE),
    }


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-dir", type=Path, required=True, help="MS-COCO-ES spreadsheets (layout below)")
    coco_captions.add_arguments(parser)
    parser.add_argument("--train-variant", choices=("human", "machine", "both"), default="human",
                        help="training captions: human-translated, machine-translated or both (default: human)")
    overlap.add_arguments(parser)


def build(args: argparse.Namespace) -> datasets.DatasetDict:
    return build_coco_es(args.out, args.data_dir, coco_dir=args.coco_dir, train_variant=args.train_variant,
                         **options_of(args))
