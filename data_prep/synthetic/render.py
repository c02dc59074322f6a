"""Render a `Scene` with PIL."""
from __future__ import annotations

import math

from PIL import Image, ImageDraw

from .scene import Scene, Shape

RGB = {
    "red": (215, 40, 40),
    "green": (40, 165, 60),
    "blue": (40, 80, 215),
    "yellow": (240, 200, 30),
    "purple": (135, 55, 175),
    "black": (25, 25, 25),
}


def _star(o: Shape) -> list[tuple[float, float]]:
    pts = []
    for k in range(10):
        rad = o.r if k % 2 == 0 else o.r * 0.45
        ang = -math.pi / 2 + k * math.pi / 5
        pts.append((o.x + rad * math.cos(ang), o.y + rad * math.sin(ang)))
    return pts


def _cross(o: Shape) -> list[tuple[float, float]]:
    a, b = o.r, o.r * 0.35
    rel = [(-b, -a), (b, -a), (b, -b), (a, -b), (a, b), (b, b), (b, a), (-b, a), (-b, b), (-a, b), (-a, -b), (-b, -b)]
    return [(o.x + dx, o.y + dy) for dx, dy in rel]


def draw_shape(draw: ImageDraw.ImageDraw, o: Shape) -> None:
    fill = RGB[o.color]
    box = (o.x - o.r, o.y - o.r, o.x + o.r, o.y + o.r)
    if o.shape == "circle":
        draw.ellipse(box, fill=fill)
    elif o.shape == "square":
        s = o.r * 0.85
        draw.rectangle((o.x - s, o.y - s, o.x + s, o.y + s), fill=fill)
    elif o.shape == "triangle":
        h = o.r * math.sqrt(3) / 2
        draw.polygon([(o.x, o.y - o.r), (o.x + h, o.y + o.r / 2), (o.x - h, o.y + o.r / 2)], fill=fill)
    elif o.shape == "star":
        draw.polygon(_star(o), fill=fill)
    elif o.shape == "cross":
        draw.polygon(_cross(o), fill=fill)
    else:
        raise ValueError(f"unknown shape {o.shape!r}")


def render(scene: Scene) -> Image.Image:
    """Draw the scene's objects on its background (4× supersampled, then downsized for smooth edges)."""
    scale = 4
    img = Image.new("RGB", (scene.size * scale, scene.size * scale), scene.background)
    draw = ImageDraw.Draw(img)
    for o in scene.objects:
        draw_shape(draw, Shape(o.shape, o.color, o.size, o.x * scale, o.y * scale, o.r * scale))
    return img.resize((scene.size, scene.size), Image.Resampling.LANCZOS)
