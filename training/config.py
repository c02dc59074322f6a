"""One resolved configuration of a run, from the declarations of `training.options`.

`parse_config(argv)`: defaults < `--preset` < `--recipe` < `--config FILE.yaml` < command line,
every value checked at parsing — choices, ranges and finiteness (`bound_problem`), and every rule
between options (`config_problem`) — so that a wrong option costs one line and exit code 2
before anything is built. `resolve_place(cfg)` decides where the run works (its folder, its
cache, its threads) and `resolve(cfg, data)` every value decided from the data; what they return
is what `RUN/config.json` holds. `resumed_config` rebuilds a run's configuration from its
config.json (older files included: renamed options are read under their new names), read back
against `SAVED_CONFIG` — every value of its option's type, choices and range, the keys a resume
cannot do without present — so that a damaged file is one line naming the file and the field.
"""
from __future__ import annotations

import argparse
import functools
import operator
import os
import sys
import time
import typing
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Required

import torch
import yaml
from pydantic import PositiveInt
from typing_extensions import TypedDict

from data_prep.errors import InputError, Parser
from data_prep.worlds import WORLDS
from models.clip_loading import clip_tokenizer
from models.run_dir import RunDir
from models.schedules import default_warmup
from models.similarities import descriptive_name
from models.typed_json import ReadBackError, read_json
from training.options import (ALIASES, EXPLAIN_AWAY_FROM, GROUPS, LEXICON_PAIRS, LEXICON_PHRASE_WORDS, OPTIONS,
                              PAIR_FORCE, PAIR_RERANK, PHRASE_PAIRS_FROM, PRESETS, PSEUDO_TARGETS_BELOW, RECIPES,
                              TEACHABLE_WORDS_ABOVE, TrainConfig, bound_problem)

if TYPE_CHECKING:
    from training.data import TrainingData

# Options a resumed run may change; every other option comes from the run's config.json.
RESUME_MAY_CHANGE = ("steps", "log_every", "eval_every", "checkpoint_every", "keep_checkpoints", "evaluate",
                     "eval_bootstrap", "eval_untrained", "quiet", "threads", "cache_dir", "out", "resume")
DESCRIPTION = "Train a GroundMT student: `accelerate launch train.py --lang es`."
EPILOG = """examples:
  accelerate launch train.py --lang es
  accelerate launch train.py --lang zh --data coco-cn --data-dir DATA --clip ViT-B-32 \\
      --clip-pretrained PATH --student scratch --out runs/coco-cn
  accelerate launch --multi_gpu --num_processes 2 train.py --steps 20   # 2 processes (gloo on a CPU machine)
  accelerate launch train.py --out runs/NAME --resume
"""


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def build_parser(defaults: bool = True) -> argparse.ArgumentParser:
    """Every option as a flag (its older names as aliases); `defaults=False` leaves unset flags
    out of the namespace (to see which options a command line names)."""
    parser = Parser(prog="accelerate launch train.py", description=DESCRIPTION, epilog=EPILOG,
                    formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", metavar="FILE.yaml", default=None if defaults else argparse.SUPPRESS,
                        help="YAML file of options (command-line flags override it)")
    for name, f in OPTIONS.items():
        meta = f.metadata
        shown = "" if f.default in (None, "") else f" (default: {f.default})"
        kw = dict(dest=name, default=f.default if defaults else argparse.SUPPRESS,
                  help=(meta["help"] + shown).replace("%", "%%"))  # argparse %-formats help texts
        names = (flag(name), *meta["aliases"])
        if "tuple" in str(f.type):
            parser.add_argument(*names, action="append", **kw)
        elif "bool" in str(f.type):
            parser.add_argument(*names, action=argparse.BooleanOptionalAction, **kw)
        else:
            kind = int if "int" in str(f.type) else float if "float" in str(f.type) else str
            parser.add_argument(*names, type=kind, choices=meta["choices"], metavar=_metavar(meta["choices"]), **kw)
    return parser


