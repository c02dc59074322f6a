"""The test-time rerank by word pairs (`train.py --pair-rerank`, `models.pair_rerank`) measured on
trained ablation grids: per (language, P) cell, the default recipe's runs decoded greedily (as
their evaluation did before the rerank), by beam search of width N and by the pair rerank of the
same N-best list, against token CE (`ce`, greedy) on the same test sentences. chrF, BLEU (sacreBLEU's segment
statistics) and, on a world whose captions carry concept ids, unseen-/seen-concept accuracy (the
run's own split), each difference by the paired bootstrap stratified over the seeds of the cell
(`eval.stats.stratified_paired_bootstrap`).

A run saved before the rerank existed holds no `model/word_pairs.json`: its pairs are induced
again from its dataset exactly as its training induced them (`TrainingData.word_pairs` at its
`--parallel-fraction` and `--seed`). Written to benchmarks/results/pair_rerank.json
(docs/translate.md, "Rerank by word pairs").

    python benchmarks/pair_rerank.py GRID [GRID ...] [--size 16] [--system ce+taught+pairs] [--out FILE]
"""
from __future__ import annotations

import json
import sys
import time
from collections import defaultdict
from pathlib import Path

import torch

from data_prep.collate import scan_usable
from data_prep.concepts import load_concepts
from data_prep.errors import InputError, Parser, positive_int, run_command
from data_prep.load import load_dataset_dir
from data_prep.words import words
from eval import mt_metrics
from eval.ablation import cell_scores
from eval.concepts import ConceptMatcher, sentence_statistic
from eval.stats import Statistic, stratified_paired_bootstrap
from models.grounded import GroundedSystem
from models.pair_rerank import PairLexicon
from training.data import TrainingData
from translate.translator import run_config

RESULTS = Path(__file__).resolve().parent / "results" / "pair_rerank.json"
METRICS = ("chrF", "BLEU", "unseen concepts", "seen concepts")


def run_pairs(run: Path, config: dict, size: int) -> PairLexicon:
    """The run's saved word pairs, or those its training induced, rebuilt from its dataset."""
    saved = PairLexicon.load(run / "model", words)
    if saved is not None:
        return PairLexicon(saved.lang, saved.pairs, size, words)
    path = Path(config["data_path"])
    dsd = load_dataset_dir(path)
    scans = {split: scan_usable(dsd[split], need_english=1, show_progress=False) for split in dsd}
    rows = scans["train"].usable
    captions = sum(1 for row in dsd["train"].select(rows)["source"] for s in row if s.strip())
    data = TrainingData(path, dsd, scans, captions, None, None, int(config["seed"]))
    pairs = data.lexicon_pairs(config["parallel_fraction"], config["lang"], config.get("lexicon_phrase_words") or 1,
                               config.get("lexicon_explain_away", False))
    return PairLexicon.of(config["lang"], pairs, size, words)


def run_matcher(config: dict) -> ConceptMatcher:
    """The concept matcher of the run's dataset (none without a concept inventory)."""
    concepts = Path(config["data_path"]) / "concepts.json"
    return ConceptMatcher.from_names({c.id: c.english for c in load_concepts(concepts).concepts}
                                     if concepts.is_file() else {})


def pair_reranked(run: Path, size: int, force: float = 0.0) -> list[str]:
    """The run's test sentences (`eval/scores.json`) translated by the pair rerank of `size`, with
    forced names at margin `force` above 0 (`GroundedSystem.translate`)."""
    sources = [s["source"] for s in json.loads((run / "eval" / "scores.json").read_text())["sentences"]]
    system = GroundedSystem.load(run / "model")
    pairs = run_pairs(run, run_config(run), size)
    system.pair_lexicon = PairLexicon(pairs.lang, pairs.pairs, size, words, force)
    return system.translate(sources)


