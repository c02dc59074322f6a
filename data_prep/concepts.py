"""The concept inventory of a dataset whose captions name concepts (`DIR/concepts.json`).

A world that knows what its captions name (the `longtail` builder) writes, beside the dataset,
every concept it may name: its id (the ids of the `source_concepts` column), every surface form
its English captions use and every surface form its source captions use, and its sampling
probability. Evaluation reads it to tell whether a translation contains a concept's English name.

    {"version": 1, "lang": "es", "concepts": [
        {"id": "1f34e", "emoji": "🍎", "english": ["red apple"], "source": ["manzana roja"],
         "weight": 0.0012}, ...], ...}

Other top-level keys (how the world was made) are kept in `ConceptInventory.info`.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from .errors import InputError

CONCEPTS_FILE = "concepts.json"
VERSION = 1


@dataclass(frozen=True)
class Concept:
    """One concept: its id, its pictograph, its English and source surface forms, its probability."""

    id: str
    emoji: str
    english: tuple[str, ...]
    source: tuple[str, ...]
    weight: float

    def to_dict(self) -> dict:
        return {"id": self.id, "emoji": self.emoji, "english": list(self.english), "source": list(self.source),
                "weight": self.weight}


@dataclass(frozen=True)
class ConceptInventory:
    """The concepts of one dataset, in the order of the file, and the file's other keys."""

    lang: str
    concepts: tuple[Concept, ...]
    info: dict = field(default_factory=dict)

    def by_id(self) -> dict[str, Concept]:
        return {c.id: c for c in self.concepts}

    def to_json(self) -> str:
        data = {"version": VERSION, "lang": self.lang, **self.info, "concepts": [c.to_dict() for c in self.concepts]}
        return json.dumps(data, ensure_ascii=False, indent=1) + "\n"


def load_concepts(path: str | Path) -> ConceptInventory:
    """Read and validate `path` (a `concepts.json` file, or a dataset directory holding one); a
    missing or malformed file is one `InputError` line naming the file and the problem."""
    path = Path(path)
    if path.is_dir():
        path = path / CONCEPTS_FILE
    if not path.is_file():
        raise InputError(f"{path}: no concept inventory (written by `python -m data_prep longtail`)")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{path}: not a JSON concept inventory ({exc})") from None
    try:
        return _parse(data)
    except ValueError as exc:
        raise InputError(f"{path}: {exc}") from None


def _parse(data) -> ConceptInventory:
    if not isinstance(data, dict):
        raise ValueError("expected a JSON object")
    if data.get("version") != VERSION:
        raise ValueError(f"version {data.get('version')!r}, expected {VERSION}")
    lang, items = data.get("lang"), data.get("concepts")
    if not isinstance(lang, str) or not lang:
        raise ValueError("'lang' must be a non-empty string")
    if not isinstance(items, list) or not items:
        raise ValueError("'concepts' must be a non-empty list")
    concepts, seen = [], set()
    for k, item in enumerate(items):
        where = f"concept #{k}"
        if not isinstance(item, dict):
            raise ValueError(f"{where}: expected an object")
        cid = item.get("id")
        if not isinstance(cid, str) or not cid:
            raise ValueError(f"{where}: 'id' must be a non-empty string")
        if cid in seen:
            raise ValueError(f"{where}: duplicate id {cid!r}")
        seen.add(cid)
        forms = {}
        for key in ("english", "source"):
            value = item.get(key)
            if not isinstance(value, list) or not value or not all(isinstance(v, str) and v.strip() for v in value):
                raise ValueError(f"concept {cid!r}: {key!r} must be a non-empty list of non-empty strings")
            forms[key] = tuple(value)
        weight = item.get("weight")
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not math.isfinite(weight) or weight < 0:
            raise ValueError(f"concept {cid!r}: 'weight' must be a finite number >= 0, got {weight!r}")
        concepts.append(Concept(cid, str(item.get("emoji", "")), forms["english"], forms["source"], float(weight)))
    total = sum(c.weight for c in concepts)
    if not math.isclose(total, 1.0, rel_tol=1e-6):
        raise ValueError(f"the weights sum to {total:.6g}, expected 1")
    info = {k: v for k, v in data.items() if k not in ("version", "lang", "concepts")}
    return ConceptInventory(lang, tuple(concepts), info)
