"""Scenes of the long-tail world: 1-3 pictographs on a coloured ground.

Layouts: one object; a pair side by side (left/right) or one above the other (top/bottom); a row
of three. Sizes are global (fractions of the picture side), so "small" and "large" mean the same
in every picture. The concepts of a scene are distinct and drawn from a `ConceptSampler`.
"""
from __future__ import annotations

import bisect
import random
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import accumulate

SIZES = ("small", "large")
SIDE = {"small": (0.22, 0.28), "large": (0.38, 0.46)}  # object side as a fraction of the picture side
LAYOUTS = ("single", "pair-h", "pair-v", "row")
OBJECTS = {"single": 1, "pair-h": 2, "pair-v": 2, "row": 3}
# named grounds: light enough that every pictograph stays visible; each picture jitters its shade
BACKGROUNDS = {
    "red": (236, 120, 112), "orange": (246, 178, 107), "yellow": (250, 230, 130), "green": (140, 205, 140),
    "blue": (135, 175, 235), "purple": (190, 155, 225), "pink": (245, 175, 205), "grey": (185, 185, 185),
    "white": (248, 248, 248),
}


@dataclass(frozen=True)
class Obj:
    """One pictograph: its concept, size class and square box (centre x, y and side, in pixels)."""

    concept: str
    size: str
    x: float
    y: float
    side: float


@dataclass(frozen=True)
class Scene:
    """A picture's content; `objects` in layout order (left to right, or top to bottom)."""

    size: int
    background: str
    rgb: tuple[int, int, int]
    layout: str
    objects: tuple[Obj, ...]


class ConceptSampler:
    """Draws concept ids with fixed probabilities (`weights`, any positive scale)."""

    def __init__(self, ids: Sequence[str], weights: Sequence[float]) -> None:
        if len(ids) != len(weights) or not ids:
            raise ValueError("a sampler needs one positive weight per concept id")
        self.ids = list(ids)
        self.cumulative = list(accumulate(weights))

    def draw(self, rng: random.Random, n: int, first: str | None = None) -> list[str]:
        """`n` distinct concepts (n <= number of concepts), the first one `first` when given."""
        chosen: list[str] = [first] if first is not None else []
        while len(chosen) < n:
            k = bisect.bisect_right(self.cumulative, rng.random() * self.cumulative[-1])
            cid = self.ids[min(k, len(self.ids) - 1)]
            if cid not in chosen:
                chosen.append(cid)
        return chosen


def _box(rng: random.Random, image_size: int, size: str, lo: tuple[float, float], hi: tuple[float, float]) -> tuple:
    """A square of class `size` placed uniformly inside the cell [lo, hi] (fractions of the side)."""
    side = min(rng.uniform(*SIDE[size]), hi[0] - lo[0], hi[1] - lo[1]) * image_size
    cx0, cy0 = lo[0] * image_size + side / 2, lo[1] * image_size + side / 2
    cx1, cy1 = hi[0] * image_size - side / 2, hi[1] * image_size - side / 2
    return rng.uniform(cx0, max(cx0, cx1)), rng.uniform(cy0, max(cy0, cy1)), side


def sample_scene(rng: random.Random, image_size: int, sampler: ConceptSampler,
                 layout_weights: Sequence[float] = (0.3, 0.25, 0.2, 0.25), anchor: str | None = None) -> Scene:
    """Sample a layout, its concepts (one of them `anchor` when given), sizes and places, and a ground colour."""
    layout = rng.choices(LAYOUTS, weights=layout_weights)[0]
    n = OBJECTS[layout]
    concepts = sampler.draw(rng, n, first=anchor)
    rng.shuffle(concepts)
    if layout == "single":
        cells = [((0.04, 0.04), (0.96, 0.96))]
    elif layout == "pair-h":
        cells = [((0.02, 0.04), (0.49, 0.96)), ((0.51, 0.04), (0.98, 0.96))]
    elif layout == "pair-v":
        cells = [((0.04, 0.02), (0.96, 0.49)), ((0.04, 0.51), (0.96, 0.98))]
    else:  # a row of three: only small objects fit a third of the picture
        cells = [((k / 3 + 0.01, 0.1), ((k + 1) / 3 - 0.01, 0.9)) for k in range(3)]
    objects = []
    for concept, (lo, hi) in zip(concepts, cells):
        size = "small" if layout == "row" else rng.choice(SIZES)
        objects.append(Obj(concept, size, *_box(rng, image_size, size, lo, hi)))
    background = rng.choice(sorted(BACKGROUNDS))
    jitter = rng.randint(-12, 12)
    rgb = tuple(max(0, min(255, c + jitter)) for c in BACKGROUNDS[background])
    return Scene(image_size, background, rgb, layout, tuple(objects))
