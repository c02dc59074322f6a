"""Inference on a trained run: `Translator` (text in, English out, CLIP grounding scores) and the
`python -m translate text|corpus` command line (docs/translate.md).

`Translator` loads on first use (as in `eval`), so `python -m translate --help` and an option
refused at parsing answer without importing torch, open_clip and transformers."""
from __future__ import annotations

import importlib

__all__ = ["Translator"]


def __getattr__(name: str):
    if name == "Translator":
        value = importlib.import_module("translate.translator").Translator
        globals()[name] = value
        return value
    raise AttributeError(f"module 'translate' has no attribute {name!r}")
