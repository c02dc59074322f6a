"""What every real-data builder does around its own reading: one `Build`.

A builder reads its files into records per split (its own job, in its own file); around that,
every builder reads the `--overlap-with` sets before any work (a bad SPEC fails first), keeps a
`BuildReport` of its settings, and finishes the same way: overlaps counted (and dropped from the
`--drop-overlap-from` splits), the dataset written (`write_dataset`), the report's summary printed.
`BuildOptions` are those shared options, as keywords of every `build_<name>` function;
`options_of(args)` takes them from the command line.
"""
from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypedDict

import datasets

from ..build_report import BuildReport
from ..writer import write_dataset
from . import overlap


class BuildOptions(TypedDict, total=False):
    overlap_with: Sequence[str]  # image sets to count overlaps with (`overlap.read_image_set` specs)
    drop_overlap_from: Sequence[str]  # splits that lose their overlapping images
    show_progress: bool
    overwrite: bool  # replace a dataset already at `out` (`--overwrite`)


class Build:
    """One run of the builder named `builder`, writing to `out`: the overlap sets (read at once), the
    `report` (with the builder's `settings`), and `finish(splits)`."""

    def __init__(self, builder: str, out: str | Path, /, *, overlap_with: Sequence[str] = (),
                 drop_overlap_from: Sequence[str] = (), show_progress: bool = True, overwrite: bool = False,
                 **settings: Any) -> None:
        self.out, self.show_progress, self.overwrite = out, show_progress, overwrite
        self.sets = overlap.read_sets(overlap_with, drop_overlap_from)
        self.drop_from = list(drop_overlap_from)
        self.report = BuildReport(builder, **settings, overlap_with=list(overlap_with), drop_overlap_from=self.drop_from)

    def finish(self, splits: dict[str, list[dict]], *, keep_english_only: bool = False) -> datasets.DatasetDict:
        """Count (and drop) overlaps, write the dataset (`keep_english_only`: see `write_dataset`),
        print the report's summary."""
        overlap.apply(splits, self.sets, self.drop_from, self.report)
        dsd = write_dataset(splits, self.out, self.report, show_progress=self.show_progress,
                            keep_english_only=keep_english_only, overwrite=self.overwrite)
        print(self.report.summary())
        return dsd


def options_of(args: argparse.Namespace) -> BuildOptions:
    """The shared options of a builder's command line (`overlap.add_arguments`, `--quiet`, `--overwrite`)."""
    return BuildOptions(overlap_with=args.overlap_with, drop_overlap_from=args.drop_overlap_from,
                        show_progress=not args.quiet, overwrite=args.overwrite)
