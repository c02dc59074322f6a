"""Fault soak (issue 13): kill a tiny training run with SIGKILL at many random points — stage 0,
stage 1, the evaluation, the report — resume it with `--resume` (repeatedly, when the resumed run is
killed again), and check that every run ends exactly as an uninterrupted one: the same losses per
step (nothing lost or duplicated), teacher and student weights, pseudo-parallel targets and test
scores. Writes benchmarks/results/fault_soak.json.

    python benchmarks/fault_soak.py [--points 20] [--seed 0] [--out FILE]

The dataset is built once and copied into every trial's cache, and the kill times are drawn
uniformly over the reference run's wall time (seeded), so they land in stage 0, stage 1, the
evaluation and the report in proportion to their length; each trial records which stage it hit.
"""
from __future__ import annotations

import argparse
import json
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from test_faults import argv, assert_same, env, outcome, run_to_end  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "fault_soak.json"


def stage_of(cache: Path, run: Path) -> str:
    """Where a killed run stopped, from what it left on disk."""
    if (run / "eval" / "scores.json").is_file():
        return "report"
    if (run / "model" / "system.json").is_file():
        return "evaluation"
    if (run / "metrics.jsonl").is_file():
        return "stage 1"
    if any((cache / "teachers").glob("*.partial")) or (run / "config.json").is_file():
        return "stage 0"
    return "data"


def trial(work: Path, delay: float, reference: dict, dataset: Path) -> dict:
    cache, run = work / "cache", work / "run"
    shutil.copytree(dataset, cache / "data")  # the built world: kill points fall in training, not building
    proc = subprocess.Popen(argv(cache, run), env=env(), cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    time.sleep(delay)
    killed = proc.poll() is None
    if killed:
        proc.send_signal(signal.SIGKILL)
    proc.wait()
    stage = stage_of(cache, run) if killed else "finished before the kill"
    resumes = 0
    while True:
        done = run_to_end(cache, run, "--resume")
        resumes += 1
        if done.returncode == 0 or resumes >= 3:
            break
    try:
        assert_same(outcome(cache, run), reference)
        same, error = True, None
    except AssertionError as exc:  # recorded, not raised: the soak reports every trial
        same, error = False, str(exc)[:500]
    return {"delay_s": round(delay, 2), "killed": killed, "stage": stage, "resume_exit": done.returncode,
            "reproduced": same, "error": error}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--points", type=int, default=20, help="kill points (default: 20)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the kill times")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="fault-soak-") as tmp:
        root = Path(tmp)
        run_to_end(root / "warm" / "cache", root / "warm" / "run", "--steps", "0", "--no-evaluate")  # builds the data
        dataset = root / "warm" / "cache" / "data"
        shutil.copytree(dataset, root / "ref" / "cache" / "data")
        started = time.time()
        done = run_to_end(root / "ref" / "cache", root / "ref" / "run")
        if done.returncode:
            raise SystemExit(f"the reference run failed:\n{done.stderr[-3000:]}")
        wall = time.time() - started
        reference = outcome(root / "ref" / "cache", root / "ref" / "run")
        rng = random.Random(args.seed)
        trials = []
        for i in range(args.points):
            work = root / f"t{i:02d}"
            result = trial(work, rng.uniform(0.5, wall), reference, dataset)
            trials.append(result)
            print(f"trial {i + 1}/{args.points}: kill at {result['delay_s']:.1f}s in {result['stage']}: "
                  f"{'reproduced' if result['reproduced'] else 'DIFFERS: ' + str(result['error'])}", flush=True)
            shutil.rmtree(work, ignore_errors=True)
    summary = {"points": args.points, "reference_wall_s": round(wall, 1),
               "killed": sum(t["killed"] for t in trials),
               "reproduced": sum(t["reproduced"] for t in trials),
               "by_stage": {s: sum(t["stage"] == s for t in trials) for s in dict.fromkeys(t["stage"] for t in trials)},
               "trials": trials}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(summary, indent=1) + "\n")
    print(f"{summary['reproduced']}/{args.points} resumed runs reproduced the uninterrupted run "
          f"({summary['killed']} killed; by stage {summary['by_stage']}); wrote {args.out}")
    return 0 if summary["reproduced"] == args.points else 1


if __name__ == "__main__":
    sys.exit(main())
