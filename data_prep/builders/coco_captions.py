"""COCO English captions and images, joined by cocoid (the 12-digit COCO image id).

COCO ships captions as `annotations/captions_{train,val}2014.json` (or 2017) and images as
`train2014/COCO_train2014_000000296735.jpg` (2014 naming) or `train2017/000000296735.jpg`
(2017 naming). The 2017 train/val sets re-split the same images and captions, so either
release works. Every COCO-based builder (coco-cn, coco-es, coco-mt) reads both through here.
"""
from __future__ import annotations

import argparse
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from .files import InputError, LayoutError

COCO_LAYOUT = """\
COCO_DIR/                                      (--coco-dir)
  annotations/captions_train2014.json          English captions (or captions_train2017.json)
  annotations/captions_val2014.json            (or captions_val2017.json)
  train2014/COCO_train2014_000000296735.jpg    images, 2014 naming (or train2017/000000296735.jpg)
  val2014/COCO_val2014_000000043734.jpg        (or val2017/000000043734.jpg)"""

# Read in this order; a cocoid already read from an earlier file is skipped (2014 and 2017 hold the same captions).
CAPTION_FILES = ("captions_train2014.json", "captions_val2014.json", "captions_train2017.json", "captions_val2017.json")
IMAGE_FOLDERS = ("train2014", "val2014", "train2017", "val2017")

_COCO_NAME = re.compile(r"^COCO_[A-Za-z]+\d{4}_(\d{12})$")
_IMAGE_FILE = re.compile(r"^(?:COCO_[A-Za-z]+\d{4}_)?(\d{12})\.(?:jpe?g|png)$", re.IGNORECASE)


def cocoid(value: int | float | str) -> str:
    """The 12-digit cocoid of `296735`, `"296735"`, `"000000296735.jpg"` or `"COCO_train2014_000000296735"`."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, int) and 0 <= value < 10**12:
        return f"{value:012d}"
    stem = str(value).strip().rsplit("/", 1)[-1]
    stem = re.sub(r"\.(jpe?g|png)$", "", stem, flags=re.IGNORECASE)
    if stem.isdigit() and len(stem) <= 12:
        return stem.zfill(12)
    match = _COCO_NAME.match(stem)
    if match:
        return match.group(1)
    raise InputError(f"not a COCO image id: {value!r} (expected e.g. 296735, 000000296735 or COCO_train2014_000000296735)")


@dataclass
class CocoEnglish:
    """English COCO captions per cocoid, in the order the annotations appear in the JSON file."""

    captions: dict[str, list[str]] = field(default_factory=dict)
    origin: dict[str, str] = field(default_factory=dict)  # cocoid -> "train2014", "val2017", ...
    files: list[Path] = field(default_factory=list)

    def get(self, image_id: str) -> list[str]:
        return self.captions.get(image_id, [])

    def release(self, image_id: str) -> str | None:
        """Where the image's captions were found, e.g. `COCO train2014`."""
        return f"COCO {self.origin[image_id]}" if image_id in self.origin else None


def load_english(coco_dir: Path) -> CocoEnglish:
    """Read every `captions_*.json` present in `coco_dir/annotations` (or `coco_dir`)."""
    english = CocoEnglish()
    for name in CAPTION_FILES:
        path = next((d / name for d in (coco_dir / "annotations", coco_dir) if (d / name).is_file()), None)
        if path is None:
            continue
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
        if not isinstance(data, dict) or "annotations" not in data:
            raise InputError(f"{path} is not a COCO captions file: expected a JSON object with 'annotations'")
        release = name.removeprefix("captions_").removesuffix(".json")
        fresh: dict[str, list[str]] = {}
        for ann in data["annotations"]:
            key = cocoid(ann["image_id"])
            if key not in english.captions:
                fresh.setdefault(key, []).append(ann["caption"])
        for key, caps in fresh.items():
            english.captions[key] = caps
            english.origin[key] = release
        english.files.append(path)
    if not english.files:
        raise LayoutError(
            f"no COCO captions JSON in {coco_dir / 'annotations'}: expected one of {', '.join(CAPTION_FILES)}\n"
            f"Expected layout:\n{COCO_LAYOUT}"
        )
    return english


class CocoImages:
    """Image files under the COCO image folders, indexed by cocoid (2014 and 2017 naming)."""

    def __init__(self, coco_dir: Path) -> None:
        folders = [coco_dir / name for name in IMAGE_FOLDERS if (coco_dir / name).is_dir()]
        if not folders:
            raise LayoutError(
                f"no COCO image folder in {coco_dir}: expected at least one of {', '.join(IMAGE_FOLDERS)}\n"
                f"Expected layout:\n{COCO_LAYOUT}"
            )
        self.folders = folders
        self.index: dict[str, Path] = {}
        for folder in folders:
            with os.scandir(folder) as entries:
                for entry in entries:
                    match = _IMAGE_FILE.match(entry.name)
                    if match and match.group(1) not in self.index:
                        self.index[match.group(1)] = Path(entry.path)

    def path(self, image_id: str) -> Path:
        """The image file of `image_id`; a non-existent path when absent (the writer counts it as missing)."""
        return self.index.get(image_id, self.folders[0] / f"{image_id}.jpg")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--coco-dir", type=Path, default=None,
                        help="COCO images and caption annotations (default: DATA_DIR/coco); layout below")


def coco_dir_of(args_coco_dir: Path | None, data_dir: Path) -> Path:
    """`--coco-dir`, or `DATA_DIR/coco` when not given."""
    return Path(args_coco_dir) if args_coco_dir is not None else Path(data_dir) / "coco"