def statistics(hyps: list[str], sentences: list[dict], matcher: ConceptMatcher) -> dict[str, Statistic]:
    """chrF, BLEU and concept accuracy statistics of `hyps` on the run's scored test sentences."""
    refs = [s["references"] for s in sentences]
    out = {}
    for name, metric in (("chrF", "chrf"), ("BLEU", "bleu")):
        sacre, seg = mt_metrics.segment_statistics(metric, hyps, refs, target_lang="en")
        out[name] = Statistic(seg, lambda s, m=sacre: mt_metrics.stats_to_score(m, s))
    if any(s.get("concepts") is None for s in sentences):  # a dataset without concept ids: chrF and BLEU
        return out
    entries = [{"unseen": s["concepts"]["unseen"], "seen": s["concepts"]["seen"],
                "correct": [c for c in s["concepts"]["unseen"] + s["concepts"]["seen"] if matcher.named(c, h)]}
               for s, h in zip(sentences, hyps)]
    for name, kind in (("unseen concepts", "unseen"), ("seen concepts", "seen")):
        if (stat := sentence_statistic(entries, kind)) is not None:
            out[name] = stat
    return out


def measure_run(run: Path, size: int, ce: Path | None) -> dict:
    """Greedy decoding, beam search and the pair rerank of one run, and with `ce`
    the token-CE run of the same P and seed (greedy) on the same sentences."""
    config = run_config(run)
    scores = json.loads((run / "eval" / "scores.json").read_text())
    sentences = scores["sentences"]
    sources = [s["source"] for s in sentences]
    lexicon = run_pairs(run, config, size)
    system = GroundedSystem.load(run / "model")
    system.pair_lexicon = None  # greedy, as the run's evaluation decoded before the rerank existed
    greedy = system.translate(sources)
    start = time.perf_counter()
    candidates, scores_ = system.nbest(sources, size=size)
    seconds = time.perf_counter() - start
    chosen = lexicon.choose(sources, candidates, scores_)
    matcher = run_matcher(config)
    hyps = {"greedy": greedy, f"beam {size}": [c[0] for c in candidates],
            f"pair rerank {size}": [c[j] for c, j in zip(candidates, chosen)]}
    if ce is not None:
        hyps["ce"] = cell_scores(ce)["hypotheses"]
    return {"run": run.name, "lang": config["lang"], "fraction": config["parallel_fraction"], "seed": config["seed"],
            "pairs": len(lexicon.pairs), "changed": sum(j > 0 for j in chosen), "nbest_seconds": seconds,
            "statistics": {name: statistics(h, sentences, matcher) for name, h in hyps.items()}}


def ce_run(grid: Path, run: Path) -> Path | None:
    twin = grid / "runs" / ("ce" + run.name[run.name.index("-p"):])
    return twin if (twin / "eval" / "scores.json").is_file() else None


def compare(pairs: list[tuple[dict, dict]]) -> dict:
    out = {}
    for metric in METRICS:
        usable = [(a[metric], b[metric]) for a, b in pairs if metric in a and metric in b]
        if usable:
            out[metric] = stratified_paired_bootstrap(usable)
    return out


