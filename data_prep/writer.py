"""`write_dataset`: the single place where builder records become a saved `DatasetDict`.

It normalises text, resolves and verifies every image (embedding the original bytes),
drops unusable samples with a counted reason, keeps splits image-disjoint and saves with
`save_to_disk` plus `build_report.json` into a staging folder that replaces `out` only when
complete (an interrupted build leaves a previous dataset at `out` intact). It writes only where
nothing is lost: `out` must be missing, empty, or a dataset written here (`DATASET`: its
`dataset_dict.json` and `build_report.json`), and a dataset is replaced only with `overwrite`
(`--overwrite`); the check runs before any work and again just before the replacement.
"""
from __future__ import annotations

import io
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import datasets
from datasets.arrow_writer import ArrowWriter
from PIL import Image
from tqdm.auto import tqdm

from .build_report import REPORT_FILE, BuildReport
from .errors import Artefact, marker_files, output_dir
from .schema import COLUMNS, OPTIONAL_FEATURES, SPLITS, features_for, normalize_text

ImageLike = Image.Image | bytes | str | Path | Callable[[], Any]
DATASET = Artefact("a dataset built by python -m data_prep", marker_files("dataset_dict.json", REPORT_FILE))

def publish(tmp: Path, final: Path) -> None:
    """Rename the complete directory `tmp` to `final` (atomic); when another process published
    `final` first (several runs sharing one cache), theirs stays and `tmp` is removed."""
    try:
        tmp.rename(final)
    except OSError:
        if not final.is_dir():
            raise
        shutil.rmtree(tmp, ignore_errors=True)


def staging_name(final: Path) -> Path:
    """A sibling of `final` no other process writes to (for building it before `publish`)."""
    return final.with_name(f"{final.name}.tmp{os.getpid()}")


# Splits later in this tuple win an image that several splits claim (evaluation stays clean).
_PRIORITY = ("train", "validation", "test")


