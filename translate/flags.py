"""What a corpus record's flags mean, and which of them keep it out of the aligned files.

Flags fixed when a record is written: `empty` (no source text), `untranslated` (empty translation,
or equal to the source ignoring case), `control_characters` (a line break or other control
character that one-line formats and XML cannot carry unchanged), `unreadable_image`, `truncated`
(the source is longer than the model reads, so only its beginning was translated). Flags that
depend on the options and are recomputed at the end of every run (`finalize`): `low_grounding`
(below `--min-grounding`) and `duplicate` (the same source text is already in the aligned files).
"""
from __future__ import annotations

import unicodedata
from dataclasses import dataclass

# Flags that keep a record out of the aligned files whatever the options.
ALWAYS_EXCLUDED = ("empty", "untranslated", "control_characters", "unreadable_image", "truncated")
OPTION_FLAGS = ("low_grounding", "duplicate")


@dataclass(frozen=True)
class Filters:
    """`--min-grounding` and `--dedupe`: which flagged records leave the aligned files."""

    min_grounding: float | None = None
    dedupe: bool = False

    def excluded(self, flags: list[str]) -> bool:
        return any(f in ALWAYS_EXCLUDED or f == "low_grounding" or (f == "duplicate" and self.dedupe) for f in flags)


def has_control_characters(text: str) -> bool:
    """True for text that one-line formats (Moses, TSV) and XML cannot carry unchanged: line breaks
    and other control characters (a tab is allowed)."""
    return any(ch != "\t" and unicodedata.category(ch) in ("Cc", "Zl", "Zp") for ch in text)


def record_flags(source: str, translation: str, image_ok: bool, truncated: bool = False) -> list[str]:
    """The flags fixed when a record is written (option-independent); `truncated`: the source was
    cut at the model's input limit."""
    flags = []
    if not source:
        flags.append("empty")
    if not translation or translation.casefold() == source.casefold():
        flags.append("untranslated")
    if has_control_characters(source) or has_control_characters(translation):
        flags.append("control_characters")
    if not image_ok:
        flags.append("unreadable_image")
    if truncated:
        flags.append("truncated")
    return flags


def finalize(records: list[dict], filters: Filters) -> list[dict]:
    """Recompute the option flags and `aligned_line` (1-based line in the aligned files, None when
    excluded). `duplicate`: an earlier record with the same source text is already aligned."""
    kept_sources: set[str] = set()
    line = 0
    out = []
    for rec in records:
        flags = [f for f in rec["flags"] if f not in OPTION_FLAGS]
        g = rec["grounding"]
        if filters.min_grounding is not None and g is not None and g < filters.min_grounding:
            flags.append("low_grounding")
        if rec["source"] and rec["source"] in kept_sources:
            flags.append("duplicate")
        aligned = not filters.excluded(flags)
        if aligned:
            line += 1
            kept_sources.add(rec["source"])
        out.append({**rec, "flags": flags, "aligned_line": line if aligned else None})
    return out
