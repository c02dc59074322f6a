"""The concepts of the long-tail world: single-code-point pictographs with CLDR names and a picture.

Names come from the `emoji` package (Unicode CLDR short names, English and any of its languages,
`emoji.LANGUAGES`). A concept is a fully-qualified pictograph of one code point (a variation
selector aside), not a component (skin tones, hair styles); its id is the code point in lower-case
hex, which is also the name of its picture file. It is used when it has a picture, a name in the
source language and an English name no other concept has; every other candidate is counted under
its reason. Concept frequency is Zipfian: the concepts are ranked by a hash of (seed, id), which
does not depend on the language, and concept of rank r is drawn with probability ∝ r^-s.
"""
from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass

from ..errors import InputError
from .pictures import PictureSet

FULLY_QUALIFIED = 2
COMPONENT = 1
VARIATION_SELECTOR = "\ufe0f"


@dataclass(frozen=True)
class Entry:
    """One usable concept: its id, pictograph and CLDR short names (English and source)."""

    id: str
    emoji: str
    english: str
    source: str


def languages() -> list[str]:
    """The languages the `emoji` package has CLDR names for (English excluded)."""
    import emoji

    return [lang for lang in emoji.LANGUAGES if lang != "en"]


def cldr_entries(lang: str, pictures: PictureSet) -> tuple[list[Entry], Counter, dict]:
    """The usable concepts for source language `lang`, the counts of candidates dropped by reason,
    and notes (emoji entries that are not candidates, by kind)."""
    import emoji

    if lang not in languages():
        raise InputError(f"--lang {lang!r}: the emoji package has CLDR names for {', '.join(languages())}")
    emoji.config.load_language(lang)
    counts: Counter = Counter()
    candidates: dict[str, str] = {}
    for char, data in emoji.EMOJI_DATA.items():
        base = char.replace(VARIATION_SELECTOR, "")
        if len(base) != 1:
            counts["sequences of several code points (flags, keycaps, ZWJ sequences, skin tones)"] += 1
        elif data["status"] == COMPONENT:
            counts["components (skin tones, hair styles)"] += 1
        elif data["status"] != FULLY_QUALIFIED:
            counts["text-style duplicates of a fully-qualified pictograph"] += 1
        else:
            candidates[f"{ord(base):x}"] = char
    dropped: Counter = Counter()
    entries, no_picture = [], []
    for cid, char in sorted(candidates.items()):
        data = emoji.EMOJI_DATA[char]
        if cid not in pictures.files:
            dropped["no picture in the picture folder"] += 1
            no_picture.append(cid)
        elif lang not in data:
            dropped[f"no {lang} name"] += 1
        elif pictures.decode(cid) is None:
            dropped["picture cannot be decoded"] += 1
        else:
            entries.append(Entry(cid, char, data["en"], data[lang]))
    shared = Counter(e.english.lower() for e in entries)
    kept = [e for e in entries if shared[e.english.lower()] == 1]
    if len(kept) < len(entries):
        dropped["English name shared with another concept"] += len(entries) - len(kept)
    notes: dict = dict(counts)
    if no_picture:
        notes["concepts without a picture (first 20)"] = no_picture[:20]
    unnamed = len(set(pictures.files) - set(candidates))
    if unnamed:
        notes["picture files naming no single-code-point pictograph"] = unnamed
    if pictures.other_files:
        notes["other files in the picture folder (not <hex>.png)"] = pictures.other_files
    return kept, dropped, notes


def zipf_weights(ids: list[str], exponent: float, seed: int) -> dict[str, float]:
    """Probability of each concept: rank by a hash of (seed, id), then ∝ rank^-exponent (sums to 1)."""
    ranked = sorted(ids, key=lambda cid: hashlib.blake2b(f"{seed}:{cid}".encode(), digest_size=8).digest())
    raw = {cid: (rank + 1) ** -exponent for rank, cid in enumerate(ranked)}
    total = sum(raw.values())
    return {cid: raw[cid] / total for cid in ids}
