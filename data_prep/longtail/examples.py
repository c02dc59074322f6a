"""A page of example pictures with their captions, for looking at a built world.

    python -m data_prep.longtail.examples DIR [DIR ...] --out page.html [--rows 12] [--split test]

One section per dataset directory: each picture (embedded, enlarged) with its source captions, the
concepts they name (id and English name, from `source_concepts` and `concepts.json`), their English
translations where the dataset has them and the picture's independent English captions.
"""
from __future__ import annotations

import argparse
import base64
import html
import io
import sys
from pathlib import Path

from PIL import Image

from ..concepts import CONCEPTS_FILE, load_concepts
from ..errors import Parser, output_file, positive_int, run_command
from ..load import load_dataset_dir

STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5em; color: #222; }
h2 { margin-top: 1.5em; border-bottom: 1px solid #ccc; }
.grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(420px, 1fr)); gap: 14px; }
.card { display: flex; gap: 10px; border: 1px solid #ddd; border-radius: 6px; padding: 8px; }
.card img { width: 192px; height: 192px; image-rendering: auto; flex: none; border-radius: 4px; }
.card ul { margin: 0; padding-left: 1.1em; font-size: 14px; }
.card li { margin-bottom: 4px; }
.src { font-weight: 600; }
.par { color: #2a6; }
.eng { color: #555; }
.ids { color: #888; font-size: 12px; }
.id { color: #888; font-size: 12px; }
"""


def _picture(image: Image.Image, side: int = 192) -> str:
    buf = io.BytesIO()
    image.convert("RGB").resize((side, side), Image.Resampling.LANCZOS).save(buf, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def section(path: str | Path, rows: int, split: str) -> str:
    """The HTML of one dataset's examples."""
    dsd = load_dataset_dir(path)
    ds = dsd[split].select(range(min(rows, len(dsd[split]))))
    english = ({c.id: c.english[0] for c in load_concepts(path).concepts} if (Path(path) / CONCEPTS_FILE).exists()
               else {})
    cards = []
    for row in ds:
        items = []
        concepts = row.get("source_concepts") or [[] for _ in row["source"]]
        for text, parallel, ids in zip(row["source"], row["parallel"], concepts):
            named = " · ".join(html.escape(f"{i} {english.get(i, '')}".strip()) for i in ids)
            items.append(f'<li><span class="src">{html.escape(text)}</span>'
                         + (f'<br><span class="par">→ {html.escape(parallel)}</span>' if parallel else "")
                         + (f'<br><span class="ids">{named}</span>' if named else "") + "</li>")
        items += [f'<li class="eng">en: {html.escape(e)}</li>' for e in row["english"]]
        cards.append(f'<div class="card"><img src="{_picture(row["image"])}" alt="{html.escape(row["image_id"])}">'
                     f'<div><div class="id">{html.escape(row["image_id"])}</div><ul>{"".join(items)}</ul></div></div>')
    lang = ds[0]["lang"] if len(ds) else "?"
    return (f"<h2>{html.escape(Path(path).name)} — {html.escape(lang)}, {split} split, first {len(ds)} pictures</h2>"
            f'<div class="grid">{"".join(cards)}</div>')


def write_page(dirs: list[str], out: str | Path, rows: int = 12, split: str = "test") -> Path:
    """Write the examples page of `dirs` to `out`."""
    body = "".join(section(d, rows, split) for d in dirs)
    legend = ("<p>Bold: the source caption; green: its exact English translation (the <code>parallel</code> "
              "column); grey: the concepts it names (<code>source_concepts</code>, with their English names); en: the picture's own English "
              "captions, written independently. Pictures: Twemoji (CC-BY 4.0) unless the world was built with "
              "<code>--pictures</code>.</p>")
    page = (f'<!doctype html><html><head><meta charset="utf-8"><title>Long-tail world: examples</title>'
            f"<style>{STYLE}</style></head><body><h1>Long-tail world: example pictures and captions</h1>"
            f"{legend}{body}</body></html>\n")
    out = Path(out)
    out.write_text(page, encoding="utf-8")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = Parser(prog="python -m data_prep.longtail.examples", description=__doc__,
                    formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dirs", nargs="+", metavar="DIR", help="dataset directories (any builder's)")
    parser.add_argument("--out", required=True, help="the HTML file to write")
    parser.add_argument("--rows", type=positive_int, default=12, help="pictures per dataset (default: 12)")
    parser.add_argument("--split", choices=("train", "validation", "test"), default="test",
                        help="split to show (default: test)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    args = parser.parse_args(argv)

    def run() -> int:
        output_file(args.out, "--out", inputs={"DIR": args.dirs}, overwrite=args.overwrite)
        print(write_page(args.dirs, args.out, args.rows, args.split))
        return 0

    return run_command(run)


if __name__ == "__main__":
    sys.exit(main())
