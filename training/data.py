"""The data of a run: the dataset (built once into the cache for the embedded world or raw files),
its usable rows, the source tokenizer, and the training targets.

`open_data(cfg)` fails before any model is built when the data is missing, naming the builder
command. `training_targets(cfg, data)` is the target table stage 1 starts from: the human
translations at `--parallel-fraction`, plus image-pivoted targets with `--pivot`; `lexicon_pairs(cfg, data)` the
word pairs stage 1 reads beside them with `--lexicon-pairs`. Stage 0 reads
`teacher_pairs(data)`: the (image, English captions) rows a CLIP teacher learns from.
"""
from __future__ import annotations

import hashlib
import shlex
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import datasets
from transformers import AutoTokenizer

from data_prep.__main__ import add_builder_arguments
from data_prep.builders import get_builder
from data_prep.collate import ScanResult, scan_usable
from data_prep.errors import InputError, Parser
from data_prep.load import load_dataset_dir
from data_prep.phrase_lexicon import PhraseLexicon, WordPair, phrase_pairs, word_pairs
from data_prep.pivot import Lexicon, induce_lexicon, pivot_targets
from data_prep.source_tokenizer import source_tokenizer_for
from data_prep.targets import TargetTable
from data_prep.worlds import WORLDS
from data_prep.words import UNSPACED, words
from data_prep.writer import publish, staging_name
from training.options import TrainConfig
from training.stage0 import TeacherPairs

SPLITS = ("train", "validation", "test")
WORD_UNIT = "word:"  # marks a whole source word among the student's pieces (explaining_units)


@dataclass
class TrainingData:
    """The dataset of a run, checked row by row, with its source tokenizer."""
    path: Path
    splits: datasets.DatasetDict
    scans: dict[str, ScanResult]  # split -> usable rows, counted skips
    n_captions: int  # training source captions
    source_tokenizer: object | None  # None: a pretrained student reads its own
    world: str | None  # the embedded world it is (`data_prep.worlds`; built with a translation for every caption)
    seed: int  # of the hashed subset of human translations
    _human: dict = field(default_factory=dict, init=False, repr=False)
    _pairs: dict = field(default_factory=dict, init=False, repr=False)
    _lexicons: dict = field(default_factory=dict, init=False, repr=False)

    @property
    def train(self) -> datasets.Dataset:
        return self.splits["train"]

    @property
    def train_rows(self) -> list[int]:
        return self.scans["train"].usable

    def english_captions(self) -> list[str]:
        return [t for row in self.train.select(self.train_rows)["english"] for t in row if t.strip()]

    def human_targets(self, fraction: float | None) -> TargetTable:
        """The human translations of a hashed `fraction` of the training captions (all with None)."""
        if fraction not in self._human:
            try:
                self._human[fraction] = TargetTable.from_dataset(self.train, self.train_rows, fraction=fraction,
                                                                 seed=self.seed)
            except ValueError as exc:
                raise InputError(str(exc)) from None
        return self._human[fraction]

    def shown_words(self, fraction: float | None, lang: str) -> set[str]:
        """The words (`data_prep.words`, as written) of the source captions with a human translation."""
        source = self.train["source"]
        return {w for row, k in self.human_targets(fraction).human_keys() for w in words(source[row][k], lang)}

    def source_words(self, lang: str) -> list[str]:
        """Every word (token) of the usable training source captions, as written."""
        source = self.train["source"]
        return [w for row in self.train_rows for caption in source[row] for w in words(caption, lang)]

    def untranslated_word_share(self, fraction: float | None, lang: str) -> float:
        """The share of the training source words (tokens, `data_prep.words`) that no source caption
        with a human translation contains: what only the pictures could teach."""
        shown, tokens = self.shown_words(fraction, lang), self.source_words(lang)
        return sum(w not in shown for w in tokens) / max(1, len(tokens))

    def word_pairs(self, fraction: float | None, lang: str, explain: bool = False) -> list[WordPair]:
        """The source words (lower-cased) that no human translation at `fraction` shows, each with the
        English phrase its pictures name (`data_prep.phrase_lexicon.word_pairs`; `explain`: words of
        one picture too)."""
        key = (fraction, lang, explain)
        if key not in self._pairs:
            shown = {w.lower() for w in self.shown_words(fraction, lang)}
            unshown = {w.lower() for w in self.source_words(lang)} - shown
            self._pairs[key] = word_pairs(self.phrase_lexicon(lang), [w for w in unshown if any(c.isalnum() for c in w)],
                                          explain=explain)
        return self._pairs[key]

    def phrase_pairs(self, fraction: float | None, lang: str, longest: int) -> list[WordPair]:
        """The source phrases of 2 to `longest` words that no human translation at `fraction` shows
        as a whole, each with the English phrase its pictures name (`data_prep.phrase_lexicon.phrase_pairs`)."""
        key = (fraction, lang, longest)
        if key not in self._pairs:
            source = self.train["source"]
            captions = [[[w.lower() for w in words(c, lang)] for c in source[row]] for row in self.train_rows]
            shown = [[w.lower() for w in words(source[row][k], lang)]
                     for row, k in self.human_targets(fraction).human_keys()]
            joiner = "" if lang.split("-")[0].lower() in UNSPACED else " "
            self._pairs[key] = phrase_pairs(self.phrase_lexicon(lang), captions, shown, longest=longest, joiner=joiner)
        return self._pairs[key]

    def phrase_lexicon(self, lang: str) -> PhraseLexicon:
        """The phrase lexicon of the training pictures (induced once per language)."""
        if lang not in self._lexicons:
            self._lexicons[lang] = PhraseLexicon.induce(self.train, self.train_rows, lang)
        return self._lexicons[lang]

    def lexicon_pairs(self, fraction: float | None, lang: str, phrase_words: int,
                      explain: bool = False) -> list[WordPair]:
        """The word pairs (`explain`: words of one picture too, by explaining away), then with
        `phrase_words` over 1 the phrase pairs of up to that many words."""
        return self.word_pairs(fraction, lang, explain) + (self.phrase_pairs(fraction, lang, phrase_words)
                                                           if phrase_words > 1 else [])

    def teachable_word_share(self, fraction: float | None, lang: str) -> float:
        """The share of the training source words (tokens) that no human translation at `fraction`
        shows and the pictures pair with an English phrase (`word_pairs`): what the pictures can teach
        and the translations do not. A word of one picture ties with every phrase of it and counts
        nowhere, so a tiny dataset's chance gaps stay out."""
        paired = {p.source for p in self.word_pairs(fraction, lang)}
        tokens = self.source_words(lang)
        return sum(w.lower() in paired for w in tokens) / max(1, len(tokens))


