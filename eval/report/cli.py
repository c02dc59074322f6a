"""`python -m eval report` arguments and entry point (hooked into eval/__main__.py)."""
from __future__ import annotations

import argparse
from pathlib import Path

from data_prep.errors import InputError, non_negative_int, output_file
from eval.report.ablation_page import build_ablation_page, is_ablation


def add_report_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("runs", nargs="+", metavar="RUN",
                   help="run directories (train.py --out); the first is the baseline for paired tests. One "
                        "folder written by `python -m eval ablation` gives the ablation's page instead")
    p.add_argument("--out", default="report.html",
                   help="HTML file to write; report.md and report.json go next to it (default: %(default)s)")
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
    out = output_file(args.out, "--out")
    if len(args.runs) == 1 and is_ablation(args.runs[0]):  # written by `python -m eval ablation`
        report = build_ablation_page(args.runs[0], out)
    else:
        report = build_report(args.runs, out, examples=args.examples, heatmaps=args.heatmaps,
                              analysis=args.analysis)
    for note in report["notes"]:
        print(f"note: {note}")
    print("wrote " + ", ".join(report["files"].values()))
    return 0