class UnusableImage(Exception):
    """An image that is missing or cannot be decoded; carries the drop reason."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


def image_bytes(image: ImageLike) -> bytes:
    """Return encoded image bytes (original file bytes where there is a file), verified to decode."""
    if callable(image) and not isinstance(image, Image.Image):
        image = image()
    if isinstance(image, Image.Image):
        buf = io.BytesIO()
        image.save(buf, format="PNG")
        data = buf.getvalue()
    elif isinstance(image, (bytes, bytearray)):
        data = bytes(image)
    elif isinstance(image, (str, Path)):
        path = Path(image)
        if not path.is_file():
            raise UnusableImage("missing image file", str(path))
        data = path.read_bytes()
    else:
        raise TypeError(f"unsupported image value of type {type(image).__name__}")
    try:
        with Image.open(io.BytesIO(data)) as im:
            im.load()
    except Exception as exc:  # PIL raises many types for corrupt data
        raise UnusableImage("unreadable image", f"{exc}") from None
    return data


def _clean_record(record: dict, split: str, report: BuildReport, keep_english_only: bool) -> dict | None:
    """Normalise text columns; drop empty captions (keeping source/parallel/source_concepts aligned).
    A record without a source caption is dropped, unless `keep_english_only` and it has English ones."""
    missing = [c for c in COLUMNS if c not in record]
    if missing:
        raise ValueError(f"builder record lacks columns {missing}; expected {COLUMNS}")
    source = [normalize_text(s) for s in record["source"]]
    aligned = {c: record[c] for c in ("parallel", *OPTIONAL_FEATURES) if c in record}
    aligned["parallel"] = [normalize_text(p) for p in aligned["parallel"]]
    for column, values in aligned.items():
        if len(values) != len(source):
            raise ValueError(f"image {record['image_id']}: {column!r} has {len(values)} entries for "
                             f"{len(source)} source captions")
    keep = [i for i, s in enumerate(source) if s]
    if len(keep) < len(source):
        report.drop(split, "empty source caption", example=record["image_id"], count=len(source) - len(keep))
    english = [normalize_text(e) for e in record["english"]]
    if any(not e for e in english):
        report.drop(split, "empty english caption", example=record["image_id"], count=sum(not e for e in english))
    out = dict(record)
    out["source"] = [source[i] for i in keep]
    out.update({column: [values[i] for i in keep] for column, values in aligned.items()})
    out["english"] = [e for e in english if e]
    out["image_id"] = str(record["image_id"])
    if not out["source"] and not (keep_english_only and out["english"]):
        report.drop(split, "no caption" if keep_english_only else "no source caption", example=out["image_id"])
        return None
    return out


def _assign_splits(splits: Mapping[str, Iterable[dict]], report: BuildReport,
                   keep_english_only: bool) -> dict[str, list[dict]]:
    """Clean records and make splits image-disjoint (an image claimed twice stays in the later split)."""
    unknown = set(splits) - set(SPLITS)
    if unknown:
        raise ValueError(f"unknown split names {sorted(unknown)}; expected a subset of {SPLITS}")
    cleaned: dict[str, list[dict]] = {}
    owner: dict[str, str] = {}
    for split in sorted(splits, key=_PRIORITY.index, reverse=True):
        rows = []
        for record in splits[split]:
            rec = _clean_record(record, split, report, keep_english_only)
            if rec is None:
                continue
            prior = owner.get(rec["image_id"])
            if prior == split:
                report.drop(split, "duplicate image_id", example=rec["image_id"])
                continue
            if prior is not None:
                report.drop(split, f"image also in {prior} split", example=rec["image_id"])
                continue
            owner[rec["image_id"]] = split
            rows.append(rec)
        cleaned[split] = rows
    return cleaned


def dataset_output(out: str | Path, overwrite: bool = False) -> Path:
    """`out` checked as a dataset's location (`errors.output_dir`): missing, empty, or a dataset of
    ours that `overwrite` allows to replace; nothing else is ever deleted."""
    return output_dir(out, "--out", artefact=DATASET, replace=overwrite)


def write_dataset(
    splits: Mapping[str, Iterable[dict]], out: str | Path, report: BuildReport, *, show_progress: bool = True,
    keep_english_only: bool = False, extra_files: Mapping[str, str] | None = None, overwrite: bool = False,
) -> datasets.DatasetDict:
    """Encode, verify and save `splits` to `out` as a `DatasetDict`; write the build report.
    Records may carry the optional columns of `schema.OPTIONAL_FEATURES` (all records or none);
    with `keep_english_only`, records with English captions and no source caption are kept (a
    teacher pool), counted in the report. `extra_files` (name -> text) are written beside the
    dataset in the same atomic replacement (e.g. a world's `concepts.json`). `overwrite`: replace
    a dataset already at `out` (anything else there is refused)."""
    out = dataset_output(out, overwrite)
    cleaned = _assign_splits(splits, report, keep_english_only)
    features = _features_of(cleaned)
    tmp = Path(tempfile.mkdtemp(prefix="groundmt-build-"))
    staging = None
    try:
        parts = {}
        for split in (s for s in SPLITS if s in cleaned):
            path = tmp / f"{split}.arrow"
            writer = ArrowWriter(features=features, path=str(path))
            for rec in tqdm(cleaned[split], desc=f"{report.builder}:{split}", disable=not show_progress, unit="img"):
                try:
                    data = image_bytes(rec["image"])
                except UnusableImage as exc:
                    report.drop(split, exc.reason, example=rec["image_id"])
                    continue
                row = {c: rec[c] for c in features}
                row["image"] = {"bytes": data, "path": None}
                writer.write(features.encode_example(row))
                report.keep(split, rec)
            writer.finalize()
            parts[split] = datasets.Dataset.from_file(str(path))
        dsd = datasets.DatasetDict(parts)
        out.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.building-"))
        # an empty split saved with the default 0 shards cannot be loaded back: force one shard
        bars_were_on = datasets.utils.is_progress_bar_enabled()
        if not show_progress:
            datasets.utils.disable_progress_bars()
        try:
            dsd.save_to_disk(str(staging), num_shards={s: 1 for s, ds in dsd.items() if len(ds) == 0} or None)
        finally:
            if bars_were_on:
                datasets.utils.enable_progress_bars()
        report.save(staging)
        for name, text in (extra_files or {}).items():
            (staging / name).write_text(text, encoding="utf-8")
        _replace_dir(staging, dataset_output(out, overwrite))  # what is at `out` may have changed meanwhile
        staging = None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if staging is not None:  # an interrupted or failed build leaves no half-written folder behind
            shutil.rmtree(staging, ignore_errors=True)
    return datasets.load_from_disk(str(out))


def _features_of(cleaned: Mapping[str, list[dict]]) -> datasets.Features:
    """The dataset's features: the contract's columns plus the optional ones its records carry (all or none)."""
    records = [rec for rows in cleaned.values() for rec in rows]
    extra = [c for c in OPTIONAL_FEATURES if any(c in rec for rec in records)]
    partial = [c for c in extra if not all(c in rec for rec in records)]
    if partial:
        raise ValueError(f"optional columns {partial} are in some records and not in others")
    return features_for(extra)


def _replace_dir(new: Path, out: Path) -> None:
    """Put the finished dataset `new` at `out`: a previous dataset there stays intact until the new
    one is complete (an interrupted or failed build leaves it as it was)."""
    old = None
    if out.exists():
        old = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.previous-")) / out.name
        out.rename(old)
    new.rename(out)
    if old is not None:
        shutil.rmtree(old.parent, ignore_errors=True)
