"""Meaning representations of captions and how they are sampled from a scene.

A `Description` is language-neutral: every grammar realises the same description, so the
English realisation of a source caption's description is its exact translation. Mentions are
always true of the scene: a mention's count is the number of objects matching the attributes
it names, and the mentions of one caption cover disjoint sets of objects.
"""
from __future__ import annotations

import random
from dataclasses import dataclass

from .scene import Scene, Shape

FRAMES = ("bare", "there", "picture", "relation", "copula")
RELATIONS = ("left", "right", "above", "below")


@dataclass(frozen=True)
class Mention:
    """`count` objects of `shape`, optionally naming their colour and size."""

    count: int
    shape: str
    color: str | None
    size: str | None

    def matches(self, obj: Shape) -> bool:
        return (obj.shape == self.shape and (self.color is None or obj.color == self.color)
                and (self.size is None or obj.size == self.size))


@dataclass(frozen=True)
class Description:
    """A caption's meaning: a frame, its mentions and, for relation frames, the relation
    between mentions[0] and mentions[1] ("mentions[0] is <relation> of mentions[1]")."""

    frame: str
    mentions: tuple[Mention, ...]
    relation: str | None = None


def _covered(scene: Scene, mention: Mention) -> frozenset[int]:
    return frozenset(i for i, o in enumerate(scene.objects) if mention.matches(o))


def relation_between(scene: Scene, a: Mention, b: Mention) -> list[str]:
    """Relations that hold between every object of `a` and every object of `b` (image y grows down)."""
    objs_a = [o for o in scene.objects if a.matches(o)]
    objs_b = [o for o in scene.objects if b.matches(o)]
    tests = {
        "left": lambda p, q: p.x + p.r < q.x - q.r + 1e-9,
        "right": lambda p, q: p.x - p.r > q.x + q.r - 1e-9,
        "above": lambda p, q: p.y + p.r < q.y - q.r + 1e-9,
        "below": lambda p, q: p.y - p.r > q.y + q.r - 1e-9,
    }
    return [rel for rel, test in tests.items() if all(test(p, q) for p in objs_a for q in objs_b)]


def _mention_for(scene: Scene, obj: Shape, rng: random.Random) -> Mention:
    color = obj.color if rng.random() < 0.85 else None
    size = obj.size if rng.random() < 0.5 else None
    probe = Mention(0, obj.shape, color, size)
    return Mention(len(_covered(scene, probe)), obj.shape, color, size)


def describe(scene: Scene, rng: random.Random) -> Description:
    """Sample a true description of `scene`: a random subset, order and phrasing of its content."""
    kinds: dict[tuple, Shape] = {}
    for obj in scene.objects:
        kinds.setdefault((obj.shape, obj.color, obj.size), obj)
    reps = list(kinds.values())
    while True:
        rng.shuffle(reps)
        frame = rng.choice(FRAMES if len(reps) > 1 else FRAMES[:3])
        n = 2 if frame in ("relation", "copula") else rng.randint(1, len(reps))
        mentions, covered = [], set()
        for obj in reps[:n]:
            m = _mention_for(scene, obj, rng)
            cov = _covered(scene, m)
            if cov & covered:
                break
            mentions.append(m)
            covered |= cov
        if len(mentions) < n:
            continue
        if frame in ("relation", "copula"):
            rels = relation_between(scene, mentions[0], mentions[1])
            if not rels:
                continue
            return Description(frame, tuple(mentions), rng.choice(rels))
        return Description(frame, tuple(mentions))
