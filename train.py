"""Train a GroundMT student: `accelerate launch train.py --lang es` (DESIGN §4, §6, §9).

Data flows: resolve the dataset (build the embedded synthetic world when none is given) →
stage 0, a CLIP that reads English (real weights, or a tiny teacher trained and cached here) →
stage 1, the Marian student read by CLIP under the n-dim contrastive loss (+ anchor, + token
cross-entropy on captions that have a human translation) → evaluation on the test split →
`RUN/` (config.json, metrics.jsonl, checkpoints/, model/, eval/, report.html).

Every flag has a default that runs the embedded world; `--config FILE.yaml` sets any of them
(same names, `_` or `-`), and command-line flags override the file. `--resume` continues from
the last complete checkpoint with the same data order and RNG state.
"""
from __future__ import annotations

import argparse
import dataclasses
import errno
import hashlib
import json
import os
import re
import shlex
import shutil
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import datasets
import torch
import torch.nn.functional as F
import transformers
import yaml
from accelerate import Accelerator
from accelerate.utils import DataLoaderConfiguration, broadcast_object_list, set_seed
from safetensors import SafetensorError
from tqdm.auto import tqdm
from transformers import AutoTokenizer

from data_prep.__main__ import add_builder_arguments
from data_prep.builders import BUILDERS, get_builder
from data_prep.collate import TrainCollator, scan_usable
from data_prep.errors import InputError, Parser, run_command
from data_prep.load import load_dataset_dir
from data_prep.pivot import agreement, english_words, induce_lexicon, pivot_targets
from data_prep.sampling import StepSampler
from data_prep.source_tokenizer import source_tokenizer_for
from data_prep.synthetic.build import GRAMMARS, build_synthetic
from data_prep.targets import Target, TargetTable
from data_prep.writer import publish, staging_name
from eval.health import collapse_warnings, health_report
from eval.report import build_report
from eval.retrieval import in_batch_recall_at_1
from eval.system_eval import evaluate_system
from models.clip_loading import clip_tokenizer, load_clip
from models.feature_cache import FeatureTable
from models.grounded import GroundedSystem
from models.grounded_selection import select
from models.anchor_bank import AnchorBank
from models.experts import AlignedExpert, TextExpert
from models.ndim_loss import NDimContrastiveLoss
from models.objective import GroundedObjective
from models.run_dir import RunDir, checkpoint_problem, drop_tied_weights
from models.schedules import warmup_cosine
from models.splice import Splice, TemperatureSchedule
from models.student import build_scratch_student, enable_activation_checkpointing, load_pretrained_student
from models.target_vocab import BridgedVocab, ClipShortlist, ClipVocab
from models.teacher import CHECKPOINT_NAME, save_teacher, teacher_key, train_teacher

EMBEDDED_PARALLEL_FRACTION = 0.02
# Pivot and self-trained targets are on by default only below this share of training captions with a
# human translation: in the ablation (es, zh) they won at P <= 0.02 and, annealed, ended 0.2-1.2 chrF below
# token CE alone at P >= 0.05 but one (zh, P = 0.05: +0.8) (docs/ablation.md).
PSEUDO_TARGETS_BELOW = 0.03
SYNTHETIC_LANGS = tuple(sorted(set(GRAMMARS) - {"en"}))

HELP_EPILOG = """examples:
  accelerate launch train.py --lang es
  accelerate launch train.py --lang zh --data coco-cn --data-dir DATA --clip ViT-B-32 \\
      --clip-pretrained PATH --student scratch --out runs/coco-cn
  accelerate launch --multi_gpu --num_processes 2 train.py --steps 20   # 2 processes (gloo on a CPU machine)
  accelerate launch train.py --out runs/NAME --resume
"""


def _flag(default, help: str, **kw):
    return field(default=default, metadata={"help": help, **kw})


# Named sets of defaults (defaults < --preset < --config YAML < command line; the values a run used
# are in RUN/config.json). `thesis` is the real-size configuration of DESIGN §4 (docs/scaling.md).
PRESETS: dict[str, dict] = {
    "embedded": {},  # the TrainConfig defaults: the embedded synthetic world in minutes on a CPU
    "thesis": dict(clip="ViT-B-32", teacher_steps=0, student_preset="thesis", target_vocab="full", batch_size=256,
                   mixed_precision="bf16"),
}


