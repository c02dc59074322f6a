"""The GPU check: every GPU-side figure the project needs, in one run, into one JSON file.

Parts, in order of importance, each in its own process with its own time budget, so one part
failing or overrunning costs only its own figures (the error and the output's tail are recorded,
and the JSON is rewritten after every part, so even a killed run leaves what it had):

1. `environment`      versions, the GPU, and an import check of every module the parts use
2. `thesis_run`       train.py --preset thesis for 200 steps on the synthetic world (random-init
                      ViT-B-32: no weights offline): steps/s, samples/s, peak GPU memory
3. `train_step_cost`  benchmarks/bench_train_step.py at the thesis preset, B = 32 and 256
4. `lsa`              benchmarks/bench_lsa.py: hybrid (Sinkhorn + certificate + exact fallback) vs
                      exact-only at N = 4096, and exact vs a bare SciPy call at N = 1
5. `ndim`             benchmarks/bench_ndim.py --device cuda at n = 6, B = 16 and 32
6. `splice`           benchmarks/bench_splice.py --device cuda (every splice variant)
7. `cuda_tests`       the project's tests that need CUDA (pytest; they skip on a CPU)

`--cpu-dry-run` runs every part at toy size on the CPU (tests/test_gpu_check.py), so the script
that meets the GPU has already run end to end. Output: `$OUT/gpu_check.json` when `$OUT` is set
(the device tool copies `$OUT` back), else `benchmarks/results/gpu_check.json`; `--out` overrides.
Start it through `benchmarks/gpu_check.sh`, which installs the carried wheels first.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks"
PARTS = ("environment", "thesis_run", "train_step_cost", "lsa", "ndim", "splice", "cuda_tests")
BUDGET_S = {"environment": 60, "thesis_run": 180, "train_step_cost": 110, "lsa": 60, "ndim": 75, "splice": 70,
            "cuda_tests": 45}
CUDA_TESTS = ("tests/test_assignment.py::test_methods_run_on_cuda",
              "tests/test_assignment.py::test_auto_is_exact_on_cpu_and_hybrid_for_large_cuda_batches")
IMPORTS = ("torch", "torchvision", "numpy", "scipy", "transformers", "accelerate", "open_clip", "datasets", "PIL",
           "sentencepiece", "sacrebleu", "matplotlib", "yaml", "tqdm", "tensorboard", "train", "models.grounded",
           "models.assignment", "data_prep.synthetic.build", "eval.retrieval")


def thesis_args(dry: bool, cache: Path, run: Path) -> list[str]:
    """train.py flags of the thesis run (toy-sized but the same code path in a dry run)."""
    common = ["--preset", "thesis", "--no-evaluate", "--eval-every", "1000000", "--checkpoint-every", "1000000",
              "--quiet", "--cache-dir", str(cache), "--out", str(run)]
    if dry:
        return [*common, "--clip", "groundmt-micro", "--student-preset", "micro", "--batch-size", "8",
                "--synthetic-images", "60", "--steps", "3", "--log-every", "1", "--threads", "1"]
    return [*common, "--synthetic-images", "1000", "--steps", "200", "--log-every", "10"]


def commands(dry: bool, work: Path, out_dir: Path) -> dict[str, list[str]]:
    """The command of every benchmark part; each writes its JSON to work/PART.json."""
    py, cache = sys.executable, work / "cache"
    if dry:
        cost = ["--device", "cpu", "--configs", "thesis", "--batches", "4", "--repeats", "1", "--synthetic-images",
                "60", "--train-args", "--clip groundmt-micro --student-preset micro"]
        lsa = ["--device", "cpu", "--counts", "1", "16", "--sizes", "16", "--methods", "scipy_bare", "exact",
               "sinkhorn", "hybrid", "--repeats", "2", "--min-time", "0.05"]
        ndim = ["--device", "cpu", "--similarities", "v4", "--ns", "3", "--batches", "4", "--dim", "32",
                "--repeats", "2", "--min-time", "0.05", "--threads", "1"]
        splice = ["--device", "cpu", "--variants", "gumbel", "--batch-size", "2", "--repeats", "0"]
    else:
        cost = ["--device", "cuda", "--configs", "thesis", "--batches", "32", "256", "--repeats", "3",
                "--synthetic-images", "1000", "--budget-s", str(BUDGET_S["train_step_cost"] - 30)]
        lsa = ["--device", "cuda", "--counts", "1", "4096", "--sizes", "16", "32", "64", "--methods", "scipy_bare",
               "scipy_loop", "exact", "sinkhorn", "hybrid", "--repeats", "3", "--min-time", "0.5"]
        ndim = ["--device", "cuda", "--similarities", "v4", "--ns", "6", "--batches", "16", "32", "--repeats", "20",
                "--min-time", "0.3", "--budget-gib", "16"]
        splice = ["--device", "cuda", "--repeats", "3"]
    return {
        "thesis_run": [py, __file__, "--thesis-worker", json.dumps(thesis_args(dry, cache, work / "thesis_run"))],
        "train_step_cost": [py, str(BENCH / "bench_train_step.py"), *cost, "--cache-dir", str(cache),
                            "--out", str(work / "train_step_cost.json"),
                            "--plot", str(out_dir / "bench_train_step_gpu_check.png")],
        "lsa": [py, str(BENCH / "bench_lsa.py"), *lsa, "--skip-studies", "--out", str(work / "lsa.json")],
        "ndim": [py, str(BENCH / "bench_ndim.py"), *ndim, "--no-cube", "--out", str(work / "ndim.json")],
        "splice": [py, str(BENCH / "bench_splice.py"), *splice, "--out", str(work / "splice.json")],
        "cuda_tests": [py, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs", *CUDA_TESTS,
                       f"--junitxml={work / 'cuda_tests.xml'}"],
    }


# --- parts --------------------------------------------------------------------------------------------

def environment() -> dict:
    """Versions, the GPU, and which imports work (each import error recorded, not raised)."""
    import importlib
    from importlib import metadata

    sys.path.insert(0, str(ROOT))
    imports = {}
    for name in IMPORTS:
        try:
            importlib.import_module(name)
            imports[name] = "ok"
        except Exception as exc:  # noqa: BLE001 - recorded: the parts that need it will fail and say so
            imports[name] = f"{type(exc).__name__}: {exc}"
    versions = {}
    for dist in ("torch", "torchvision", "transformers", "accelerate", "open_clip_torch", "datasets", "pyarrow",
                 "huggingface-hub", "numpy", "scipy", "timm", "tokenizers", "safetensors", "fsspec", "dill",
                 "multiprocess", "ftfy"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = None
    import torch

    gpu = None
    if torch.cuda.is_available():
        free, total = torch.cuda.mem_get_info()
        gpu = {"name": torch.cuda.get_device_name(), "capability": torch.cuda.get_device_capability(),
               "memory_total_bytes": total, "memory_free_bytes": free, "cuda": torch.version.cuda,
               "bf16_supported": torch.cuda.is_bf16_supported()}
    return {"python": platform.python_version(), "platform": platform.platform(), "cpu_count": os.cpu_count(),
            "versions": versions, "imports": imports, "gpu": gpu, "python_path": os.environ.get("PYTHONPATH")}


def thesis_worker(argv: list[str]) -> None:
    """Run train.py in this process, then print its exit code and the process' peak memory."""
    sys.path.insert(0, str(ROOT))
    import torch

    import training

    started = time.time()
    rc = training.main(argv)
    out = {"rc": rc, "wall_s": time.time() - started,
           "process_peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}
    if torch.cuda.is_available():
        out.update(cuda_max_memory_allocated_bytes=torch.cuda.max_memory_allocated(),
                   cuda_max_memory_reserved_bytes=torch.cuda.max_memory_reserved())
    print(json.dumps(out))


def thesis_summary(run: Path, worker: dict | None) -> dict:
    """Steps/s after warm-up (metric records from step 10 on), samples/s, and the run's own records."""
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()
               if line.strip()] if (run / "metrics.jsonl").is_file() else []
    steps = [r for r in records if "split" not in r]
    config = json.loads((run / "config.json").read_text()) if (run / "config.json").is_file() else {}
    out = {"steps_done": steps[-1]["step"] if steps else 0, "worker": worker,
           "config": {k: config.get(k) for k in ("preset", "clip", "student_preset", "target_vocab", "batch_size",
                                                  "mixed_precision", "max_target_length", "world_size", "steps")},
           "records": [{k: r.get(k) for k in ("step", "loss", "loss/token_ce", "seconds", "r1/student_image")}
                       for r in steps]}
    warm = 10 if steps and steps[-1]["step"] >= 20 else 1  # a toy run has no steady state to wait for
    steady = [r for r in steps if r["step"] >= warm]
    if len(steady) >= 2 and steady[-1]["seconds"] > steady[0]["seconds"]:
        rate = (steady[-1]["step"] - steady[0]["step"]) / (steady[-1]["seconds"] - steady[0]["seconds"])
        out.update(steps_per_s=rate, samples_per_s=rate * config.get("batch_size", 0),
                   measured_over_steps=[steady[0]["step"], steady[-1]["step"]])
    if steps:
        out["first_step_s"] = steps[0]["seconds"]
    log = run / "train.log"
    if log.is_file():
        out["log_tail"] = log.read_text()[-3000:]
    return out


