"""`python -m eval ablation`: do images help a low-resource translator?

A grid of training runs — parallel fractions P × systems × seeds, with identical steps, data
order and evaluation — each a `train.py` run in `OUT/runs/<system>-p<P>-s<seed>/`, then one table:
per cell, chrF, BLEU, BERTScore F, LiSAScore F and translation→image R@1 (in batches of 32) on
the test split as the mean over seeds with a 95% t-interval, and the difference to `ce` on the
same sentences by a paired bootstrap stratified over seeds (`eval.stats.stratified_paired_bootstrap`).
On a dataset whose captions carry concept ids, unseen- and seen-concept accuracy too
(`eval.concept_scores`; from the per-sentence concept ids of each run's scores.json): the split of
a cell is that of its P and seed (the concepts the translated captions show), and a system that
reads no translation is counted with the split of the `ce` run it is compared with.

Systems are train.py's recipes (`--recipe`, `training.options.RECIPES`): `ce` (token
cross-entropy only), `ce+contrastive` (plus the n-dim loss), `ce+pseudo` (plus image-pivoted and
CLIP-judged self-trained targets) and `contrastive` (the n-dim loss only); the names of earlier
grids (`ce+ground`, `grounded`, `ground`) are accepted for them. `contrastive` reads no
translation, so it does not depend on P: it is trained once per seed and shown in every P column.
At P = 0 nothing trains `ce`: its cell is the untrained student (the same initialisation every run
of a seed starts from).

The grid is resumable: a run whose `eval/scores.json` exists is not trained again, so rerunning
the command after an interruption continues where it stopped (a half-trained run resumes from
its checkpoint with `--resume`). `--out` must be new, empty or an ablation folder (its
`plan.json`); one process at a time works in it (`data_prep.locks`). Options are checked at
parsing (seeds, jobs and steps positive, fractions in [0, 1]), the grid's size before it is built
(at most MAX_RUNS runs); each run's scores are read back against `CellScores` (a damaged file is
one line naming it and the field).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, NotRequired

import numpy as np
from pydantic import FiniteFloat
from scipy import stats as scipy_stats
from tqdm.auto import tqdm
from typing_extensions import TypedDict

from data_prep.errors import Artefact, InputError, fraction_list, marker_files, output_dir, positive_int
from data_prep.locks import FolderLock
from data_prep.text_files import read_lines
from eval import mt_metrics
from eval.concept_scores import SentenceConcepts
from eval.concepts import sentence_statistic, with_kinds_of
from eval.score import NonEmpty
from eval.stats import Statistic, stratified_paired_bootstrap
from models.typed_json import read_json
from training.config import as_argv
from training.options import RECIPES

ROOT = Path(__file__).resolve().parents[1]
FRACTIONS = (0.0, 0.01, 0.02, 0.05, 0.1, 0.3)
TRAIN_ARGS_HELP = ("extra train.py flags for every run, joined with '=': "
                   "--train-args=\"--pseudo-anneal --batch-size 16\"")
QUICK_FRACTIONS = (0.0, 0.05)
QUICK_SYSTEMS = ("ce", "ce+taught+pairs")
SYSTEMS = tuple(name for name in RECIPES if name != "auto")  # train.py's recipes (docs/ablation.md)
OLD_NAMES = {"ce+ground": "ce+contrastive", "grounded": "ce+pseudo", "ground": "contrastive"}  # of earlier grids
P_INDEPENDENT = {"contrastive"}
PLAN_FILE = "plan.json"
MAX_RUNS = 10_000  # a grid of training runs larger than this is a typo (--seeds 1000000), not a plan
ABLATION_DIR = Artefact("an ablation folder written by python -m eval ablation", marker_files(PLAN_FILE))
METRICS = {  # name → (value in scores.json, per-sentence statistic for the paired bootstrap)
    "chrF": "chrf", "BLEU": "bleu", "BERTScore F": "bertscore.F", "LiSAScore F": "lisascore.F",
    "R@1": "r1",
}
CONCEPT_METRICS = {"unseen concepts": "unseen", "seen concepts": "seen"}  # name → kind; datasets with concept ids


class _Score(TypedDict):
    score: FiniteFloat


class _F(TypedDict):
    F: FiniteFloat


class _Embedding(TypedDict):
    corpus: _F


class _InBatch(TypedDict):
    b2a: FiniteFloat
    b2a_hits: Annotated[list[FiniteFloat], NonEmpty]


class _Translation(TypedDict):
    in_batch: _InBatch


class _Retrieval(TypedDict):
    translation: _Translation


class _Metrics(TypedDict):
    chrf: _Score
    bleu: _Score
    bertscore: _Embedding
    lisascore: _Embedding
    retrieval: _Retrieval


_Sentence = TypedDict("_Sentence", {"references": Annotated[list[str], NonEmpty], "bertscore.F": FiniteFloat,
                                    "lisascore.F": FiniteFloat, "concepts": NotRequired[SentenceConcepts]})


class CellScores(TypedDict):
    """What the table reads from a run's eval/scores.json (a part of `eval.score.ScoreFile`)."""

    target_lang: str
    metrics: _Metrics
    sentences: Annotated[list[_Sentence], NonEmpty]