def dataset_dir(cfg: TrainConfig, is_main: bool, log: Callable[[str], None]) -> Path:
    """The dataset directory to train on; built here (once, into the cache) for the embedded world
    or from raw files."""
    d, cache = cfg.dataset, Path(cfg.run.cache_dir)
    if d.data in WORLDS and d.data_dir is None:
        path = cache / "data" / f"{d.data}-{d.lang}-{d.world_images}-seed{cfg.run.seed}-translated"
        if is_main and not (path / "dataset_dict.json").is_file():
            log(f"building the embedded {d.data} world ({d.world_images} pictures, {d.lang}) at {path}")
            tmp = staging_name(path)
            WORLDS[d.data].build(tmp, lang=d.lang, images=d.world_images, seed=cfg.run.seed,
                                 show_progress=not cfg.run.quiet)
            publish(tmp, path)
        return path
    data_dir = Path(d.data_dir)
    if (data_dir / "dataset_dict.json").is_file():
        return data_dir
    if not data_dir.is_dir():
        raise InputError(f"--data-dir {data_dir} does not exist. Build the dataset first: `python -m data_prep "
                         f"{d.data} --data-dir RAW_FILES --out {data_dir}` (or pass the raw {d.data} files as "
                         f"--data-dir; layout: `python -m data_prep {d.data} --help`)")
    key = hashlib.sha256(f"{data_dir.resolve()}|{d.lang}|{d.data_args}".encode()).hexdigest()[:12]
    path = cache / "data" / f"{d.data}-{key}"
    if is_main and not (path / "dataset_dict.json").is_file():
        builder = get_builder(d.data)
        parser = _OptionNames(prog=f"--data-args for python -m data_prep {d.data}")
        add_builder_arguments(parser, builder)
        tmp = staging_name(path)
        argv = ["--data-dir", str(data_dir), "--out", str(tmp), *shlex.split(d.data_args)]
        if "--lang" in parser.names and "--lang" not in argv:
            argv += ["--lang", d.lang]
        args = parser.parse_args(argv + (["--quiet"] if cfg.run.quiet else []))
        log(f"building {d.data} from {data_dir} into {path}")
        builder.build(args)  # a wrong layout is an InputError saying what the builder expected
        publish(tmp, path)
    return path


