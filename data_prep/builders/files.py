"""Locating and reading the input files of real datasets, failing early with the expected layout.

Every builder first resolves all of its input files with `require`; a wrong folder gives one
`LayoutError` listing every missing file and the layout the builder expects, before any work.
"""
from __future__ import annotations

import bz2
import gzip
import io
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO

# Compressed variants tried after the plain name, in this order.
COMPRESSED_SUFFIXES = (".gz", ".bz2")


class InputError(ValueError):
    """The user's input files or options cannot be used; the message says what was expected.
    `python -m data_prep` prints it without a traceback."""


class LayoutError(InputError, FileNotFoundError):
    """Input files are missing: the message lists them and the expected layout."""


def find(root: Path, names: Sequence[str], *, compressed: bool = False) -> Path | None:
    """First existing `root/name` among `names` (also `name.gz` / `name.bz2` when `compressed`)."""
    for name in names:
        for suffix in ("", *COMPRESSED_SUFFIXES) if compressed else ("",):
            path = root / (name + suffix)
            if path.is_file():
                return path
    return None


def require(root: Path, wanted: Mapping[str, Sequence[str]], *, layout: str, compressed: bool = False,
            builder: str) -> dict[str, Path]:
    """Resolve every `key -> candidate names` under `root`; raise `LayoutError` naming all missing ones
    followed by `layout` (the builder's LAYOUT text, which starts with "Expected layout")."""
    found, missing = {}, []
    for key, names in wanted.items():
        path = find(root, names, compressed=compressed)
        if path is None:
            alternatives = " or ".join(names) + (" (optionally .gz/.bz2)" if compressed else "")
            missing.append(f"  {root / names[0]}" + (f"   [{alternatives}]" if len(names) > 1 or compressed else ""))
        else:
            found[key] = path
    if missing:
        where = "" if root.is_dir() else f" ({root} is not a directory)"
        raise LayoutError(f"{builder}: missing input files{where}:\n" + "\n".join(missing) + f"\n{layout}")
    return found


def open_text(path: Path) -> IO[str]:
    """Open a UTF-8 text file, transparently decompressing `.gz` / `.bz2`; a BOM is dropped."""
    if path.suffix == ".gz":
        raw = gzip.open(path, "rb")
    elif path.suffix == ".bz2":
        raw = bz2.open(path, "rb")
    else:
        raw = open(path, "rb")
    return io.TextIOWrapper(raw, encoding="utf-8-sig", newline="\n")


def read_lines(path: Path) -> Iterator[tuple[int, str]]:
    """Yield `(line_number, line)` without the line ending (LF or CRLF; a lone CR stays text); a last
    line without a trailing newline is read like any other."""
    with open_text(path) as f:
        for number, line in enumerate(f, start=1):
            yield number, line.rstrip("\n").removesuffix("\r")


def read_list(path: Path) -> list[str]:
    """Non-empty lines of a one-item-per-line file (image lists), outer whitespace trimmed."""
    return [line.strip() for _, line in read_lines(path) if line.strip()]
