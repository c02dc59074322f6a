"""Captions to translate for `translate corpus`: from a `data_prep` dataset or an image folder +
captions file, as `Item`s in input order plus a per-line report of what could not be used.

Captions files are JSONL, CSV (`.csv`) or TSV (`.tsv`/`.tab`) with `file_name` and `caption`
(optional `image_id`, `lang`), read with `data_prep.text_files` (lines end at "\\n" only). Every
line is decoded on its own, so one line in a wrong encoding is reported (`line`, `reason`) instead
of failing the file. Lines that cannot become a corpus record (undecodable, not JSON, a value that
is not a string (`CaptionRow`: a caption given as a JSON list or number), text that is not valid
Unicode (a lone surrogate), wrong column count, a quote never closed (`unterminated quote`: the
rows after it are read again, not swallowed), no file name, a file name that leaves `--images`
(`path outside the image folder`, never opened), missing or unreadable image) are *skipped*; an
empty caption becomes a record flagged `empty` and is reported as *flagged*.
Record ids are `<image_id>#<n>` (n = the caption's position among the image's input lines), so
they are stable across reruns of the same input.
"""
from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image, UnidentifiedImageError
from typing_extensions import TypedDict

from data_prep.builders.files import OUTSIDE, inside
from data_prep.errors import InputError
from data_prep.schema import normalize_text
from data_prep.text_files import numbered_lines, read_table, surrogate_problem
from models.typed_json import problem as schema_problem

CAPTION_COLUMNS = ("file_name", "caption")
OPTIONAL_COLUMNS = ("image_id", "lang")
NOT_UNICODE = "text that is not valid Unicode (a lone surrogate)"


class CaptionRow(TypedDict, total=False):
    """The types of a captions line's values (a missing `caption` or `file_name` has its own reason)."""

    file_name: str | None
    caption: str | None
    image_id: str | None
    lang: str | None


@dataclass(frozen=True)
class Item:
    """One caption to translate: `image` is a file path, or a row index into `Inputs.dataset`."""

    id: str
    image_id: str
    file_name: str | None
    source: str
    lang: str
    provenance: str
    image: Path | int


@dataclass
class Inputs:
    items: list[Item]
    report: list[dict] = field(default_factory=list)  # {"line"|"row", "reason", "action", ...}
    fingerprint: dict = field(default_factory=dict)  # identifies the input for resuming
    dataset: object = None  # the split's `datasets.Dataset` when images are rows

    def skipped_counts(self) -> dict[str, int]:
        return dict(Counter(r["reason"] for r in self.report if r["action"] == "skipped"))


class _Ids:
    """`<image_id>#<n>` with n counting the image's captions in input order."""

    def __init__(self) -> None:
        self.seen: Counter[str] = Counter()

    def __call__(self, image_id: str) -> str:
        n = self.seen[image_id]
        self.seen[image_id] += 1
        return f"{image_id}#{n}"


def from_dataset(path: str | Path, split: str, lang: str | None) -> Inputs:
    """Every source caption of `split` in a `data_prep` dataset directory, rows in order."""
    from data_prep.load import load_dataset_dir

    dsd = load_dataset_dir(path)
    if split not in dsd:
        raise InputError(f"--split: {path} has no split {split!r}; it has {sorted(dsd)}")
    ds = dsd[split]
    ids, items, report = _Ids(), [], []
    for row, rec in enumerate(ds.select_columns(["image_id", "lang", "source", "provenance"])):
        for k, caption in enumerate(rec["source"]):
            item = Item(ids(rec["image_id"]), rec["image_id"], None, normalize_text(caption), lang or rec["lang"],
                        rec["provenance"], row)
            items.append(item)
            if not item.source:
                report.append({"row": row, "caption": k, "id": item.id, "reason": "empty caption", "action": "flagged"})
    fingerprint = {"data": str(Path(path).resolve()), "split": split, "dataset": ds._fingerprint}
    return Inputs(items, report, fingerprint, ds)