class _OptionNames(Parser):
    """A parser that remembers the option strings it was given (which builders take `--lang`)."""

    def __init__(self, **kw) -> None:
        self.names: set[str] = set()  # before argparse adds -h
        super().__init__(**kw)

    def add_argument(self, *names, **kw):
        self.names.update(names)
        return super().add_argument(*names, **kw)


def open_data(cfg: TrainConfig, accelerator, log: Callable[[str], None], show: bool) -> TrainingData:
    """Build or load the dataset, find its usable rows (skips counted in the log) and load or
    train the source tokenizer."""
    path = dataset_dir(cfg, accelerator.is_main_process, log)
    accelerator.wait_for_everyone()  # the main process may have been building it
    dsd = load_dataset_dir(path)
    for split in SPLITS:
        if split not in dsd or len(dsd[split]) == 0:
            raise InputError(f"{path} has no {split!r} rows; rebuild it with python -m data_prep")
    scans = {split: scan_usable(dsd[split], need_english=1, show_progress=show) for split in SPLITS}
    for split, scan in scans.items():
        log(f"{split}: {scan.summary()}")
    rows = scans["train"].usable
    if len(rows) < cfg.optim.batch_size:
        raise InputError(f"only {len(rows)} usable training rows for --batch-size {cfg.optim.batch_size}")
    sources = [s for row in dsd["train"].select(rows)["source"] for s in row if s.strip()]
    source_tokenizer = (source_tokenizer_for(path, sources, vocab_size=cfg.dataset.source_vocab)
                        if cfg.student.student == "scratch" else None)
    world = cfg.dataset.data if cfg.dataset.data in WORLDS and cfg.dataset.data_dir is None else None
    return TrainingData(path, dsd, scans, len(sources), source_tokenizer, world, cfg.run.seed)


def source_pieces(cfg: TrainConfig, data: TrainingData) -> Callable[[str], list[str]]:
    """How the student splits a source sentence into pieces (its tokenizer's `tokenize`)."""
    return (data.source_tokenizer or AutoTokenizer.from_pretrained(cfg.student.student)).tokenize


def training_targets(cfg: TrainConfig, data: TrainingData, log: Callable[[str], None]) -> TargetTable:
    """The targets stage 1 starts from (resolved `cfg`): human translations at
    `--parallel-fraction`, plus an image-pivoted target for every other caption with `--pivot`."""
    targets = data.human_targets(cfg.dataset.parallel_fraction)
    if cfg.pseudo.pivot:
        pieces = source_pieces(cfg, data)
        lexicon = induce_lexicon(data.train, data.train_rows, pieces)
        explained = cfg.pseudo.pivot_teaches == "explained"
        units = explaining_units(cfg, data)
        targets = targets.with_pseudo(pivot_targets(data.train, data.train_rows, lexicon, pieces,
                                                    skip=targets.human_keys(), threshold=cfg.pseudo.pivot_threshold,
                                                    weight=cfg.pseudo.pivot_weight,
                                                    taught=rare_word_lexicon(cfg, data) if explained else None,
                                                    taught_units=units, every_name=cfg.pseudo.pivot_every_name))
    log(f"train: {targets.summary(data.n_captions)}")
    return targets


