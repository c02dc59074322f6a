"""Every option of a training run, declared once: grouped dataclasses whose fields are the flat
command-line flags (`--batch-size` is `OptimOptions.batch_size`, read as `cfg.optim.batch_size`),
each with its help text, its choices (from the registries that define them) and the range a value
must lie in. `training.config` builds the parser, the rules and the resolution from these
declarations; `RUN/config.json` holds them flat, under the same names.

A default of None (or the documented 0) means "decided from the run's place or its data":
`training.config.resolve_place` and `training.config.resolve` decide it, and config.json holds
the decision.
"""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from data_prep.builders import BUILDERS
from data_prep.worlds import WORLDS
from models.english_anchor import ANCHORS
from models.axes import AxisLayout
from models.decoding import DECODING_MODES
from models.eot import EOT_MODES
from models.ndim_loss import LABELS
from models.schedules import WARMUP_LEAST, WARMUP_MOST, WARMUP_SHARE
from models.similarities import CHOICES as SIMILARITIES
from models.splice import SPLICES
from models.tiny_configs import MARIAN_PRESETS

PSEUDO_TARGETS_BELOW = 0.03  # pivot and self-training targets are made when human ones cover less of the captions,
TEACHABLE_WORDS_ABOVE = 0.001  # or when more of the training source words are untranslated words the pictures pair
# with an English phrase (docs/training.md, "the switch")
LEXICON_PAIRS = 16  # word pairs per batch where pivot targets are made (docs/training.md, "Defaults and why")
LEXICON_PHRASE_WORDS = 4  # longest source phrase paired beside the words (docs/ablation.md, "Phrase pairs") ...
PHRASE_PAIRS_FROM = 0.1  # ... where human translations cover at least this share of the training captions
EXPLAIN_AWAY_FROM = 0.05  # words of one picture paired by explaining away from this share on (docs/ablation.md)
PAIR_RERANK = 16  # n-best size of the test-time rerank by those word pairs (docs/translate.md, "Rerank by word pairs")
PAIR_FORCE = 1.0  # margin of the forced names beside that rerank (docs/translate.md, "Forced names")


@dataclass(frozen=True)
class Bound:
    """A range check: `test(value)` holds for a valid value; `text` completes "must be ..."."""

    text: str
    test: Callable[[float], bool]


def at_least(low: float) -> Bound:
    return Bound(f"at least {low:g}", lambda v: v >= low)


def positive() -> Bound:
    return Bound("positive", lambda v: v > 0)


def within(low: float, high: float, *, open_high: bool = False) -> Bound:
    return Bound(f"in [{low:g}, {high:g}{')' if open_high else ']'}",
                 lambda v: low <= v < high if open_high else low <= v <= high)


def zero_or_at_least(low: int, zero: str) -> Bound:
    return Bound(f"0 ({zero}) or at least {low}", lambda v: v == 0 or v >= low)


NON_NEGATIVE = Bound("at least 0", lambda v: v >= 0)
SEED_RANGE = Bound(f"in [0, {2**32 - 1}] (the seeds NumPy accepts)", lambda v: 0 <= v < 2**32)


def option(default: Any, help: str, *, choices: tuple[str, ...] | None = None, bound: Bound | None = None,
           aliases: tuple[str, ...] = ()) -> Any:
    """A dataclass field declaring one flag: `aliases` are older flag names still accepted."""
    return field(default=default, metadata={"help": help, "choices": choices, "bound": bound, "aliases": aliases})