def _metavar(choices: tuple[str, ...] | None) -> str | None:
    return None if choices is None or len(choices) < 12 else "NAME"  # long registries: listed in the help text


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
    argv = []
    for key, value in loaded.items():
        name = str(key).replace("-", "_")
        name = ALIASES.get(name, name)
        if name not in OPTIONS:
            parser.error(f"--config {path}: unknown option {key!r}")
        kind = str(OPTIONS[name].type)
        if value is None and OPTIONS[name].default is not None:
            parser.error(f"--config {path}: {key} needs a value")
        if "bool" in kind and value is not None and not isinstance(value, bool):
            parser.error(f"--config {path}: {key} must be true or false, got {value!r}")
        if isinstance(value, dict) or (isinstance(value, list) and "tuple" not in kind) \
                or (isinstance(value, bool) and "bool" not in kind):
            parser.error(f"--config {path}: {key} must be a single value, got {value!r}")
        argv += as_argv({name: value})
    return argv


def parse_config(argv: list[str] | None = None) -> TrainConfig:
    """The configuration a command line asks for, checked: a bad value or a combination that
    cannot train exits with one line and code 2."""
    cfg, problem = configure(sys.argv[1:] if argv is None else list(argv))
    if problem:
        build_parser().error(problem)
    return cfg


def configure(argv: list[str]) -> tuple[TrainConfig, str | None]:
    """The configuration `argv` asks for, and why it cannot train (None when it can): a value out
    of its option's range, or a combination `config_problem` refuses. A wrong choice, type or
    --config file exits at once (one line, code 2)."""
    parser = build_parser()
    parser.set_defaults(preset=None, recipe=None)  # tells a preset or recipe asked for from the default
    config = parser.parse_args(argv).config
    argv = (yaml_argv(config, parser) if config else []) + argv
    named = parser.parse_args(argv)
    preset, recipe = named.preset or "embedded", named.recipe or "auto"
    parser.set_defaults(**{**PRESETS[preset], **RECIPES[recipe]}, preset=preset, recipe=recipe)
    args = vars(parser.parse_args(argv))
    args.pop("config")
    args["similarity"] = descriptive_name(args["similarity"])
    cfg = TrainConfig.from_flat(args)
    problem = next(filter(None, (bound_problem(name, value) for name, value in args.items())), None)
    return cfg, problem or config_problem(cfg) or machine_problem(cfg)


def machine_problem(cfg: TrainConfig) -> str | None:
    """Why a value given on this machine's command line cannot run on it (None when it can)."""
    cores = os.cpu_count() or 1
    if cfg.run.threads > cores:
        return f"--threads {cfg.run.threads}: this machine has {cores} CPU cores (0: its cores shared among the processes)"
    return None


