"""Validator behind `python -m data_prep check DIR`: schema (optional columns included), captions,
images, split overlap, and concept ids against the dataset's `concepts.json` when it has one."""
from __future__ import annotations

import io
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import datasets
from PIL import Image
from tqdm.auto import tqdm

from .concepts import CONCEPTS_FILE, load_concepts
from .errors import InputError
from .load import damaged_file
from .schema import COLUMNS, FEATURES, OPTIONAL_FEATURES, SPLITS


@dataclass
class CheckResult:
    """Problems found in a dataset directory; `ok` when there are no errors."""

    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.errors

    def to_dict(self) -> dict:
        return {"ok": self.ok, "errors": self.errors, "warnings": self.warnings, "counts": self.counts}


def _check_split(name: str, ds: datasets.Dataset, result: CheckResult, show_progress: bool,
                 concept_ids: set[str] | None) -> set[str]:
    missing = [c for c in COLUMNS if c not in ds.column_names]
    if missing:
        result.errors.append(f"{name}: missing columns {missing}")
        return set()
    for col in COLUMNS:
        if ds.features[col] != FEATURES[col]:
            result.errors.append(f"{name}: column {col!r} has type {ds.features[col]}, expected {FEATURES[col]}")
    optional = []
    for col in (c for c in OPTIONAL_FEATURES if c in ds.column_names):
        if ds.features[col] == OPTIONAL_FEATURES[col]:
            optional.append(col)
        else:
            result.errors.append(f"{name}: column {col!r} has type {ds.features[col]}, "
                                 f"expected {OPTIONAL_FEATURES[col]}")
    english_only = 0
    raw = ds.cast_column("image", datasets.Image(decode=False))
    ids: set[str] = set()
    for i, row in enumerate(tqdm(raw, desc=f"check:{name}", disable=not show_progress, unit="img")):
        where = f"{name}[{i}] image_id={row['image_id']!r}"
        if row["image_id"] in ids:
            result.errors.append(f"{where}: duplicate image_id")
        ids.add(row["image_id"])
        image = row["image"] or {}
        data = image.get("bytes")
        if data is None and image.get("path"):
            result.warnings.append(f"{where}: image not embedded (path {image['path']})")
            data = Path(image["path"]).read_bytes() if Path(image["path"]).is_file() else None
        try:
            with Image.open(io.BytesIO(data)) as im:
                im.load()
        except Exception as exc:
            result.errors.append(f"{where}: unreadable image ({type(exc).__name__}: {exc})")
        if not row["source"]:
            if row["english"]:
                english_only += 1
            else:
                result.errors.append(f"{where}: no caption")
        for col in ("source", "english"):
            for k, text in enumerate(row[col]):
                if not text or not text.strip():
                    result.errors.append(f"{where}: empty {col} caption #{k}")
        if len(row["parallel"]) != len(row["source"]):
            result.errors.append(
                f"{where}: parallel has {len(row['parallel'])} entries for {len(row['source'])} source captions"
            )
        if not row["lang"]:
            result.errors.append(f"{where}: empty lang")
        if "source_concepts" in optional:
            _check_concepts(where, row, concept_ids, result)
    if english_only:
        result.warnings.append(f"{name}: {english_only} of {len(ds)} rows have English captions only "
                               "(teacher data; student training skips them)")
    result.counts[name] = len(ds)
    return ids


def _check_concepts(where: str, row: dict, concept_ids: set[str] | None, result: CheckResult) -> None:
    """`source_concepts`: one list per source caption, of non-empty ids, each in the inventory when there is one."""
    concepts = row["source_concepts"]
    if len(concepts) != len(row["source"]):
        result.errors.append(f"{where}: source_concepts has {len(concepts)} entries for "
                             f"{len(row['source'])} source captions")
    for k, ids in enumerate(concepts):
        if any(not i for i in ids):
            result.errors.append(f"{where}: empty concept id for source caption #{k}")
        unknown = sorted({i for i in ids if i} - concept_ids) if concept_ids is not None else []
        if unknown:
            result.errors.append(f"{where}: source caption #{k} names concepts not in {CONCEPTS_FILE}: {unknown[:5]}")


def check_dataset(path: str | Path, show_progress: bool = False) -> CheckResult:
    """Validate the dataset directory at `path` against the data contract (docs/design.md §3)."""
    result = CheckResult()
    try:
        dsd = datasets.load_from_disk(str(path))
    except Exception as exc:
        damaged = damaged_file(path) if (Path(path) / "dataset_dict.json").is_file() else None
        result.errors.append(f"cannot load {path} as a DatasetDict: "
                             + (f"{damaged} is damaged ({exc})" if damaged is not None else f"{exc}"))
        return result
    if not isinstance(dsd, datasets.DatasetDict):
        result.errors.append(f"{path} holds a single Dataset, expected a DatasetDict with splits {SPLITS}")
        return result
    for split in dsd:
        if split not in SPLITS:
            result.warnings.append(f"unexpected split name {split!r}")
    for split in SPLITS:
        if split not in dsd:
            result.warnings.append(f"split {split!r} is absent")
    concept_ids = None
    if (Path(path) / CONCEPTS_FILE).exists():
        try:
            concept_ids = set(load_concepts(path).by_id())
            result.counts["concepts"] = len(concept_ids)
        except InputError as exc:
            result.errors.append(str(exc))
    owners: dict[str, list[str]] = defaultdict(list)
    for split, ds in dsd.items():
        for image_id in _check_split(split, ds, result, show_progress, concept_ids):
            owners[image_id].append(split)
    shared = {i: s for i, s in owners.items() if len(s) > 1}
    for image_id, splits in sorted(shared.items())[:20]:
        result.errors.append(f"image {image_id!r} is in several splits: {splits}")
    if len(shared) > 20:
        result.errors.append(f"... {len(shared) - 20} more images shared across splits")
    return result
