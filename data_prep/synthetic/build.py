"""Builder for the synthetic world: `python -m data_prep synthetic --lang es --out DIR`."""
from __future__ import annotations

import argparse
import random
from dataclasses import dataclass
from pathlib import Path

import datasets

from .. import errors
from ..build_report import BuildReport
from ..memory import require_memory
from ..schema import SYNTHETIC, provenance
from ..writer import write_dataset
from . import chinese, english, spanish
from .descriptions import Description, describe
from .render import render
from .scene import Scene, sample_scene

NAME = "synthetic"
HELP = "the embedded synthetic world: rendered coloured shapes with independent captions (no input files)"
LAYOUT = """\
No input files. Each image gets K English and K source-language captions sampled independently
(different subsets, orders and phrasings of the scene: not translations of each other), and a
fraction P of training source captions get their exact English translation in `parallel`
(validation/test captions use --eval-parallel-fraction, default 1: every caption has a reference).
Scenes, English captions and images depend only on --seed, so `--lang es` and `--lang zh`
with one seed describe the same pictures.
Example: python -m data_prep synthetic --lang zh --images 10000 --out data/synthetic-zh"""

GRAMMARS = {"en": english, "es": spanish, "zh": chinese}
SPLIT_FRACTIONS = (("train", 0.8), ("validation", 0.1), ("test", 0.1))
# Memory estimates (measured with tracemalloc, rounded up; docs/reliability.md): a record held
# until the writer runs takes about 1.8 KB + 0.9 KB per caption, twice over (the builder's list
# and the writer's cleaned copy); drawing one image takes its 4x supersampled RGB canvas plus the
# downsized copy and its PNG.
RECORD_BYTES, CAPTION_BYTES = 2 * 2048, 2 * 1024
RENDER_BYTES_PER_PIXEL = 3 * 16 + 3 + 1


@dataclass(frozen=True)
class Sample:
    """One synthetic image: its scene and the descriptions behind every caption."""

    image_id: str
    scene: Scene
    english: tuple[Description, ...]
    source: tuple[Description, ...]
    has_parallel: tuple[bool, ...]


def make_sample(index: int, *, seed: int, captions_per_image: int, parallel_fraction: float, image_size: int) -> Sample:
    """Deterministic sample `index` of the world `seed` (independent random streams per part)."""
    stream = lambda part: random.Random(f"{seed}:{index}:{part}")  # noqa: E731
    scene = sample_scene(stream("scene"), image_size)
    eng_rng, src_rng, par_rng = stream("english"), stream("source"), stream("parallel")
    eng = tuple(describe(scene, eng_rng) for _ in range(captions_per_image))
    src = tuple(describe(scene, src_rng) for _ in range(captions_per_image))
    par = tuple(par_rng.random() < parallel_fraction for _ in range(captions_per_image))
    return Sample(f"syn{seed}-{index:06d}", scene, eng, src, par)


def split_of(index: int, total: int, fractions: tuple[tuple[str, float], ...] = SPLIT_FRACTIONS) -> str:
    """The split of item `index` of `total`: consecutive blocks of the given fractions."""
    edge = 0.0
    for split, fraction in fractions:
        edge += fraction * total
        if index < round(edge):
            return split
    return fractions[-1][0]


def record(sample: Sample, lang: str, split: str) -> dict:
    """The data-contract record of a sample (image rendered lazily by the writer)."""
    grammar = GRAMMARS[lang]
    return {
        "image": lambda: render(sample.scene),
        "image_id": sample.image_id,
        "lang": lang,
        "source": [grammar.realise(d) for d in sample.source],
        "english": [english.realise(d) for d in sample.english],
        "parallel": [english.realise(d) if p else "" for d, p in zip(sample.source, sample.has_parallel)],
        "provenance": provenance("synthetic", split, source=SYNTHETIC, english=SYNTHETIC, parallel=SYNTHETIC),
    }


def build_synthetic(
    out: str | Path,
    lang: str = "es",
    images: int = 2000,
    seed: int = 0,
    parallel_fraction: float = 0.3,
    eval_parallel_fraction: float = 1.0,
    captions_per_image: int = 2,
    image_size: int = 64,
    show_progress: bool = True,
    overwrite: bool = False,
) -> datasets.DatasetDict:
    """Generate the synthetic world and save it at `out` (docs/design.md §9); `overwrite` replaces a
    dataset already there. Settings that cannot build, or would not fit in memory, are `InputError`s."""
    if lang not in GRAMMARS or lang == "en":
        raise errors.InputError(f"--lang must be one of {sorted(set(GRAMMARS) - {'en'})}, got {lang!r}")
    if images < 3:
        raise errors.InputError(f"--images must be at least 3 (one per split), got {images}")
    if not (0.0 <= parallel_fraction <= 1.0 and 0.0 <= eval_parallel_fraction <= 1.0):
        raise errors.InputError("--parallel-fraction and --eval-parallel-fraction must be in [0, 1]")
    if captions_per_image < 1 or image_size < 16:
        raise errors.InputError(f"--captions-per-image must be >= 1 and --image-size >= 16, got {captions_per_image} "
                                f"and {image_size}")
    require_memory(RENDER_BYTES_PER_PIXEL * image_size ** 2, f"--image-size {image_size} (each image is drawn "
                   "at 4 times that side, then downsized)", "use a smaller --image-size")
    require_memory(images * (RECORD_BYTES + CAPTION_BYTES * captions_per_image),
                   f"--images {images} with --captions-per-image {captions_per_image}",
                   "build fewer --images (or fewer --captions-per-image)")
    settings = dict(lang=lang, images=images, seed=seed, parallel_fraction=parallel_fraction,
                    eval_parallel_fraction=eval_parallel_fraction, captions_per_image=captions_per_image,
                    image_size=image_size)
    report = BuildReport(NAME, **settings)
    splits: dict[str, list[dict]] = {s: [] for s, _ in SPLIT_FRACTIONS}
    for i in range(images):
        split = split_of(i, images)
        fraction = parallel_fraction if split == "train" else eval_parallel_fraction
        sample = make_sample(i, seed=seed, captions_per_image=captions_per_image,
                             parallel_fraction=fraction, image_size=image_size)
        splits[split].append(record(sample, lang, split))
    dsd = write_dataset(splits, out, report, show_progress=show_progress, overwrite=overwrite)
    print(report.summary())
    return dsd


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--lang", choices=("es", "zh"), default="es", help="source language (default: es)")
    parser.add_argument("--images", type=errors.positive_int, default=2000, help="number of images (default: 2000)")
    parser.add_argument("--seed", type=int, default=0, help="world seed (default: 0)")
    parser.add_argument("--parallel-fraction", type=errors.fraction, default=0.3,
                        help="fraction of training source captions with an exact English translation (default: 0.3)")
    parser.add_argument("--eval-parallel-fraction", type=errors.fraction, default=1.0,
                        help="the same for validation and test captions, the references of evaluation (default: 1)")
    parser.add_argument("--captions-per-image", type=errors.positive_int, default=2,
                        help="K captions per language (default: 2)")
    parser.add_argument("--image-size", type=errors.positive_int, default=64, help="image side in pixels (default: 64)")


def build(args: argparse.Namespace) -> datasets.DatasetDict:
    return build_synthetic(args.out, lang=args.lang, images=args.images, seed=args.seed,
                           parallel_fraction=args.parallel_fraction, eval_parallel_fraction=args.eval_parallel_fraction,
                           captions_per_image=args.captions_per_image,
                           image_size=args.image_size, show_progress=not args.quiet, overwrite=args.overwrite)