def config_problem(cfg: TrainConfig) -> str | None:
    """Why this combination of options cannot train, in one line (None when it can)."""
    d, t, o, p, s = cfg.dataset, cfg.teacher, cfg.objective, cfg.pseudo, cfg.optim
    world = WORLDS.get(d.data) if d.data_dir is None else None
    if world is not None and d.lang not in world.languages:
        return (f"--lang {d.lang}: the embedded {d.data} world speaks {', '.join(world.languages)}; for another "
                "language pass --data longtail, or --data and --data-dir (docs/data.md)")
    if d.data_dir is not None and d.world_images is not None:
        return "--world-images sizes an embedded world, which --data-dir replaces: leave one of them out"
    if t.teacher_data is not None and (t.clip_pretrained or not t.teacher_steps):
        return "--teacher-data is what stage 0 trains the teacher on: it needs --teacher-steps > 0 and no --clip-pretrained"
    if world is None and d.data_dir is None:
        return (f"--data {d.data} needs --data-dir: a dataset built with `python -m data_prep {d.data} --data-dir "
                f"RAW_FILES --out DATASET`, or the raw files themselves (see `python -m data_prep {d.data} --help`)")
    if o.expert and (o.contrastive_weight == 0 or t.freeze not in ("both", "text") or not o.k_english):
        return ("--expert adds an axis to the n-dim loss beside the English captions' frozen features: it needs "
                "--contrastive-weight > 0, --k-english >= 1 and --freeze both or text")
    if (o.anchor_bank or o.lsa_weight) and o.contrastive_weight == 0:
        return "--anchor-bank and --lsa-weight act on the student's CLIP features: they need --contrastive-weight > 0"
    if o.english_anchor != "none" and o.contrastive_weight > 0 and not o.k_english:
        return "--english-anchor pulls the student towards an English caption axis: it needs --k-english >= 1"
    if s.mixed_precision == "fp16" and not torch.cuda.is_available():
        return "--mixed-precision fp16 needs CUDA (fp16 autocast with loss scaling); use bf16 on a CPU"
    if o.contrastive_weight > 0 and o.m_source < 1:
        return "--m-source must be at least 1: the n-dim loss reads the student's translations"
    if o.contrastive_weight == 0 and t.freeze != "both":
        return f"--freeze {t.freeze} trains CLIP towers through the n-dim loss, which --contrastive-weight 0 turns off"
    if s.steps and o.contrastive_weight == 0 and o.token_ce_weight == 0:
        return "--contrastive-weight 0 and --token-ce-weight 0 leave nothing to train"
    if cfg.student.splice == "argmax" and o.token_ce_weight == 0 and t.freeze == "both" and s.steps:
        return "--splice argmax passes no gradient to the student: with --token-ce-weight 0 nothing trains it"
    for flag, on in (("--pivot-every-name", p.pivot_every_name), ("--pivot-source-words", p.pivot_source_words)):
        if on and (p.pivot_teaches != "explained" or p.pivot is False):
            return (f"{flag} reads the words a pivot target's source explains: it needs --pivot and "
                    "--pivot-teaches explained")
    if p.pair_rerank and p.lexicon_pairs == 0:
        return "--pair-rerank chooses translations by the word pairs, which --lexicon-pairs 0 leaves out"
    if p.pair_force and (p.lexicon_pairs == 0 or p.pair_rerank == 0):
        return ("--pair-force adds candidates to the rerank by word pairs, which "
                + ("--lexicon-pairs 0 leaves out" if p.lexicon_pairs == 0 else "--pair-rerank 0 turns off"))
    if p.lexicon_phrase_words and p.lexicon_phrase_words > 1 and p.lexicon_pairs == 0:
        return "--lexicon-phrase-words adds phrases to the word pairs, which --lexicon-pairs 0 leaves out"
    if p.lexicon_explain_away and p.lexicon_pairs == 0:
        return "--lexicon-explain-away adds pairs to the word pairs, which --lexicon-pairs 0 leaves out"
    if o.token_ce_weight == 0 and p.lexicon_pairs:
        return "--lexicon-pairs are targets of the token cross-entropy, which --token-ce-weight 0 turns off"
    if o.token_ce_weight == 0 and (p.pivot or p.self_train_rounds):
        return ("--pivot and --self-train-rounds make targets for the token cross-entropy, which --token-ce-weight 0 "
                "turns off: add --no-pivot --self-train-rounds 0")
    return None


def upgraded(saved: dict[str, Any]) -> dict[str, Any]:
    """A config.json's options under today's names: renamed options under their new names,
    similarities under their descriptive names, and the options a run saved before they existed
    trained without: `pseudo_anneal`, `pivot_every_name` and `pivot_source_words` False, `pivot_teaches`
    and `self_train_replace` 'all', `lexicon_pairs` and `pair_rerank` 0, `lexicon_phrase_words` 1,
    `lexicon_explain_away` False."""
    values = {"pseudo_anneal": False, "pivot_every_name": False, "pivot_source_words": False, "pivot_teaches": "all",
              "self_train_replace": "all", "lexicon_pairs": 0, "pair_rerank": 0, "lexicon_phrase_words": 1,
              "lexicon_explain_away": False}
    for key, value in saved.items():
        name = ALIASES.get(key, key)
        if name in OPTIONS:
            values[name] = value
    if "english_anchor" in values and values["english_anchor"] is None:
        values["english_anchor"] = "none"
    if values.get("similarity") in OPTIONS["similarity"].metadata["choices"]:  # else `saved_options` names it
        values["similarity"] = descriptive_name(values["similarity"])
    return values