@dataclass
class TrainConfig:
    """Every training option; the defaults run the embedded synthetic world in minutes on a CPU."""
    # data
    lang: str = _flag("es", "source language (the embedded world has es and zh)")
    data: str = _flag("synthetic", "dataset builder name (synthetic, coco-cn, coco-es, coco-mt, multi30k, xm3600, "
                                   "imagefolder)")
    data_dir: str | None = _flag(None, "a dataset built by `python -m data_prep`, or the raw files of --data "
                                       "(then built once into the cache)")
    data_args: str = _flag("", "extra builder arguments when --data-dir holds raw files, e.g. \"--coco-dir COCO\"")
    synthetic_images: int = _flag(2000, "images in the embedded synthetic world")
    parallel_fraction: float | None = _flag(None, "fraction of training source captions that keep their human "
                                                  "translation (a hashed, nested subset; default: all the dataset "
                                                  f"has, and {EMBEDDED_PARALLEL_FRACTION} for the embedded world, "
                                                  "which is built with a translation for every caption)")
    source_vocab: int = _flag(1000, "SentencePiece vocabulary size for the source language (an upper bound)")
    # run
    preset: str = _flag("embedded", "named defaults: 'thesis' = CLIP ViT-B-32, Marian-size student, all 49,408 CLIP "
                                    "BPE ids, batch 256, bf16 (docs/scaling.md); other flags override it",
                        choices=tuple(PRESETS))
    out: str | None = _flag(None, "run directory (default: runs/DATA-LANG-TIMESTAMP)")
    resume: bool = _flag(False, "continue the run in --out (default: the newest runs/DATA-LANG-*) from its last "
                                "complete checkpoint")
    seed: int = _flag(0, "seed of models, data order and sampling")
    cache_dir: str | None = _flag(None, "where built datasets and CLIP teachers are cached (default: "
                                        "$GROUNDMT_CACHE or ~/.cache/groundmt)")
    quiet: bool = _flag(False, "no progress bars")
    threads: int = _flag(0, "CPU threads per process; 0 = the machine's cores shared among this machine's processes "
                            "(`accelerate launch` alone would pin each process to 1 thread)")
    # CLIP and stage 0
    clip: str = _flag("groundmt-tiny", "open_clip architecture name")
    clip_pretrained: str | None = _flag(None, "an open_clip checkpoint file with the CLIP weights (skips stage 0)")
    teacher_steps: int = _flag(300, "stage 0: steps of the tiny CLIP teacher when no --clip-pretrained is given; "
                                    "0 = no stage 0: a randomly initialised CLIP (said loudly in the log)")
    teacher_batch_size: int = _flag(64, "stage 0 batch size")
    teacher_lr: float = _flag(1e-3, "stage 0 learning rate")
    freeze: str = _flag("both", "CLIP towers kept frozen in stage 1 (see docs/training.md)",
                        choices=("both", "image", "text", "none"))
    tower_lr: float = _flag(0.0, "peak learning rate of the CLIP towers that --freeze leaves trainable (0 = --lr)")
    # student
    student: str = _flag("scratch", "'scratch' (decoder vocabulary = CLIP BPE) or a local MarianMT directory")
    student_preset: str = _flag("tiny", "size of a scratch student (micro, tiny, thesis)")
    dropout: float = _flag(0.1, "dropout of a scratch student (MarianConfig.dropout)")
    target_vocab: str = _flag("corpus", "a scratch student's decoder vocabulary: the CLIP BPE ids of the training "
                                        "split's English text (a shortlist, much faster), or all of CLIP's BPE",
                              choices=("corpus", "full"))
    max_target_length: int = _flag(0, "CLIP positions (SOT and EOT included) a translation may use; 0 = the longest "
                                      "training English caption + 2, at most CLIP's context length")
    splice: str = _flag("gumbel", "how the student's output reaches CLIP", choices=("gumbel", "linear", "soft", "argmax"))
    tau_start: float = _flag(1.0, "Gumbel/softmax temperature at step 0")
    tau_end: float = _flag(0.5, "temperature at the last step (exponential schedule)")
    eot_finder: str = _flag("prob", "where the CLIP tower pools the student's sequence",
                            choices=("prob", "argmax", "gumbel"))
    decoding: str = _flag("free-running", "student decoding during training",
                          choices=("free-running", "teacher-forced", "parallel-bos"))
    # stage 1 objective
    k_english: int = _flag(2, "English caption axes per image")
    m_source: int = _flag(2, "student axes per image (source captions translated)")
    similarity: str = _flag("v4", "n-way similarity (v0..v16, gram, pairwise)")
    labels: str = _flag("diagonal", "label scheme", choices=("diagonal", "exact", "regions", "smoothed", "sigmoid"))
    anchor: str = _flag("none", "anchor term between student and English axes", choices=("none", "cosine", "mse"))
    anchor_weight: float = _flag(1.0, "weight of the anchor term")
    expert: list[str] | None = _flag(None, "an extra frozen English text expert as an axis of the n-dim loss "
                                           "(repeatable): 'minilm' (the packaged all-MiniLM-L6-v2) or a local "
                                           "transformers encoder directory, mapped into the CLIP text space by "
                                           "centred orthogonal Procrustes fitted on the training captions")
    anchor_bank: int = _flag(0, "learnable anchors on the hypersphere pulling the student's CLIP features "
                                "(InfoNCE to the nearest anchor; 0 = none); their health is logged at validation")
    anchor_bank_weight: float = _flag(0.1, "weight of the anchor-bank term")
    lsa_weight: float = _flag(0.0, "weight of the LSA loss (thesis §6.7) on the student ↔ image logits")
    grounding_weight: float = _flag(0.0, "weight of the n-dim contrastive loss (0 = none: the student is not decoded "
                                         "through CLIP during training; measured, the loss as the driver hurts "
                                         "translation, docs/ablation.md)")
    token_ce_weight: float = _flag(1.0, "weight of the token cross-entropy on captions with a target (0 = purely "
                                        "grounded)")
    # image-pivoted pseudo-parallel pairs (data_prep.pivot)
    pivot: bool | None = _flag(None, "give every caption without a human translation the English caption of its "
                                      "image that agrees best with it through a lexicon induced from images (word "
                                      "level, then sentence level), as a pseudo-parallel target weighted by the "
                                      "agreement (default: on when human translations cover under "
                                      f"{PSEUDO_TARGETS_BELOW:.0%} of the training captions, docs/ablation.md)")
    pivot_threshold: float = _flag(0.5, "least lexical agreement (0..1) for a pivot target")
    pivot_weight: float = _flag(1.0, "token cross-entropy weight of a pivot target at agreement 1")
    # grounded self-training (DESIGN §11): the image as a filter of the student's own translations
    self_train_rounds: int | None = _flag(None, "rounds in which the student translates the training captions "
                                                "without a human translation and keeps, as pseudo-parallel targets, "
                                                "the translations whose CLIP pair ranks their own image first "
                                                f"(default: 2 when human translations cover under "
                                                f"{PSEUDO_TARGETS_BELOW:.0%} of the training captions, else 0)")
    self_train_start: float = _flag(0.4, "fraction of --steps at which the first round runs (the others are spread "
                                         "evenly over the rest)")
    self_train_nbest: int = _flag(8, "beam-search candidates per caption, reranked by CLIP with the image")
    self_train_group: int = _flag(32, "images among which a kept translation must rank its own image first")
    self_train_judge: str = _flag("clip", "what chooses and keeps the pseudo-parallel translations: 'clip' (reranked "
                                          "with the image, kept when it ranks its own image first), or the no-image "
                                          "controls 'confidence' (the student's best, kept when its log-probability "
                                          "is in the upper half) and 'all' (the student's best, all kept)",
                                  choices=("clip", "confidence", "all"))
    rerank_beta: float = _flag(0.2, "weight of the CLIP image-translation score against the student's "
                                    "log-probability when candidates are reranked")
    self_train_lexicon: float = _flag(1.0, "weight of the source's agreement with a candidate through the lexicon "
                                           "induced from images (data_prep.pivot; 0..1, in nats) when candidates "
                                           "are reranked: penalises content the source does not say")

    pseudo_weight: float = _flag(1.0, "token cross-entropy weight of a pseudo-parallel target (human: 1); the "
                                      "pseudo targets come on top of the human batch, which stays as without images")
    pseudo_anneal: bool | None = _flag(None, "the pseudo targets' weights fall linearly to 0 at the last step "
                                              "(x (1 - step/steps)), so the human translations alone teach the last "
                                              "steps; batches without a human target keep their weights (default: on "
                                              "whenever pivot or self-training targets are made)")
    # optimisation
    steps: int = _flag(300, "stage 1 steps (300 on the embedded world: the ablation's setting; at 500 the default "
                            "recipe lost to token CE alone at P = 0.02, docs/ablation.md)")
    batch_size: int = _flag(32, "images per step for the n-dim loss (global, over all processes)")
    ce_batch_size: int = _flag(32, "captions with a target per step for the token cross-entropy (global; fewer when "
                                   "fewer captions have one)")
    lr: float = _flag(2e-3, "stage 1 peak learning rate (AdamW, warm-up then cosine)")
    weight_decay: float = _flag(0.01, "AdamW weight decay")
    warmup_steps: int = _flag(20, "linear warm-up steps")
    grad_clip: float = _flag(1.0, "gradient norm clip (0 = off)")
    grad_accum: int = _flag(1, "batches whose gradients are summed per optimizer step (accelerate's accumulate); "
                               "each batch stays its own contrastive batch of --batch-size")
    mixed_precision: str = _flag("no", "autocast precision through accelerate (fp16 needs CUDA); the splice and the "
                                       "n-dim loss reduce in fp32", choices=("no", "bf16", "fp16"))
    activation_checkpointing: bool = _flag(False, "recompute the student's layer activations in backward (its "
                                                  "encoder; its decoder too unless decoding is free-running)")
    # bookkeeping
    log_every: int = _flag(10, "steps between metric records")
    eval_every: int = _flag(100, "steps between validation checks (R@1, embedding health)")
    checkpoint_every: int = _flag(100, "steps between checkpoints")
    keep_checkpoints: int = _flag(2, "complete checkpoints kept")
    evaluate: bool = _flag(True, "evaluate on the test split at the end (RUN/eval)")
    eval_untrained: bool = _flag(True, "the evaluation also scores the untrained student (paired tests against it) "
                                       "and fits the test-time linear LM head")
    compare_ce: bool | None = _flag(None, "also train the token-cross-entropy-only student (same data, steps and seed, "
                                          "no images) into RUN/baseline-ce and report this run against it (default: "
                                          "on for a grounded run of the embedded world)")
    eval_bootstrap: int = _flag(1000, "bootstrap resamples for the confidence intervals of the final evaluation")

    @property
    def n_axes(self) -> int:
        return 1 + self.k_english + len(self.expert or ()) + self.m_source

    @property
    def student_axis(self) -> int:
        """Index of the first student axis: after the image, the English captions and the experts."""
        return 1 + self.k_english + len(self.expert or ())


def build_parser(defaults: bool = True) -> argparse.ArgumentParser:
    """Every TrainConfig field as a flag; `defaults=False` leaves unset flags out of the namespace
    (to see which options a command line names)."""
    parser = Parser(
        prog="accelerate launch train.py", description=__doc__.split("\n\n")[0],
        epilog=HELP_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", metavar="FILE.yaml", default=None if defaults else argparse.SUPPRESS,
                        help="YAML file of options (command-line flags override it)")
    for f in dataclasses.fields(TrainConfig):
        name = "--" + f.name.replace("_", "-")
        meta = dict(f.metadata)
        help_text = (meta.pop("help") + (f" (default: {f.default})" if f.default not in (None, "") else "")
                     ).replace("%", "%%")  # argparse %-formats help texts: "3%" is literal
        default = f.default if defaults else argparse.SUPPRESS
        if f.type == "list[str] | None":
            parser.add_argument(name, action="append", default=default, help=help_text)
        elif f.type in ("bool", bool, "bool | None"):
            parser.add_argument(name, action=argparse.BooleanOptionalAction, default=default, help=help_text)
        else:
            kind = {"int": int, "int | None": int, "float": float, "float | None": float}.get(f.type, str)
            parser.add_argument(name, type=kind, default=default, help=help_text, **meta)
    return parser


def yaml_argv(path: str, parser: argparse.ArgumentParser) -> list[str]:
    """The options of a YAML file as command-line tokens, so they pass the same type and choice
    checks as flags (`steps: 2.7` is refused as an int would be on the command line)."""
    try:
        loaded = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        parser.error(f"--config {path}: {exc.strerror or exc}")
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        parser.error(f"--config {path} is not valid YAML ({str(exc).splitlines()[0]})")
    if loaded is None:
        return []
    if not isinstance(loaded, dict):
        parser.error(f"--config {path} must hold a mapping of option: value, not a {type(loaded).__name__}")
    fields = {f.name: f for f in dataclasses.fields(TrainConfig)}
    argv = []
    for key, value in loaded.items():
        name = str(key).replace("-", "_")
        if name not in fields:
            parser.error(f"--config {path}: unknown option {key!r}")
        flag = "--" + name.replace("_", "-")
        if fields[name].type in ("bool", bool):
            if not isinstance(value, bool):
                parser.error(f"--config {path}: {key} must be true or false, got {value!r}")
            argv.append(flag if value else "--no-" + flag[2:])
        elif value is None:
            if fields[name].default is not None:
                parser.error(f"--config {path}: {key} needs a value")
        elif fields[name].type == "list[str] | None" and isinstance(value, list):
            argv += [token for item in value for token in (flag, str(item))]
        elif isinstance(value, (dict, list, bool)):
            parser.error(f"--config {path}: {key} must be a single value, got {value!r}")
        else:
            argv += [flag, str(value)]
    return argv


