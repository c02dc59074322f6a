"""Two systems' evaluated runs compared on the same test sentences, stratified over seeds: one
`SYSTEM:BASELINE` pair of `train.py --out` folders per seed, each difference of chrF, BLEU and
unseen-/seen-concept accuracy (counted with the baseline's split, as the ablation does) with its
95% interval by the paired bootstrap stratified over the pairs (`eval.stats.stratified_paired_bootstrap`).

For what an ablation grid cannot hold — runs trained with other options than their twins, such as
`ce` with a longer warm-up against the default recipe (docs/ablation.md, "Token CE with a longer
warm-up"). Each run is scored as its own evaluation decoded it (`eval/hyp.txt`); with `--rerank N`,
a run that kept word pairs but decoded greedily (trained with `--pair-rerank 0`, or before the rerank
existed) is decoded again by the pair rerank of N (`benchmarks/pair_rerank.py`), so that two runs of
the default recipe are compared as the default translates; with `--force MARGIN` as well, every run
that kept word pairs is decoded again by that rerank with forced names (docs/translate.md, "Forced
names"), as runs saved before them are. Writes JSON with the runs' folder names only.

    python benchmarks/paired_runs.py --name NAME SYSTEM_RUN:BASELINE_RUN [...] [--rerank N [--force M]] --out FILE
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from data_prep.errors import InputError, Parser, non_negative_float, positive_int, run_command
from eval.ablation import cell_scores, concept_statistics
from eval.stats import stratified_paired_bootstrap
from pair_rerank import pair_reranked, run_matcher, statistics  # a sibling script: benchmarks/ is on the path
from translate.translator import run_config

METRICS = ("chrF", "BLEU", "unseen concepts", "seen concepts")


def pair(text: str) -> tuple[Path, Path]:
    """`SYSTEM_RUN:BASELINE_RUN` as two paths."""
    system, sep, baseline = text.rpartition(":")
    if not sep or not system or not baseline:
        raise InputError(f"{text!r}: give SYSTEM_RUN:BASELINE_RUN")
    return Path(system), Path(baseline)


def sources(run: Path) -> list[str]:
    """The test sources a run was scored on, in order."""
    return [row["source"] for row in json.loads((run / "eval" / "scores.json").read_text())["sentences"]]


def written_here(path: Path) -> bool:
    """Whether `path` holds a comparison this script wrote (the only file it replaces)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError):
        return False
    return isinstance(data, dict) and set(data) == {"name", "pairs", "delta"}


def scored(run: Path, rerank: int | None, force: float = 0.0) -> dict:
    """`eval.ablation.cell_scores` of the run, decoded again by the pair rerank of `rerank` where its
    evaluation was greedy although it kept word pairs — with `force` above 0, wherever it kept word
    pairs, by that rerank with forced names; `decoded` says how it was decoded."""
    cell = cell_scores(run)
    config = run_config(run)
    if not rerank or not config.get("lexicon_pairs") or (config.get("pair_rerank") and not force):
        return {**cell, "decoded": "as evaluated"}
    hyps = pair_reranked(run, rerank, force)
    sentences = json.loads((run / "eval" / "scores.json").read_text())["sentences"]
    matcher = run_matcher(config)
    fresh = statistics(hyps, sentences, matcher)
    concepts = cell["concepts"] and [{**c, "correct": [k for k in c["unseen"] + c["seen"] if matcher.named(k, h)]}
                                     for c, h in zip(cell["concepts"], hyps)]
    decoded = f"pair rerank {rerank}" + (f", forced names {force:g}" if force else "")
    return {**cell, "hypotheses": hyps, "concepts": concepts, "decoded": decoded,
            "statistics": {**cell["statistics"], "chrF": fresh["chrF"], "BLEU": fresh["BLEU"]}}


def compare(name: str, pairs: list[tuple[Path, Path]], rerank: int | None = None, force: float = 0.0) -> dict:
    """Per-pair scores and the stratified paired differences `system − baseline`."""
    per_pair, stats = [], []
    for system, baseline in pairs:
        a, b = scored(system, rerank, force), scored(baseline, rerank, force)
        if sources(system) != sources(baseline):
            raise InputError(f"{system.name} and {baseline.name} were not scored on the same test sentences")
        sa = {**a["statistics"], **concept_statistics(a, b)}
        sb = {**b["statistics"], **concept_statistics(b, b)}
        stats.append((sa, sb))
        per_pair.append({"system": system.name, "baseline": baseline.name,
                         "decoded": [a["decoded"], b["decoded"]],
                         "scores": {m: [sa[m].score, sb[m].score] for m in METRICS if m in sa and m in sb}})
    shared = [m for m in METRICS if all(m in sa and m in sb for sa, sb in stats)]
    deltas = {m: stratified_paired_bootstrap([(sa[m], sb[m]) for sa, sb in stats]) for m in shared}
    return {"name": name, "pairs": per_pair, "delta": deltas}


def main(argv: list[str] | None = None) -> int:
    parser = Parser(prog="python benchmarks/paired_runs.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("pairs", nargs="+", help="SYSTEM_RUN:BASELINE_RUN, one per seed")
    parser.add_argument("--name", required=True, help="what the comparison is, recorded in the JSON")
    parser.add_argument("--out", type=Path, required=True, help="JSON output")
    parser.add_argument("--rerank", type=positive_int, default=None,
                        help="decode a run that kept word pairs but was evaluated greedily by the pair rerank of "
                             "this n-best size (default: every run as it was evaluated)")
    parser.add_argument("--force", type=non_negative_float, default=0.0,
                        help="with --rerank: decode every run that kept word pairs by that rerank with forced names "
                             "at this margin (default 0: none)")
    args = parser.parse_args(argv)

    def command() -> int:
        if args.force and not args.rerank:
            raise InputError("--force adds forced names to the rerank: give --rerank N as well")
        pairs = [pair(p) for p in args.pairs]
        for run in {p for two in pairs for p in two}:
            if not (run / "eval" / "scores.json").is_file():
                raise InputError(f"{run}: no evaluated run (eval/scores.json)")
        result = compare(args.name, pairs, args.rerank, args.force)
        if args.out.exists() and not written_here(args.out):
            raise InputError(f"{args.out} exists and was not written by this script; choose another --out")
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=1) + "\n")
        for m, d in result["delta"].items():
            digits = 3 if "concepts" in m else 1
            print(f"{args.name}: {m} {d['delta']:+.{digits}f} [{d['delta_low']:+.{digits}f}, {d['delta_high']:+.{digits}f}]")
        print(f"written to {args.out}")
        return 0
    return run_command(command)


if __name__ == "__main__":
    sys.exit(main())
