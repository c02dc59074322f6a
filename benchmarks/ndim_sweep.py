"""The thesis' chapter-5 sweep, runnable: which n-dim losses teach the student on their own?

Grid: similarity (v0..v16, gram, pairwise) × labels (diagonal, exact, regions, smoothed, sigmoid)
× n (3 = image, English, student; 5 = image, 2 English, 2 student) × seeds, plus the chapter-6 LSA
loss as an extra term (`--lsa-weight`), each a `train.py` run on the embedded world with the n-dim
loss as the only objective (`--token-ce-weight 0`) through the differentiable soft splice (the
path tests/test_train.py shows learning), fixed steps. Per cell: the student's CLIP embedding →
image R@1 (in batches of 32, the signal the loss trains; the untrained student scores chance),
translation → image R@1 and chrF of the readable output, and collapse flags (effective rank of the
student's features, share of the most repeated output); mean over seeds with a 95% t-interval.
Runs go through `eval.ablation.run_grid` (resumable: rerunning continues the grid).

    python benchmarks/ndim_sweep.py --out SWEEP [--quick] [--seeds 2] [--steps 150]

`--quick`: similarities v0, v4, v7, gram, pairwise × labels diagonal, regions × n = 3 × 2 seeds, and
the LSA term on the default similarity v4 (24 runs of 100 steps; docs/ndim_loss.md has its time and
table). The effective rank is the student's at the last validation (3/4 of the steps). Writes
SWEEP/sweep.json and prints the table.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from eval.ablation import TRAIN_ARGS_HELP, mean_ci, run_grid  # noqa: E402
from models.ndim_loss import LABELS  # noqa: E402
from models.similarities import NAMES  # noqa: E402

QUICK = {"similarities": ("v0", "v4", "v7", "gram", "pairwise"), "labels": ("diagonal", "regions"), "ns": (3,),
         "seeds": 2, "steps": 100, "lsa": ("v4",)}
AXES = {3: ("--k-english", "1", "--m-source", "1"), 5: ("--k-english", "2", "--m-source", "2")}
COMMON = ("--token-ce-weight", "0", "--contrastive-weight", "1", "--no-pivot", "--self-train-rounds", "0",
          "--splice", "soft", "--no-compare-ce", "--eval-bootstrap", "0")


def cells(similarities, labels, ns, seeds, lsa: tuple) -> dict[str, dict]:
    """The grid's runs by name; the similarities in `lsa` also run with the LSA term."""
    out = {}
    for sim in similarities:
        for label in labels:
            for n in ns:
                for lsa_weight in ((0.0, 0.1) if sim in lsa else (0.0,)):
                    for seed in range(seeds):
                        name = f"{sim}-{label}-n{n}" + ("-lsa" if lsa_weight else "") + f"-s{seed}"
                        out[name] = {"similarity": sim, "labels": label, "n": n, "lsa": lsa_weight, "seed": seed}
    return out


def argv_of(cell: dict, args: argparse.Namespace) -> list[str]:
    return ["--lang", args.lang, "--similarity", cell["similarity"], "--labels", cell["labels"], *AXES[cell["n"]],
            "--seed", str(cell["seed"]), "--steps", str(args.steps), "--lsa-weight", str(cell["lsa"]),
            "--eval-every", str(max(1, args.steps // 4)), *COMMON,
            *args.train_args.split()]


def measures(run: Path) -> dict:
    scores = json.loads((run / "eval" / "scores.json").read_text())
    hyps = (run / "eval" / "hyp.txt").read_text(encoding="utf-8").splitlines()
    health = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    ranks = [r["health/student/effective_rank"] for r in health if "health/student/effective_rank" in r]
    m = scores["metrics"]
    return {"student→image R@1": scores["grounded"]["trained"]["student_to_image"],
            "untrained R@1": scores["grounded"]["untrained"]["student_to_image"],
            "translation R@1": m["retrieval"]["translation"]["in_batch"]["b2a"],
            "chrF": m["chrf"]["score"],
            "effective rank": ranks[-1] if ranks else float("nan"),
            "most repeated output": max(np.unique(hyps, return_counts=True)[1]) / len(hyps)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="folder of the sweep's runs and sweep.json")
    parser.add_argument("--lang", default="es")
    parser.add_argument("--quick", action="store_true", help="a 24-run subset (see the module docstring)")
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--similarities", help=f"comma-separated subset of {','.join(NAMES)} (default: all)")
    parser.add_argument("--labels", help=f"comma-separated subset of {','.join(LABELS)} (default: all)")
    parser.add_argument("--ns", help="comma-separated axis counts, from 3,5 (default: both)")
    parser.add_argument("--no-lsa", action="store_true", help="leave out the runs with the LSA term")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--train-args", default="", help=TRAIN_ARGS_HELP)
    args = parser.parse_args()
    if args.quick:
        args.seeds, args.steps = QUICK["seeds"], QUICK["steps"]
    def chosen(option: str | None, quick: tuple, full: tuple) -> tuple:
        return tuple(type(full[0])(x) for x in option.split(",")) if option else quick if args.quick else full

    similarities = chosen(args.similarities, QUICK["similarities"], NAMES)
    lsa = () if args.no_lsa else QUICK["lsa"] if args.quick and not args.similarities else similarities
    grid = cells(similarities, chosen(args.labels, QUICK["labels"], LABELS), chosen(args.ns, QUICK["ns"], (3, 5)),
                 args.seeds, lsa=lsa)
    failed = run_grid({name: argv_of(cell, args) for name, cell in grid.items()}, args.out, jobs=args.jobs,
                      desc="sweep runs")
    groups: dict[str, list[dict]] = {}
    for name in grid:
        if (args.out / "runs" / name / "eval" / "scores.json").is_file():
            groups.setdefault(name.rsplit("-s", 1)[0], []).append(measures(args.out / "runs" / name))
    table = {key: {metric: mean_ci([row[metric] for row in rows]) for metric in rows[0]}
             for key, rows in groups.items()}
    (args.out / "sweep.json").write_text(json.dumps({"steps": args.steps, "seeds": args.seeds, "failed": failed,
                                                     "table": table}, indent=1) + "\n")
    print("| loss | student→image R@1 | untrained | translation R@1 | chrF | effective rank | most repeated |")
    print("|---|---|---|---|---|---|---|")
    for key, row in sorted(table.items(), key=lambda kv: -kv[1]["student→image R@1"]["mean"]):
        cell = [f"{row[m]['mean']:.3f}" + (f" ± {row[m]['high'] - row[m]['mean']:.3f}" if row[m]["high"] else "")
                for m in ("student→image R@1", "untrained R@1", "translation R@1")]
        cell += [f"{row['chrF']['mean']:.1f}", f"{row['effective rank']['mean']:.1f}",
                 f"{row['most repeated output']['mean']:.0%}"]
        print(f"| {key} | " + " | ".join(cell) + " |")
    print(f"wrote {args.out / 'sweep.json'}" + (f"; failed: {failed}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
