"""`python -m data_prep BUILDER ... --out DIR` builds a dataset; `python -m data_prep check DIR` validates one;
`python -m data_prep stats DIR` prints its coverage table (or COCO-CN's, `--coco-cn`)."""
from __future__ import annotations

import argparse
import importlib.util
import json
import sys

from .builders import BUILDERS, get_builder
from .errors import Parser, output_dir, run_command
from .writer import DATASET


def add_builder_arguments(parser: argparse.ArgumentParser, module) -> None:
    """A builder's own options plus the common `--out` and `--quiet` (also used by train.py)."""
    module.add_arguments(parser)
    parser.add_argument("--out", required=True, help="output dataset directory: new, empty, or a dataset built "
                                                     "here (replaced only with --overwrite)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace the dataset already at --out (kept until the new one is complete)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.set_defaults(builder=module)


def _parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="python -m data_prep",
        description="Build GroundMT datasets (a DatasetDict with train/validation/test and "
        "build_report.json) from local files, validate one, or print its coverage table.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in BUILDERS:
        if importlib.util.find_spec(BUILDERS[name]) is None:
            continue  # a builder still under construction is not offered
        module = get_builder(name)
        p = sub.add_parser(name, help=module.HELP, description=module.HELP, epilog=module.LAYOUT,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        add_builder_arguments(p, module)
    check = sub.add_parser("check", help="validate a dataset directory against the data contract")
    check.add_argument("dir", help="dataset directory written by a builder")
    check.add_argument("--json", action="store_true", help="print the result as JSON")
    stats = sub.add_parser("stats", help="coverage table: source word types, and per translated fraction P the test "
                           "tokens unseen and test captions fully covered (a dataset, or the real COCO-CN text)",
                           description=_stats_module().__doc__,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    _stats_module().add_arguments(stats)
    return parser


def _stats_module():
    from . import stats

    return stats


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    commands = {"check": run_check, "stats": run_stats}
    return run_command(lambda: commands.get(args.command, run_build)(args))


def run_build(args: argparse.Namespace) -> int:
    """Run the chosen builder; bad input files or options are `InputError`s (one line, exit 2). The
    output is checked first: never one of the inputs, never a folder that holds anything but a
    dataset built here (`writer.dataset_output`)."""
    output_dir(args.out, "--out", inputs={"--data-dir": getattr(args, "data_dir", None)}, artefact=DATASET,
               replace=args.overwrite)
    args.builder.build(args)
    return 0


def run_stats(args: argparse.Namespace) -> int:
    """Print a coverage table (`data_prep.stats`)."""
    return _stats_module().run_stats(args)


def run_check(args: argparse.Namespace) -> int:
    """Validate a dataset directory: exit 0 when it meets the data contract, 1 when it does not."""
    from .check import check_dataset

    result = check_dataset(args.dir, show_progress=not args.json)
    if args.json:
        print(json.dumps(result.to_dict(), indent=2, ensure_ascii=False))
    else:
        for line in result.warnings:
            print(f"warning: {line}")
        for line in result.errors:
            print(f"error: {line}")
        counts = ", ".join(f"{k} {v}" for k, v in result.counts.items())
        print(f"{args.dir}: {len(result.errors)} errors, {len(result.warnings)} warnings ({counts})")
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