def named_options(argv: list[str]) -> dict[str, Any]:
    """The options a command line (with its --config file) names, by option name."""
    given = vars(build_parser(defaults=False).parse_args(argv))
    if "config" in given:
        given = vars(build_parser(defaults=False).parse_args(yaml_argv(given.pop("config"), build_parser()) + argv))
        given.pop("config", None)
    if "similarity" in given:
        given["similarity"] = descriptive_name(given["similarity"])
    return given


# The keys of config.json a resume cannot do without: what decides the data, the vocabularies, the
# model shapes and the schedule. Another option missing from an older file takes the value that run
# trained with (`upgraded`) or its default.
RESUME_NEEDS = ("lang", "data", "seed", "source_vocab", "clip", "student", "student_preset", "target_vocab",
                "max_target_length", "steps", "batch_size", "lr")


def _json_type(hint: Any) -> Any:
    """An option's type as JSON holds it (a tuple option is a JSON array)."""
    if typing.get_origin(hint) is tuple:
        return list[typing.get_args(hint)[0]]
    args = typing.get_args(hint)
    return functools.reduce(operator.or_, (_json_type(a) for a in args)) if args else hint


def _saved_config_schema() -> Any:
    hints = {name: _json_type(hint) for kind in GROUPS.values() for name, hint in typing.get_type_hints(kind).items()}
    fields = {**hints, **{old: hints[new] for old, new in ALIASES.items()}, "run_id": str, "data_path": str,
              "world_size": PositiveInt}
    return TypedDict("SavedConfig", {name: Required[kind] if name in RESUME_NEEDS else kind
                                     for name, kind in fields.items()}, total=False)


SAVED_CONFIG = _saved_config_schema()


def saved_options(run: RunDir) -> dict[str, Any]:
    """A run's config.json as options under today's names, checked (`ReadBackError`, one line
    naming the file and the field): the type of every option it holds, the keys of RESUME_NEEDS,
    every choice and range, and that the options can train together."""
    saved = upgraded(read_json(run.config, SAVED_CONFIG))
    for name, value in saved.items():
        choices = OPTIONS[name].metadata["choices"]
        why = (f"expected one of {', '.join(choices)}, found {value!r}" if choices and value not in choices
               else bound_problem(name, value, label="the value"))
        if why:
            raise ReadBackError(f'{run.config}: field "{name}": {why}')
    problem = config_problem(TrainConfig.from_flat(saved))
    if problem:
        raise ReadBackError(f"{run.config}: these options cannot train together: {problem}")
    return saved


def resumed_config(run: RunDir, given: dict[str, Any]) -> TrainConfig:
    """The configuration of the run being resumed: its config.json (every derived value included,
    checked by `saved_options`), with the options in RESUME_MAY_CHANGE that `given` names. Any
    other option given with a different value is refused, naming the conflict."""
    saved = saved_options(run)
    conflicts = [f"{flag(k)} {v} (the run has {saved.get(k)})" for k, v in given.items()
                 if k not in RESUME_MAY_CHANGE and k in saved and _json(saved[k]) != _json(v)]
    if conflicts:
        may_change = ", ".join(flag(k) for k in RESUME_MAY_CHANGE[:-2])
        raise InputError(f"--resume continues {run.root} as configured in its config.json; these options differ: "
                         f"{'; '.join(conflicts)}. Only {may_change} may change")
    changed = {k: v for k, v in given.items() if k in RESUME_MAY_CHANGE}
    return TrainConfig.from_flat({**saved, **changed, "resume": True})


