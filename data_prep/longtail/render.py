"""Render a long-tail `Scene` with PIL: the ground colour, then each pictograph pasted with its alpha."""
from __future__ import annotations

from PIL import Image

from .pictures import PictureSet
from .scene import Scene


def render(scene: Scene, pictures: PictureSet) -> Image.Image:
    """The RGB picture of `scene` (pictographs resized once per size and cached by `pictures`)."""
    img = Image.new("RGB", (scene.size, scene.size), scene.rgb)
    for obj in scene.objects:
        side = max(1, round(obj.side))
        sprite = pictures.sized(obj.concept, side)
        img.paste(sprite, (round(obj.x - side / 2), round(obj.y - side / 2)), sprite)
    return img
