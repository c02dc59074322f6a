"""Builder for Crossmodal-3600: `python -m data_prep xm3600 --lang es --data-dir DATA --out DIR`.

XM3600 (Thapliyal et al., 2022) has 3,600 images with captions written independently by native
speakers in 36 languages. It is an evaluation set: everything goes to the `test` split, and
`parallel` is empty (captions in different languages are not translations of each other).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Unpack

import datasets

from ..schema import HUMAN_WRITTEN, NONE, provenance
from ..text_files import numbered_lines
from . import overlap
from .files import OUTSIDE, InputError, LayoutError, inside, require
from .skeleton import Build, BuildOptions, options_of

NAME = "xm3600"
HELP = "Crossmodal-3600: 3,600 images with independent captions in 36 languages (evaluation only: test split)"
LAYOUT = """\
Expected layout (local files only):
DATA_DIR/                       (--data-dir)
  captions.jsonl                one image per line: {"image/key": "000411001ff7dd4f",
                                  "en": {"caption": [...], "caption/tokenized": [...],
                                         "caption/tokenized/lowercase": [...]}, "es": {...}, ...}
  images/000411001ff7dd4f.jpg   the image of each key

Output: test split only; image_id = image/key; lang = --lang; source = <lang>.<field>;
english = en.<field> (--field, default caption); parallel = "" (independent descriptions).
provenance: xm3600/test/source=hw,english=hw,parallel=none.
Example: python -m data_prep xm3600 --lang zh --data-dir data/raw/xm3600 --out data/xm3600-zh"""

WANTED = {"captions": ["captions.jsonl"]}
FIELDS = ("caption", "caption/tokenized", "caption/tokenized/lowercase")


def build_xm3600(
    out: str | Path,
    data_dir: str | Path,
    lang: str,
    field: str = "caption",
    **options: Unpack[BuildOptions],
) -> datasets.DatasetDict:
    """Build the XM3600 test split for `lang` from local files (layout in `LAYOUT`) and save it at `out`."""
    if field not in FIELDS:
        raise InputError(f"--field must be one of {FIELDS}, got {field!r}")
    data_dir = Path(data_dir)
    files = require(data_dir, WANTED, layout=LAYOUT, compressed=True, builder=NAME)
    run = Build(NAME, out, data_dir=str(data_dir), lang=lang, field=field, **options)
    if not (data_dir / "images").is_dir():
        raise LayoutError(f"{NAME}: missing image folder {data_dir / 'images'}\n{LAYOUT}")
    report = run.report
    records, languages, listed = [], set(), 0
    for number, line in numbered_lines(files["captions"]):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
            key = str(obj["image/key"])
        except (json.JSONDecodeError, KeyError, TypeError):
            report.drop("test", "malformed line in captions.jsonl", example=f"captions.jsonl:{number}")
            continue
        listed += 1
        languages |= {k for k, v in obj.items() if isinstance(v, dict)}
        if not isinstance(obj.get(lang), dict):
            report.drop("test", f"image without {lang} captions", example=key)
            continue
        image = inside(data_dir / "images", f"{key}.jpg")
        if image is None:  # never opened
            report.drop("test", OUTSIDE, example=key)
            continue
        source = list(obj[lang].get(field, []))
        records.append({
            "image": image,
            "image_id": key,
            "lang": lang,
            "source": source,
            "english": list(obj.get("en", {}).get(field, [])),
            "parallel": [""] * len(source),
            "provenance": provenance(NAME, "test", source=HUMAN_WRITTEN, english=HUMAN_WRITTEN, parallel=NONE),
        })
    if not records:
        raise InputError(f"{files['captions']}: no image has {lang!r} captions; languages present: {sorted(languages)}")
    report.note("input images", listed)
    report.note("input source captions", sum(len(r["source"]) for r in records))
    return run.finish({"test": records})


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-dir", type=Path, required=True, help="folder with captions.jsonl and images/")
    parser.add_argument("--lang", required=True, help="source language key in captions.jsonl, e.g. es, zh")
    parser.add_argument("--field", choices=FIELDS, default="caption",
                        help="which caption form to read (default: caption, the raw text)")
    overlap.add_arguments(parser)


def build(args: argparse.Namespace) -> datasets.DatasetDict:
    return build_xm3600(args.out, args.data_dir, args.lang, field=args.field, **options_of(args))
