"""Builder for Multi30k: `python -m data_prep multi30k --lang de --data-dir DATA --images IMAGES --out DIR`.

Multi30k (Elliott et al., 2016) extends Flickr30k. Task 1: one English description per image
and its professional translation (German; French and Czech added later), so the English line
is both an `english` caption and the `parallel` of the source line. Task 2: five English and
five German descriptions per image written independently (no `parallel`). Files are
line-aligned: line i of `<split>.<lang>.gz` describes the image on line i of `image_splits/`.
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Unpack

import datasets

from ..schema import HUMAN_TRANSLATED, HUMAN_WRITTEN, NONE, provenance
from ..text_files import read_lines, read_list
from . import overlap
from .files import OUTSIDE, InputError, LayoutError, inside, require
from .skeleton import Build, BuildOptions, options_of

NAME = "multi30k"
HELP = "Multi30k: Flickr30k images with translated (task 1) or independent (task 2) captions"
LAYOUT = """\
Expected layout (local files only; .gz optional):
DATA_DIR/                                  (--data-dir: the multi30k/dataset repository's data/ folder)
  task1/raw/train.en.gz  train.de.gz       line i: the English description of image i and its translation
  task1/raw/val.{en,de}.gz  test_2016_flickr.{en,de}.gz ...   (fr, cs the same)
  task1/image_splits/train.txt  val.txt  test_2016_flickr.txt ...   line i: the image file name
  task2/raw/train.1.en.gz ... train.5.de.gz  val.K.{en,de}.gz  test_2016.K.{en,de}.gz   (--tasks 2; de only)
  task2/image_splits/train_images.txt  val_images.txt  test_2016_images.txt
IMAGES/                                    (--images, repeatable; default DATA_DIR/flickr30k-images)
  1000092795.jpg ...                       the Flickr30k images (and COCO ones for test_2017_mscoco)

Output: train = train, validation = val, test = --test-set (task 1, default test_2016_flickr) /
test_2016 (task 2); image_id = file name without extension; lang = --lang;
task 1: source = [translation], english = parallel = [English original];
task 2: source = 5 German, english = 5 English descriptions, parallel = "".
With --tasks 1 2 an image gets both (English deduplicated).
provenance: multi30k/<split>/source=ht (task 1) | hw (task 2) | ht+hw,english=hw,parallel=hw|none.
Example: python -m data_prep multi30k --lang de --tasks 1 2 --data-dir multi30k-dataset/data \\
           --images flickr30k-images --out data/multi30k-de"""

TASK_LANGS = {1: ("de", "fr", "cs"), 2: ("de",)}  # source languages of each task (English is the target)
TASK2_CAPTIONS = 5


def _aligned(images: list[str], columns: dict[Path, list[str]]) -> None:
    for path, lines in columns.items():
        if len(lines) != len(images):
            raise InputError(f"{NAME}: {path} has {len(lines)} lines but its image list has {len(images)}; "
                             "the files must be line-aligned")


def task1_entries(data_dir: Path, lang: str, split_files: dict[str, str]) -> dict[str, list[tuple]]:
    """`split -> [(image name, source, code, parallel, [english]), ...]` from task 1."""
    root = data_dir / "task1"
    wanted = {}
    for split, stem in split_files.items():
        wanted |= {f"{split}.src": [f"raw/{stem}.{lang}"], f"{split}.en": [f"raw/{stem}.en"],
                   f"{split}.images": [f"image_splits/{stem}.txt"]}
    files = require(root, wanted, layout=LAYOUT, compressed=True, builder=NAME)
    out = {}
    for split in split_files:
        images = read_list(files[f"{split}.images"])
        src, eng = read_lines(files[f"{split}.src"]), read_lines(files[f"{split}.en"])
        _aligned(images, {files[f"{split}.src"]: src, files[f"{split}.en"]: eng})
        out[split] = [(name, s, HUMAN_TRANSLATED, e, [e]) for name, s, e in zip(images, src, eng)]
    return out


def task2_entries(data_dir: Path, lang: str, split_files: dict[str, str]) -> dict[str, list[tuple]]:
    """`split -> [(image name, source, code, "", [english]), ...]` from task 2 (caption k of each image)."""
    root = data_dir / "task2"
    wanted = {}
    for split, stem in split_files.items():
        wanted[f"{split}.images"] = [f"image_splits/{stem}_images.txt"]
        for k in range(1, TASK2_CAPTIONS + 1):
            wanted |= {f"{split}.{k}.src": [f"raw/{stem}.{k}.{lang}"], f"{split}.{k}.en": [f"raw/{stem}.{k}.en"]}
    files = require(root, wanted, layout=LAYOUT, compressed=True, builder=NAME)
    out = {}
    for split in split_files:
        images = read_list(files[f"{split}.images"])
        out[split] = []
        for k in range(1, TASK2_CAPTIONS + 1):
            src, eng = read_lines(files[f"{split}.{k}.src"]), read_lines(files[f"{split}.{k}.en"])
            _aligned(images, {files[f"{split}.{k}.src"]: src, files[f"{split}.{k}.en"]: eng})
            out[split] += [(name, s, HUMAN_WRITTEN, "", [e]) for name, s, e in zip(images, src, eng)]
    return out


def build_multi30k(
    out: str | Path,
    data_dir: str | Path,
    lang: str = "de",
    tasks: tuple[int, ...] | list[int] = (1,),
    images: tuple[str | Path, ...] | list[str | Path] = (),
    test_set: str = "test_2016_flickr",
    **options: Unpack[BuildOptions],
) -> datasets.DatasetDict:
    """Build Multi30k from local files (layout in `LAYOUT`) and save it at `out`."""
    data_dir = Path(data_dir)
    tasks = sorted(set(tasks))
    if not tasks or any(t not in TASK_LANGS for t in tasks):
        raise InputError(f"--tasks must name 1 and/or 2, got {tasks}")
    if any(lang not in TASK_LANGS[t] for t in tasks):
        raise InputError(f"--lang {lang!r} is not in Multi30k task(s) {tasks}: task 1 has {TASK_LANGS[1]}, "
                         f"task 2 has {TASK_LANGS[2]}")
    entries: dict[str, list[tuple]] = {"train": [], "validation": [], "test": []}
    if 1 in tasks:
        for split, rows in task1_entries(data_dir, lang, {"train": "train", "validation": "val",
                                                          "test": test_set}).items():
            entries[split] += rows
    if 2 in tasks:
        for split, rows in task2_entries(data_dir, lang, {"train": "train", "validation": "val",
                                                          "test": "test_2016"}).items():
            entries[split] += rows
    image_dirs = [Path(p) for p in images] or [data_dir / "flickr30k-images"]
    missing_dirs = [str(p) for p in image_dirs if not p.is_dir()]
    if missing_dirs:
        raise LayoutError(f"{NAME}: image folder(s) not found: {missing_dirs}\n{LAYOUT}")
    run = Build(NAME, out, data_dir=str(data_dir), lang=lang, tasks=tasks, images=[str(p) for p in image_dirs],
                test_set=test_set, **options)
    report = run.report
    splits = {}
    for split, rows in entries.items():
        report.note(f"input {split} source lines", len(rows))
        merged: dict[str, dict] = {}
        for name, src, code, par, eng in rows:
            if inside(image_dirs[0], name) is None:  # never opened
                report.drop(split, OUTSIDE, example=name)
                continue
            rec = merged.setdefault(name, {"source": [], "codes": [], "parallel": [], "english": []})
            rec["source"].append(src)
            rec["codes"].append(code)
            rec["parallel"].append(par)
            rec["english"] += eng
        splits[split] = [_record(split, name, rec, lang, image_dirs) for name, rec in merged.items()]
    return run.finish(splits)


def _record(split: str, name: str, rec: dict, lang: str, image_dirs: list[Path]) -> dict:
    image = next((d / name for d in image_dirs if (d / name).is_file()), image_dirs[0] / name)
    return {
        "image": image,
        "image_id": Path(name).stem,
        "lang": lang,
        "source": rec["source"],
        "english": list(dict.fromkeys(rec["english"])),  # task 1's English line is often one of task 2's five
        "parallel": rec["parallel"],
        "provenance": provenance(NAME, split, source="+".join(dict.fromkeys(rec["codes"])), english=HUMAN_WRITTEN,
                                 parallel=HUMAN_WRITTEN if _has_parallel(rec) else NONE),
    }


def _has_parallel(rec: dict) -> bool:
    """Whether a non-empty source caption has a translation (the writer drops empty captions with theirs)."""
    return any(s.strip() and p.strip() for s, p in zip(rec["source"], rec["parallel"]))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-dir", type=Path, required=True, help="the Multi30k data/ folder (layout below)")
    parser.add_argument("--lang", default="de", help="source language: de, fr, cs (task 1); de (task 2). Default: de")
    parser.add_argument("--tasks", type=int, nargs="+", choices=(1, 2), default=[1],
                        help="task 1 (translations), task 2 (independent descriptions) or both (default: 1)")
    parser.add_argument("--images", type=Path, action="append", default=[],
                        help="folder of the images named in image_splits/ (repeatable; default DATA_DIR/flickr30k-images)")
    parser.add_argument("--test-set", default="test_2016_flickr",
                        help="task 1 test set: test_2016_flickr, test_2017_flickr, test_2017_mscoco, test_2018_flickr "
                             "(default: test_2016_flickr)")
    overlap.add_arguments(parser)


def build(args: argparse.Namespace) -> datasets.DatasetDict:
    return build_multi30k(args.out, args.data_dir, lang=args.lang, tasks=args.tasks, images=args.images,
                          test_set=args.test_set, **options_of(args))