@dataclass(frozen=True)
class Cell:
    system: str
    fraction: float
    seed: int

    @property
    def name(self) -> str:
        p = "any" if self.system in P_INDEPENDENT else f"{self.fraction:g}"
        return f"{self.system}-p{p}-s{self.seed}"


def add_ablation_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", required=True, help="folder of the grid's runs and its ablation.json")
    p.add_argument("--lang", default="es", help="source language of the embedded world (default: es)")
    p.add_argument("--data-dir", help="a dataset built by `python -m data_prep` (default: the embedded world)")
    p.add_argument("--fractions", type=fraction_list,
                   help=f"comma-separated parallel fractions in [0, 1] (default: {','.join(map(str, FRACTIONS))})")
    p.add_argument("--systems", default=",".join(SYSTEMS), help="comma-separated train.py recipes, from %(default)s")
    p.add_argument("--seeds", type=positive_int, default=3, help="seeds 0..N-1 (default: 3)")
    p.add_argument("--steps", type=positive_int, default=900, help="student steps of every run (default: 900, as train.py)")
    p.add_argument("--quick", action="store_true",
                   help=f"P in {QUICK_FRACTIONS}, systems {','.join(QUICK_SYSTEMS)}, 2 seeds: a quick check")
    p.add_argument("--jobs", type=positive_int, default=2, help="runs trained at once, one CPU thread each (default: 2)")
    p.add_argument("--train-args", default="", help=TRAIN_ARGS_HELP)


def plan(args: argparse.Namespace) -> list[Cell]:
    fractions = QUICK_FRACTIONS if args.quick and not args.fractions else args.fractions or FRACTIONS
    systems = list(QUICK_SYSTEMS) if args.quick and args.systems == ",".join(SYSTEMS) else \
        [OLD_NAMES.get(s.strip(), s.strip()) for s in args.systems.split(",") if s.strip()]
    unknown = sorted(set(systems) - set(SYSTEMS))
    if unknown:
        raise InputError(f"--systems: unknown system(s) {unknown}; choose from {','.join(SYSTEMS)}")
    if "ce" not in systems:
        raise InputError("--systems: the ablation compares every system with `ce`: keep it in --systems")
    seeds = range(2 if args.quick else args.seeds)
    if len(systems) * len(fractions) * len(seeds) > MAX_RUNS:  # before the grid is built in memory
        raise InputError(f"the grid would train {len(systems) * len(fractions) * len(seeds)} runs (--systems x "
                         f"--fractions x --seeds); at most {MAX_RUNS}, each takes minutes")
    cells = {Cell(s, 0.0 if s in P_INDEPENDENT else p, seed) for s in systems for p in fractions for seed in seeds}
    return sorted(cells, key=lambda c: (c.seed, c.fraction, c.system))


def train_argv(cell: Cell, args: argparse.Namespace) -> list[str]:
    steps = 0 if cell.system == "ce" and cell.fraction == 0 else args.steps  # nothing trains ce at P = 0
    argv = ["--seed", str(cell.seed), "--steps", str(steps), "--parallel-fraction", str(cell.fraction),
            "--eval-bootstrap", "0", "--no-eval-untrained", "--no-compare-ce", "--recipe", cell.system]
    if args.data_dir:
        argv += ["--data-dir", args.data_dir]
    else:
        argv += ["--lang", args.lang]
    return argv + args.train_args.split()


