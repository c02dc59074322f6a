"""Split hygiene across datasets: which images of a build also appear in another image set.

Splits of one build never share an image (the writer enforces it), but datasets built on the
same pictures do: COCO-CN test images come from COCO train2014, which COCO-MT translates for
training. `--overlap-with SPEC` (repeatable) names another image set:

  DIR[:SPLIT,...]   a dataset written by `python -m data_prep` (default: its validation and test)
  FILE.json         a COCO captions file (all its images, e.g. captions_train2014.json)
  FILE              a text file, one image id or file name per line (e.g. coco-cn_test.txt)

Every (split, set) overlap is counted in the build report; `--drop-overlap-from train`
removes the overlapping images from the training split so that evaluation images stay unseen.
"""
from __future__ import annotations

import argparse
import json
import re
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import datasets

from ..build_report import BuildReport
from ..schema import SPLITS
from ..text_files import read_list
from .coco_captions import cocoid
from .files import InputError, LayoutError

_COCO_NAME = re.compile(r"^COCO_[A-Za-z]+\d{4}_(\d{12})$")
_EXTENSION = re.compile(r"\.(jpe?g|png)$", re.IGNORECASE)
DEFAULT_OTHER_SPLITS = ("validation", "test")


def normalize_image_id(value: str) -> str:
    """Comparable id: no image extension, COCO names (`COCO_val2014_000000043734`) reduced to the cocoid."""
    stem = _EXTENSION.sub("", str(value).strip())
    match = _COCO_NAME.match(stem.rsplit("/", 1)[-1])
    return match.group(1) if match else stem


@dataclass(frozen=True)
class ImageSet:
    """A named set of normalised image ids."""

    name: str
    ids: frozenset[str]


def read_image_set(spec: str) -> ImageSet:
    """Read the image set named by `spec` (see the module docstring)."""
    path, splits = Path(spec), None
    if not path.exists() and ":" in spec:
        head, tail = spec.rsplit(":", 1)
        path, splits = Path(head), [s for s in tail.split(",") if s]
    if path.is_dir():
        if not (path / "dataset_dict.json").is_file():
            raise LayoutError(f"--overlap-with {spec}: {path} is not a dataset written by `python -m data_prep`")
        dsd = datasets.load_from_disk(str(path))
        chosen = splits or [s for s in DEFAULT_OTHER_SPLITS if s in dsd]
        unknown = [s for s in chosen if s not in dsd]
        if unknown:
            raise InputError(f"--overlap-with {spec}: no split {unknown} in {path} (it has {sorted(dsd)})")
        ids = {normalize_image_id(i) for s in chosen for i in dsd[s].select_columns(["image_id"])["image_id"]}
    elif path.is_file() and splits is None and path.suffix == ".json":
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
        if not isinstance(data, dict) or "images" not in data:
            raise InputError(f"--overlap-with {spec}: expected a COCO captions JSON with an 'images' list")
        ids = {cocoid(image["id"]) for image in data["images"]}
    elif path.is_file() and splits is None:
        ids = {normalize_image_id(line) for line in read_list(path)}
    else:
        raise LayoutError(
            f"--overlap-with {spec}: not found; expected DIR[:SPLIT,...] (a built dataset), a COCO captions "
            "JSON file or a text file with one image id per line"
        )
    return ImageSet(spec, frozenset(ids))


def read_sets(specs: Sequence[str], drop_from: Sequence[str]) -> list[ImageSet]:
    """Read every `--overlap-with` set up front, so a bad SPEC fails before any work; check `drop_from`."""
    unknown = set(drop_from) - set(SPLITS)
    if unknown:
        raise InputError(f"--drop-overlap-from: unknown splits {sorted(unknown)}; expected {SPLITS}")
    if drop_from and not specs:
        raise InputError("--drop-overlap-from needs at least one --overlap-with SPEC naming the images to drop")
    return [read_image_set(spec) for spec in specs]


def apply(splits: Mapping[str, list[dict]], sets: Sequence[ImageSet], drop_from: Sequence[str],
          report: BuildReport) -> None:
    """Count overlaps of every split with every set in the report; drop them from `drop_from` splits (in place)."""
    counts: dict[str, dict[str, int]] = {}
    for other in sets:
        counts[other.name] = {}
        for split, records in splits.items():
            n = sum(normalize_image_id(r["image_id"]) in other.ids for r in records)
            counts[other.name][split] = n
            report.note(f"overlap {split} & {other.name}", n)
    if sets:
        report.note("overlap", counts)
    for split in drop_from:
        kept = []
        for record in splits.get(split, []):
            hit = next((s for s in sets if normalize_image_id(record["image_id"]) in s.ids), None)
            if hit is None:
                kept.append(record)
            else:
                report.drop(split, f"image in {hit.name} (--drop-overlap-from)", example=record["image_id"])
        splits[split][:] = kept


def note_origins(splits: Mapping[str, list[dict]], origin_of: Callable[[str], str | None], report: BuildReport,
                 dataset: str) -> None:
    """Report where each split's images come from, e.g. `test images from COCO train2014 = 583`."""
    origins = {split: Counter(origin_of(r["image_id"]) or "unknown" for r in records)
               for split, records in splits.items()}
    report.note(f"{dataset} image origin", {split: dict(c) for split, c in origins.items()})
    for split, counter in origins.items():
        for origin, n in sorted(counter.items()):
            report.note(f"{split} images from {origin}", n)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("split hygiene")
    group.add_argument("--overlap-with", action="append", default=[], metavar="SPEC",
                       help="another image set to count overlaps with (repeatable): DIR[:SPLIT,...] of a built "
                            "dataset (default splits: validation,test), a COCO captions JSON, or a text file "
                            "with one image id per line")
    group.add_argument("--drop-overlap-from", nargs="+", default=[], metavar="SPLIT", choices=SPLITS,
                       help="drop images found in any --overlap-with set from these splits, e.g. train")
