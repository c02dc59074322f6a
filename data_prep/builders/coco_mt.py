"""Builder for COCO-MT (COCO-35L): `python -m data_prep coco-mt --lang es --data-dir DATA --out DIR`.

Google's Crossmodal-3600 release includes COCO captions machine-translated into 34 languages:
`coco_mt_{train,dev}.jsonl.bz2`, one JSON object per (caption, language) with `image_id =
"<cocoid>_<n>"`, `src_lang`, `trg_lang`, `caption_tokenized` (the English original, tokenized),
`translation_tokenized` and `backtranslation_tokenized`. Every translation is machine-made, so
`source=mt`; its English original is an exact (if machine) pair and fills `parallel`.
"""
from __future__ import annotations

import argparse
import itertools
import json
from pathlib import Path
from typing import Unpack

import datasets

from ..build_report import BuildReport
from ..schema import HUMAN_WRITTEN, MACHINE_TRANSLATED, provenance
from ..text_files import numbered_lines
from . import coco_captions, overlap
from .coco_captions import COCO_LAYOUT, CocoEnglish, CocoImages, cocoid
from .files import InputError, require
from .skeleton import Build, BuildOptions, options_of

NAME = "coco-mt"
HELP = "COCO-MT (COCO-35L): machine-translated COCO captions in 34 languages with COCO English captions"
LAYOUT = f"""\
Expected layout (local files only):
DATA_DIR/                       (--data-dir)
  coco_mt_train.jsonl.bz2       one JSON object per line (.jsonl, .jsonl.gz and .jsonl.bz2 all read):
  coco_mt_dev.jsonl.bz2         {{"image_id": "<cocoid>_<n>", "src_lang": "en", "trg_lang": "es",
                                 "caption_tokenized": ..., "translation_tokenized": ...,
                                 "backtranslation_tokenized": ...}}
{COCO_LAYOUT}
(COCO_DIR defaults to DATA_DIR/coco.)

Output: train = coco_mt_train; dev -> --dev-split (validation by default; there is no third split);
image_id = cocoid; lang = --lang; source = translation_tokenized (machine-translated, ordered by n);
parallel = the caption_tokenized each was translated from; english = the image's COCO captions.
provenance: coco-mt/<split>/source=mt,english=hw,parallel=hw.
Example: python -m data_prep coco-mt --lang es --data-dir data/raw/coco-mt --coco-dir data/raw/coco --out data/coco-mt-es"""

FILES = {"train": ["coco_mt_train.jsonl"], "dev": ["coco_mt_dev.jsonl"]}
FIELDS = ("image_id", "trg_lang", "caption_tokenized", "translation_tokenized")


def read_translations(path: Path, lang: str, split: str, report: BuildReport) -> dict[str, list[tuple[int, str, str]]]:
    """`cocoid -> [(n, translation, english original), ...]` sorted by n, for `trg_lang == lang`."""
    grouped: dict[str, list[tuple[int, str, str]]] = {}
    needle = json.dumps(lang)  # a line for this language contains the JSON string "<lang>": skip the rest unparsed
    for number, line in numbered_lines(path):
        if needle not in line:
            continue
        obj = _loads(line)
        if obj.get("trg_lang") != lang:
            continue
        try:
            missing = [f for f in FIELDS if f not in obj]
            if missing:
                raise InputError(f"lacks {missing}")
            head, _, n = str(obj["image_id"]).rpartition("_")
            image_id, index = cocoid(head), int(n)
        except ValueError as exc:
            report.drop(split, f"malformed line in {path.name}", example=f"{path.name}:{number}: {exc}")
            continue
        grouped.setdefault(image_id, []).append((index, obj["translation_tokenized"], obj["caption_tokenized"]))
    if not grouped:
        seen = {str(_loads(line).get("trg_lang")) for _, line in itertools.islice(numbered_lines(path), 5000)}
        raise InputError(f"{path}: no line has trg_lang={lang!r}; languages in its first lines: {sorted(seen)}")
    return {key: sorted(items, key=lambda item: item[0]) for key, items in grouped.items()}


def _loads(line: str) -> dict:
    try:
        obj = json.loads(line)
    except json.JSONDecodeError:
        return {}
    return obj if isinstance(obj, dict) else {}


def build_coco_mt(
    out: str | Path,
    data_dir: str | Path,
    lang: str,
    coco_dir: str | Path | None = None,
    dev_split: str = "validation",
    **options: Unpack[BuildOptions],
) -> datasets.DatasetDict:
    """Build COCO-MT for `lang` from local files (layout in `LAYOUT`) and save it at `out`."""
    if dev_split not in ("validation", "test"):
        raise InputError(f"--dev-split must be validation or test, got {dev_split!r}")
    data_dir = Path(data_dir)
    coco_dir = coco_captions.coco_dir_of(coco_dir, data_dir)
    files = require(data_dir, FILES, layout=LAYOUT, compressed=True, builder=NAME)
    run = Build(NAME, out, data_dir=str(data_dir), coco_dir=str(coco_dir), lang=lang, dev_split=dev_split, **options)
    report = run.report
    english = coco_captions.load_english(coco_dir)
    images = CocoImages(coco_dir)
    report.note("input files", {key: str(path) for key, path in files.items()})
    splits = {}
    for part, split in (("train", "train"), ("dev", dev_split)):
        grouped = read_translations(files[part], lang, split, report)
        report.note(f"input {split} translations", sum(len(v) for v in grouped.values()))
        splits[split] = [_record(split, image_id, items, lang, english, images) for image_id, items in grouped.items()]
    overlap.note_origins(splits, english.release, report, NAME)
    return run.finish(splits)


def _record(split: str, image_id: str, items: list[tuple[int, str, str]], lang: str, english: CocoEnglish,
            images: CocoImages) -> dict:
    return {
        "image": images.path(image_id),
        "image_id": image_id,
        "lang": lang,
        "source": [translation for _, translation, _ in items],
        "english": english.get(image_id),
        "parallel": [original for _, _, original in items],
        "provenance": provenance(NAME, split, source=MACHINE_TRANSLATED, english=HUMAN_WRITTEN, parallel=HUMAN_WRITTEN),
    }


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-dir", type=Path, required=True, help="folder with coco_mt_{train,dev}.jsonl(.bz2)")
    parser.add_argument("--lang", required=True, help="target language of the translations (trg_lang), e.g. es, zh")
    coco_captions.add_arguments(parser)
    parser.add_argument("--dev-split", choices=("validation", "test"), default="validation",
                        help="which split coco_mt_dev becomes (default: validation)")
    overlap.add_arguments(parser)


def build(args: argparse.Namespace) -> datasets.DatasetDict:
    return build_coco_mt(args.out, args.data_dir, args.lang, coco_dir=args.coco_dir, dev_split=args.dev_split,
                         **options_of(args))
