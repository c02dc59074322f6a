"""`python -m eval analyze` arguments and entry point (hooked into eval/__main__.py)."""
from __future__ import annotations

import argparse
from pathlib import Path

from data_prep.errors import Artefact, InputError, marker_files, output_dir, positive_int, torch_device
from data_prep.locks import FolderLock

PART_NAMES = ("cka", "probes", "movement", "tokens", "health", "tail")
DESCRIPTION = """\
The thesis' analyses of trained runs (docs/analysis.md): layer x layer CKA of the student's
CLIP-read translation vs the teacher's English text tower (mean and EOT pooling) and of towers
trained jointly vs the stage-0 teacher; linear probes (test-time LM head, online and heldout;
attribute probes on image / English / student features); parameter movement per layer over the
checkpoints; the student's target-token usage vs the references; embedding health over training
and on the final test features; where the unseen concepts are lost (tail: by training captions and pictures
and by how often the final targets name them). Writes analysis.json and PNG figures per run; `python -m eval
report` shows them in an Analysis section."""


def add_analyze_arguments(p: argparse.ArgumentParser) -> None:
    p.description = DESCRIPTION
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.add_argument("runs", nargs="+", metavar="RUN", help="run directories (train.py --out)")
    p.add_argument("--out", metavar="DIR",
                   help="write each run's analysis to DIR/<run name>/ (default: RUN/analysis/, where "
                        "`python -m eval report RUN` finds it; with --out, pass `--analysis DIR` to the report)")
    p.add_argument("--parts", default=",".join(PART_NAMES),
                   help="comma-separated analyses to run, from %(default)s (default: all)")
    p.add_argument("--limit", type=positive_int, default=1000,
                   help="at most N test sentences, and N training rows to fit the attribute probes "
                        "(default: %(default)s)")
    p.add_argument("--batch-size", type=positive_int, default=64, help="sentences / images per forward pass and CKA "
                                                              "minibatch (default: %(default)s)")
    p.add_argument("--device", type=torch_device, help="cpu / cuda (default: cuda when available)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an earlier analysis in the output folder (a folder holding anything else is refused)")


def run_analyze(args: argparse.Namespace) -> int:
    """Analyse every run; bad input is an InputError (one line, exit 2 through run_command), and
    Ctrl-C keeps the parts finished so far (analysis.json is rewritten after each part). Each output
    folder is checked before any work (new, empty, or an earlier analysis that --overwrite replaces)
    and locked while its run is analysed."""
    parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    unknown = sorted(set(parts) - set(PART_NAMES))
    if unknown or not parts:
        raise InputError(f"--parts {args.parts!r}: unknown part(s) {unknown}; choose from {','.join(PART_NAMES)}")
    from eval.analysis.analyze import ANALYSIS_FILE, analyze_run
    from eval.analysis.summary import summary_lines
    from eval.report.collect import load_runs

    runs = load_runs(args.runs)
    analysis = Artefact("an analysis written by python -m eval analyze", marker_files(ANALYSIS_FILE))
    out_dirs = []
    for run in runs:
        if not (run.path / "model").is_dir():
            raise InputError(f"{run.path} has no model/ (train.py exports it at the end of a run)")
        out_dirs.append(output_dir(Path(args.out) / run.name if args.out else run.path / "analysis",
                                   "--out" if args.out else "the analysis folder", artefact=analysis,
                                   replace=args.overwrite))
    for run, out_dir in zip(runs, out_dirs):
        try:
            with FolderLock(out_dir, "python -m eval analyze"):
                result = analyze_run(run, out_dir, parts=parts, limit=args.limit, batch_size=args.batch_size,
                                     device=args.device)
        except KeyboardInterrupt:
            raise KeyboardInterrupt(f"{out_dir / ANALYSIS_FILE} holds the parts finished so far") from None
        for note in result["notes"]:
            print(f"note: {note}")
        for label, text in summary_lines(result):
            print(f"  {label}: {text}")
        print(f"wrote {out_dir / ANALYSIS_FILE} and {len(result['figures'])} figure(s)")
    return 0
