"""`python -m data_prep stats DIR` — the coverage table of a built dataset, or of the real COCO-CN text.

A built dataset: its train and test splits' source captions, in words (`data_prep.words`, by the
dataset's `lang`). COCO-CN (`--coco-cn`, the v201805 tarball or its extracted folder): the
human-written captions of its official train and test lists, in the words of the segmented file
it ships (`imageid.caption.bosonseg.txt`, "word:tag" tokens); image id = cocoid, caption index =
the `#k` of the line (as the `coco-cn` builder numbers them).
"""
from __future__ import annotations

import argparse
import json
import re
import tarfile
import tempfile
from collections import Counter
from pathlib import Path

from .builders.coco_cn import SPLIT_FILES, find_root
from .builders.files import require
from .coverage import DEFAULT_FRACTIONS, Caption, coverage_table, fit_zipf, format_table
from .errors import InputError, fraction_list, positive_int
from .load import load_dataset_dir
from .text_files import numbered_lines, read_list
from .words import segmenter_name, words

SEGMENTED = "imageid.caption.bosonseg.txt"
COCO_CN_FILES = {**{split: [name] for split, name in SPLIT_FILES.items()}, "segmented": [SEGMENTED]}
COCO_CN_LAYOUT = ("Expected layout: the COCO-CN v201805 tarball (coco-cn-version1805.tar.gz) or its extracted folder "
                  f"holding {', '.join(SPLIT_FILES.values())} and {SEGMENTED}")
_LINE = re.compile(r"^(?P<id>[^#\s]+)#(?P<k>\d+)\s(?P<tokens>.*)$")


def dataset_captions(path: str | Path) -> tuple[str, list[Caption], list[Caption]]:
    """(lang, train captions, test captions) of a dataset directory, in words."""
    dsd = load_dataset_dir(path)
    missing = [s for s in ("train", "test") if s not in dsd]
    if missing:
        raise InputError(f"{path} has no {' and no '.join(missing)} split; the coverage table needs both")
    langs = Counter(dsd["train"]["lang"])
    if not langs:
        raise InputError(f"{path}: the train split is empty")
    lang = langs.most_common(1)[0][0]
    out = []
    for split in ("train", "test"):
        rows = dsd[split].select_columns(["image_id", "source"])
        out.append([Caption(r["image_id"], k, tuple(words(text, lang)))
                    for r in rows for k, text in enumerate(r["source"]) if text.strip()])
    return lang, out[0], out[1]


def coco_cn_captions(path: str | Path) -> tuple[list[Caption], list[Caption], Counter]:
    """(train, test) captions of COCO-CN's segmented file, from the tarball or an extracted folder, and
    the counts of the training captions' nouns (words whose tag starts with "n")."""
    path = Path(path)
    if path.is_file():
        with tempfile.TemporaryDirectory(prefix="groundmt-coco-cn-") as tmp:
            names = {n for names in COCO_CN_FILES.values() for n in names}
            try:
                with tarfile.open(path) as tar:
                    members = [m for m in tar.getmembers() if m.isfile() and Path(m.name).name in names]
                    for m in members:
                        with tar.extractfile(m) as src:
                            (Path(tmp) / Path(m.name).name).write_bytes(src.read())
            except (tarfile.TarError, OSError, EOFError) as exc:
                raise InputError(f"--coco-cn {path}: not a readable tarball ({exc}). {COCO_CN_LAYOUT}") from None
            return _read_coco_cn(Path(tmp))
    if not path.is_dir():
        raise InputError(f"--coco-cn {path} does not exist. {COCO_CN_LAYOUT}")
    return _read_coco_cn(find_root(path))


def _read_coco_cn(root: Path) -> tuple[list[Caption], list[Caption], Counter]:
    files = require(root, COCO_CN_FILES, layout=COCO_CN_LAYOUT, builder="stats --coco-cn")
    split_of = {image: split for split in ("train", "test") for image in read_list(files[split])}
    out: dict[str, list[Caption]] = {"train": [], "test": []}
    nouns: Counter = Counter()
    for number, line in numbered_lines(files["segmented"]):
        if not line.strip():
            continue
        match = _LINE.match(line)
        if match is None:
            raise InputError(f"{files['segmented']}:{number}: expected '<id>#<k> word:tag word:tag ...'")
        split = split_of.get(match["id"])
        if split is not None:
            tagged = [t.rpartition(":") for t in match["tokens"].split()]
            out[split].append(Caption(match["id"][-12:], int(match["k"]), tuple(w for w, _, _ in tagged)))
            if split == "train":
                nouns.update(w for w, _, tag in tagged if tag.startswith("n"))
    return out["train"], out["test"], nouns


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dir", nargs="?", help="dataset directory written by a builder")
    parser.add_argument("--coco-cn", metavar="FILE_OR_DIR",
                        help="the real COCO-CN text instead: coco-cn-version1805.tar.gz or its extracted folder")
    parser.add_argument("--fractions", type=fraction_list, default=DEFAULT_FRACTIONS,
                        help="translated fractions P, comma-separated (default: 0.02,0.05,0.3)")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed of the hashed translated subsets (training's --seed; default: 0)")
    parser.add_argument("--draws", type=positive_int, default=5,
                        help="average over this many subsets, seeds seed..seed+draws-1 (default: 5)")
    parser.add_argument("--fit-zipf", action="store_true",
                        help="also print the maximum-likelihood Zipf exponent of the training words' frequencies "
                             "(with --coco-cn also of its nouns: the longtail builder's default)")
    parser.add_argument("--json", action="store_true", help="print the table as JSON")


def run_stats(args: argparse.Namespace) -> int:
    """Print the coverage table of `args.dir` or of `--coco-cn`."""
    if (args.dir is None) == (args.coco_cn is None):
        raise InputError("stats: give a dataset directory or --coco-cn FILE_OR_DIR (one of them)")
    fractions = args.fractions
    nouns: Counter = Counter()
    if args.coco_cn is not None:
        name, segmenter = "COCO-CN (zh, real)", "BosonNLP (the segmented file COCO-CN ships)"
        train, test, nouns = coco_cn_captions(args.coco_cn)
    else:
        lang, train, test = dataset_captions(args.dir)
        name, segmenter = f"{args.dir} ({lang})", segmenter_name(lang)
    if not train or not test:
        raise InputError(f"{args.coco_cn or args.dir}: no training or no test captions to count")
    table = coverage_table(train, test, fractions, seed=args.seed, draws=args.draws)
    table["segmenter"] = segmenter
    if args.fit_zipf:
        table["zipf_exponent"] = fit_zipf(Counter(w for c in train for w in c.words))
        if nouns:
            table["zipf_exponent_nouns"] = fit_zipf(nouns)
    if args.json:
        print(json.dumps({"name": name, **table}, indent=2, ensure_ascii=False))
    else:
        print(format_table(name, table))
        print(f"words: {segmenter}")
        if args.fit_zipf:
            print(f"Zipf exponent of the training words (maximum likelihood over ranks): {table['zipf_exponent']:.3f}")
            if nouns:
                print(f"Zipf exponent of the training nouns (tags n*): {table['zipf_exponent_nouns']:.3f}")
    return 0