def measure(grids: list[Path], system: str, size: int) -> dict:
    cells: dict[tuple, list] = defaultdict(list)
    for grid in grids:
        runs = sorted(p for p in (grid / "runs").glob(f"{system}-p*-s*") if (p / "eval" / "scores.json").is_file())
        if not runs:
            raise InputError(f"{grid}: no evaluated {system} run under {grid / 'runs'}")
        for run in runs:
            result = measure_run(run, size, ce_run(grid, run))
            print(f"{run.parent.parent.name}/{run.name}: " + ", ".join(
                f"{name} chrF {s['chrF'].score:.1f}" + (f" unseen {s['unseen concepts'].score:.3f}"
                                                        if "unseen concepts" in s else "")
                for name, s in result["statistics"].items()), flush=True)
            cells[(result["lang"], result["fraction"])].append(result)
    rerank, beam = f"pair rerank {size}", f"beam {size}"
    table = []
    for (lang, fraction), results in sorted(cells.items()):
        stats = [r["statistics"] for r in results]
        row = {"lang": lang, "fraction": fraction, "seeds": sorted(r["seed"] for r in results),
               "pairs": [r["pairs"] for r in results], "changed": [r["changed"] for r in results],
               "nbest_seconds": [r["nbest_seconds"] for r in results],
               "scores": {name: {m: [s[name][m].score for s in stats if m in s[name]] for m in METRICS}
                          for name in stats[0]},
               "rerank_vs_greedy": compare([(s[rerank], s["greedy"]) for s in stats]),
               "rerank_vs_beam": compare([(s[rerank], s[beam]) for s in stats]),
               "beam_vs_greedy": compare([(s[beam], s["greedy"]) for s in stats])}
        if all("ce" in s for s in stats):
            row["rerank_vs_ce"] = compare([(s[rerank], s["ce"]) for s in stats])
            row["greedy_vs_ce"] = compare([(s["greedy"], s["ce"]) for s in stats])
        table.append(row)
    return {"system": system, "size": size, "grids": [g.name for g in grids], "torch_threads": torch.get_num_threads(),
            "cells": table}


def interval(p: dict | None, digits: int) -> str:
    """A paired difference as "+1.2 [+0.8, +1.6]" ("–" for none)."""
    if p is None:
        return "–"
    return f"{p['delta']:+.{digits}f} [{p['delta_low']:+.{digits}f}, {p['delta_high']:+.{digits}f}]"


def cell_means(cell: dict) -> dict[str, dict[str, float]]:
    """Each decoding's mean score over the seeds of a table cell, by metric."""
    return {name: {m: sum(v) / len(v) for m, v in s.items() if v} for name, s in cell["scores"].items()}


def markdown(result: dict) -> str:
    lines = ["| lang | P | seeds | chrF greedy → rerank | Δ chrF vs greedy | Δ chrF vs beam | Δ BLEU vs greedy | "
             "unseen greedy → rerank | Δ unseen vs greedy | Δ chrF vs `ce` |", "|---|---|---|---|---|---|---|---|---|---|"]
    rerank = f"pair rerank {result['size']}"
    for c in result["cells"]:
        mean = cell_means(c)
        unseen = (f"{mean['greedy']['unseen concepts']:.3f} → {mean[rerank]['unseen concepts']:.3f}"
                  if "unseen concepts" in mean["greedy"] else "–")
        lines.append(
            f"| {c['lang']} | {c['fraction']} | {len(c['seeds'])} | {mean['greedy']['chrF']:.1f} → "
            f"{mean[rerank]['chrF']:.1f} | {interval(c['rerank_vs_greedy'].get('chrF'), 1)} | "
            f"{interval(c['rerank_vs_beam'].get('chrF'), 1)} | {interval(c['rerank_vs_greedy'].get('BLEU'), 1)} | {unseen} | "
            f"{interval(c['rerank_vs_greedy'].get('unseen concepts'), 3)} | {interval(c.get('rerank_vs_ce', {}).get('chrF'), 1)} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = Parser(prog="python benchmarks/pair_rerank.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("grids", nargs="+", type=Path, help="ablation folders (python -m eval ablation --out)")
    parser.add_argument("--system", default="ce+taught+pairs", help="the recipe whose runs are reranked")
    parser.add_argument("--size", type=positive_int, default=16, help="n-best size (default 16)")
    parser.add_argument("--out", type=Path, default=RESULTS, help=f"JSON output (default {RESULTS})")
    args = parser.parse_args(argv)

    def command() -> int:
        result = measure(args.grids, args.system, args.size)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=1, ensure_ascii=False) + "\n")
        print(markdown(result))
        print(f"written to {args.out}")
        return 0
    return run_command(command)


if __name__ == "__main__":
    sys.exit(main())