def shared_train_args(train_args: str) -> list[str]:
    """`--train-args` as the ablation's JSON and page record them: every flag but `--cache-dir`, which
    says where builds are cached on this machine, not what the runs train (and is a local path)."""
    words, kept = train_args.split(), []
    skip = False
    for word in words:
        if skip:
            skip = False
        elif word == "--cache-dir":
            skip = True
        elif not word.startswith("--cache-dir="):
            kept.append(word)
    return kept


def run_grid(runs: dict[str, list[str]], out: Path, *, jobs: int, desc: str) -> list[str]:
    """Train every run `name -> train.py arguments` into `out/runs/<name>` (logs in `out/logs/`),
    `jobs` at a time with one CPU thread each; a run whose `eval/scores.json` exists is skipped and a
    started one is resumed, so rerunning a grid continues it. Returns the names of failed runs."""
    def one(name: str) -> tuple[str, int]:
        run = out / "runs" / name
        if (run / "eval" / "scores.json").is_file():
            return name, 0
        argv = [sys.executable, str(ROOT / "train.py"), *runs[name], "--out", str(run), "--quiet", "--threads", "1",
                *(["--resume"] if (run / "config.json").is_file() else [])]
        log = out / "logs" / f"{name}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("a") as f:
            return name, subprocess.call(argv, stdout=f, stderr=subprocess.STDOUT, cwd=ROOT,
                                         env={**os.environ, "OMP_NUM_THREADS": "1"})

    failed = []
    with ThreadPoolExecutor(max(1, jobs)) as pool:
        for name, code in tqdm(pool.map(one, list(runs)), total=len(runs), desc=desc):
            if code:
                failed.append(name)
    return failed


def cell_scores(run: Path) -> dict:
    """The values of one run that the table shows, and per-sentence statistics for pairing."""
    scores = read_json(run / "eval" / "scores.json", CellScores)
    hyps = read_lines(run / "eval" / "hyp.txt")
    if len(hyps) != len(scores["sentences"]):
        raise InputError(f"{run / 'eval' / 'hyp.txt'} has {len(hyps)} lines but {run / 'eval' / 'scores.json'} "
                         f"scores {len(scores['sentences'])} sentences; delete {run} to train it again")
    refs = [row["references"] for row in scores["sentences"]]
    m = scores["metrics"]
    values = {"chrF": m["chrf"]["score"], "BLEU": m["bleu"]["score"],
              "BERTScore F": m["bertscore"]["corpus"]["F"], "LiSAScore F": m["lisascore"]["corpus"]["F"],
              "R@1": m["retrieval"]["translation"]["in_batch"]["b2a"]}
    statistics = {}
    for name, metric in (("chrF", "chrf"), ("BLEU", "bleu")):
        sacre, seg = mt_metrics.segment_statistics(metric, hyps, refs, target_lang=scores["target_lang"])
        statistics[name] = Statistic(seg, lambda s, m=sacre: mt_metrics.stats_to_score(m, s))
    for name, key in (("BERTScore F", "bertscore.F"), ("LiSAScore F", "lisascore.F")):
        statistics[name] = Statistic.mean([row[key] for row in scores["sentences"]])
    statistics["R@1"] = Statistic.mean(scores["metrics"]["retrieval"]["translation"]["in_batch"]["b2a_hits"])
    repeated = max(np.unique(hyps, return_counts=True)[1]) / len(hyps) if hyps else 0.0
    named = [row.get("concepts") for row in scores["sentences"]]
    return {"values": values, "statistics": statistics, "hypotheses": hyps, "most_repeated_output": repeated,
            "concepts": named if all(n is not None for n in named) else None, "path": run}


def concept_statistics(run: dict, split: dict | None) -> dict[str, Statistic]:
    """Unseen/seen concept accuracy statistics of one run, counted with the unseen/seen split of the
    run `split` (the run itself, or the `ce` run at the same P and seed); none without concept ids."""
    if run["concepts"] is None or split is None or split["concepts"] is None:
        return {}
    sentences = run["concepts"]
    if split is not run:
        try:
            sentences = with_kinds_of(sentences, split["concepts"])
        except ValueError as exc:
            raise InputError(f"{run['path']} and {split['path']}: {exc}; delete the runs trained on another "
                             "dataset to train them again") from None
    return {name: s for name, kind in CONCEPT_METRICS.items() if (s := sentence_statistic(sentences, kind)) is not None}


