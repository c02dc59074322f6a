"""Load a dataset directory written by a `data_prep` builder, failing early and clearly."""
from __future__ import annotations

from pathlib import Path

import datasets

from .schema import COLUMNS


def load_dataset_dir(path: str | Path) -> datasets.DatasetDict:
    """Return the `DatasetDict` saved at `path`; raise `FileNotFoundError` naming the builder command."""
    path = Path(path)
    if not (path / "dataset_dict.json").is_file():
        raise FileNotFoundError(
            f"no dataset at {path}: expected a directory written by a builder, e.g.\n"
            f"  python -m data_prep synthetic --lang es --out {path}\n"
            f"  python -m data_prep coco-cn --data-dir RAW --out {path}\n"
            "(see `python -m data_prep --help` for every builder)"
        )
    dsd = datasets.load_from_disk(str(path))
    for split, ds in dsd.items():
        missing = [c for c in COLUMNS if c not in ds.column_names]
        if missing:
            raise ValueError(f"{path} split {split!r} lacks columns {missing}; run `python -m data_prep check {path}`")
    return dsd
