"""Scenes: 1–4 non-overlapping coloured shapes in groups of identical objects."""
from __future__ import annotations

import random
from dataclasses import dataclass

SHAPES = ("circle", "square", "triangle", "star", "cross")
COLORS = ("red", "green", "blue", "yellow", "purple", "black")
SIZES = ("small", "large")
MAX_OBJECTS = 4

# radius as a fraction of the image side
RADIUS = {"small": 0.085, "large": 0.15}


@dataclass(frozen=True)
class Shape:
    """One object: what it is and where (centre and radius in pixels)."""

    shape: str
    color: str
    size: str
    x: float
    y: float
    r: float


@dataclass(frozen=True)
class Scene:
    """A picture's content; `objects` are grouped by identical (shape, colour, size)."""

    size: int
    background: tuple[int, int, int]
    objects: tuple[Shape, ...]


def _place(rng: random.Random, size: int, r: float, placed: list[Shape]) -> tuple[float, float] | None:
    margin = r + 1
    for _ in range(200):
        x, y = rng.uniform(margin, size - margin), rng.uniform(margin, size - margin)
        if all((x - o.x) ** 2 + (y - o.y) ** 2 > (r + o.r + 2) ** 2 for o in placed):
            return x, y
    return None


def sample_scene(rng: random.Random, image_size: int) -> Scene:
    """Sample 1–3 distinct kinds of object with counts summing to 1–4, placed without overlap."""
    while True:
        n_kinds = rng.choice((1, 1, 2, 2, 2, 3))
        kinds = set()
        while len(kinds) < n_kinds:
            kinds.add((rng.choice(SHAPES), rng.choice(COLORS), rng.choice(SIZES)))
        kinds = sorted(kinds)
        rng.shuffle(kinds)
        budget = rng.randint(n_kinds, MAX_OBJECTS)
        counts = [1] * n_kinds
        for _ in range(budget - n_kinds):
            counts[rng.randrange(n_kinds)] += 1
        placed: list[Shape] = []
        ok = True
        for (shape, color, size), count in zip(kinds, counts):
            r = RADIUS[size] * image_size
            for _ in range(count):
                pos = _place(rng, image_size, r, placed)
                if pos is None:
                    ok = False
                    break
                placed.append(Shape(shape, color, size, pos[0], pos[1], r))
        if ok:
            grey = rng.randint(205, 235)
            return Scene(image_size, (grey, grey, grey), tuple(placed))
