"""bf16 against fp32 on the embedded default: the same run twice (same seed, same cached teacher), once
with `--mixed-precision bf16`; learning (chrF, BLEU with their bootstrap intervals, R@1, losses) and
the stage-1 time per step.

    python benchmarks/bench_precision.py [--steps 100] [--work DIR] [--reuse] [--out JSON]

`--reuse` summarises the runs already in DIR/fp32 and DIR/bf16 (made by this script's command)
instead of training again. train.py runs with `--threads 1`: on the shared 2-core machine two
threads per process ran 10x slower per step than one (0.55 s vs 5.5 s), an artefact of contention.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

from shown_paths import shown_command

ROOT = Path(__file__).resolve().parents[1]


def command(run: Path, cache: Path, steps: int, precision: str) -> list[str]:
    return [sys.executable, str(ROOT / "train.py"), "--steps", str(steps), "--eval-bootstrap", "200", "--quiet",
            "--threads", "1", "--cache-dir", str(cache), "--out", str(run), "--mixed-precision", precision]


def summary(run: Path) -> dict:
    scores = json.loads((run / "eval" / "scores.json").read_text())
    metrics = scores["metrics"]
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
    steps = [r for r in records if "split" not in r]
    warm = next(r for r in steps if r["step"] >= 10)
    return {
        "chrf": {k: metrics["chrf"][k] for k in ("score", "ci")},
        "bleu": {k: metrics["bleu"][k] for k in ("score", "ci")},
        "retrieval_t2i_R@1": metrics["retrieval"]["translation"]["t2i"]["R@1"],
        "in_batch_r1": metrics["retrieval"]["translation"]["in_batch"],
        "grounded_in_batch_r1": scores["grounded"]["trained"],
        "loss": {r["step"]: r["loss"] for r in steps},
        "stage1_s": steps[-1]["seconds"],
        "s_per_step_after_step_10": (steps[-1]["seconds"] - warm["seconds"]) / (steps[-1]["step"] - warm["step"]),
        "mixed_precision": json.loads((run / "config.json").read_text())["mixed_precision"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--work", type=Path, default=ROOT / ".cache" / "bench_precision")
    parser.add_argument("--reuse", action="store_true", help="summarise the runs already in --work")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "bench_precision.json")
    args = parser.parse_args()
    runs = {p: args.work / p for p in ("fp32", "bf16")}
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    if not args.reuse:
        for precision, run in runs.items():
            subprocess.run(command(run, args.work / "cache", args.steps, "no" if precision == "fp32" else "bf16"),
                           env=env, check=True)
    result = {precision: summary(run) for precision, run in runs.items()}
    fp32, bf16 = result["fp32"], result["bf16"]
    result["bf16_time_per_step_over_fp32"] = bf16["s_per_step_after_step_10"] / fp32["s_per_step_after_step_10"]
    result["chrf_intervals_overlap"] = (bf16["chrf"]["ci"]["low"] <= fp32["chrf"]["ci"]["high"]
                                        and fp32["chrf"]["ci"]["low"] <= bf16["chrf"]["ci"]["high"])
    result["commands"] = {p: shown_command(command(run, args.work / "cache", args.steps, "no" if p == "fp32" else "bf16"))
                          for p, run in runs.items()}
    result["machine"] = {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
                         "cpu_count": os.cpu_count()}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps({k: result[k] for k in ("bf16_time_per_step_over_fp32", "chrf_intervals_overlap")}))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
