"""Builder for a linguist's own captioned images: `python -m data_prep imagefolder --lang xx --data-dir DIR --out OUT`.

The layout follows Hugging Face's `imagefolder` convention: image files next to a
`metadata.jsonl` or `metadata.csv` naming each image (`file_name`) with its captions. Rows that
name the same image are merged, so a CSV can give one caption per row. An image with English
captions and no source caption is kept (counted in the report): a folder of English-captioned
pictures is a teacher pool (`train.py --teacher-data DIR`); student training skips such rows. A
row whose values have the wrong type (`MetadataRow`: a caption given as a number or an object),
whose text is not valid Unicode, or a CSV record broken by a quote that is never closed is dropped with a counted reason.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, Unpack

import datasets
from typing_extensions import TypedDict

from models.typed_json import json_kind, problem

from ..schema import HUMAN_TRANSLATED, HUMAN_WRITTEN, MACHINE_TRANSLATED, NONE, SPLITS, provenance
from ..text_files import numbered_lines, read_table, surrogate_problem
from . import overlap
from .files import OUTSIDE, InputError, LayoutError, inside
from .skeleton import Build, BuildOptions, options_of

NAME = "imagefolder"
HELP = "your own captioned images: a folder of images with metadata.jsonl or metadata.csv"
LAYOUT = """\
Expected layout (either form):
DIR/                                 (--data-dir)
  metadata.jsonl  or  metadata.csv   one row per image or per caption
  photos/0001.jpg ...                any image files, named relative to the metadata file
or one folder per split, each with its own metadata file:
DIR/train/metadata.jsonl  DIR/validation/metadata.csv  DIR/test/metadata.jsonl ...

Columns: file_name (required), english (required, may be empty), source (optional, may be empty:
an image with English captions only is kept as teacher data, e.g. an English-only picture pool),
parallel (optional: the English translation of each source caption, "" where none),
split (optional: train, validation or test; default --default-split).
JSONL values may be a string or a list of strings (parallel aligned with source), e.g.
  {"file_name": "photos/0001.jpg", "source": ["una casa roja"], "english": ["a red house by the sea"],
   "parallel": ["a red house"], "split": "test"}
CSV: one caption per row; rows with the same file_name are merged in order.

Output: image_id = file_name without extension; lang = --lang;
provenance: <--name>/<split>/source=<--source-origin>,english=<--english-origin>,parallel=<--parallel-origin|none>.
Example: python -m data_prep imagefolder --lang quz --data-dir my_photos --out data/quz"""

METADATA_FILES = ("metadata.jsonl", "metadata.csv")
REQUIRED_COLUMNS = ("file_name", "english")
ORIGINS = (HUMAN_WRITTEN, HUMAN_TRANSLATED, MACHINE_TRANSLATED)
Texts = str | list[str | None] | None  # a caption, or captions ("" or null where none)


class MetadataRow(TypedDict, total=False):
    """The types of a metadata row's values (which columns a file must have: REQUIRED_COLUMNS)."""

    file_name: str | None
    source: Texts
    english: Texts
    parallel: Texts
    split: str | None


def metadata_files(data_dir: Path) -> list[tuple[Path, str | None]]:
    """`(metadata file, split of its folder or None)`: the root file, else one per split folder."""
    root = [data_dir / name for name in METADATA_FILES if (data_dir / name).is_file()]
    if root:
        return [(root[0], None)]
    found = [(data_dir / split / name, split) for split in SPLITS for name in METADATA_FILES
             if (data_dir / split / name).is_file()]
    if not found:
        raise LayoutError(f"{NAME}: no metadata file: expected {data_dir / 'metadata.jsonl'} or "
                          f"{data_dir / 'metadata.csv'} (or train/, validation/, test/ folders holding one)\n"
                          f"Expected layout:\n{LAYOUT}")
    return found


def read_rows(path: Path) -> list[tuple[int, dict[str, Any], str | None]]:
    """`(line number, row, problem)` of a metadata.jsonl / metadata.csv (required columns checked):
    `problem` says why the row cannot be used (wrong value types, text that is not valid Unicode, a
    CSV record broken by an unterminated quote), None for a usable row."""
    if path.suffix == ".jsonl":
        rows = []
        for number, line in numbered_lines(path):
            if line.strip():
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise InputError(f"{path}:{number}: not valid JSON ({exc})") from None
                if not isinstance(row, dict):
                    raise InputError(f"{path}:{number}: expected a JSON object, found {json_kind(row)} "
                                     "(metadata.jsonl holds one object per line)")
                rows.append((number, row, _row_problem(row)))
        columns = set().union(*(row.keys() for _, row, _ in rows)) if rows else set()
    else:
        header, records = read_table(path)
        header, rows = header or [], []
        for number, values, why in records:
            if values == []:
                continue  # a blank line is no row
            row = {} if values is None else dict(zip(header, values + [None] * (len(header) - len(values))))
            rows.append((number, row, why or _row_problem(row)))
        columns = set(header)
    missing = [c for c in REQUIRED_COLUMNS if c not in columns]
    if missing:
        raise LayoutError(f"{NAME}: {path} lacks columns {missing}; found {sorted(columns)}, "
                          f"expected {list(REQUIRED_COLUMNS)} (+ optional source, parallel, split)")
    return rows


