"""Reading run directories (config.json, metrics.jsonl, eval/scores.json, analysis/analysis.json)
into `Run` records.

Every part is optional: a missing file becomes a note on the run, so a report can still be built
from whatever a run produced (docs/architecture.md, "Run directory"). A file that is there but does
not hold what its schema declares (`models.run_dir.RunConfig`, `eval.score.ScoreFile`: truncated,
or a value of the wrong type) is a `ReadBackError` naming the file and the field (one line, exit 2):
a damaged run is reported, not drawn from.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from data_prep.errors import InputError
from data_prep.text_files import numbered_lines
from eval.score import ScoreFile
from models.run_dir import RunConfig
from models.typed_json import read_json

RUN_FILES = ("config.json", "metrics.jsonl", "eval/scores.json")


@dataclass
class Run:
    """One run directory as the report sees it."""

    path: Path
    name: str
    config: dict
    metrics: list[dict]  # metrics.jsonl records, in file order
    scores: dict | None  # eval/scores.json, None when absent
    notes: list[str] = field(default_factory=list)
    analysis: dict | None = None  # analysis.json of `python -m eval analyze`, None when absent
    analysis_dir: Path | None = None  # the directory holding it (and its figures)

    @property
    def sentences(self) -> list[dict]:
        return (self.scores or {}).get("sentences") or []


def _read_json(path: Path, notes: list[str], schema: Any = dict[str, Any]) -> dict | None:
    """The JSON object at `path` checked against `schema`; None (and a note) when it is missing."""
    if not path.is_file():
        notes.append(f"{path} is missing")
        return None
    return read_json(path, schema)


def read_metrics(path: Path, notes: list[str]) -> list[dict]:
    """metrics.jsonl records; unparsable lines (a run killed mid-write) are skipped and noted."""
    if not path.is_file():
        notes.append(f"{path} is missing: no training curves")
        return []
    records, bad = [], 0
    for _, line in numbered_lines(path, undecodable="none"):
        if line is None:
            bad += 1
            continue
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            bad += 1
            continue
        if isinstance(record, dict) and "step" in record:
            records.append(record)
        else:
            bad += 1
    if bad:
        notes.append(f"{path}: skipped {bad} line(s) that are not JSON objects with a 'step'")
    return records


def load_run(path: str | Path) -> Run:
    """A `Run` from a run directory; `InputError` when `path` is not a directory or holds none of
    config.json, metrics.jsonl and eval/scores.json (not a run)."""
    path = Path(path)
    if not path.is_dir():
        raise InputError(f"run directory {path} does not exist (expected the --out folder "
                         "of train.py, holding config.json, metrics.jsonl and eval/)")
    if not any((path / name).is_file() for name in RUN_FILES):
        raise InputError(f"{path} is not a run directory: it holds none of {', '.join(RUN_FILES)} "
                         "(expected the --out folder of train.py)")
    notes: list[str] = []
    config = _read_json(path / "config.json", notes, RunConfig) or {}
    scores = _read_json(path / "eval" / "scores.json", notes, ScoreFile)
    if scores is None:
        notes.append(f"{path.name}: no eval/scores.json, so no scores or examples for this run")
    metrics = read_metrics(path / "metrics.jsonl", notes)
    name = str((scores or {}).get("run_id") or config.get("run_id") or path.name)
    return Run(path, name, config, metrics, scores, notes)


def load_runs(paths: list[str | Path]) -> list[Run]:
    """Runs in the given order (the first is the baseline), names made unique."""
    if not paths:
        raise InputError("give at least one run directory")
    runs = [load_run(p) for p in paths]
    seen: dict[str, int] = {}
    for run in runs:
        count = seen.get(run.name, 0)
        seen[run.name] = count + 1
        if count:
            run.name = f"{run.name} ({count + 1})"
    return runs


def attach_analyses(runs: list[Run], root: str | Path | None = None) -> None:
    """Attach each run's `python -m eval analyze` output: `root/<run name>/analysis.json` when
    `root` is given (the analyze command's --out), else `RUN/analysis/analysis.json`. A run
    without one simply has none (the analysis is optional); a missing one under an explicit
    `root`, or an unreadable one, is noted."""
    for run in runs:
        directory = Path(root) / run.name if root is not None else run.path / "analysis"
        path = directory / "analysis.json"
        if not path.is_file():
            if root is not None:
                run.notes.append(f"{run.name}: no analysis at {path}")
            continue
        run.analysis = _read_json(path, run.notes)
        run.analysis_dir = directory if run.analysis is not None else None
