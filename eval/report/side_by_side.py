"""Nested dicts (run configs, probe and grounded results) flattened and laid side by side,
with the keys whose values differ between runs marked."""
from __future__ import annotations

import json

MISSING = "–"


def flatten(value, prefix: str = "") -> dict[str, str]:
    """{"a.b.c": printable value}; lists print as JSON (long lists as their length only)."""
    if isinstance(value, dict):
        out: dict[str, str] = {}
        for k, v in value.items():
            out.update(flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    if isinstance(value, list) and len(value) > 8:
        return {prefix: f"[{len(value)} items]"}
    if isinstance(value, (list, bool)) or value is None:
        return {prefix: json.dumps(value, ensure_ascii=False)}
    if isinstance(value, float):
        return {prefix: f"{value:.6g}"}
    return {prefix: str(value)}


def side_by_side(named: dict[str, dict]) -> list[dict]:
    """[{"key", "values": {name: str}, "differs": bool}] over the union of keys (first-seen order);
    a key missing from some run counts as differing."""
    flat = {name: flatten(d) for name, d in named.items()}
    keys = list(dict.fromkeys(k for f in flat.values() for k in f))
    rows = []
    for key in keys:
        values = {name: f.get(key, MISSING) for name, f in flat.items()}
        rows.append({"key": key, "values": values, "differs": len(set(values.values())) > 1})
    return rows
