"""How a benchmark's JSON names files and commands: never by a local path, so that a result file means
the same on every machine (the rule signatures keep, docs/eval.md)."""
from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def shown_path(path: str | os.PathLike) -> str:
    """A path under the repository relative to it; any other path by its name alone (links are not
    followed: a virtual environment's `python` inside the repository stays inside it)."""
    p = Path(os.path.abspath(path))
    return str(p.relative_to(ROOT)) if p.is_relative_to(ROOT) else p.name


def shown_command(argv: list[str]) -> list[str]:
    """A `[sys.executable, ...]` command as `python ...`, its absolute paths shown by `shown_path`."""
    return ["python", *(shown_path(a) if os.path.isabs(a) else a for a in argv[1:])]