def _row_problem(row: dict[str, Any]) -> str | None:
    """Why a metadata row cannot be used (its values' types, or text UTF-8 cannot carry), or None."""
    why = problem(row, MetadataRow)
    if why is None and any(surrogate_problem(t) for key in ("file_name", "source", "english", "parallel")
                           for t in _texts(row.get(key))):
        why = "text that is not valid Unicode (a lone surrogate)"
    return why


def _texts(value: Texts) -> list[str]:
    if value is None:
        return []
    if isinstance(value, list):
        return ["" if v is None else v for v in value]
    return [value]


def build_imagefolder(
    out: str | Path,
    data_dir: str | Path,
    lang: str,
    name: str | None = None,
    default_split: str = "train",
    source_origin: str = HUMAN_WRITTEN,
    english_origin: str = HUMAN_WRITTEN,
    parallel_origin: str = HUMAN_TRANSLATED,
    **options: Unpack[BuildOptions],
) -> datasets.DatasetDict:
    """Build a dataset from an image folder with metadata (layout in `LAYOUT`) and save it at `out`."""
    data_dir = Path(data_dir)
    if default_split not in SPLITS:
        raise InputError(f"--default-split must be one of {SPLITS}, got {default_split!r}")
    if not data_dir.is_dir():
        raise LayoutError(f"{NAME}: {data_dir} is not a directory\n{LAYOUT}")
    name = name or data_dir.resolve().name
    run = Build(NAME, out, data_dir=str(data_dir), lang=lang, name=name, default_split=default_split, **options)
    report = run.report
    merged: dict[str, dict[str, dict]] = {split: {} for split in SPLITS}
    for path, folder_split in metadata_files(data_dir):
        rows = read_rows(path)
        report.note(f"input rows in {path.relative_to(data_dir)}", len(rows))
        for number, row, why in rows:
            where = f"{path.name}:{number}"
            if why is not None:
                report.drop("input", why, example=where)
                continue
            split = str(row.get("split") or folder_split or default_split).strip()
            if split not in SPLITS:
                report.drop("input", "unknown split value", example=f"{where}: {split!r}")
                continue
            file_name = str(row.get("file_name") or "").strip()
            source, parallel = _texts(row.get("source")), _texts(row.get("parallel"))
            parallel = parallel or [""] * len(source)
            if not file_name:
                report.drop(split, "row without file_name", example=where)
                continue
            if len(parallel) != len(source):
                report.drop(split, "parallel not aligned with source", example=where)
                continue
            image = inside(data_dir, str(path.parent.relative_to(data_dir) / file_name))
            if image is None:  # never opened: the metadata may not reach files outside the folder
                report.drop(split, OUTSIDE, example=f"{where}: {file_name}")
                continue
            image_id = Path(file_name).with_suffix("").as_posix()
            rec = merged[split].setdefault(image_id, {"image": image, "source": [],
                                                      "parallel": [], "english": []})
            rec["source"] += source
            rec["parallel"] += parallel
            rec["english"] += [e for e in _texts(row.get("english")) if e.strip()]  # a blank cell is no caption
    splits = {split: [_record(split, image_id, rec, lang, name, source_origin, english_origin, parallel_origin)
                      for image_id, rec in recs.items()]
              for split, recs in merged.items() if recs}
    if not splits:
        dropped = {reason: n for counts in report.dropped.values() for reason, n in counts.items()}
        raise InputError(f"{NAME}: the metadata in {data_dir} lists no usable image"
                         + (f" (rows dropped: {dropped})" if dropped else ""))
    return run.finish(splits, keep_english_only=True)


def _record(split: str, image_id: str, rec: dict, lang: str, name: str, source_origin: str, english_origin: str,
            parallel_origin: str) -> dict:
    has_parallel = any(s.strip() and p.strip() for s, p in zip(rec["source"], rec["parallel"]))
    has_source = any(s.strip() for s in rec["source"])
    return {
        "image": rec["image"],
        "image_id": image_id,
        "lang": lang,
        "source": rec["source"],
        "english": list(dict.fromkeys(rec["english"])),  # a CSV repeats an image's English caption on each row
        "parallel": rec["parallel"],
        "provenance": provenance(name, split, source=source_origin if has_source else NONE, english=english_origin,
                                 parallel=parallel_origin if has_parallel else NONE),
    }


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-dir", type=Path, required=True, help="the image folder (layout below)")
    parser.add_argument("--lang", required=True, help="ISO 639 code of the source captions, e.g. es, zh, quz")
    parser.add_argument("--name", default=None, help="dataset name in provenance (default: the folder name)")
    parser.add_argument("--default-split", choices=SPLITS, default="train",
                        help="split of rows without a split value (default: train)")
    parser.add_argument("--source-origin", choices=ORIGINS, default=HUMAN_WRITTEN,
                        help="who wrote the source captions: hw, ht or mt (default: hw)")
    parser.add_argument("--english-origin", choices=ORIGINS, default=HUMAN_WRITTEN,
                        help="who wrote the English captions (default: hw)")
    parser.add_argument("--parallel-origin", choices=ORIGINS, default=HUMAN_TRANSLATED,
                        help="who wrote the parallel translations (default: ht)")
    overlap.add_arguments(parser)


def build(args: argparse.Namespace) -> datasets.DatasetDict:
    return build_imagefolder(args.out, args.data_dir, args.lang, name=args.name, default_split=args.default_split,
                             source_origin=args.source_origin, english_origin=args.english_origin,
                             parallel_origin=args.parallel_origin, **options_of(args))