@dataclass(frozen=True)
class DataOptions:
    """Which dataset, and how much of its human translation the run may read."""
    lang: str = option("es", "source language (the long-tail world speaks every CLDR language of the emoji "
                             "package, the shapes world es and zh)")
    data: str = option("longtail", "dataset builder; the embedded worlds 'longtail' (the default) and 'synthetic' "
                                   "(the shapes world) are built here when no --data-dir is given (docs/data.md)",
                       choices=tuple(BUILDERS))
    data_dir: str | None = option(None, "a dataset built by `python -m data_prep`, or the raw files of --data (then "
                                        "built once into the cache)")
    data_args: str = option("", "extra builder arguments when --data-dir holds raw files, e.g. \"--coco-dir COCO\"")
    world_images: int | None = option(None, "pictures of an embedded world (default: "
                                            + ", ".join(f"{w.pictures} for {name}" for name, w in WORLDS.items()) + ")",
                                      bound=at_least(3), aliases=("--synthetic-images",))
    parallel_fraction: float | None = option(
        None, "fraction of training source captions that keep their human translation (a hashed, nested subset; "
              "default: all the dataset has, and for an embedded world, which is built with a translation for every "
              "caption, " + ", ".join(f"{w.parallel_fraction} for {name}" for name, w in WORLDS.items()) + ")",
        bound=within(0, 1))
    source_vocab: int = option(1000, "SentencePiece vocabulary size for the source language (an upper bound)",
                               bound=at_least(8))


@dataclass(frozen=True)
class RunOptions:
    """Where the run lives, how it starts, and which named defaults it takes."""
    preset: str = option("embedded", "named defaults of the model sizes: 'thesis' = CLIP ViT-B-32, Marian-size "
                                     "student, all 49,408 CLIP BPE ids, batch 256, bf16 (docs/scaling.md); other "
                                     "flags override it", choices=("embedded", "thesis"))
    recipe: str = option("auto", "named defaults of what teaches the student (docs/training.md): 'ce' token "
                                 "cross-entropy only, 'ce+contrastive' plus the n-dim loss, 'ce+pseudo' plus "
                                 "image-pivoted and CLIP-judged self-trained targets, annealed (the shapes world's "
                                 "best), 'ce+taught' the same targets scored on the words their source explains, "
                                 "kept unless self-training agrees, not annealed, 'ce+taught+pairs' plus word pairs "
                                 "of the lexicon induced through the pictures (the long-tail world's best), "
                                 "'contrastive' the n-dim loss only; 'auto' makes pseudo targets and word pairs (as "
                                 "'ce+taught+pairs') when human translations are scarce or leave words untranslated "
                                 "that the pictures pair with an English phrase",
                         choices=("auto", "ce", "ce+contrastive", "ce+pseudo", "ce+taught", "ce+taught+pairs",
                                  "contrastive"))
    out: str | None = option(None, "run directory (default: runs/DATA-LANG-TIMESTAMP)")
    resume: bool = option(False, "continue the run in --out (default: the newest runs/DATA-LANG-*) from its last "
                                 "complete checkpoint")
    seed: int = option(0, "seed of models, data order and sampling", bound=SEED_RANGE)
    cache_dir: str | None = option(None, "where built datasets and CLIP teachers are cached (default: "
                                         "$GROUNDMT_CACHE or ~/.cache/groundmt)")
    quiet: bool = option(False, "no progress bars")
    threads: int = option(0, "CPU threads per process; 0 = the machine's cores shared among this machine's "
                             "processes (`accelerate launch` alone would pin each process to 1 thread)",
                          bound=NON_NEGATIVE)


@dataclass(frozen=True)
class TeacherOptions:
    """Stage 0: the CLIP that reads English, and which of its towers stage 1 trains."""
    clip: str = option("groundmt-tiny", "open_clip architecture name")
    teacher_data: str | None = option(None, "a dataset built by `python -m data_prep` whose pictures have English "
                                            "captions (source captions may be empty, e.g. an imagefolder of "
                                            "English-captioned pictures) for stage 0 to pretrain the CLIP teacher on, "
                                            "instead of the training split's English captions (default: the embedded "
                                            "long-tail world's English-only pool, built into the cache)")
    clip_pretrained: str | None = option(None, "an open_clip checkpoint file with the CLIP weights (skips stage 0)")
    teacher_steps: int = option(300, "stage 0: steps of the tiny CLIP teacher when no --clip-pretrained is given; 0 = "
                                     "no stage 0: a randomly initialised CLIP (said loudly in the log)",
                                bound=NON_NEGATIVE)
    teacher_batch_size: int = option(64, "stage 0 batch size", bound=at_least(2))
    teacher_lr: float = option(1e-3, "stage 0 learning rate", bound=positive())
    freeze: str = option("both", "CLIP towers kept frozen in stage 1 (see docs/training.md)",
                         choices=("both", "image", "text", "none"))
    tower_lr: float = option(0.0, "peak learning rate of the CLIP towers that --freeze leaves trainable (0 = --lr)",
                             bound=NON_NEGATIVE)