def mean_ci(values: list[float]) -> dict:
    """Mean over seeds with a 95% t-interval (no interval from one seed)."""
    v = np.asarray(values, dtype=np.float64)
    mean = float(v.mean())
    if len(v) < 2:
        return {"mean": mean, "low": None, "high": None, "n": len(v), "values": v.tolist()}
    half = float(scipy_stats.t.ppf(0.975, len(v) - 1) * v.std(ddof=1) / math.sqrt(len(v)))
    return {"mean": mean, "low": mean - half, "high": mean + half, "n": len(v), "values": v.tolist()}


def aggregate(cells: list[Cell], out: Path, fractions: list[float]) -> dict:
    """The ablation table: per (system, P), every metric's mean ± CI over seeds and its paired
    difference to `ce` at the same P and seeds."""
    runs = {c: cell_scores(out / "runs" / c.name) for c in cells if (out / "runs" / c.name / "eval" / "scores.json").is_file()}
    systems = sorted({c.system for c in cells}, key=SYSTEMS.index)
    seeds = sorted({c.seed for c in cells})

    def lookup(system: str, fraction: float, seed: int) -> dict | None:
        return runs.get(Cell(system, 0.0 if system in P_INDEPENDENT else fraction, seed))

    def statistics(system: str, fraction: float, seed: int, run: dict) -> dict[str, Statistic]:
        """Every metric's statistic; concept accuracy with the split of this P and seed."""
        split = lookup("ce", fraction, seed) if system in P_INDEPENDENT else run
        return {**run["statistics"], **concept_statistics(run, split)}

    table = []
    for fraction in fractions:
        for system in systems:
            got = [(seed, lookup(system, fraction, seed)) for seed in seeds]
            got = [(seed, statistics(system, fraction, seed, r), r) for seed, r in got if r is not None]
            if not got:
                continue
            names = [*METRICS, *(k for k in CONCEPT_METRICS if any(k in s for _, s, _ in got))]
            row = {"system": system, "fraction": fraction, "seeds": [seed for seed, _, _ in got],
                   "metrics": {k: mean_ci([r["values"][k] if k in METRICS else s[k].score for _, s, r in got
                                           if k in s]) for k in names},
                   "most_repeated_output": max(r["most_repeated_output"] for _, _, r in got)}
            base = {seed: lookup("ce", fraction, seed) for seed, _, _ in got}
            if system != "ce" and all(b is not None for b in base.values()):
                base_statistics = {seed: statistics("ce", fraction, seed, b) for seed, b in base.items()}
                row["vs_ce"] = {k: stratified_paired_bootstrap(pairs) for k in names
                                if (pairs := [(s[k], base_statistics[seed][k]) for seed, s, _ in got
                                              if k in s and k in base_statistics[seed]])}
            table.append(row)
    return {"fractions": fractions, "systems": systems, "seeds": seeds, "table": table,
            "flags": {s: ["--recipe", s, *as_argv(RECIPES[s])] for s in systems}, "missing": [c.name for c in cells if c not in runs]}


def run_ablation(args: argparse.Namespace) -> int:
    cells = plan(args)
    out = output_dir(args.out, "--out", artefact=ABLATION_DIR, replace=True, inputs={"--data-dir": args.data_dir})
    fractions = sorted({c.fraction for c in cells if c.system not in P_INDEPENDENT} or {0.0})
    with FolderLock(out, "python -m eval ablation"):  # one grid at a time in a folder
        for cell in cells:  # a damaged score file is reported before any training, not after it
            if (scores := out / "runs" / cell.name / "eval" / "scores.json").is_file():
                read_json(scores, CellScores)
        (out / PLAN_FILE).write_text(json.dumps({"argv": sys.argv[1:], "runs": [c.name for c in cells]}, indent=1))
        failed = run_grid({c.name: train_argv(c, args) for c in cells}, out, jobs=args.jobs, desc="ablation runs")
        result = aggregate(cells, out, fractions)
        result.update(failed=failed, data=Path(args.data_dir).name if args.data_dir else f"embedded world ({args.lang})", steps=args.steps,
                      train_args=shared_train_args(args.train_args))
        (out / "ablation.json").write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {out / 'ablation.json'}" + (f"; failed runs (see {out / 'logs'}): {failed}" if failed else ""))
    return 1 if failed else 0
