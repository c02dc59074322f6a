"""English grammar: realise a `Description` as an English caption.

Word order: number, size, colour, noun ("two small red circles"); "a"/"an" by the next word's
sound; "there is/are" and "is/are" agree with the first (subject) mention.
"""
from __future__ import annotations

from .descriptions import Description, Mention

NUMBERS = {2: "two", 3: "three", 4: "four"}
PLURALS = {"circle": "circles", "square": "squares", "triangle": "triangles", "star": "stars", "cross": "crosses"}
RELATIONS = {"left": "to the left of", "right": "to the right of", "above": "above", "below": "below"}


def article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def mention(m: Mention) -> str:
    noun = m.shape if m.count == 1 else PLURALS[m.shape]
    words = [w for w in (m.size, m.color) if w] + [noun]
    number = article(words[0]) if m.count == 1 else NUMBERS[m.count]
    return " ".join([number, *words])


def join(items: list[str]) -> str:
    if len(items) == 1:
        return items[0]
    return ", ".join(items[:-1]) + " and " + items[-1]


def realise(d: Description) -> str:
    parts = [mention(m) for m in d.mentions]
    be = "is" if d.mentions[0].count == 1 else "are"
    if d.frame == "bare":
        return join(parts)
    if d.frame == "there":
        return f"there {be} {join(parts)}"
    if d.frame == "picture":
        return f"a picture of {join(parts)}"
    rel = RELATIONS[d.relation]
    if d.frame == "relation":
        return f"{parts[0]} {rel} {parts[1]}"
    if d.frame == "copula":
        return f"{parts[0]} {be} {rel} {parts[1]}"
    raise ValueError(f"unknown frame {d.frame!r}")