def parse_config(argv: list[str] | None = None) -> TrainConfig:
    """Defaults < --preset < YAML file < command line; then the combinations that cannot train are
    refused."""
    parser = build_parser()
    parser.set_defaults(preset=None)  # tells a preset that was asked for from the default
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser.parse_args(argv)
    argv = (yaml_argv(args.config, parser) if args.config else []) + argv
    preset = parser.parse_args(argv).preset or "embedded"
    parser.set_defaults(**PRESETS[preset], preset=preset)
    args = parser.parse_args(argv)
    cfg = TrainConfig(**{f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig)})
    problem = config_problem(cfg)
    if problem:
        parser.error(problem)
    return cfg


def config_problem(cfg: TrainConfig) -> str | None:
    """Why this configuration cannot train, in one line (None when it can)."""
    positive = {"batch_size": 2, "ce_batch_size": 1, "teacher_batch_size": 2, "log_every": 1, "eval_every": 1,
                "checkpoint_every": 1, "keep_checkpoints": 1, "source_vocab": 8, "self_train_nbest": 1,
                "self_train_group": 2, "synthetic_images": 3}
    for name, least in positive.items():
        if getattr(cfg, name) < least:
            return f"--{name.replace('_', '-')} must be at least {least}, got {getattr(cfg, name)}"
    for name in ("steps", "teacher_steps", "max_target_length", "warmup_steps", "grad_clip", "weight_decay",
                 "eval_bootstrap", "grounding_weight", "token_ce_weight", "anchor_weight", "pivot_weight",
                 "pseudo_weight", "rerank_beta", "self_train_lexicon", "self_train_rounds", "anchor_bank_weight", "lsa_weight", "k_english", "threads"):
        if (getattr(cfg, name) or 0) < 0:
            return f"--{name.replace('_', '-')} must not be negative, got {getattr(cfg, name)}"
    if cfg.data == "synthetic" and cfg.data_dir is None and cfg.lang not in SYNTHETIC_LANGS:
        return (f"--lang {cfg.lang}: the embedded world speaks {', '.join(SYNTHETIC_LANGS)}; for another language "
                "pass --data and --data-dir (docs/data.md)")
    if not 0 <= cfg.dropout < 1:
        return f"--dropout must be in [0, 1), got {cfg.dropout}"
    if cfg.expert and (cfg.grounding_weight == 0 or cfg.freeze not in ("both", "text") or not cfg.k_english):
        return ("--expert adds an axis to the n-dim loss beside the English captions' frozen features: it needs "
                "--grounding-weight > 0, --k-english >= 1 and --freeze both or text")
    if (cfg.anchor_bank or cfg.lsa_weight) and cfg.grounding_weight == 0:
        return "--anchor-bank and --lsa-weight act on the student's CLIP features: they need --grounding-weight > 0"
    if cfg.anchor_bank == 1 or cfg.anchor_bank < 0:
        return f"--anchor-bank must be 0 (none) or at least 2 anchors, got {cfg.anchor_bank}"
    if cfg.grad_accum < 1:
        return f"--grad-accum must be at least 1, got {cfg.grad_accum}"
    if cfg.mixed_precision == "fp16" and not torch.cuda.is_available():
        return "--mixed-precision fp16 needs CUDA (fp16 autocast with loss scaling); use bf16 on a CPU"
    if cfg.lr <= 0 or cfg.teacher_lr <= 0:
        return "--lr and --teacher-lr must be positive"
    if cfg.tau_start <= 0 or cfg.tau_end <= 0:
        return "--tau-start and --tau-end must be positive (Gumbel/softmax temperatures)"
    if cfg.parallel_fraction is not None and not 0 <= cfg.parallel_fraction <= 1:
        return f"--parallel-fraction must be in [0, 1], got {cfg.parallel_fraction}"
    if not 0 <= cfg.self_train_start < 1:
        return f"--self-train-start must be in [0, 1), got {cfg.self_train_start}"
    if not 0 <= cfg.pivot_threshold <= 1:
        return f"--pivot-threshold must be in [0, 1], got {cfg.pivot_threshold}"
    if cfg.grounding_weight > 0 and cfg.m_source < 1:
        return "--m-source must be at least 1: the grounded term reads the student's translations"
    if cfg.grounding_weight == 0 and cfg.freeze != "both":
        return f"--freeze {cfg.freeze} trains CLIP towers through the n-dim loss, which --grounding-weight 0 turns off"
    if cfg.steps and cfg.grounding_weight == 0 and cfg.token_ce_weight == 0:
        return "--grounding-weight 0 and --token-ce-weight 0 leave nothing to train"
    if cfg.splice == "argmax" and cfg.token_ce_weight == 0 and cfg.freeze == "both" and cfg.steps:
        return "--splice argmax passes no gradient to the student: with --token-ce-weight 0 nothing trains it"
    if cfg.token_ce_weight == 0 and (cfg.pivot or cfg.self_train_rounds):
        return ("--pivot and --self-train-rounds (on by default) make targets for the token cross-entropy, which "
                "--token-ce-weight 0 turns off: add --no-pivot --self-train-rounds 0")
    return None


# Options a resumed run may change; every other option comes from the run's config.json.
RESUME_MAY_CHANGE = ("steps", "log_every", "eval_every", "checkpoint_every", "keep_checkpoints", "evaluate",
                     "eval_bootstrap", "eval_untrained", "quiet", "threads", "cache_dir", "out", "resume")


def resumed_config(cfg: TrainConfig, run: RunDir, argv: list[str]) -> TrainConfig:
    """The configuration of the run being resumed: its config.json (every derived value included),
    with the options in RESUME_MAY_CHANGE that the command line (or --config) names. Any other
    option named with a different value is refused, naming the conflict."""
    saved = run.read_config()
    given = vars(build_parser(defaults=False).parse_args(argv))
    if "config" in given:
        given = vars(build_parser(defaults=False).parse_args(yaml_argv(given["config"], build_parser()) + argv))
    conflicts = [f"--{k.replace('_', '-')} {v} (the run has {saved.get(k)})" for k, v in given.items()
                 if k not in (*RESUME_MAY_CHANGE, "config") and k in saved and saved[k] != v]
    if conflicts:
        may_change = ", ".join("--" + k.replace("_", "-") for k in RESUME_MAY_CHANGE[:-2])
        raise InputError(f"--resume continues {run.root} as configured in its config.json; these options differ: "
                         f"{'; '.join(conflicts)}. Only {may_change} may change")
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    values = {"pseudo_anneal": False}  # runs saved before the option existed trained without it
    values.update({k: v for k, v in saved.items() if k in fields})
    values.update({k: getattr(cfg, k) for k in RESUME_MAY_CHANGE if k in given})
    values["resume"] = True
    return TrainConfig(**values)


def check_inputs(cfg: TrainConfig) -> None:
    """Files and names the options point at exist, before anything is written."""
    try:
        clip_tokenizer(cfg.clip)
    except (ValueError, RuntimeError) as exc:
        raise InputError(f"--clip: {exc}") from None
    if cfg.clip_pretrained and not Path(cfg.clip_pretrained).is_file():
        raise InputError(f"--clip-pretrained {cfg.clip_pretrained}: no such file (an open_clip checkpoint file)")
    if cfg.student != "scratch" and not (Path(cfg.student) / "config.json").is_file():
        raise InputError(f"--student {cfg.student}: not a MarianMT directory (no config.json); pass 'scratch' or a "
                         "directory written by save_pretrained")


# -- data ---------------------------------------------------------------------------------------
def cache_root(cfg: TrainConfig) -> Path:
    return Path(cfg.cache_dir or os.environ.get("GROUNDMT_CACHE") or Path.home() / ".cache" / "groundmt")


def resolve_data(cfg: TrainConfig, is_main: bool, log: Callable[[str], None]) -> Path:
    """The dataset directory to train on; built here (once, cached) for the synthetic world or raw files.

    Fails before any model is built when the data is missing, naming the builder command."""
    if cfg.data not in BUILDERS:
        raise InputError(f"unknown --data {cfg.data!r}; choose one of {sorted(BUILDERS)}")
    if cfg.data == "synthetic" and cfg.data_dir is None:
        path = cache_root(cfg) / "data" / f"synthetic-{cfg.lang}-{cfg.synthetic_images}-seed{cfg.seed}-translated"
        if is_main and not (path / "dataset_dict.json").is_file():
            log(f"building the embedded synthetic world ({cfg.synthetic_images} images, {cfg.lang}) at {path}")
            tmp = staging_name(path)
            build_synthetic(tmp, lang=cfg.lang, images=cfg.synthetic_images, seed=cfg.seed, parallel_fraction=1.0,
                            show_progress=not cfg.quiet)
            publish(tmp, path)
        return path
    if cfg.data_dir is None:
        raise InputError(f"--data {cfg.data} needs --data-dir: a dataset built with `python -m data_prep {cfg.data} "
                         f"--data-dir RAW_FILES --out DATASET`, or the raw files themselves (see `python -m data_prep "
                         f"{cfg.data} --help`)")
    data_dir = Path(cfg.data_dir)
    if (data_dir / "dataset_dict.json").is_file():
        return data_dir
    if not data_dir.is_dir():
        raise InputError(f"--data-dir {data_dir} does not exist. Build the dataset first: `python -m data_prep "
                         f"{cfg.data} --data-dir RAW_FILES --out {data_dir}` (or pass the raw {cfg.data} files as "
                         f"--data-dir; layout: `python -m data_prep {cfg.data} --help`)")
    builder = get_builder(cfg.data)
    key = hashlib.sha256(f"{data_dir.resolve()}|{cfg.lang}|{cfg.data_args}".encode()).hexdigest()[:12]
    path = cache_root(cfg) / "data" / f"{cfg.data}-{key}"
    if is_main and not (path / "dataset_dict.json").is_file():
        parser = Parser(prog=f"--data-args for python -m data_prep {cfg.data}")
        add_builder_arguments(parser, builder)
        tmp = staging_name(path)
        argv = ["--data-dir", str(data_dir), "--out", str(tmp), *shlex.split(cfg.data_args)]
        if any(a.option_strings == ["--lang"] for a in parser._actions) and "--lang" not in argv:
            argv += ["--lang", cfg.lang]
        args = parser.parse_args(argv + (["--quiet"] if cfg.quiet else []))
        log(f"building {cfg.data} from {data_dir} into {path}")
        builder.build(args)  # a wrong layout is an InputError saying what the builder expected
        publish(tmp, path)
    return path


