"""`python -m eval report` arguments and entry point (hooked into eval/__main__.py)."""
from __future__ import annotations

import argparse
from pathlib import Path


def add_report_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("runs", nargs="+", metavar="RUN",
                   help="run directories (train.py --out); the first is the baseline for paired tests")
    p.add_argument("--out", default="report.html",
                   help="HTML file to write; report.md and report.json go next to it (default: %(default)s)")
    p.add_argument("--examples", type=int, default=2,
                   help="sentences shown per kind (best/median/worst) and run (default: %(default)s)")
    p.add_argument("--heatmaps", type=int, default=1,
                   help="token-alignment heatmaps per kind and run (default: %(default)s)")
    p.add_argument("--analysis", metavar="DIR",
                   help="the --out directory of `python -m eval analyze` (default: each RUN/analysis/)")


def run_report(args: argparse.Namespace) -> int:
    from eval.report import build_report

    if args.out and Path(args.out).suffix.lower() not in (".html", ".htm"):
        raise SystemExit(f"error: --out {args.out} should be an .html file")
    try:
        report = build_report(args.runs, args.out, examples=args.examples, heatmaps=args.heatmaps,
                              analysis=args.analysis)
    except FileNotFoundError as err:
        raise SystemExit(f"error: {err}") from None
    for note in report["notes"]:
        print(f"note: {note}")
    print("wrote " + ", ".join(report["files"].values()))
    return 0
