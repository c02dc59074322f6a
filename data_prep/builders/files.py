"""Locating the input files of real datasets, failing early with the expected layout.

Every builder first resolves all of its input files with `require`; a wrong folder gives one
`LayoutError` listing every missing file and the layout the builder expects, before any work.
Files are read with `data_prep.text_files`; `InputError` lives in `data_prep.errors` (re-exported
here for the builders).
"""
from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from ..errors import InputError

__all__ = ["COMPRESSED_SUFFIXES", "InputError", "LayoutError", "find", "OUTSIDE", "inside", "require"]

# Compressed variants tried after the plain name, in this order.
COMPRESSED_SUFFIXES = (".gz", ".bz2")
OUTSIDE = "path outside the image folder"


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


def inside(folder: Path, name: str) -> Path | None:
    """`folder / name` when that path stays inside `folder`, else None (an absolute `name`, or one
    whose `..` parts climb out). Decided on the names alone, so nothing outside is ever opened or
    even looked at; a symbolic link inside the folder is the folder owner's choice and is followed."""
    if not name or os.path.isabs(name):
        return None
    relative = os.path.normpath(name)
    if relative == ".." or relative.startswith(".." + os.sep):
        return None
    return folder / relative