def resolve_run_dir(cfg: TrainConfig) -> Path:
    if cfg.out:
        return Path(cfg.out)
    prefix = f"{cfg.data}-{cfg.lang}-"
    if cfg.resume:
        runs = sorted(p for p in Path("runs").glob(prefix + "*") if (p / "config.json").is_file())
        if not runs:
            raise InputError(f"--resume without --out, and no run runs/{prefix}* to resume")
        return runs[-1]
    return Path("runs") / (prefix + time.strftime("%Y%m%d-%H%M%S"))


@dataclass
class TrainingData:
    """The dataset of a run, checked row by row, with the training targets and the source tokenizer."""
    path: Path
    splits: datasets.DatasetDict
    scans: dict  # split -> ScanResult (usable rows, counted skips)
    targets: TargetTable  # human translations at --parallel-fraction (+ pivot targets with --pivot)
    n_captions: int  # training source captions
    source_tokenizer: object | None  # None: a pretrained student reads its own

    @property
    def train(self) -> datasets.Dataset:
        return self.splits["train"]

    @property
    def train_rows(self) -> list[int]:
        return self.scans["train"].usable

    def english_captions(self) -> list[str]:
        return [t for row in self.train.select(self.train_rows)["english"] for t in row if t.strip()]


def load_training_data(cfg: TrainConfig, accelerator, log: Callable[[str], None], show: bool) -> TrainingData:
    """Build or load the dataset, find its usable rows, choose the training targets, and resolve the
    options derived from the data (`--parallel-fraction`, `--pivot`, `--self-train-rounds`,
    `--max-target-length`) into `cfg`."""
    path = resolve_data(cfg, accelerator.is_main_process, log)
    accelerator.wait_for_everyone()  # the main process may have been building it
    dsd = load_dataset_dir(path)
    for split in ("train", "validation", "test"):
        if split not in dsd or len(dsd[split]) == 0:
            raise InputError(f"{path} has no {split!r} rows; rebuild it with python -m data_prep")
    scans = {split: scan_usable(dsd[split], need_english=1, show_progress=show) for split in ("train", "validation", "test")}
    for split, scan in scans.items():
        log(f"{split}: {scan.summary()}")
    rows = scans["train"].usable
    if len(rows) < cfg.batch_size:
        raise InputError(f"only {len(rows)} usable training rows for --batch-size {cfg.batch_size}")
    if cfg.parallel_fraction is None and cfg.data == "synthetic" and cfg.data_dir is None:
        cfg.parallel_fraction = EMBEDDED_PARALLEL_FRACTION
    try:
        targets = TargetTable.from_dataset(dsd["train"], rows, fraction=cfg.parallel_fraction, seed=cfg.seed)
    except ValueError as exc:
        raise InputError(str(exc)) from None
    sources = [s for row in dsd["train"].select(rows)["source"] for s in row if s.strip()]
    resolve_recipe(cfg, len(targets) / max(1, len(sources)), log)
    source_tokenizer = (source_tokenizer_for(path, sources, vocab_size=cfg.source_vocab)
                        if cfg.student == "scratch" else None)
    if cfg.pivot:
        pieces = (source_tokenizer or AutoTokenizer.from_pretrained(cfg.student)).tokenize
        lexicon = induce_lexicon(dsd["train"], rows, pieces)
        targets = targets.with_pseudo(pivot_targets(dsd["train"], rows, lexicon, pieces, skip=targets.human_keys(),
                                                    threshold=cfg.pivot_threshold, weight=cfg.pivot_weight))
    log(f"train: {targets.summary(len(sources))}")
    data = TrainingData(path, dsd, scans, targets, len(sources), source_tokenizer)
    if not cfg.max_target_length:
        texts = data.english_captions() + [t.text for _, t in targets]
        tokenize = clip_tokenizer(cfg.clip)
        cfg.max_target_length = min(tokenize.context_length, int((tokenize(texts) != 0).sum(1).max()) + 2)
    return data


def resolve_recipe(cfg: TrainConfig, human_share: float, log: Callable[[str], None]) -> None:
    """`--pivot` and `--self-train-rounds` left unset: on when human translations are scarce
    (`PSEUDO_TARGETS_BELOW`) and the token CE trains, off otherwise; `--pseudo-anneal` unset: on
    whenever pseudo targets are made. The choice is logged."""
    decided = cfg.pivot is not None and cfg.self_train_rounds is not None
    below = human_share < PSEUDO_TARGETS_BELOW
    scarce = below and cfg.token_ce_weight > 0
    if cfg.pivot is None:
        cfg.pivot = scarce
    if cfg.self_train_rounds is None:
        cfg.self_train_rounds = 2 if scarce else 0
    if cfg.pseudo_anneal is None:
        cfg.pseudo_anneal = bool(cfg.pivot or cfg.self_train_rounds)
    if not decided:
            log(f"recipe: human translations for {human_share:.1%} of the training captions "
            f"({'under' if below else 'at least'} {PSEUDO_TARGETS_BELOW:.0%}): "
            f"pivot {'on' if cfg.pivot else 'off'}, {cfg.self_train_rounds} self-training round(s)"
            + (", pseudo targets annealed" if cfg.pseudo_anneal else ""))


# -- training -----------------------------------------------------------------------------------
class StopSignal:
    """While active, SIGTERM / SIGINT set a flag; the loop checkpoints and exits at the next step
    boundary. A second signal stops at once. The previous handlers come back on exit."""

    def __init__(self):
        self.signum = None
        self._previous = {}

    def __enter__(self) -> StopSignal:
        for sig in (signal.SIGTERM, signal.SIGINT):
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    def _handle(self, signum, frame):
        if self.signum is not None:
            raise KeyboardInterrupt
        self.signum = signum


def stop_requested(stop: StopSignal, accelerator) -> bool:
    """True on every process once any process got a signal (they must checkpoint together)."""
    if accelerator.num_processes == 1:
        return stop.signum is not None

    flag = torch.tensor([float(stop.signum is not None)], device=accelerator.device)
    return bool(accelerator.reduce(flag, "max").item())


def batch_r1(query, gallery) -> float:
    """R@1 of `query` rows retrieving their own `gallery` row inside this batch (ties as expected hits)."""
    return in_batch_recall_at_1(gallery.detach(), query.detach(), batch_size=len(query))["b2a"]


def main(argv: list[str] | None = None) -> int:
    """`accelerate launch train.py ...`: bad input is one line and exit code 2, Ctrl-C exit 130."""
    return run_command(lambda: train(argv))


