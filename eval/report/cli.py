"""`python -m eval report` arguments and entry point (hooked into eval/__main__.py).

The report is three files (the .html named by --out, and .md and .json beside it); each may
replace only a report (or ablation page) written here, anything else only with --overwrite, and
never one of the files the report reads (`data_prep.errors.output_file`)."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from data_prep.errors import Artefact, InputError, non_negative_int, output_file
from eval.report.ablation_page import ABLATION_FILE, build_ablation_page, is_ablation
from eval.report.collect import RUN_FILES

# The first lines of every page and Markdown file the report writes (and train.py's RUN/report.html)
REPORT_HEADINGS = ("<title>GroundMT translation report</title>", "<title>GroundMT grounding ablation</title>",
                   "# GroundMT translation quality report", "# Does grounding help? Ablation over the parallel fraction")


def is_report_file(path: Path) -> bool:
    """An .html/.md file that starts as the report's pages do, or a JSON object with its keys."""
    try:
        if path.suffix == ".json":
            data = json.loads(path.read_text(encoding="utf-8"))
            return isinstance(data, dict) and "table" in data and ("runs" in data or "fractions" in data)
        with path.open(encoding="utf-8", errors="replace") as f:
            head = f.read(4096)
    except (OSError, ValueError):
        return False
    return any(heading in head for heading in REPORT_HEADINGS)


REPORT = Artefact("a report written by python -m eval report", is_report_file)


def add_report_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("runs", nargs="+", metavar="RUN",
                   help="run directories (train.py --out); the first is the baseline for paired tests. One "
                        "folder written by `python -m eval ablation` gives the ablation's page instead")
    p.add_argument("--out", default="report.html",
                   help="HTML file to write; report.md and report.json go next to it (default: %(default)s). An "
                        "existing report there is replaced; any other file only with --overwrite")
    p.add_argument("--overwrite", action="store_true", help="replace existing --out files that are not reports")
    p.add_argument("--examples", type=non_negative_int, default=2,
                   help="sentences shown per kind (best/median/worst) and run (default: %(default)s)")
    p.add_argument("--heatmaps", type=non_negative_int, default=1,
                   help="token-alignment heatmaps per kind and run (default: %(default)s)")
    p.add_argument("--analysis", metavar="DIR",
                   help="the --out directory of `python -m eval analyze` (default: each RUN/analysis/)")


def run_report(args: argparse.Namespace) -> int:
    from eval.report import build_report

    if Path(args.out).suffix.lower() not in (".html", ".htm"):
        raise InputError(f"--out {args.out} should be an .html file")
    read = [Path(run) / name for run in args.runs for name in (*RUN_FILES, "analysis/analysis.json", ABLATION_FILE)]
    out = Path(args.out)
    for path in (out, out.with_suffix(".md"), out.with_suffix(".json")):
        try:
            output_file(path, "--out", artefact=REPORT, inputs={"": [p for p in read if p.exists()]},
                        overwrite=args.overwrite)
        except InputError as exc:
            raise InputError(f"{exc}" + ("" if path == out else f" (the report writes {path.name} beside {out.name})")
                             ) from None
    if len(args.runs) == 1 and is_ablation(args.runs[0]):  # written by `python -m eval ablation`
        report = build_ablation_page(args.runs[0], out)
    else:
        report = build_report(args.runs, out, examples=args.examples, heatmaps=args.heatmaps,
                              analysis=args.analysis)
    for note in report["notes"]:
        print(f"note: {note}")
    print("wrote " + ", ".join(report["files"].values()))
    return 0