@dataclass(frozen=True)
class StudentOptions:
    """The Marian student, and how its output reaches CLIP."""
    student: str = option("scratch", "'scratch' (decoder vocabulary = CLIP BPE) or a local MarianMT directory")
    student_preset: str = option("tiny", "size of a scratch student", choices=tuple(MARIAN_PRESETS))
    dropout: float = option(0.1, "dropout of a scratch student (MarianConfig.dropout)", bound=within(0, 1, open_high=True))
    target_vocab: str = option("corpus", "a scratch student's decoder vocabulary: the CLIP BPE ids of the training "
                                         "split's English text (a shortlist, much faster), or all of CLIP's BPE",
                               choices=("corpus", "full"))
    max_target_length: int = option(0, "CLIP positions (SOT and EOT included) a translation may use; 0 = the longest "
                                       "training English caption + 2, at most CLIP's context length",
                                    bound=zero_or_at_least(3, "decided from the data"))
    splice: str = option("gumbel", "how the student's output reaches CLIP", choices=SPLICES)
    tau_start: float = option(1.0, "Gumbel/softmax temperature at step 0", bound=positive())
    tau_end: float = option(0.5, "temperature at the last step (exponential schedule)", bound=positive())
    eot_finder: str = option("prob", "where the CLIP tower pools the student's sequence",
                             choices=tuple(m for m in EOT_MODES if m != "ids"))
    decoding: str = option("free-running", "student decoding during training", choices=DECODING_MODES)


@dataclass(frozen=True)
class ObjectiveOptions:
    """What stage 1 minimises: the token cross-entropy and the n-dim contrastive loss, with the
    optional terms on the student's CLIP features; the axes the n-dim loss reads."""
    k_english: int = option(2, "English caption axes per image", bound=NON_NEGATIVE)
    m_source: int = option(2, "student axes per image (source captions translated)", bound=NON_NEGATIVE)
    similarity: str = option("one-minus-sst", "n-way similarity of the n-dim loss (descriptive names or the "
                                              "thesis' numbers v0..v16; `python -m models list`)",
                             choices=SIMILARITIES)
    labels: str = option("diagonal", "label scheme of the n-dim loss", choices=LABELS)
    english_anchor: str = option("none", "term pulling the student's CLIP features towards its image's first "
                                         "English caption's", choices=("none", *ANCHORS), aliases=("--anchor",))
    english_anchor_weight: float = option(1.0, "weight of the English anchor", bound=NON_NEGATIVE,
                                          aliases=("--anchor-weight",))
    expert: tuple[str, ...] | None = option(None, "an extra frozen English text expert as an axis of the n-dim loss "
                                                  "(repeatable): 'minilm' (the packaged all-MiniLM-L6-v2) or a local "
                                                  "transformers encoder directory, mapped into the CLIP text space by "
                                                  "centred orthogonal Procrustes fitted on the training captions")
    anchor_bank: int = option(0, "learnable anchors on the hypersphere pulling the student's CLIP features "
                                 "(InfoNCE to the nearest anchor); their health is logged at validation",
                              bound=zero_or_at_least(2, "none"))
    anchor_bank_weight: float = option(0.1, "weight of the anchor-bank term", bound=NON_NEGATIVE)
    lsa_weight: float = option(0.0, "weight of the LSA loss (thesis §6.7) on the student ↔ image logits",
                               bound=NON_NEGATIVE)
    contrastive_weight: float = option(0.0, "weight of the n-dim contrastive loss (0 = none: the student is not "
                                            "decoded through CLIP during training)", bound=NON_NEGATIVE,
                                       aliases=("--grounding-weight",))
    token_ce_weight: float = option(1.0, "weight of the token cross-entropy on captions with a target (0 = none)",
                                    bound=NON_NEGATIVE)

    @property
    def layout(self) -> AxisLayout:
        """How many axes of each group the n-dim loss reads."""
        return AxisLayout(english=self.k_english, experts=len(self.expert or ()), student=self.m_source)


