"""Forced names (`train.py --pair-force`, `models.pair_rerank`) measured on trained runs: each run
of the default recipe decoded by the rerank by word pairs alone (its 16-best list) and with the
forced names' candidates at each margin, on the run's own test sentences; chrF, BLEU and
unseen-/seen-concept accuracy, each difference by the paired bootstrap stratified over the seeds of
a (language, P) cell, against the rerank alone and, where the token-CE run of the same language,
P and seed is given, against `ce` (greedy, as its own evaluation decoded). The n-best list and the
forced options are computed once per run; the margins only choose among them.

    python benchmarks/forced_names.py RUN [RUN ...] [--ce RUN ...] [--margins 0.5,1,2] [--size 16] [--out FILE]

Written to benchmarks/results/forced_names.json (docs/translate.md, "Forced names").
"""
from __future__ import annotations

import json
import sys
import time
from collections import defaultdict
from pathlib import Path

import torch

from data_prep.errors import InputError, Parser, positive_int, run_command
from eval.ablation import cell_scores
from pair_rerank import (METRICS, cell_means, compare, interval, run_matcher, run_pairs,  # a sibling script on the path
                         statistics)
from models.grounded import GroundedSystem
from models.pair_rerank import PairLexicon
from translate.translator import run_config

RESULTS = Path(__file__).resolve().parent / "results" / "forced_names.json"


def decode_run(run: Path, margins: list[float], size: int) -> tuple[dict, dict[str, list[str]]]:
    """The run's test translations by the rerank of its `size`-best list alone and with forced names at
    each margin."""
    config = run_config(run)
    sources = [s["source"] for s in json.loads((run / "eval" / "scores.json").read_text())["sentences"]]
    system = GroundedSystem.load(run / "model")
    system.pair_lexicon = lexicon = run_pairs(run, config, size)
    start = time.perf_counter()
    candidates, scores = system.nbest(sources, size=size)
    chosen = [c[j] for c, j in zip(candidates, lexicon.choose(sources, candidates, scores))]
    middle = time.perf_counter()
    forced = system.forced_options(sources, candidates, chosen)
    seconds = {"nbest": middle - start, "forced": time.perf_counter() - middle}
    hyps = {"rerank": chosen}
    for margin in margins:
        margined = PairLexicon(lexicon.lang, lexicon.pairs, size, lexicon.segment, margin)
        hyps[f"forced {margin:g}"] = texts = list(chosen)
        for i, (options, rescored) in forced.items():
            texts[i] = options[margined.choose_forced(sources[i], options, rescored)]
    info = {"run": run.name, "lang": config["lang"], "fraction": config["parallel_fraction"], "seed": config["seed"],
            "pairs": len(lexicon.pairs), "forced_sentences": len(forced), "seconds": seconds,
            "changed": {name: sum(a != b for a, b in zip(h, chosen)) for name, h in hyps.items() if name != "rerank"}}
    return info, hyps


def measure(runs: list[Path], ce_runs: list[Path], margins: list[float], size: int) -> dict:
    ce = {}
    for run in ce_runs:
        c = run_config(run)
        ce[(c["lang"], c["parallel_fraction"], c["seed"])] = run
    cells: dict[tuple, list] = defaultdict(list)
    for run in runs:
        if not (run / "eval" / "scores.json").is_file():
            raise InputError(f"{run}: no eval/scores.json (an evaluated run of train.py)")
        info, hyps = decode_run(run, margins, size)
        key = (info["lang"], info["fraction"], info["seed"])
        if key in ce:
            hyps["ce"] = cell_scores(ce[key])["hypotheses"]
        sentences = json.loads((run / "eval" / "scores.json").read_text())["sentences"]
        matcher = run_matcher(run_config(run))
        info["statistics"] = {name: statistics(h, sentences, matcher) for name, h in hyps.items()}
        print(f"{run.name}: " + ", ".join(
            f"{name} chrF {s['chrF'].score:.1f}" + (f" unseen {s['unseen concepts'].score:.3f}"
                                                    if "unseen concepts" in s else "")
            for name, s in info["statistics"].items()), flush=True)
        cells[key[:2]].append(info)
    table = []
    for (lang, fraction), infos in sorted(cells.items()):
        stats = [i["statistics"] for i in infos]
        row = {"lang": lang, "fraction": fraction, "seeds": [i["seed"] for i in infos],
               "runs": [i["run"] for i in infos], "pairs": [i["pairs"] for i in infos],
               "forced_sentences": [i["forced_sentences"] for i in infos],
               "seconds": [i["seconds"] for i in infos], "changed": [i["changed"] for i in infos],
               "scores": {name: {m: [s[name][m].score for s in stats if m in s[name]] for m in METRICS}
                          for name in stats[0]}, "vs_rerank": {}, "vs_ce": {}}
        for name in stats[0]:
            if name.startswith("forced"):
                row["vs_rerank"][name] = compare([(s[name], s["rerank"]) for s in stats])
        if all("ce" in s for s in stats):
            for name in stats[0]:
                if name != "ce":
                    row["vs_ce"][name] = compare([(s[name], s["ce"]) for s in stats])
        table.append(row)
    return {"size": size, "margins": margins, "torch_threads": torch.get_num_threads(), "cells": table}


def markdown(result: dict) -> str:
    lines = ["| lang | P | seeds | margin | chrF | Δ chrF vs rerank | Δ BLEU vs rerank | unseen rerank → forced | "
             "Δ unseen | Δ seen | Δ chrF vs `ce` |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for c in result["cells"]:
        mean = cell_means(c)
        for name, vs in c["vs_rerank"].items():
            unseen = (f"{mean['rerank']['unseen concepts']:.3f} → {mean[name]['unseen concepts']:.3f}"
                      if "unseen concepts" in mean["rerank"] else "–")
            lines.append(
                f"| {c['lang']} | {c['fraction']} | {len(c['seeds'])} | {name.split()[1]} | {mean[name]['chrF']:.1f} | "
                f"{interval(vs.get('chrF'), 1)} | {interval(vs.get('BLEU'), 1)} | {unseen} | {interval(vs.get('unseen concepts'), 3)} | "
                f"{interval(vs.get('seen concepts'), 3)} | {interval(c['vs_ce'].get(name, {}).get('chrF'), 1)} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = Parser(prog="python benchmarks/forced_names.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path, help="evaluated runs of the default recipe (with word pairs)")
    parser.add_argument("--ce", nargs="*", type=Path, default=[], help="token-CE runs to compare with (same lang, P, seed)")
    parser.add_argument("--margins", default="0.5,1,2", help="comma-separated margins (default 0.5,1,2)")
    parser.add_argument("--size", type=positive_int, default=16, help="n-best size (default 16, the default rerank's)")
    parser.add_argument("--out", type=Path, default=RESULTS, help=f"JSON output (default {RESULTS})")
    args = parser.parse_args(argv)

    def command() -> int:
        try:
            margins = [float(m) for m in args.margins.split(",")]
        except ValueError:
            margins = []
        if not margins or not all(0 <= m < float("inf") for m in margins):
            raise InputError(f"--margins: expected numbers of at least 0 separated by commas, got {args.margins!r}")
        result = measure(args.runs, args.ce, margins, args.size)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=1, ensure_ascii=False) + "\n")
        print(markdown(result))
        return 0

    return run_command(command)


if __name__ == "__main__":
    sys.exit(main())
