"""`BuildReport`: what a builder kept and dropped, and why — printed and saved as JSON.

Nothing is dropped silently: every skipped sample is counted under a reason, per split.
"""
from __future__ import annotations

import json
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

REPORT_FILE = "build_report.json"


class BuildReport:
    """Counts kept samples/captions and dropped samples per split and reason."""

    def __init__(self, builder: str, **settings: Any) -> None:
        self.builder = builder
        self.settings = settings
        self.kept: dict[str, int] = Counter()
        self.captions: dict[str, Counter] = defaultdict(Counter)
        self.dropped: dict[str, Counter] = defaultdict(Counter)
        self.examples: dict[str, list[str]] = defaultdict(list)
        self.notes: dict[str, Any] = {}

    def keep(self, split: str, record: dict) -> None:
        """Count one kept record and its captions."""
        self.kept[split] += 1
        self.captions[split]["source"] += len(record["source"])
        self.captions[split]["english"] += len(record["english"])
        self.captions[split]["parallel"] += sum(1 for p in record["parallel"] if p)
        if not record["source"]:
            self.captions[split]["english-only images"] += 1

    def drop(self, split: str, reason: str, example: str | None = None, count: int = 1) -> None:
        """Count `count` dropped items under `reason`; keep a few examples for the user."""
        self.dropped[split][reason] += count
        if example is not None and len(self.examples[reason]) < 5:
            self.examples[reason].append(example)

    def note(self, key: str, value: Any) -> None:
        """Attach extra information (overlaps, typo fixes, file names) to the report."""
        self.notes[key] = value

    def to_dict(self) -> dict:
        return {
            "builder": self.builder,
            "settings": self.settings,
            "kept": dict(self.kept),
            "captions": {s: dict(c) for s, c in self.captions.items()},
            "dropped": {s: dict(c) for s, c in self.dropped.items()},
            "dropped_total": sum(sum(c.values()) for c in self.dropped.values()),
            "drop_examples": dict(self.examples),
            "notes": self.notes,
        }

    def save(self, out_dir: str | Path) -> Path:
        path = Path(out_dir) / REPORT_FILE
        path.write_text(json.dumps(self.to_dict(), indent=2, ensure_ascii=False, default=str) + "\n")
        return path

    def summary(self) -> str:
        """Human-readable summary printed at the end of a build."""
        lines = [f"[{self.builder}] build summary"]
        for split in sorted(set(self.kept) | set(self.dropped)):
            caps = self.captions.get(split, {})
            lines.append(
                f"  {split:<10} kept {self.kept.get(split, 0):>7} images  "
                f"(source {caps.get('source', 0)}, english {caps.get('english', 0)}, parallel {caps.get('parallel', 0)})"
                + (f"; {caps['english-only images']} with English captions only" if caps.get("english-only images") else "")
            )
            for reason, n in sorted(self.dropped.get(split, {}).items()):
                lines.append(f"  {'':<10} dropped {n:>5}  {reason}")
        for key, value in self.notes.items():
            if isinstance(value, (int, float, str)):
                lines.append(f"  note: {key} = {value}")
        return "\n".join(lines)