@dataclass(frozen=True)
class PseudoOptions:
    """Pseudo-parallel targets earned from images: image-pivoted (`data_prep.pivot`) and grounded
    self-training (the image as a judge of the student's own translations)."""
    pivot: bool | None = option(None, "give every caption without a human translation the English caption of its "
                                      "image that agrees best with it through a lexicon induced from images (word "
                                      "level, then sentence level), as a pseudo-parallel target weighted by the "
                                      "agreement (default: on when human translations cover under "
                                      f"{PSEUDO_TARGETS_BELOW:.0%} of the training captions or when over "
                                      f"{TEACHABLE_WORDS_ABOVE:.1%} of the training source words are words no "
                                      "translation shows and the pictures pair with an English phrase)")
    pivot_threshold: float = option(0.5, "least lexical agreement (0..1) for a pivot target", bound=within(0, 1))
    pivot_weight: float = option(1.0, "token cross-entropy weight of a pivot target at agreement 1", bound=NON_NEGATIVE)
    pivot_teaches: str = option("explained", "which words of a pivot target the token cross-entropy scores: 'all', or "
                                       "'explained': those its source caption explains through a lexicon of Dice "
                                       "associations over images (rare words included), and the words between two "
                                       "of them — the names both captions give, not the other caption's phrasing",
                                choices=("all", "explained"))
    pivot_every_name: bool = option(False, "with --pivot-teaches explained, a caption whose agreement misses "
                                           "--pivot-threshold (its names are rare) still gets the English caption of "
                                           "its image with the most words its source explains, teaching those alone, "
                                           "at the threshold's weight")
    pivot_source_words: bool = option(False, "with --pivot-teaches explained, the source caption's words explain a "
                                             "pivot target's words as well as the student's pieces do: a rare word "
                                             "split into pieces that other words share is associated with its "
                                             "English name only as a whole")
    lexicon_pairs: int | None = option(None, "word pairs per batch beside the sentences: each source word that no "
                                             "human translation shows and that 2 or more pictures show, with the "
                                             "English phrase of the same pictures (a lexicon induced through the "
                                             "pictures, data_prep.phrase_lexicon), weighted by --pivot-weight × "
                                             f"their Dice; 0: none (default: {LEXICON_PAIRS} with --pivot, else 0)",
                                       bound=NON_NEGATIVE)
    lexicon_phrase_words: int | None = option(None, "with --lexicon-pairs, pair as well every run of 2 to N source "
                                                    "words that no human translation shows as a whole (a name whose "
                                                    "words translations show one by one) with the English phrase of "
                                                    "its pictures; 1: single words only (default: "
                                                    f"{LEXICON_PHRASE_WORDS} with --lexicon-pairs where human "
                                                    f"translations cover at least {PHRASE_PAIRS_FROM:.0%} of the "
                                                    "training captions, else 1)",
                                              bound=within(1, 6))
    lexicon_explain_away: bool | None = option(
        None, "with --lexicon-pairs, pair as well the source words that one picture shows: with the English phrase of "
              "that picture that no other source word of it already names (each word of 4 or more pictures claims its "
              "best phrase: explaining away, data_prep.phrase_lexicon; default: on with word pairs where human "
              f"translations cover at least {EXPLAIN_AWAY_FROM:.0%} of the training captions, else off)",
        aliases=("--lexicon-explain",))
    pair_rerank: int | None = option(None, "the run translates (its evaluation, python -m translate) by choosing, of "
                                           "the student's N-best beam-search translations, the one that names the "
                                           "most of the English phrases the source's words and phrases are paired "
                                           "with by "
                                           "--lexicon-pairs (then the student's best); 0: greedy decoding (default: "
                                           f"{PAIR_RERANK} with --lexicon-pairs, else 0)", bound=NON_NEGATIVE)
    pair_force: float | None = option(None, "with --pair-rerank, where the chosen translation misses a paired "
                                            "phrase, add candidates that write it at each word boundary and let "
                                            "the student go on; one is kept if the student's score of it (mean "
                                            "log-probability per token) is within this margin of its best "
                                            f"candidate's; 0: off (default: {PAIR_FORCE} with --pair-rerank, else 0)",
                                      bound=NON_NEGATIVE)
    self_train_rounds: int | None = option(None, "rounds in which the student translates the training captions "
                                                 "without a human translation and keeps, as pseudo-parallel targets, "
                                                 "the translations whose CLIP pair ranks their own image first "
                                                 "(default: 2 under the condition of --pivot, else 0)",
                                           bound=NON_NEGATIVE)
    self_train_start: float = option(0.5, "fraction of --steps at which the first round runs (the others are spread "
                                          "evenly over the rest)", bound=within(0, 1, open_high=True))
    self_train_nbest: int = option(8, "beam-search candidates per caption, reranked by CLIP with the image",
                                   bound=at_least(1))
    self_train_group: int = option(32, "images among which a kept translation must rank its own image first",
                                   bound=at_least(2))
    self_train_replace: str = option("agreeing", "what a self-training round does with a caption's pivot target: 'all' "
                                            "(the round's targets replace every pivot target), or 'agreeing' (the "
                                            "round's translation replaces it only when it names every word the pivot "
                                            "target teaches that few pictures show; otherwise the pivot target stays)",
                                     choices=("all", "agreeing"))
    self_train_judge: str = option("clip", "what chooses and keeps the pseudo-parallel translations: 'clip' "
                                           "(reranked with the image, kept when it ranks its own image first), or the "
                                           "no-image controls 'confidence' (the student's best, kept when its "
                                           "log-probability is in the upper half) and 'all' (the student's best, all "
                                           "kept)", choices=("clip", "confidence", "all"))
    rerank_beta: float = option(0.2, "weight of the CLIP image-translation score against the student's "
                                     "log-probability when candidates are reranked", bound=NON_NEGATIVE)
    self_train_lexicon: float = option(1.0, "weight of the source's agreement with a candidate through the lexicon "
                                            "induced from images (data_prep.pivot; 0..1, in nats) when candidates are "
                                            "reranked: penalises content the source does not say", bound=NON_NEGATIVE)
    pseudo_weight: float = option(1.0, "token cross-entropy weight of a pseudo-parallel target (human: 1); the "
                                       "pseudo targets come on top of the human batch, which stays as without images",
                                  bound=NON_NEGATIVE)
    pseudo_anneal: bool = option(False, "the pseudo targets' weights fall linearly to 0 at the last step "
                                        "(x (1 - step/steps)), so the human translations alone teach the last steps; "
                                        "batches without a human target keep their weights")


