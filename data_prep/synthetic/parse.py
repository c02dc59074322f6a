"""Parse an English caption of the synthetic grammar back into its `Description`.

This is the oracle for the `parallel` column: parsing a parallel English caption must give the
description the source caption was realised from.
"""
from __future__ import annotations

import re

from . import english
from .descriptions import Description, Mention
from .scene import COLORS, SHAPES, SIZES

_COUNTS = {"a": 1, "an": 1, **{w: n for n, w in english.NUMBERS.items()}}
_NOUNS = {s: s for s in SHAPES} | {p: s for s, p in english.PLURALS.items()}
_MENTION = re.compile(
    rf"(?P<num>{'|'.join(_COUNTS)}) (?:(?P<size>{'|'.join(SIZES)}) )?(?:(?P<color>{'|'.join(COLORS)}) )?"
    rf"(?P<noun>{'|'.join(sorted(_NOUNS, key=len, reverse=True))})"
)
_RELATIONS = {v: k for k, v in english.RELATIONS.items()}


def _mention(text: str) -> Mention:
    m = _MENTION.fullmatch(text)
    if not m:
        raise ValueError(f"not a mention of the synthetic grammar: {text!r}")
    return Mention(_COUNTS[m["num"]], _NOUNS[m["noun"]], m["color"], m["size"])


def _mentions(text: str) -> tuple[Mention, ...]:
    head, _, last = text.rpartition(" and ")
    items = (head.split(", ") + [last]) if head else [last]
    return tuple(_mention(t) for t in items)


def parse(caption: str) -> Description:
    """Return the `Description` whose English realisation is `caption`; raise ValueError otherwise."""
    for prefix, frame in (("there is ", "there"), ("there are ", "there"), ("a picture of ", "picture")):
        if caption.startswith(prefix):
            return Description(frame, _mentions(caption[len(prefix):]))
    for phrase, rel in _RELATIONS.items():
        for be in ("is ", "are ", ""):
            head, sep, tail = caption.partition(f" {be}{phrase} ")
            if sep:
                frame = "copula" if be else "relation"
                return Description(frame, (_mention(head), _mention(tail)), rel)
    return Description("bare", _mentions(caption))