def from_captions(images: str | Path, captions: str | Path, lang: str) -> Inputs:
    """The captions file's usable lines; images are resolved relative to `images`."""
    images, captions = Path(images), Path(captions)
    if not images.is_dir():
        raise InputError(f"--images {images} is not a directory")
    if captions.is_dir():
        raise InputError(f"--captions {captions} is a directory, expected a JSONL, CSV or TSV file")
    if not captions.is_file():
        raise InputError(f"--captions {captions} does not exist")
    ids, items, report = _Ids(), [], []
    for line, row, problem in _rows(captions):
        if problem:
            report.append({"line": line, "reason": problem, "action": "skipped"})
            continue
        file_name = str(row.get("file_name") or "").strip()
        if not file_name:
            report.append({"line": line, "reason": "no file_name", "action": "skipped"})
            continue
        image = inside(images, file_name)
        if image is None:  # never opened: a captions file may not reach files outside --images
            report.append({"line": line, "file_name": file_name, "reason": OUTSIDE, "action": "skipped"})
            continue
        image_id = str(row.get("image_id") or "").strip() or Path(file_name).with_suffix("").as_posix()
        item = Item(ids(image_id), image_id, file_name, normalize_text(str(row.get("caption") or "")),
                    str(row.get("lang") or "").strip() or lang, f"{captions.name}:{line}", image)
        image_problem = _image_problem(item.image)
        if image_problem:
            report.append({"line": line, "id": item.id, "file_name": file_name, "reason": image_problem,
                           "action": "skipped"})
            continue
        if not item.source:
            report.append({"line": line, "id": item.id, "reason": "empty caption", "action": "flagged"})
        items.append(item)
    fingerprint = {"images": str(images.resolve()), "captions": str(captions.resolve()),
                   "sha256": hashlib.sha256(captions.read_bytes()).hexdigest()}
    return Inputs(items, report, fingerprint)


def _image_problem(path: Path) -> str | None:
    if not path.is_file():
        return "missing image"
    try:
        with Image.open(path):
            return None
    except (UnidentifiedImageError, OSError) as exc:
        return f"unreadable image ({type(exc).__name__})"


def _rows(path: Path) -> Iterator[tuple[int, dict, str | None]]:
    """`(line, row, problem)` for every non-blank line; `problem` says why the line is unusable."""
    if path.suffix.lower() in (".csv", ".tsv", ".tab"):
        yield from _table_rows(path, "," if path.suffix.lower() == ".csv" else "\t")
        return
    for number, text in numbered_lines(path, undecodable="none"):
        if text is None:
            yield number, {}, "not valid UTF-8"
        elif text.strip():
            try:
                row = json.loads(text)
            except json.JSONDecodeError as exc:
                yield number, {}, f"not valid JSON ({exc.msg})"
                continue
            if not isinstance(row, dict):
                yield number, {}, "not a JSON object"
            elif "caption" not in row:
                yield number, {}, "no caption field"
            else:
                yield number, row, _row_problem(row)


def _row_problem(row: dict) -> str | None:
    """A value of the wrong type, or text UTF-8 cannot carry (the tokenizer would fail on it)."""
    why = schema_problem(row, CaptionRow)
    if why is None and any(isinstance(v, str) and surrogate_problem(v) for v in row.values()):
        why = NOT_UNICODE
    return why


def _table_rows(path: Path, delimiter: str) -> Iterator[tuple[int, dict, str | None]]:
    """CSV/TSV rows checked against the header's column count (`data_prep.text_files.read_table`:
    undecodable lines and quotes never closed are reported, the rows after them read)."""
    header, records = read_table(path, delimiter, undecodable="none")
    if header is None:
        raise InputError(f"{path} is empty: expected a header with columns {list(CAPTION_COLUMNS)}")
    header = [h.strip() for h in header]
    missing = [c for c in CAPTION_COLUMNS if c not in header]
    if missing:
        raise InputError(f"{path}: the header lacks columns {missing}; found {header}, expected "
                         f"{list(CAPTION_COLUMNS)} (+ optional {list(OPTIONAL_COLUMNS)})")
    for number, values, why in records:
        if why is not None:
            yield number, {}, why
        elif not any(v.strip() for v in values):
            continue
        elif len(values) != len(header):
            yield number, {}, f"expected {len(header)} columns, found {len(values)}"
        else:
            yield number, dict(zip(header, values)), None