@dataclass(frozen=True)
class OptimOptions:
    """Stage 1's optimisation: steps, batches, AdamW, precision."""
    steps: int = option(900, "stage 1 steps", bound=NON_NEGATIVE)
    batch_size: int = option(32, "images per step for the n-dim loss (global, over all processes)", bound=at_least(2))
    ce_batch_size: int = option(32, "captions with a target per step for the token cross-entropy (global; fewer when "
                                    "fewer captions have one)", bound=at_least(1))
    lr: float = option(2e-3, "stage 1 peak learning rate (AdamW, warm-up then cosine)", bound=positive())
    weight_decay: float = option(0.01, "AdamW weight decay", bound=NON_NEGATIVE)
    warmup_steps: int | None = option(None, f"linear warm-up steps (default: --steps / {WARMUP_SHARE}, at least "
                                            f"{WARMUP_LEAST} and at most {WARMUP_MOST})", bound=NON_NEGATIVE)
    grad_clip: float = option(1.0, "gradient norm clip (0 = off)", bound=NON_NEGATIVE)
    grad_accum: int = option(1, "batches whose gradients are summed per optimizer step (accelerate's accumulate); "
                                "each batch stays its own contrastive batch of --batch-size", bound=at_least(1))
    mixed_precision: str = option("no", "autocast precision through accelerate (fp16 needs CUDA); the splice and the "
                                        "n-dim loss reduce in fp32", choices=("no", "bf16", "fp16"))
    activation_checkpointing: bool = option(False, "recompute the student's layer activations in backward (its "
                                                   "encoder; its decoder too unless decoding is free-running)")


