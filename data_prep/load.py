"""Load a dataset directory written by a `data_prep` builder, failing early and clearly."""
from __future__ import annotations

import json
from pathlib import Path

import datasets
import pyarrow as pa

from .builders.files import LayoutError
from .errors import InputError
from .schema import COLUMNS


def load_dataset_dir(path: str | Path) -> datasets.DatasetDict:
    """Return the `DatasetDict` saved at `path`. A missing dataset is a `LayoutError` naming the
    builder command; a damaged file (a truncated arrow file, broken JSON) an `InputError` naming it."""
    path = Path(path)
    if not (path / "dataset_dict.json").is_file():
        raise LayoutError(f"no dataset at {path} (no dataset_dict.json): expected a directory written by a builder, "
                          f"e.g. `python -m data_prep synthetic --lang es --out {path}` (`python -m data_prep --help` "
                          "lists every builder)")
    try:
        dsd = datasets.load_from_disk(str(path))
    except Exception as exc:
        damaged = damaged_file(path)
        if damaged is None:
            raise
        raise InputError(f"{damaged}: damaged dataset file; rebuild {path} with `python -m data_prep` "
                         f"({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})") from None
    if not isinstance(dsd, datasets.DatasetDict):
        raise InputError(f"{path} holds a single Dataset, expected a DatasetDict written by `python -m data_prep`")
    for split, ds in dsd.items():
        missing = [c for c in COLUMNS if c not in ds.column_names]
        if missing:
            raise InputError(f"{path} split {split!r} lacks columns {missing}; run `python -m data_prep check {path}`")
    return dsd


def damaged_file(path: str | Path) -> Path | None:
    """The first file of the saved `DatasetDict` at `path` that is missing or cannot be read whole
    (JSON metadata, then every arrow file each split's state.json lists); None when all read."""
    path = Path(path)
    try:
        splits = json.loads((path / "dataset_dict.json").read_text(encoding="utf-8"))["splits"]
    except (OSError, ValueError, KeyError, TypeError):
        return path / "dataset_dict.json"
    for split in splits:
        folder = path / str(split)
        try:
            for name in ("dataset_info.json", "state.json"):
                current = folder / name
                json.loads(current.read_text(encoding="utf-8"))
            files = [folder / f["filename"] for f in json.loads((folder / "state.json").read_text())["_data_files"]]
        except (OSError, ValueError, KeyError, TypeError):
            return current
        for current in files:
            try:
                with pa.memory_map(str(current)) as source:
                    pa.ipc.open_stream(source).read_all()
            except (OSError, pa.ArrowException):
                return current
    return None
