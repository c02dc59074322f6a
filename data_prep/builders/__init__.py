"""Dataset builders. Each module exposes `NAME`, `HELP`, `LAYOUT` (the expected file layout,
shown in `--help`), `add_arguments(parser)` and `build(args) -> DatasetDict`."""
from __future__ import annotations

import importlib
from types import ModuleType

# name -> module path; imported lazily so `--help` stays fast.
BUILDERS: dict[str, str] = {
    "synthetic": "data_prep.synthetic.build",
    "longtail": "data_prep.longtail.build",
    "coco-cn": "data_prep.builders.coco_cn",
    "coco-es": "data_prep.builders.coco_es",
    "coco-mt": "data_prep.builders.coco_mt",
    "multi30k": "data_prep.builders.multi30k",
    "xm3600": "data_prep.builders.xm3600",
    "imagefolder": "data_prep.builders.imagefolder",
}


def get_builder(name: str) -> ModuleType:
    """Import and return the builder module registered under `name`."""
    try:
        return importlib.import_module(BUILDERS[name])
    except KeyError:
        raise ValueError(f"unknown builder {name!r}; choose one of {sorted(BUILDERS)}") from None