def train(argv: list[str] | None = None) -> int:
    """Setup → data → stage 0 → stage 1 (build, resume, loop) → export, evaluation, report."""
    argv = sys.argv[1:] if argv is None else list(argv)
    cfg = parse_config(argv)
    run_path = [str(resolve_run_dir(cfg))]
    resuming = cfg.resume and RunDir(run_path[0]).config.is_file()
    if resuming:  # the run's config.json is the truth; only RESUME_MAY_CHANGE options may differ
        cfg = resumed_config(cfg, RunDir(run_path[0]), argv)
    check_inputs(cfg)
    accelerator = make_accelerator(cfg, run_path[0])
    broadcast_object_list(run_path)  # one (timestamped) name for every process
    run = RunDir(run_path[0])
    if run.config.is_file() and not resuming:  # every process stops, before any writes
        raise InputError(f"{run.root} already holds a run; pass --resume to continue it, or a new --out")
    accelerator.project_configuration.project_dir = str(run.root)
    main_proc = accelerator.is_main_process
    show = main_proc and not cfg.quiet
    quiet_libraries(show)
    log = RunLog(main_proc)
    set_seed(cfg.seed)
    if accelerator.device.type == "cpu":
        local = int(os.environ.get("LOCAL_WORLD_SIZE", accelerator.num_processes))
        torch.set_num_threads(cfg.threads or max(1, (os.cpu_count() or 1) // max(1, local)))

    # Data: built or loaded, checked row by row, targets chosen; every derived option resolved.
    data = load_training_data(cfg, accelerator, log, show)
    if cfg.compare_ce is None:  # the embedded run shows what the images add (DESIGN §9)
        cfg.compare_ce = (cfg.data == "synthetic" and cfg.data_dir is None
                          and (cfg.grounding_weight > 0 or cfg.pivot or cfg.self_train_rounds > 0))
    if not resuming:
        if main_proc:
            run.create()
            run.write_config({**dataclasses.asdict(cfg), "out": str(run.root), "run_id": run.root.name,
                              "data_path": str(data.path), "world_size": accelerator.num_processes})
            log.open(run.root / "train.log")
        accelerator.wait_for_everyone()
    log(f"run {run.root} ({'resuming' if resuming else 'new'}), data {data.path}, "
        f"{accelerator.num_processes} process(es) on {accelerator.device}")

    with StopSignal() as stop:
        # Stage 0: a CLIP that reads English.
        stage0 = stage0_clip(cfg, accelerator, data, log, show, stop=lambda: stop_requested(stop, accelerator))
        if stage0 is None:
            log(f"stopped by a signal during stage 0: its state is saved; continue with "
                f"`accelerate launch train.py --out {run.root} --resume`")
            return 128 + (stop.signum or signal.SIGTERM)
        clip, preprocess, clip_tokenizer, clip_weights = stage0
        # Stage 1: the student read by CLIP. Seeded again, so that it does not depend on whether
        # stage 0 trained the teacher in this process or found it cached.
        set_seed(cfg.seed)
        stage1 = Stage1(cfg, accelerator, data, clip, preprocess, clip_tokenizer, log, show)
        start = 0
        if resuming:
            start = stage1.resume_from_checkpoint(run)
            if main_proc:
                run.write_config({**run.read_config(), **{k: getattr(cfg, k) for k in RESUME_MAY_CHANGE if k in
                                                          dataclasses.asdict(cfg)}})
                log.open(run.root / "train.log")
                log(f"resumed at step {start}" if start else "--resume: no complete checkpoint yet, starting from "
                                                              "step 0")
        if main_proc:
            accelerator.init_trackers("tensorboard", config={k: v if isinstance(v, (int, float, str, bool)) else str(v)
                                                             for k, v in dataclasses.asdict(cfg).items()})
        signum = stage1.train(run, start, stop)
        if signum:
            log(f"stopped by a signal after step {stage1.done}: checkpoint saved; continue with "
                f"`accelerate launch train.py --out {run.root} --resume`")
            accelerator.end_training()
            return 128 + signum
    if start >= cfg.steps:
        log(f"run already complete at step {start}")
    accelerator.wait_for_everyone()
    if main_proc:
        stage1.finish(run, clip_weights, report=not cfg.compare_ce)  # with a baseline: the report comes after it
    accelerator.end_training()
    if cfg.compare_ce:
        baseline = run.root / "baseline-ce"
        log(f"training the token-CE-only baseline (same data, steps and seed) in {baseline}")
        code = train(baseline_argv(cfg, baseline))
        if code:
            return code
        if main_proc and cfg.evaluate:
            log(compare_with_baseline(run, RunDir(baseline)))
            write_report(run, log, baseline=baseline)
    return 0


def baseline_argv(cfg: TrainConfig, out: Path) -> list[str]:
    """The command line of the `ce` baseline of this run: its configuration without images —
    no n-dim loss, no pivot, no self-training, frozen towers — into `out` (resumed when started)."""
    values = {**dataclasses.asdict(cfg), "grounding_weight": 0.0, "pivot": False, "self_train_rounds": 0,
              "freeze": "both", "compare_ce": False, "out": str(out), "resume": (out / "config.json").is_file(),
              "config": None}
    argv = []
    for f in dataclasses.fields(TrainConfig):
        value, flag = values[f.name], "--" + f.name.replace("_", "-")
        if isinstance(value, bool):
            argv.append(flag if value else "--no-" + flag[2:])
        elif isinstance(value, list):
            argv += [token for item in value for token in (flag, str(item))]
        elif value is not None:
            argv += [flag, str(value)]
    return argv


def compare_with_baseline(run: RunDir, baseline: RunDir) -> str:
    """This run's test figures beside the token-CE-only baseline's (DESIGN §9)."""
    rows = []
    for name, r in (("this run", run), ("token CE only", baseline)):
        m = json.loads((r.eval / "scores.json").read_text())["metrics"]
        rows.append(f"  {name:<14} chrF {m['chrf']['score']:5.1f}  BLEU {m['bleu']['score']:5.1f}  "
                    f"translation→image R@1 {m['retrieval']['translation']['in_batch']['b2a']:.3f}")
    return "test, against the token-CE-only baseline on the same data (report.html has the paired tests):\n" + \
        "\n".join(rows)


class RunLog:
    """Messages of the main process: printed, and appended to RUN/train.log once it is opened
    (what was said before — data building, a resume being checked — is written then)."""

    def __init__(self, main_process: bool) -> None:
        self.main_process, self.path, self.pending = main_process, None, []

    def __call__(self, message: str) -> None:
        if not self.main_process:
            return
        print(message, flush=True)
        if self.path is None:
            self.pending.append(message)
        else:
            with self.path.open("a", encoding="utf-8") as f:
                f.write(message + "\n")

    def open(self, path: Path) -> None:
        self.path = path
        with path.open("a", encoding="utf-8") as f:
            f.writelines(m + "\n" for m in self.pending)
        self.pending = []


def make_accelerator(cfg: TrainConfig, project_dir: str) -> Accelerator:
    """One Accelerator for both stages. Several processes on a machine without CUDA (`accelerate
    launch --multi_gpu --num_processes 2` starts them with torchrun; accelerate's own `--cpu`
    launcher starts one unless MPI is installed) form a gloo group."""
    for engine in ("FSDP", "DEEPSPEED"):  # asked for by an accelerate config: see docs/scaling.md
        if os.environ.get(f"ACCELERATE_USE_{engine}", "").lower() == "true":
            raise InputError(f"the accelerate config asks for {engine}, which train.py cannot run yet: accelerate's "
                             "FSDP2 and DeepSpeed take one prepared model and train.py prepares two (the system and "
                             "the n-dim loss with its logit scale), and accelerate runs FSDP only on GPUs; use a DDP "
                             "config (docs/scaling.md)")
    multi_cpu = int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.cuda.is_available()
    # split_batches: --batch-size is global (StepSampler splits it), so the prepared scheduler steps once per
    # optimizer step (without it accelerate steps it num_processes times: a 2-process run's schedule ran twice as fast)
    accelerator = Accelerator(log_with="tensorboard", project_dir=project_dir, cpu=multi_cpu,
                              mixed_precision=cfg.mixed_precision, gradient_accumulation_steps=cfg.grad_accum,
                              dataloader_config=DataLoaderConfiguration(split_batches=True))
    accelerator.register_save_state_pre_hook(drop_tied_weights)  # tied weights saved once, without a warning
    return accelerator


def quiet_libraries(show: bool) -> None:
    """The libraries' own bars (dataset saving, weight loading) follow --quiet (and non-main processes)."""
    if not show:
        datasets.disable_progress_bars()
        transformers.utils.logging.disable_progress_bar()


def write_report(run, say, baseline: Path | None = None) -> None:
    """RUN/report.html (+ .md, .json), with paired tests against `baseline` (a run directory) when
    given. The run is complete without it, so a failure here is reported with the command that
    retries it rather than raised."""
    try:
        build_report([baseline, run.root] if baseline else [run.root], run.report)
        say(f"report: {run.report}")
    except Exception as exc:  # noqa: BLE001 - the trained model and scores are already saved
        say(f"WARNING: the report could not be written ({type(exc).__name__}: {exc}); retry with "
            f"`python -m eval report {run.root} --out {run.report}`")


def stage0_clip(cfg: TrainConfig, accelerator, data: TrainingData, log, show: bool, stop: Callable[[], bool]):
    """(clip, preprocess, tokenizer, weights path): real weights, or the cached tiny teacher (trained
    here when the cache has none; a stopped teacher resumes from `<cache>/teachers/<key>.partial`).
    None when a signal stopped the teacher (its state is saved)."""
    if cfg.clip_pretrained:
        clip, preprocess, tokenizer = load_clip(cfg.clip, pretrained=cfg.clip_pretrained)
        log(f"stage 0: CLIP {cfg.clip} from {cfg.clip_pretrained}")
        return clip.to(accelerator.device), preprocess, tokenizer, cfg.clip_pretrained
    if cfg.teacher_steps == 0:  # the thesis preset without weights: a real-size CLIP cannot be trained here
        torch.manual_seed(cfg.seed)
        clip, preprocess, tokenizer = load_clip(cfg.clip)
        log(f"WARNING stage 0 skipped: no --clip-pretrained and --teacher-steps 0, so CLIP {cfg.clip} is RANDOMLY "
            f"INITIALISED (seed {cfg.seed}); the student is grounded in a CLIP that has learnt nothing. Pass "
            f"--clip-pretrained FILE for real weights, or --teacher-steps N to train a teacher on this data first.")
        return clip.to(accelerator.device), preprocess, tokenizer, None
    world = accelerator.num_processes
    batch = min(cfg.teacher_batch_size, len(data.train_rows) // world * world)
    settings = dict(steps=cfg.teacher_steps, batch_size=batch, lr=cfg.teacher_lr, seed=cfg.seed, world=world)
    directory = cache_root(cfg) / "teachers" / teacher_key(data.train, data.train_rows, cfg.clip, settings)
    if (directory / CHECKPOINT_NAME).is_file():
        log(f"stage 0: cached CLIP teacher {directory}")
    else:
        partial = directory.with_name(directory.name + ".partial")
        torch.manual_seed(cfg.seed)
        clip, preprocess, tokenizer = load_clip(cfg.clip)
        log(f"stage 0: training a {cfg.clip} CLIP teacher on the English captions ({cfg.teacher_steps} steps"
            + (", resuming its saved state" if (partial / "teacher_state.pt").is_file() else "") + ")")
        t0 = time.time()
        sampler = StepSampler(data.train_rows, batch, seed=cfg.seed, rank=accelerator.process_index, world=world)
        last = train_teacher(clip, preprocess, tokenizer, data.train, sampler.indices, accelerator,
                             steps=cfg.teacher_steps, lr=cfg.teacher_lr, seed=cfg.seed, state_dir=partial,
                             save_every=cfg.checkpoint_every, stop=stop, show_progress=show)
        if last is None:
            return None
        if accelerator.is_main_process:
            save_teacher(clip, directory, {"clip": cfg.clip, **settings, **last})
            shutil.rmtree(partial, ignore_errors=True)
        accelerator.wait_for_everyone()
        log(f"stage 0: teacher trained in {time.time() - t0:.0f}s (final loss {last['teacher/loss']:.3f}), "
            f"cached at {directory}")
    clip, preprocess, tokenizer = load_clip(cfg.clip, pretrained=directory / CHECKPOINT_NAME)
    return clip.to(accelerator.device), preprocess, tokenizer, str(directory / CHECKPOINT_NAME)


class Stage1:
    """The student read by CLIP: the system, its objective and optimizer, and what every step
    reads (image batches for the n-dim loss, batches of captions with a target for the token CE)."""

    def __init__(self, cfg: TrainConfig, accelerator, data: TrainingData, clip, preprocess, clip_tokenizer, log,
                 show: bool) -> None:
        self.cfg, self.accelerator, self.data, self.log, self.show = cfg, accelerator, data, log, show
        self.preprocess, self.clip_tokenizer, self.device = preprocess, clip_tokenizer, accelerator.device
        self.shortlist = None
        if cfg.student == "scratch" and cfg.target_vocab == "corpus":
            self.shortlist = ClipShortlist.from_texts(clip_tokenizer, data.english_captions() +
                                                      [t.text for _, t in data.targets])
            log(f"student target vocabulary: {len(self.shortlist)} CLIP BPE ids of the training English text")
        log(f"translations use at most {cfg.max_target_length} CLIP positions")
        self.clip = clip
        system = build_system(cfg, clip, clip_tokenizer, data.source_tokenizer, seed=cfg.seed, shortlist=self.shortlist)
        freeze_towers(system, cfg.freeze)
        if cfg.activation_checkpointing:
            log(f"activation checkpointing: {enable_activation_checkpointing(system.student, cfg.decoding)}")
        loss_fn = build_objective(cfg, clip)
        self.trainable = [p for p in (*system.parameters(), *loss_fn.parameters()) if p.requires_grad]
        towers = {id(p) for p in system.clip.parameters()}
        groups = [{"params": [p for p in self.trainable if id(p) not in towers]},
                  {"params": [p for p in self.trainable if id(p) in towers], "lr": cfg.tower_lr or cfg.lr}]
        optimizer = torch.optim.AdamW([g for g in groups if g["params"]], lr=cfg.lr, weight_decay=cfg.weight_decay)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: warmup_cosine(s, cfg.steps, cfg.warmup_steps))
        self.system, self.loss_fn, self.optimizer, self.scheduler = accelerator.prepare(system, loss_fn, optimizer,
                                                                                        scheduler)
        # The n-dim loss runs in fp32 under --mixed-precision (it turns autocast off itself): prepare's autocast
        # wrapper comes off its forward.
        accelerator.unwrap_model(self.loss_fn, keep_fp32_wrapper=False)
        self.core = accelerator.unwrap_model(self.system)
        self.grounded = cfg.grounding_weight > 0
        self.frozen_image, self.frozen_text = cfg.freeze in ("both", "image"), cfg.freeze in ("both", "text")
        self.image_table = self.english_table = None
        if self.frozen_image and self.grounded:
            self.image_table = FeatureTable.of_images(self.core.encode_images, preprocess, data.train, data.train_rows,
                                                      device=self.device, show_progress=show)
        if self.frozen_text and cfg.k_english and self.grounded:
            self.english_table = FeatureTable.of_texts(self.core.encode_english, clip_tokenizer,
                                                       data.english_captions(), device=self.device,
                                                       show_progress=show)
        self.expert_tables = [expert_features(spec, self.english_table, log) for spec in cfg.expert or ()]
        self.collate = TrainCollator(self.core.source_tokenizer, self.core.labels_for, data.targets,
                                     k_english=cfg.k_english, m_source=cfg.m_source,
                                     preprocess=None if self.frozen_image or not self.grounded else preprocess,
                                     clip_tokenizer=None if self.frozen_text or not self.grounded else clip_tokenizer,
                                     forced_labels=cfg.decoding == "teacher-forced")
        self.sampler = StepSampler(data.train_rows, cfg.batch_size, seed=cfg.seed, rank=accelerator.process_index,
                                   world=accelerator.num_processes)
        self.rounds = self_train_steps(cfg)
        self.ce = TargetBatches(data.targets, cfg, accelerator, since=0)
        self.round_images = self.image_table
        self.lexicon = None
        if self.rounds and cfg.self_train_lexicon > 0:
            self.lexicon = induce_lexicon(data.train, data.train_rows, self.core.source_tokenizer.tokenize)
        self.warnings: set[str] = set()
        self.done = 0

    def resume_from_checkpoint(self, run: RunDir) -> int:
        """Load the newest complete checkpoint (older ones when newer ones are damaged), drop the
        metrics logged after it and reload the pseudo targets it was training on; its step."""
        found = run.latest_checkpoint()
        for step, path in run.checkpoints_newest_first():
            if found is not None and step <= found[0]:
                break
            self.log(f"WARNING checkpoint {path} cannot be resumed from ({checkpoint_problem(path)}); trying an "
                     "older one")
        if found is None:
            return 0
        step, path = found
        self.accelerator.load_state(str(path))
        if self.accelerator.is_main_process:
            dropped = run.truncate_metrics(step)
            self.log(f"resumed from {path} (step {step}); dropped {dropped} metric records logged after it")
        done_rounds = [r for r, at in enumerate(self.rounds) if at < step or (at == step and run.targets(r).is_file())]
        if done_rounds:  # the pseudo targets the interrupted run was training on
            r = done_rounds[-1]
            self.ce = TargetBatches(self.data.targets.with_pseudo(dict(TargetTable.load(run.targets(r)))), self.cfg,
                                    self.accelerator, since=self.rounds[r])
            self.log(f"self-training: round {r + 1} targets reloaded ({self.ce.table.summary(self.data.n_captions)})")
        return step

    def self_training_round(self, run: RunDir, step: int) -> None:
        """Make the pseudo-parallel targets of the round that runs before `step` (RUN/targets/)."""
        r = self.rounds.index(step)
        cfg, main_proc = self.cfg, self.accelerator.is_main_process
        if cfg.self_train_judge == "clip" and (self.round_images is None or not self.frozen_image):
            self.round_images = FeatureTable.of_images(self.core.encode_images, self.preprocess, self.data.train,
                                                       self.data.train_rows, device=self.device,
                                                       show_progress=self.show)
        if main_proc:
            pseudo, stats = grounded_pseudo_targets(self.core, self.data.train, self.data.train_rows,
                                                    self.data.targets, self.round_images, cfg,
                                                    seed=cfg.seed * 1000 + r, show=self.show, lexicon=self.lexicon)
            TargetTable(pseudo).save(run.targets(r))
            run.append_metrics({"step": step, "self_train/round": r + 1,
                                **{f"self_train/{k}": v for k, v in stats.items()}})
            self.log(f"self-training round {r + 1} at step {step}: kept {stats['kept']} of {stats['candidates']} "
                     f"translations (CLIP reranked {stats['reranked']})")
        self.accelerator.wait_for_everyone()
        self.ce = TargetBatches(self.data.targets.with_pseudo(dict(TargetTable.load(run.targets(r)))), cfg,
                                self.accelerator, since=step)
        self.system.train()

    def step_loss(self, micro: int):
        """The loss of batch `micro` (optimizer step × --grad-accum + micro-batch), and what the log
        reports of it: (loss or None when the batch holds nothing to learn from, record parts)."""
        cfg, device = self.cfg, self.device
        rows = self.sampler.indices(micro)
        sources = targets = None
        if self.grounded:
            sources = self.collate.sources(self.data.train.select(rows), rows,
                                           seed=cfg.seed * 1000 + self.sampler.epoch_of(micro))
            if self.frozen_image:
                sources["image_features"] = self.image_table[rows]
            if self.frozen_text and cfg.k_english:
                captions = [e for caps in sources["english_text"] for e in caps]
                english = self.english_table[captions].view(len(rows), cfg.k_english, -1)
                firsts = captions[::cfg.k_english]  # each expert reads the image's first English caption
                sources["english_features"] = torch.cat([english, *(t[firsts][:, None] for t in self.expert_tables)], 1)
        if self.ce.active:
            targets = self.collate.targets_batch(self.ce.keys(micro), self.data.train)
            targets["weight"] = annealed_weights(targets, cfg, micro // cfg.grad_accum)
        with self.accelerator.autocast():
            out = self.system(sources=on_device(sources, SOURCE_TENSORS, device),
                              targets=on_device(targets, TARGET_TENSORS, device))
            loss, parts = None, {}
            if targets is not None:
                loss = cfg.token_ce_weight * out["token_ce"]
                parts["loss/token_ce"] = out["token_ce"]
            if self.grounded:
                result = self.loss_fn(out["axes"])  # in fp32: the loss turns autocast off itself
                loss = cfg.grounding_weight * result.loss + (0.0 if loss is None else loss)
                parts.update({f"loss/{k}": v for k, v in result.terms.items()}, **result.stats,
                             tau=self.core.splice.tau, axes=out["axes"])
        return loss, parts

    def train(self, run: RunDir, start: int, stop: StopSignal) -> int:
        """Steps `start`..`--steps`; the signal number when a signal stopped it (after a checkpoint), else 0."""
        cfg, accelerator, core = self.cfg, self.accelerator, self.core
        schedule = TemperatureSchedule(cfg.tau_start, cfg.tau_end, steps=max(1, cfg.steps))
        bar = tqdm(range(start, cfg.steps), initial=start, total=cfg.steps, desc="stage 1: student",
                   disable=not self.show)
        t0 = time.time()
        self.system.train()
        for step in bar:
            if step in self.rounds and not (run.targets(self.rounds.index(step)).is_file() and step == start):
                self.self_training_round(run, step)
            core.splice.tau = schedule(step)
            self.collate.targets = self.ce.table
            for micro in range(step * cfg.grad_accum, (step + 1) * cfg.grad_accum):  # batches of this optimizer step
                with accelerator.accumulate(self.system, self.loss_fn):
                    loss, parts = self.step_loss(micro)
                    if loss is not None:  # none before the first target exists with grounding off: nothing to learn
                        accelerator.backward(loss)  # divided by --grad-accum; DDP syncs on the last batch only
            if loss is not None:
                if cfg.grad_clip > 0:
                    accelerator.clip_grad_norm_(self.trainable, cfg.grad_clip)
                self.optimizer.step()
            self.scheduler.step()
            self.optimizer.zero_grad(set_to_none=True)
            self.done = done = step + 1
            if done % cfg.log_every == 0 or done == cfg.steps or done == start + 1:
                record = self.record(done, loss, parts, time.time() - t0)
                if accelerator.is_main_process:
                    run.append_metrics(record)
                    accelerator.log({k: v for k, v in record.items() if k != "step"}, step=done)
                bar.set_postfix({k: f"{record[key]:.3f}" for k, key in (("loss", "loss"), ("r1", "r1/student_image"))
                                 if key in record})
            if done % cfg.eval_every == 0 and done < cfg.steps:
                self.validate(run, done)
                self.system.train()
            stopping = stop_requested(stop, accelerator)
            if done % cfg.checkpoint_every == 0 or done == cfg.steps or stopping:
                save_checkpoint(accelerator, run, done, cfg.keep_checkpoints)
            if stopping:
                return stop.signum or signal.SIGTERM
        bar.close()
        return 0

    def record(self, done: int, loss, parts: dict, seconds: float) -> dict:
        """One metrics.jsonl record: the global batch's loss (the mean over processes), every term,
        and in-batch R@1 between the axes of the n-dim loss."""
        record = {"step": done, "lr": self.scheduler.get_last_lr()[0], "seconds": seconds}
        if loss is not None:
            record["loss"] = self.accelerator.reduce(loss.detach().float(), "mean").item()
        axes = parts.pop("axes", None)
        record.update({k: float(v.detach()) if torch.is_tensor(v) else v for k, v in parts.items()})
        if axes is not None:
            image, student = axes[0], axes[1 + self.cfg.k_english]
            record["r1/student_image"] = batch_r1(student, image)
            if self.cfg.k_english:
                record["r1/english_image"] = batch_r1(axes[1], image)
                record["r1/student_english"] = batch_r1(student, axes[1])
        return record

    def validate(self, run: RunDir, step: int, limit: int = 256) -> None:
        """Validation R@1 (student translation ↔ image) and embedding health (DESIGN §7); a collapse
        warning is printed when it first appears and when it clears, not at every validation."""
        if not self.accelerator.is_main_process:
            return
        system, ds = self.core.eval(), self.data.splits["validation"]
        rows = self.data.scans["validation"].usable[:limit]
        subset = ds.select(rows)
        images = system.image_features(subset["image"])
        sources = [next(s for s in row if s.strip()) for row in subset["source"]]
        english = [next(e for e in row if e.strip()) for row in subset["english"]]
        student, eng = system.student_features(sources), system.english_features(english)
        anchors = self.accelerator.unwrap_model(self.loss_fn).anchors()
        report = health_report({"image": images, "english": eng, "student": student}, reference="image",
                               anchors=anchors)
        record = {"step": step, "split": "validation"}
        for axis, row in report.items():
            for key, value in {**row, **row.get("anchor", {})}.items():
                if key in ("effective_rank", "top_k_share", "mean_offdiag_cosine", "in_batch_r1", "uniqueness",
                           "active_anchors", "anchor_entropy", "nearest_distance", "second_nearest_distance"):
                    record[f"health/{axis}/{key}"] = value
        run.append_metrics(record)
        self.accelerator.log({f"val/{k}": v for k, v in record.items() if k not in ("step", "split")}, step=step)
        self.log(f"validation @ {step}: in-batch R@1 student↔image {report['student']['in_batch_r1']:.3f}, "
                 f"English↔image {report['english']['in_batch_r1']:.3f} "
                 f"(chance {report['student']['in_batch_chance']:.3f})")
        current = {re.sub(r"\d+(\.\d+)?", "#", w): w for w in collapse_warnings(report)}
        for key, warning in current.items():
            if key not in self.warnings:
                self.log(f"WARNING embedding health: {warning}")
        for key in self.warnings - set(current):
            self.log(f"embedding health: cleared: {key.replace('#', '…')}")
        self.warnings = set(current)

    def finish(self, run: RunDir, clip_weights: str | None, report: bool = True) -> None:
        """Export RUN/model, evaluate it on the test split against the untrained student, write the report."""
        core = self.core.eval()
        core.save(run.model)
        self.log(f"exported the model to {run.model}")
        if not self.cfg.evaluate:
            return
        untrained = build_system(self.cfg, self.clip, self.clip_tokenizer, self.data.source_tokenizer,
                                 seed=self.cfg.seed, shortlist=self.shortlist).to(self.device).eval() \
            if self.cfg.eval_untrained else None
        summary = evaluate_system(core, self.data.splits, self.data.scans, self.preprocess, run, untrained=untrained,
                                  probe=self.cfg.eval_untrained, bootstrap=self.cfg.eval_bootstrap,
                                  show_progress=self.show, clip_weights=clip_weights)
        self.log(summary)
        if report:
            write_report(run, self.log)


def build_system(cfg, clip, clip_tokenizer, source_tokenizer, *, seed: int, shortlist=None):
    """The grounded system with a freshly initialised (scratch) or loaded (pretrained) student;
    the same seed gives the same initial student (the untrained baseline of the evaluation).
    `shortlist`: a scratch student's decoder vocabulary (`--target-vocab corpus`; default: all of
    CLIP's BPE)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if cfg.student == "scratch":
            vocab = shortlist if shortlist is not None else ClipVocab(clip_tokenizer)
            student = build_scratch_student(len(source_tokenizer), cfg.student_preset,
                                            max_length=clip.positional_embedding.shape[0], dropout=cfg.dropout,
                                            **vocab.student_ids())
        else:
            student, source_tokenizer = load_pretrained_student(cfg.student)  # it reads its own source vocabulary
            vocab = BridgedVocab.from_tokenizers(source_tokenizer, clip_tokenizer, clip.token_embedding.weight,
                                                 vocab_size=student.config.decoder_vocab_size)
        splice = Splice.for_student(cfg.splice, student, vocab.bind(clip.token_embedding).weight, tau=cfg.tau_start)
    return GroundedSystem(clip, cfg.clip, clip_tokenizer, student, source_tokenizer, splice, vocab=vocab,
                          eot_finder=cfg.eot_finder, decoding=cfg.decoding,
                          max_length=cfg.max_target_length or None).to(next(clip.parameters()).device)


def build_loss(cfg):
    """The stage 1 n-dim loss over the axes [image, K English, E experts, M student] of `cfg`."""
    return NDimContrastiveLoss(
        cfg.similarity, cfg.labels, n_axes=cfg.n_axes, anchor=None if cfg.anchor == "none" else cfg.anchor,
        anchor_weight=cfg.anchor_weight, image_axis=0, english_axis=1 if cfg.k_english else None,
        student_axis=cfg.student_axis)


def build_objective(cfg, clip) -> GroundedObjective:
    """The n-dim loss with the optional anchor bank (`--anchor-bank`, in CLIP's embedding space) and
    LSA term (`--lsa-weight`) on the student's features."""
    bank = AnchorBank(cfg.anchor_bank, clip.visual.output_dim, seed=cfg.seed) if cfg.anchor_bank else None
    return GroundedObjective(build_loss(cfg), student_axis=cfg.student_axis, bank=bank,
                             bank_weight=cfg.anchor_bank_weight, lsa_weight=cfg.lsa_weight)


def expert_features(spec: str, english: FeatureTable, log) -> FeatureTable:
    """An `--expert` ('minilm' or a local encoder directory) mapped into the CLIP text space by
    centred Procrustes fitted on the training captions against their (unit) CLIP features, and its
    features of every training caption, keyed like `english`."""
    captions = list(english.index)
    clip_features = F.normalize(english.features, dim=-1)
    aligned = AlignedExpert.fit(TextExpert(None if spec == "minilm" else spec), captions, clip_features.cpu())
    features = aligned.encode(captions).to(english.features.device)
    residual = aligned.alignment.residual(aligned.expert.encode(captions), clip_features.cpu())
    log(f"expert {spec}: {aligned.expert.dim}-d, mapped into CLIP's {features.shape[1]}-d text space by centred "
        f"Procrustes on {len(captions)} captions (residual {residual:.3f})")
    return FeatureTable(captions, features)


def freeze_towers(system, freeze: str) -> None:
    """Freeze the CLIP towers named by --freeze (the text tower's gradient still reaches the student)."""
    clip = system.clip
    text_names = ("token_embedding", "positional_embedding", "transformer", "ln_final", "text_projection", "text")
    for name, param in clip.named_parameters():
        is_text = name.split(".")[0] in text_names
        if freeze == "both" or (freeze == "text" and is_text) or (freeze == "image" and not is_text):
            param.requires_grad_(False)
    for name in ("logit_scale", "logit_bias"):  # unused in stage 1: the n-dim loss has its own
        if isinstance(getattr(clip, name, None), torch.nn.Parameter):
            getattr(clip, name).requires_grad_(False)


def save_checkpoint(accelerator, run: RunDir, step: int, keep: int) -> None:
    """accelerate state into a staging directory; the main process writes its manifest (sizes and
    hashes, flushed to disk) and renames it into place (models.run_dir)."""
    try:
        accelerator.save_state(str(run.staging_dir(step)))
    except SafetensorError as exc:  # safetensors reports a failed write (a full disk) in its own type
        if "I/O error" not in str(exc):
            raise
        raise OSError(errno.EIO, f"checkpoint not written ({exc}); the previous one is intact",
                      str(run.staging_dir(step))) from None
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        run.commit_checkpoint(step, keep=keep)
    accelerator.wait_for_everyone()


TARGET_TENSORS = ("source_ids", "source_mask", "labels", "weight", "counted")
SOURCE_TENSORS = ("source_ids", "source_mask", "labels", "images", "image_features", "english_ids", "english_features")


def on_device(batch: dict | None, keys: tuple[str, ...], device) -> dict | None:
    """The tensors of `batch` named in `keys` (those present), moved to `device`."""
    return None if batch is None else {k: batch[k].to(device) for k in keys if k in batch}


class TargetBatches:
    """Which captions with a target feed the token cross-entropy at each step. Two streams, each
    epochs of a seeded permutation (global batches; each process reads its slice): up to
    `--ce-batch-size` captions with a human translation — the same stream, step for step, as a
    run without images — and, once pseudo-parallel targets exist, up to as many of those in
    addition, counted from step `since` (when the table took effect). A resumed run reads the same
    ones. Inactive when the token CE is off or the table is empty."""

    def __init__(self, table, cfg: TrainConfig, accelerator, *, since: int) -> None:
        self.table, self.since, self.grad_accum = table, since, cfg.grad_accum
        world = accelerator.num_processes
        human = sorted(k for k, t in table if t.origin == "human")
        pseudo = sorted(k for k, t in table if t.origin != "human")
        sizes = [min(cfg.ce_batch_size, len(keys) // world * world) for keys in (human, pseudo)]
        self.active = cfg.token_ce_weight > 0 and sum(sizes) > 0
        rank = accelerator.process_index
        self.human = StepSampler(human, sizes[0], seed=cfg.seed * 7919, rank=rank, world=world) \
            if self.active and sizes[0] else None
        self.pseudo = StepSampler(pseudo, sizes[1], seed=cfg.seed * 7919 + since + 1, rank=rank, world=world) \
            if self.active and sizes[1] else None

    def keys(self, batch: int) -> list[tuple[int, int]]:
        """The captions of batch number `batch` (optimizer step × --grad-accum + micro-batch)."""
        return ((self.human.indices(batch) if self.human else [])
                + (self.pseudo.indices(batch - self.since * self.grad_accum) if self.pseudo else []))


def self_train_steps(cfg: TrainConfig) -> list[int]:
    """The steps before which the grounded self-training rounds run."""
    if not cfg.self_train_rounds:
        return []
    first = round(cfg.steps * cfg.self_train_start)
    span = cfg.steps - first
    return sorted({first + (span * r) // cfg.self_train_rounds for r in range(cfg.self_train_rounds)})


def annealed_weights(batch: dict, cfg: TrainConfig, step: int) -> torch.Tensor:
    """The token-CE row weights of a targets batch at `step`: with --pseudo-anneal the pseudo targets'
    weights × (1 − step/--steps), the human ones unchanged, so the human translations alone teach
    the last steps; a batch without a human target (P = 0) keeps its weights — nothing else would teach."""
    if not cfg.pseudo_anneal or not batch["human"].any():
        return batch["weight"]
    return torch.where(batch["human"], batch["weight"], batch["weight"] * (1 - step / max(1, cfg.steps)))


@torch.no_grad()
def grounded_pseudo_targets(system, ds, rows: list[int], initial_targets, image_table, cfg: TrainConfig, seed: int,
                            show: bool, lexicon=None) -> tuple[dict, dict]:
    """One round of self-training: the student's n-best translations of every training caption
    without a human target; with the `clip` judge they are reranked by CLIP with the caption's image
    and the winner is kept as a pseudo-parallel target when it ranks its own image first among
    `--self-train-group` images (`confidence` and `all`: the no-image controls); with a `lexicon`
    (induced from images, `data_prep.pivot`) the source's agreement with each candidate adds
    `--self-train-lexicon` × agreement to its score.
    Returns (pseudo targets by key, round statistics)."""
    keys, sources, human = [], [], initial_targets.human_keys()
    for row, item in zip(rows, ds.select(rows).select_columns(["source"])):
        for j, source in enumerate(item["source"]):
            if source.strip() and (row, j) not in human:
                keys.append((row, j))
                sources.append(source)
    if not keys:
        return {}, {"candidates": 0, "kept": 0, "reranked": 0}
    system.eval()
    size = cfg.self_train_nbest if cfg.self_train_judge == "clip" else 1
    texts, logprobs = system.nbest(sources, size=size, batch_size=64)
    stats = {"candidates": len(keys), "reranked": 0}
    if cfg.self_train_judge == "clip":
        device = image_table.features.device
        flat = [t for cands in texts for t in cands]
        features = FeatureTable.of_texts(system.encode_english, system.clip_tokenizer, flat, device=device,
                                         show_progress=show)[flat].view(len(keys), size, -1)
        own = torch.tensor([image_table.index[row] for row, _ in keys], device=device)
        bonus = None
        if lexicon is not None:
            pieces = [system.source_tokenizer.tokenize(src) for src in sources]
            bonus = cfg.self_train_lexicon * torch.tensor(
                [[agreement(lexicon, p, english_words(c)) for c in cands] for p, cands in zip(pieces, texts)])
        sel = select(logprobs.to(device), features, own, image_table.features, beta=cfg.rerank_beta,
                     scale=float(system.clip.logit_scale.exp()), group=min(cfg.self_train_group,
                                                                            len(image_table.features)), seed=seed,
                     bonus=bonus)
        choice, kept = sel.choice.tolist(), sel.kept().tolist()
        stats.update(reranked=int((sel.choice != 0).sum()), mean_image_prob=float(sel.image_prob.mean()))
    else:
        choice = [0] * len(keys)
        best = logprobs[:, 0]
        kept = (best >= best.median()).tolist() if cfg.self_train_judge == "confidence" else [True] * len(keys)
    pseudo = {key: Target(cands[c], cfg.pseudo_weight, "self")
              for key, cands, c, keep in zip(keys, texts, choice, kept) if keep and cands[c].strip()}
    stats["kept"] = len(pseudo)
    return pseudo, stats


if __name__ == "__main__":
    sys.exit(main())