@dataclass(frozen=True)
class BookkeepingOptions:
    """How often the run logs, validates and checkpoints."""
    log_every: int = option(10, "steps between metric records", bound=at_least(1))
    eval_every: int = option(100, "steps between validation checks (R@1, embedding health)", bound=at_least(1))
    checkpoint_every: int = option(100, "steps between checkpoints", bound=at_least(1))
    keep_checkpoints: int = option(2, "complete checkpoints kept", bound=at_least(1))


@dataclass(frozen=True)
class EvalOptions:
    """The evaluation at the end of the run."""
    evaluate: bool = option(True, "evaluate on the test split at the end (RUN/eval)")
    eval_untrained: bool = option(True, "the evaluation also scores the untrained student (paired tests against it) "
                                        "and fits the test-time linear LM head")
    compare_ce: bool | None = option(None, "also train the token-cross-entropy-only student (the 'ce' recipe: same "
                                           "data, steps and seed, no images) into RUN/baseline-ce and report this run "
                                           "against it (default: on for an embedded-world run that uses images)")
    eval_bootstrap: int = option(1000, "bootstrap resamples for the confidence intervals of the final evaluation",
                                 bound=NON_NEGATIVE)


@dataclass(frozen=True)
class TrainConfig:
    """Every option of a run, by group (`cfg.optim.steps`); `flat()` / `from_flat()` convert to and
    from the flat form of the command line and config.json."""
    dataset: DataOptions = DataOptions()
    run: RunOptions = RunOptions()
    teacher: TeacherOptions = TeacherOptions()
    student: StudentOptions = StudentOptions()
    objective: ObjectiveOptions = ObjectiveOptions()
    pseudo: PseudoOptions = PseudoOptions()
    optim: OptimOptions = OptimOptions()
    bookkeeping: BookkeepingOptions = BookkeepingOptions()
    eval: EvalOptions = EvalOptions()

    def flat(self) -> dict[str, Any]:
        """Every option under its flat name (lists for repeatable options, as JSON holds them)."""
        values = {}
        for group in dataclasses.fields(self):
            for f in dataclasses.fields(getattr(self, group.name)):
                value = getattr(getattr(self, group.name), f.name)
                values[f.name] = list(value) if isinstance(value, tuple) else value
        return values

    @classmethod
    def from_flat(cls, values: dict[str, Any]) -> TrainConfig:
        """A configuration from flat values (unnamed options keep their defaults); unknown names are an error."""
        unknown = set(values) - set(OPTIONS)
        if unknown:
            raise KeyError(f"unknown option(s) {sorted(unknown)}")
        return cls(**{group: kind(**{f.name: _frozen(values[f.name]) for f in dataclasses.fields(kind)
                                     if f.name in values}) for group, kind in GROUPS.items()})

    def replace(self, **values: Any) -> TrainConfig:
        """A copy with the named flat options changed."""
        return TrainConfig.from_flat({**self.flat(), **values})


