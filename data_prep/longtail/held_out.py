"""What the teacher's zero-shot test (image -> concept name) needs from a world: held-out
single-object pictures of every concept — one per concept and copy, drawn from a random stream no
build uses (its ground colour, size and place), so none of them is a training picture — each
concept's prompt, written as the pool's captions write it, and the rarest third of the concepts."""
from __future__ import annotations

import random

from PIL import Image

from .build import World
from .descriptions import Description, Mention
from .render import render
from .scene import BACKGROUNDS, SIDE, SIZES, Obj, Scene

STREAM = "held-out"


def held_out_scene(world: World, concept: str, copy: int = 0) -> Scene:
    """The single-object scene of `concept` (copy `copy`) of the world's seed."""
    rng = random.Random(f"{world.seed}:{STREAM}:{concept}:{copy}")
    size = rng.choice(SIZES)
    side = rng.uniform(*SIDE[size]) * world.image_size
    margin = side / 2 + 1
    x, y = (rng.uniform(margin, world.image_size - margin) for _ in range(2))
    background = rng.choice(sorted(BACKGROUNDS))
    jitter = rng.randint(-12, 12)
    rgb = tuple(max(0, min(255, c + jitter)) for c in BACKGROUNDS[background])
    return Scene(world.image_size, background, rgb, "single", (Obj(concept, size, x, y, side),))


def held_out_pictures(world: World, copies: int = 1) -> list[tuple[str, Image.Image]]:
    """`(concept id, picture)` for every concept of `world`, `copies` pictures each."""
    return [(e.id, render(held_out_scene(world, e.id, k), world.pictures))
            for e in world.entries for k in range(copies)]


def concept_prompts(world: World, frame: str = "picture") -> dict[str, str]:
    """Concept id -> the English caption of that concept alone in `frame` ("a picture of a red
    apple", "a picture of a books emoji"), realised by the world's English grammar."""
    return {e.id: world.english.realise(Description(frame, (Mention(e.id, None),))) for e in world.entries}


def rarest_third(world: World) -> set[str]:
    """The third of the concepts with the lowest sampling weight in the world (ties by id)."""
    ordered = sorted(world.entries, key=lambda e: (world.weights[e.id], e.id))
    return {e.id for e in ordered[: len(ordered) // 3]}