def junit_summary(path: Path) -> dict:
    """Outcome per test from pytest's JUnit XML."""
    import xml.etree.ElementTree as ET

    outcomes = {}
    for case in ET.parse(path).getroot().iter("testcase"):
        kinds = [child.tag for child in case if child.tag in ("failure", "error", "skipped")]
        outcomes[case.get("name")] = kinds[0] if kinds else "passed"
    return {"tests": outcomes}


def run_part(command: list[str], budget: float) -> dict:
    """Run one part's command in its own process group; on overrun SIGTERM it (train.py checkpoints and
    stops), then SIGKILL 30 s later."""
    started = time.time()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    timed_out = False
    try:
        output, _ = proc.communicate(timeout=budget)
    except subprocess.TimeoutExpired:
        timed_out = True
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            output, _ = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            output, _ = proc.communicate()
    return {"rc": proc.returncode, "timed_out": timed_out, "seconds": time.time() - started, "budget_s": budget,
            "command": command, "output_tail": output[-4000:]}


# --- headline figures ------------------------------------------------------------------------------------

def summarise(parts: dict) -> dict:
    """The few figures a reader wants first; each from its part's result when that part produced one."""
    out: dict = {}
    thesis = parts.get("thesis_run", {}).get("result") or {}
    if thesis:
        worker = thesis.get("worker") or {}
        out["thesis_run"] = {k: thesis.get(k) for k in ("steps_done", "steps_per_s", "samples_per_s", "first_step_s")}
        out["thesis_run"]["peak_gpu_allocated_gib"] = (worker.get("cuda_max_memory_allocated_bytes") or 0) / 2**30
        out["thesis_run"]["peak_rss_gib"] = (worker.get("process_peak_rss_bytes") or 0) / 2**30
    cost = parts.get("train_step_cost", {}).get("result") or {}
    for cell in cost.get("cells", []):
        if "times_s" in cell:
            out[f"step_{cell['name']}_B{cell['B']}"] = {
                "step_as_trained_s": cell["step_as_trained_s"], "ndim_loss_share": cell["ndim_loss_share"],
                "peak_step_gib": cell["peak_step_bytes"] / 2**30,
                "largest_parts": sorted(cell["times_s"].items(), key=lambda kv: -kv[1])[:3]}
    lsa = parts.get("lsa", {}).get("result") or {}
    if lsa:
        out["lsa_targets"] = lsa.get("targets")
    ndim = parts.get("ndim", {}).get("result") or {}
    for row in ndim.get("grid", []):
        out[f"ndim_{row['similarity']}_n{row['n']}_B{row['B']}"] = {
            "fibre_ms": 1e3 * row["fibre"]["median_s"], "fibre_over_clip": row["fibre_over_clip"],
            "reference_over_fibre": row.get("reference_over_fibre")}
    tests = parts.get("cuda_tests", {}).get("result") or {}
    if tests:
        out["cuda_tests"] = tests.get("tests")
    splice = parts.get("splice", {}).get("result") or {}
    if splice:
        out["splice"] = {"ratios": splice.get("ratios"), "peak_mib": {
            v: r["peak_step_memory_mib"] for v, r in splice.get("variants", {}).items()}}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cpu-dry-run", action="store_true", help="every part at toy size on the CPU")
    parser.add_argument("--out", type=Path, help="the JSON written (default: $OUT/gpu_check.json if $OUT is set, "
                                                 "else benchmarks/results/gpu_check.json)")
    parser.add_argument("--budget-s", type=float, default=440, help="time for all parts together")
    parser.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS), help="run only these parts")
    parser.add_argument("--thesis-worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.thesis_worker:
        thesis_worker(json.loads(args.thesis_worker))
        return
    dry = args.cpu_dry_run
    out_dir = Path(os.environ["OUT"]) if os.environ.get("OUT") else BENCH / "results"
    out = args.out or out_dir / ("gpu_check_dry_run.json" if dry else "gpu_check.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    import torch

    if not dry and not torch.cuda.is_available():
        raise SystemExit("error: torch sees no GPU; run with --cpu-dry-run to check the parts on a CPU")
    work = Path(tempfile.mkdtemp(prefix="gpu_check-"))
    started = time.time()
    result = {"check": "GroundMT GPU check (benchmarks/gpu_check.py)", "dry_run": dry, "started": time.ctime(),
              "work_dir": str(work), "budget_s": args.budget_s, "parts": {}}

    def write() -> None:
        result["seconds"] = time.time() - started
        result["summary"] = summarise(result["parts"])
        out.write_text(json.dumps(result, indent=1, default=str) + "\n")

    plan = commands(dry, work, out.parent)
    for name in args.parts:
        left = args.budget_s - (time.time() - started)
        print(f"== {name} ({min(BUDGET_S[name], max(left, 0)):.0f} s budget, {left:.0f} s left overall)", flush=True)
        if left <= 5:
            result["parts"][name] = {"status": "skipped", "error": "the overall budget was spent"}
            write()
            continue
        budget = min(BUDGET_S[name], left)
        if name == "environment":
            t0 = time.time()
            try:
                result["parts"][name] = {"status": "ok", "result": environment()}
            except Exception:  # noqa: BLE001 - recorded; the other parts still run
                result["parts"][name] = {"status": "error", "error": traceback.format_exc()[-3000:]}
            result["parts"][name]["seconds"] = time.time() - t0
            write()
            continue
        record = run_part(plan[name], budget)
        try:
            if name == "thesis_run":
                lines = [ln for ln in record["output_tail"].splitlines() if ln.startswith('{"rc"')]
                record["result"] = thesis_summary(work / "thesis_run", json.loads(lines[-1]) if lines else None)
            elif name == "cuda_tests":
                record["result"] = junit_summary(work / "cuda_tests.xml")
            else:
                record["result"] = json.loads((work / f"{name}.json").read_text())
        except Exception as exc:  # noqa: BLE001 - a part without its figures: say why, keep going
            record["result_error"] = f"{type(exc).__name__}: {exc}"
        ok = record["rc"] == 0 and not record["timed_out"] and "result_error" not in record
        record["status"] = "ok" if ok else ("timed out" if record["timed_out"] else "error")
        result["parts"][name] = record
        print(f"   {record['status']} in {record['seconds']:.0f} s" +
              ("" if ok else f"\n{record['output_tail'][-1500:]}"), flush=True)
        write()
    write()
    print(json.dumps(result["summary"], indent=1, default=str))
    print(f"wrote {out} ({sum(p.get('status') == 'ok' for p in result['parts'].values())}/{len(result['parts'])} "
          f"parts ok, {time.time() - started:.0f} s)")


if __name__ == "__main__":
    main()