def _frozen(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


GROUPS: dict[str, type] = {"dataset": DataOptions, "run": RunOptions, "teacher": TeacherOptions,
                           "student": StudentOptions, "objective": ObjectiveOptions, "pseudo": PseudoOptions,
                           "optim": OptimOptions, "bookkeeping": BookkeepingOptions, "eval": EvalOptions}
OPTIONS: dict[str, dataclasses.Field] = {f.name: f for kind in GROUPS.values() for f in dataclasses.fields(kind)}
ALIASES: dict[str, str] = {alias[2:].replace("-", "_"): name for name, f in OPTIONS.items()
                           for alias in f.metadata["aliases"]}  # old name → option

# Named sets of defaults (defaults < --preset < --recipe < --config YAML < command line; config.json
# holds what a run used). `thesis` is the real-size configuration (docs/scaling.md).
PRESETS: dict[str, dict[str, Any]] = {
    "embedded": {},  # the defaults: the embedded synthetic world in minutes on a CPU
    "thesis": dict(clip="ViT-B-32", teacher_steps=0, student_preset="thesis", target_vocab="full", batch_size=256,
                   mixed_precision="bf16"),
}
# A recipe without word pairs names every option that reads them, so that it also replaces the
# values a resolved run gave them (the token-CE twin of --compare-ce is the run's config with "ce").
_NO_PAIRS = dict(lexicon_pairs=0, lexicon_phrase_words=1, lexicon_explain_away=False, pair_rerank=0, pair_force=0.0)
# The long-tail world's targets (`ce+taught`), which `ce+taught+pairs` reads with word pairs.
_TAUGHT = dict(contrastive_weight=0.0, token_ce_weight=1.0, pivot=True, self_train_rounds=2, self_train_nbest=8,
               rerank_beta=0.2, self_train_lexicon=1.0, pseudo_weight=1.0, pseudo_anneal=False, pivot_teaches="explained",
               pivot_every_name=False, pivot_source_words=False, **_NO_PAIRS, self_train_replace="agreeing",
               self_train_start=0.5)
# What teaches the student; each names every option of its recipe (docs/training.md, docs/ablation.md).
RECIPES: dict[str, dict[str, Any]] = {
    "auto": {},  # pivot, self-training and annealing decided by the share of human translations
    "ce": dict(contrastive_weight=0.0, token_ce_weight=1.0, pivot=False, self_train_rounds=0, **_NO_PAIRS,
               pseudo_anneal=False, freeze="both"),
    "ce+contrastive": dict(contrastive_weight=1.0, token_ce_weight=1.0, pivot=False, self_train_rounds=0,
                           **_NO_PAIRS, pseudo_anneal=False),
    "ce+pseudo": dict(contrastive_weight=0.0, token_ce_weight=1.0, pivot=True, self_train_rounds=2,
                      self_train_nbest=8, rerank_beta=0.2, self_train_lexicon=1.0, pseudo_weight=1.0,
                      pseudo_anneal=True, pivot_teaches="all", pivot_every_name=False, pivot_source_words=False,
                      **_NO_PAIRS, self_train_replace="all", self_train_start=0.4),
    "ce+taught": _TAUGHT,
    "ce+taught+pairs": {**_TAUGHT, "lexicon_pairs": LEXICON_PAIRS, "lexicon_phrase_words": None,
                        "lexicon_explain_away": None, "pair_rerank": PAIR_RERANK,  # both by the share of translations
                        "pair_force": None},
    "contrastive": dict(contrastive_weight=1.0, token_ce_weight=0.0, pivot=False, self_train_rounds=0,
                        **_NO_PAIRS, pseudo_anneal=False),
}


def bound_problem(name: str, value: Any, label: str | None = None) -> str | None:
    """Why `value` is out of option `name`'s range (every number must also be finite), else None;
    the message names the option as `label` (default: its flag)."""
    bound = OPTIONS[name].metadata["bound"]
    if value is None or isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    flag = label or "--" + name.replace("_", "-")
    if not math.isfinite(value):
        return f"{flag} must be a finite number, got {value}"
    if bound is not None and not bound.test(value):
        return f"{flag} must be {bound.text}, got {value}"
    return None
