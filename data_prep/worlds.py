"""The embedded worlds: datasets a run builds itself when it is given none (`train.py --data NAME`
without `--data-dir`), each with the size and the share of human translations it is trained at.

- `longtail` (the default): pictographs with their Unicode CLDR names, Zipfian concept frequency
  — as hard as real captions by the coverage measure of docs/longtail.md; any CLDR language; its
  CLIP teacher learns from a separate English-only pool of the same world (`pool`).
- `synthetic`: the shapes world (coloured shapes, 76 words; es and zh): small and fast, but 2% of
  its captions already show nearly every word of its test captions.

Each is built with a human translation for every caption: a run keeps a hashed share of them
(`--parallel-fraction`, default `parallel_fraction`).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .longtail.build import build_longtail
from .longtail.inventory import languages as longtail_languages
from .synthetic.build import GRAMMARS, build_synthetic


@dataclass(frozen=True)
class World:
    """An embedded world: how to build it (`build(out, lang, images, seed, show_progress)`), its
    default size, the share of its training captions that keep a human translation, the
    languages it speaks, and how to build its English-only teacher pool (None: the teacher reads
    the training split's English captions), `pool_factor` times as many pictures as the world."""

    build: Callable[..., object]
    pictures: int
    parallel_fraction: float
    languages: tuple[str, ...]
    pool: Callable[..., object] | None = None
    pool_factor: int = 0


def _longtail(out: str | Path, *, lang: str, images: int, seed: int, show_progress: bool) -> object:
    return build_longtail(out, lang=lang, images=images, seed=seed, parallel_fraction=1.0, show_progress=show_progress)


def _longtail_pool(out: str | Path, *, images: int, seed: int, show_progress: bool) -> object:
    return build_longtail(out, lang="es", images=images, seed=seed, english_only=True, show_progress=show_progress)


def _synthetic(out: str | Path, *, lang: str, images: int, seed: int, show_progress: bool) -> object:
    return build_synthetic(out, lang=lang, images=images, seed=seed, parallel_fraction=1.0, show_progress=show_progress)


WORLDS: dict[str, World] = {
    "longtail": World(_longtail, 3000, 0.05, tuple(longtail_languages()), _longtail_pool, 4),
    "synthetic": World(_synthetic, 2000, 0.02, tuple(sorted(set(GRAMMARS) - {"en"}))),
}
