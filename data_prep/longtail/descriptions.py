"""Meanings of captions of the long-tail world, and how they are sampled from a scene.

A `Description` is language-neutral: every grammar realises the same description, so the English
realisation of a source caption's description is its exact translation. Every description is true
of its scene: each mention names one object of it (the concepts of a scene are distinct), a size
named is the object's size class, a relation holds between the two objects' boxes, and a row lists
all three objects from left to right.
"""
from __future__ import annotations

import random
from dataclasses import dataclass

from .scene import Obj, Scene

# frame -> sampling weight; a frame is drawn among those the scene allows
FRAMES = {"bare": 0.2, "there": 0.25, "picture": 0.15, "relation": 0.15, "copula": 0.1, "row": 0.15}
LIST_FRAMES = ("bare", "there", "picture")
RELATIONS = ("left", "right", "above", "below", "beside")
SIZE_RATE = 0.3        # share of mentions that name the object's size
BACKGROUND_RATE = 0.4  # share of captions that name the ground colour


@dataclass(frozen=True)
class Mention:
    """One object named by its concept id, with its size class or None."""

    concept: str
    size: str | None


@dataclass(frozen=True)
class Description:
    """A caption's meaning: a frame, its mentions, for relation frames the relation of mentions[0]
    to mentions[1] ("mentions[0] is <relation> mentions[1]"), and the ground colour or None."""

    frame: str
    mentions: tuple[Mention, ...]
    relation: str | None = None
    background: str | None = None

    @property
    def concepts(self) -> list[str]:
        return [m.concept for m in self.mentions]


def relations_between(a: Obj, b: Obj) -> list[str]:
    """Relations that hold of `a` with respect to `b` (image y grows down)."""
    ha, hb = a.side / 2, b.side / 2
    out = []
    if a.x + ha < b.x - hb:
        out.append("left")
    if a.x - ha > b.x + hb:
        out.append("right")
    if a.y + ha < b.y - hb:
        out.append("above")
    if a.y - ha > b.y + hb:
        out.append("below")
    if out and out[0] in ("left", "right") and not (a.y - ha > b.y + hb or a.y + ha < b.y - hb):
        out.append("beside")  # side by side: apart horizontally, overlapping in height
    return out


def describe(scene: Scene, rng: random.Random, *, frames: tuple[str, ...] = tuple(FRAMES), sizes: bool = True,
             backgrounds: bool = True) -> Description:
    """Sample a true description of `scene`: a random frame (among `frames`, those a grammar can
    write), subset, order and phrasing; sizes and the ground colour only where the grammar has words
    for them."""
    objects = list(scene.objects)
    allowed = [f for f in FRAMES if f in frames
               and (f in LIST_FRAMES or (len(objects) > 1 and f != "row") or scene.layout == "row")]
    frame = rng.choices(allowed, weights=[FRAMES[f] for f in allowed])[0]
    background = scene.background if backgrounds and rng.random() < BACKGROUND_RATE else None

    def mention(obj: Obj) -> Mention:
        return Mention(obj.concept, obj.size if sizes and rng.random() < SIZE_RATE else None)

    if frame in LIST_FRAMES:
        chosen = rng.sample(objects, rng.randint(1, len(objects)))
        return Description(frame, tuple(mention(o) for o in chosen), background=background)
    if frame == "row":
        ordered = sorted(objects, key=lambda o: o.x)
        return Description(frame, tuple(mention(o) for o in ordered), background=background)
    a, b = rng.sample(objects, 2)
    relation = rng.choice(relations_between(a, b))
    return Description(frame, (mention(a), mention(b)), relation, background)