def explaining_units(cfg: TrainConfig, data: TrainingData) -> Callable[[str], list[str]]:
    """What of a source caption explains the words of a pivot target: the student's pieces, and with
    `--pivot-source-words` its words too (`data_prep.words`, lower-cased) — a rare word split into
    pieces that other words share is associated with its English name only as a whole."""
    pieces = source_pieces(cfg, data)
    if not cfg.pseudo.pivot_source_words:
        return pieces
    lang = cfg.dataset.lang
    return lambda text: [*pieces(text), *(WORD_UNIT + w.lower() for w in words(text, lang))]


def lexicon_pairs(cfg: TrainConfig, data: TrainingData, log: Callable[[str], None]) -> list[WordPair]:
    """`--lexicon-pairs`: the source words (lower-cased) and, with `--lexicon-phrase-words`, the source
    phrases that no human translation at `--parallel-fraction` shows, each with the English phrase its
    pictures name (`data_prep.phrase_lexicon`; with `--lexicon-explain-away`, the words of one picture too);
    none without the option."""
    p = cfg.pseudo
    if not p.lexicon_pairs:
        return []
    pairs = data.lexicon_pairs(cfg.dataset.parallel_fraction, cfg.dataset.lang, p.lexicon_phrase_words,
                               p.lexicon_explain_away)
    phrases = sum(bool(pair.words) for pair in pairs)
    single = sum(pair.pictures == 1 for pair in pairs)
    also = f" and {phrases} source phrases of 2 to {p.lexicon_phrase_words} words" if p.lexicon_phrase_words > 1 else ""
    explained = f"; {single} of them of one picture, by explaining away" if p.lexicon_explain_away else ""
    log(f"lexicon pairs: {len(pairs) - phrases} source words{also} no translation shows are paired with an English "
        f"phrase through the pictures ({p.lexicon_pairs} per batch{explained})")
    return pairs


def rare_word_lexicon(cfg: TrainConfig, data: TrainingData) -> Lexicon:
    """The lexicon induced from the training pictures with every explaining unit and English word
    kept, however rare (Dice associations: which English words a pivot target teaches, which words
    few pictures show)."""
    return induce_lexicon(data.train, data.train_rows, explaining_units(cfg, data), min_images=1)


def teacher_pool(cfg: TrainConfig, data: TrainingData, is_main: bool, log: Callable[[str], None]) -> Path | None:
    """The dataset stage 0 trains the teacher on instead of the training split: `--teacher-data`,
    or an embedded world's English-only pool (built here once into the cache by the main process);
    None for the training split itself (real weights and a shapes-world teacher)."""
    teacher = cfg.teacher
    if teacher.clip_pretrained or not teacher.teacher_steps:
        return None
    if teacher.teacher_data is not None:
        return Path(teacher.teacher_data)
    world = WORLDS.get(data.world) if data.world is not None else None
    if world is None or world.pool is None:
        return None
    pictures = world.pool_factor * cfg.dataset.world_images
    path = Path(cfg.run.cache_dir) / "data" / f"{data.world}-pool-{pictures}-seed{cfg.run.seed}"
    if is_main and not (path / "dataset_dict.json").is_file():
        log(f"building the English-only teacher pool of the {data.world} world ({pictures} pictures) at {path}")
        tmp = staging_name(path)
        world.pool(tmp, images=pictures, seed=cfg.run.seed, show_progress=not cfg.run.quiet)
        publish(tmp, path)
    return path


def teacher_pairs(data: TrainingData, pool: Path | None, log: Callable[[str], None], show: bool) -> TeacherPairs:
    """What a stage 0 teacher learns from: the `pool`'s training split (pictures with an English
    caption; `teacher_pool`), or without one the usable training rows' pictures and captions."""
    if pool is None:
        return TeacherPairs(data.train, data.train_rows)
    if not (pool / "dataset_dict.json").is_file():
        raise InputError(f"--teacher-data {pool} is not a dataset built by python -m data_prep (no dataset_dict.json)")
    train = load_dataset_dir(pool)["train"]
    scan = scan_usable(train, need_english=1, need_source=False, show_progress=show)
    log(f"teacher data {pool}: {scan.summary()}")
    if len(scan.usable) < 2:
        raise InputError(f"--teacher-data {pool}: {len(scan.usable)} usable pictures with an English caption; a "
                         "teacher needs at least a batch of two")
    return TeacherPairs(train, scan.usable)