def _json(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def cache_root(cache_dir: str | None) -> Path:
    return Path(cache_dir or os.environ.get("GROUNDMT_CACHE") or Path.home() / ".cache" / "groundmt")


def run_folder(cfg: TrainConfig) -> Path:
    """--out, or a new timestamped runs/DATA-LANG-*, or with --resume the newest one."""
    if cfg.run.out:
        return Path(cfg.run.out)
    prefix = f"{cfg.dataset.data}-{cfg.dataset.lang}-"
    if cfg.run.resume:
        runs = sorted(p for p in Path("runs").glob(prefix + "*") if (p / "config.json").is_file())
        if not runs:
            raise InputError(f"--resume without --out, and no run runs/{prefix}* to resume")
        return runs[-1]
    return Path("runs") / (prefix + time.strftime("%Y%m%d-%H%M%S"))


def resolve_place(cfg: TrainConfig, out: Path, local_processes: int) -> TrainConfig:
    """Where and how the run works, decided before any data is read: its folder, its cache
    (`--cache-dir`, else $GROUNDMT_CACHE, else ~/.cache/groundmt), its CPU threads (0: the
    machine's cores shared among its processes), the size of an embedded world it builds and its
    warm-up (`models.schedules.default_warmup` of its steps)."""
    threads = cfg.run.threads or max(1, (os.cpu_count() or 1) // max(1, local_processes))
    d = cfg.dataset
    images = d.world_images
    if images is None and d.data_dir is None and d.data in WORLDS:
        images = WORLDS[d.data].pictures
    warmup = cfg.optim.warmup_steps
    if warmup is None:
        warmup = default_warmup(cfg.optim.steps)
    return cfg.replace(out=str(out), cache_dir=str(cache_root(cfg.run.cache_dir)), threads=threads, world_images=images,
                       warmup_steps=warmup)


def resolve(cfg: TrainConfig, data: TrainingData, log: Callable[[str], None] = lambda _: None) -> TrainConfig:
    """Every option left to the data: `--parallel-fraction` (an embedded world's own share,
    `data_prep.worlds`), the recipe (`--pivot`, `--self-train-rounds`: on when the token CE trains
    and human translations are scarce — under PSEUDO_TARGETS_BELOW of the training captions, or
    over TEACHABLE_WORDS_ABOVE of the training source words are words no translated caption shows
    and the pictures pair with an English phrase; the choice is logged; `--lexicon-pairs`
    LEXICON_PAIRS with pivot targets, else 0; `--lexicon-phrase-words` LEXICON_PHRASE_WORDS with word
    pairs where human translations cover at least PHRASE_PAIRS_FROM of the captions, else 1 (logged);
    `--lexicon-explain-away` on with word pairs from EXPLAIN_AWAY_FROM of the captions (logged);
    `--pair-rerank` PAIR_RERANK with word pairs, else 0; `--pair-force` PAIR_FORCE with that rerank, else 0),
    `--max-target-length` (the longest training English text + 2, at most CLIP's context),
    `--tower-lr` (--lr) and `--compare-ce` (on for an embedded-world run that uses images)."""
    d, p, o = cfg.dataset, cfg.pseudo, cfg.objective
    fraction = d.parallel_fraction
    if fraction is None and data.world is not None:
        fraction = WORLDS[data.world].parallel_fraction
    share = len(data.human_targets(fraction)) / max(1, data.n_captions)
    if p.pivot is None or p.self_train_rounds is None:
        untranslated = data.untranslated_word_share(fraction, d.lang)
        teachable = data.teachable_word_share(fraction, d.lang)
        scarce = share < PSEUDO_TARGETS_BELOW or teachable > TEACHABLE_WORDS_ABOVE
        pivot = scarce and o.token_ce_weight > 0 if p.pivot is None else p.pivot
        rounds = (2 if scarce and o.token_ce_weight > 0 else 0) if p.self_train_rounds is None else p.self_train_rounds
        log(f"recipe: human translations for {share:.1%} of the training captions "
            f"({'under' if share < PSEUDO_TARGETS_BELOW else 'at least'} {PSEUDO_TARGETS_BELOW:.0%}); "
            f"{untranslated:.1%} of the source words in none of them, "
            f"{teachable:.1%} words the pictures pair with an English phrase "
            f"({'over' if teachable > TEACHABLE_WORDS_ABOVE else 'at most'} {TEACHABLE_WORDS_ABOVE:.1%}): "
            f"pivot {'on' if pivot else 'off'}, {rounds} self-training round(s)")
    else:
        pivot, rounds = p.pivot, p.self_train_rounds
    pairs = p.lexicon_pairs
    if pairs is None:
        pairs = LEXICON_PAIRS if pivot else 0
        log(f"lexicon pairs: {pairs} per batch ({'with' if pivot else 'without'} pivot targets)")
    phrase_words = p.lexicon_phrase_words
    if phrase_words is None:
        phrase_words = LEXICON_PHRASE_WORDS if pairs and share >= PHRASE_PAIRS_FROM else 1
        if pairs:
            log(f"phrase pairs: {f'2 to {phrase_words} words' if phrase_words > 1 else 'none'} (human translations "
                f"for {share:.1%} of the training captions, {'at least' if phrase_words > 1 else 'under'} "
                f"{PHRASE_PAIRS_FROM:.0%})")
    elif phrase_words > 1 and not pairs:
        raise InputError("--lexicon-phrase-words adds phrases to the word pairs, and this run reads none "
                         "(--lexicon-pairs resolved to 0: no pivot targets)")
    explain = p.lexicon_explain_away
    if explain is None:
        explain = bool(pairs) and share >= EXPLAIN_AWAY_FROM
        if pairs:
            log(f"words of one picture: {'paired by explaining away' if explain else 'not paired'} (human "
                f"translations for {share:.1%} of the training captions, {'at least' if explain else 'under'} "
                f"{EXPLAIN_AWAY_FROM:.0%})")
    elif explain and not pairs:
        raise InputError("--lexicon-explain-away adds pairs to the word pairs, and this run reads none "
                         "(--lexicon-pairs resolved to 0: no pivot targets)")
    rerank = p.pair_rerank
    if rerank is None:
        rerank = PAIR_RERANK if pairs else 0
    elif rerank and not pairs:
        raise InputError("--pair-rerank chooses translations by the word pairs, and this run reads none "
                         "(--lexicon-pairs resolved to 0: no pivot targets)")
    force = p.pair_force
    if force is None:
        force = PAIR_FORCE if rerank else 0.0
    elif force and not rerank:
        raise InputError("--pair-force adds candidates to the rerank by word pairs, and this run has none "
                         + ("(--lexicon-pairs resolved to 0: no pivot targets)" if not pairs else "(--pair-rerank 0)"))
    length = cfg.student.max_target_length
    if not length:
        tokenize = clip_tokenizer(cfg.teacher.clip)
        texts = data.english_captions() + [t.text for _, t in data.human_targets(fraction)]
        length = min(tokenize.context_length, int((tokenize(texts) != 0).sum(1).max()) + 2)
    compare = cfg.eval.compare_ce
    if compare is None:
        compare = data.world is not None and (o.contrastive_weight > 0 or pivot or rounds > 0)
    return cfg.replace(parallel_fraction=fraction, pivot=pivot, self_train_rounds=rounds, lexicon_pairs=pairs,
                       lexicon_phrase_words=phrase_words, lexicon_explain_away=explain, pair_rerank=rerank,
                       pair_force=force,
                       max_target_length=length, tower_lr=cfg.teacher.tower_lr or cfg.optim.lr, compare_ce=compare)


def as_argv(values: dict[str, Any]) -> list[str]:
    """Flat option values as command-line tokens (what a recipe or a configuration reads as on a command line)."""
    argv = []
    for name, value in values.items():
        if isinstance(value, bool):
            argv.append(flag(name) if value else "--no-" + flag(name)[2:])
        elif isinstance(value, (list, tuple)):
            argv += [token for item in value for token in (flag(name), str(item))]
        elif value is not None:
            argv += [flag(name), str(value)]
    return argv


def with_recipe(cfg: TrainConfig, recipe: str, **values: Any) -> TrainConfig:
    """`cfg` with a named recipe's options (and `values`) in place of its own."""
    return cfg.replace(**RECIPES[recipe], recipe=recipe, **values)
