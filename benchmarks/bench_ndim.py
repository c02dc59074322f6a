"""n-dimensional loss benchmark: the fibre path and the chunked cube against the thesis-style
reference (benchmarks/reference_ndim.py) and against n plain two-tower CLIP losses.

Grid: n in {3, 4, 6}, B in {8, 16, 32}, F = 512, similarity v4 (the default), plus v0 whose
reference is the thesis' single n-operand einsum. Per cell, forward + backward of
- fibre:     NDimContrastiveLoss(sim, labels="diagonal") — n·B² values, never the cube;
- clip:      n open_clip ClipLoss calls on consecutive axis pairs (the two-tower baseline);
- reference: the whole B^n cube from (B, …, B, F) intermediates, dense one-hot CE per axis.
Then the dense cube path (labels="regions", exact targets) at n = 6 — v4 (its grid is built from
Gram blocks) at B = 16, and v1 (per-feature: chunks of gathered vectors, recomputed in backward)
at B = 8 (B = 12 with --v1-b12: ~6 min more on a shared 2-core CPU) — against the B^n·F·4 bytes a broadcast implementation allocates per intermediate.

Targets (issue 4): at n=6, B=16, F=512 the fibre path is >= 100x faster than the reference and
within 3x of n CLIP losses; the regions cube path never allocates a B^n·F tensor.

Method: every peak-memory figure comes from its own subprocess (CPU: VmHWM reset through
/proc/self/clear_refs, minus the RSS just before the call, with MALLOC_MMAP_THRESHOLD_=128 KiB so
RSS follows live tensors; GPU: torch.cuda.max_memory_allocated), so allocator caches of other
methods cannot hide or inflate it. Timings of one cell run
round-robin in one subprocess (side by side on the same load): median and best of the repeats,
each method until --min-time seconds or --repeats runs. A reference that would exceed
--budget-gib is run at two smaller F that fit and extrapolated linearly in F — marked
"extrapolated" in the JSON, never mixed with measured values.

    python benchmarks/bench_ndim.py [--quick] [--device cpu|cuda] [--threads N] [--out PATH]
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from peak_memory import PeakMemory, fresh_process_env, sync  # noqa: E402
from reference_ndim import reference_bytes, reference_loss  # noqa: E402

from models.cube import format_bytes  # noqa: E402
from models.ndim_loss import NDimContrastiveLoss  # noqa: E402

GiB = 2**30


# --- one method, inside a worker process ---------------------------------------------------------

def build(method: str, similarity: str, n: int, B: int, dim: int, device: str, labels: str = "diagonal"):
    """A zero-argument callable running forward + backward of `method` on fixed random features."""
    g = torch.Generator().manual_seed(0)
    feats = [torch.randn(B, dim, generator=g).to(device).requires_grad_() for _ in range(n)]
    if method == "fibre":
        loss_fn = NDimContrastiveLoss(similarity).to(device)
        return lambda: loss_fn(feats).loss.backward()
    if method == "cube":
        loss_fn = NDimContrastiveLoss(similarity, labels, n_axes=n).to(device)
        return lambda: loss_fn(feats).loss.backward()
    if method == "clip":
        from open_clip.loss import ClipLoss     # here, not at the top: it adds ~4 s to every worker process
        clip, scale = ClipLoss(), torch.tensor(math.log(1 / 0.07), device=device, requires_grad=True)

        def run():
            unit = [F.normalize(f, dim=-1) for f in feats]
            sum(clip(unit[k], unit[(k + 1) % n], scale.exp()) for k in range(n)).backward()
        return run
    if method == "reference":
        scale = torch.tensor(math.log(1 / 0.07), device=device, requires_grad=True)
        return lambda: reference_loss(similarity, feats, scale).backward()
    raise ValueError(f"unknown method {method!r}")


def measure_peak(spec: dict) -> dict:
    """Peak extra memory of one forward + backward (fresh process) and its time.

    A run at B = 2, F = 8 first pays the one-time costs (autograd threads, kernel setup, ~10 MiB)
    so they are not counted against the method.
    """
    labels = spec.get("labels", "diagonal")
    build(spec["method"], spec["similarity"], spec["n"], 2, 8, spec["device"], labels)()
    fn = build(spec["method"], spec["similarity"], spec["n"], spec["B"], spec["F"], spec["device"], labels)
    with PeakMemory(spec["device"]) as memory:
        start = time.perf_counter()
        fn()
        sync(spec["device"])
        seconds = time.perf_counter() - start
    return {"peak_bytes": memory.peak_bytes, "first_call_s": seconds}


def measure_times(spec: dict) -> dict:
    """Round-robin timings of several (label, method, F) in one process."""
    runs = {label: build(method, spec["similarity"], spec["n"], spec["B"], dim, spec["device"])
            for label, method, dim in spec["methods"]}
    for fn in runs.values():                      # warm-up
        fn()
    sync(spec["device"])
    times: dict[str, list[float]] = {label: [] for label in runs}
    spent: dict[str, float] = {label: 0.0 for label in runs}
    while True:
        pending = [label for label in runs
                   if len(times[label]) < spec["repeats"] and (spent[label] < spec["min_time"] or len(times[label]) < 1)]
        if not pending:
            break
        for label in pending:
            start = time.perf_counter()
            runs[label]()
            sync(spec["device"])
            elapsed = time.perf_counter() - start
            times[label].append(elapsed)
            spent[label] += elapsed
    return {label: {"median_s": statistics.median(t), "best_s": min(t), "repeats": len(t)} for label, t in times.items()}


# --- the driver ----------------------------------------------------------------------------------

def in_subprocess(kind: str, spec: dict, threads: int) -> dict:
    cmd = [sys.executable, __file__, "--worker", kind, "--spec", json.dumps(spec), "--threads", str(threads)]
    # glibc keeps freed heap blocks below its (adaptive, up to 32 MiB) mmap threshold resident, so a
    # loop of chunk-sized allocations shows as hundreds of MiB of RSS that no tensor holds. Serving
    # every block over 128 KiB from mmap makes RSS track live tensors, for every method alike.
    done = subprocess.run(cmd, capture_output=True, text=True, env=fresh_process_env())
    if done.returncode != 0:
        raise RuntimeError(f"worker {kind} {spec} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def fitting_dims(similarity: str, n: int, B: int, dim: int, budget: int) -> list[int]:
    """[dim] when the reference fits the budget, else the two largest powers of two below that fit."""
    if reference_bytes(similarity, n, B, dim) <= budget:
        return [dim]
    fits = [d for d in (2**k for k in range(int(math.log2(dim)), 0, -1)) if reference_bytes(similarity, n, B, d) <= budget]
    return fits[:2] if len(fits) >= 2 else []


def extrapolate(points: list[tuple[int, float]], dim: int) -> float:
    """Linear fit through two (F, value) points, evaluated at F = dim."""
    (f1, v1), (f2, v2) = points
    return v1 + (v1 - v2) / (f1 - f2) * (dim - f1)


def cell(similarity: str, n: int, B: int, dim: int, args) -> dict:
    base = {"similarity": similarity, "n": n, "B": B, "device": args.device}
    dims = fitting_dims(similarity, n, B, dim, int(args.budget_gib * GiB))
    methods = [("fibre", "fibre", dim), ("clip", "clip", dim)] + [(f"reference@F={d}", "reference", d) for d in dims]
    times = in_subprocess("times", {**base, "F": dim, "methods": methods, "repeats": args.repeats,
                                    "min_time": args.min_time}, args.threads)
    out = {**base, "F": dim, "B^n": B**n, "fibre": times["fibre"], "clip": times["clip"]}
    for method in ("fibre", "clip"):
        out[method].update(in_subprocess("peak", {**base, "F": dim, "method": method}, args.threads))
    reference = {"estimated_bytes": reference_bytes(similarity, n, B, dim)}
    if dims == [dim]:
        reference.update(times[f"reference@F={dim}"], extrapolated=False)
        reference.update(in_subprocess("peak", {**base, "F": dim, "method": "reference"}, args.threads))
    elif dims:
        measured = {d: {**times[f"reference@F={d}"], **in_subprocess("peak", {**base, "F": d, "method": "reference"}, args.threads)}
                    for d in dims}
        reference.update(
            extrapolated=True, measured_at=measured,
            median_s=extrapolate([(d, measured[d]["median_s"]) for d in dims], dim),
            best_s=extrapolate([(d, measured[d]["best_s"]) for d in dims], dim),
            peak_bytes=extrapolate([(d, measured[d]["peak_bytes"]) for d in dims], dim))
    else:
        reference.update(skipped=f"needs about {format_bytes(reference['estimated_bytes'])} even at F=2; not run")
    out["reference"] = reference
    out["fibre_over_clip"] = out["fibre"]["median_s"] / out["clip"]["median_s"]
    out["fibre_over_clip_best"] = out["fibre"]["best_s"] / out["clip"]["best_s"]
    if "median_s" in reference:
        out["reference_over_fibre"] = reference["median_s"] / out["fibre"]["median_s"]
        out["reference_over_fibre_best"] = reference["best_s"] / out["fibre"]["best_s"]
    return out


def cube_cell(similarity: str, labels: str, n: int, B: int, dim: int, args) -> dict:
    spec = {"similarity": similarity, "labels": labels, "n": n, "B": B, "F": dim, "device": args.device, "method": "cube"}
    result = in_subprocess("peak", spec, args.threads)
    bnf = 4 * B**n * dim
    return {**spec, **result, "B^n*F*4_bytes": bnf, "peak_over_BnF": result["peak_bytes"] / bnf,
            "peak_over_B^n*4": result["peak_bytes"] / (4 * B**n)}


def summary_line(row: dict) -> str:
    ref = row["reference"]
    ref_text = ("skipped" if "median_s" not in ref else
                f"{ref['median_s'] * 1e3:10.1f} ms{'*' if ref.get('extrapolated') else ' '} "
                f"{format_bytes(ref['peak_bytes']):>10}")
    ratio = f"{row['reference_over_fibre']:9.0f}x" if "reference_over_fibre" in row else "        -"
    return (f"{row['similarity']:>4} n={row['n']} B={row['B']:>2} | fibre {row['fibre']['median_s'] * 1e3:7.2f} ms "
            f"{format_bytes(row['fibre']['peak_bytes']):>10} | {row['n']}xCLIP {row['clip']['median_s'] * 1e3:7.2f} ms "
            f"| ref {ref_text} | ref/fibre {ratio} | fibre/CLIP {row['fibre_over_clip']:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="B in {8} only and the n=6, B=16 headline cell")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", choices=["cpu", "cuda"])
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--budget-gib", type=float, default=8.0, help="largest reference run attempted")
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--min-time", type=float, default=1.0, help="seconds of timing per method and cell")
    parser.add_argument("--v1-b12", action="store_true", help="add the v1 regions cube at n=6, B=12")
    parser.add_argument("--similarities", nargs="+", default=["v4", "v0"], help="similarities of the grid")
    parser.add_argument("--ns", nargs="+", type=int, default=[3, 4, 6], help="numbers of axes n of the grid")
    parser.add_argument("--batches", nargs="+", type=int, help="batch sizes B of the grid (default: 8 16 32; "
                                                                "--quick: 8, and 16 at n=6)")
    parser.add_argument("--dim", type=int, default=512, help="feature width F")
    parser.add_argument("--no-cube", action="store_true", help="skip the dense regions cube cells")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "bench_ndim.json"))
    parser.add_argument("--worker", choices=["peak", "times"], help=argparse.SUPPRESS)
    parser.add_argument("--spec", help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.worker:
        spec = json.loads(args.spec)
        print(json.dumps(measure_peak(spec) if args.worker == "peak" else measure_times(spec)))
        return

    dim = args.dim
    batches = args.batches or ([8] if args.quick else [8, 16, 32])
    started, load_before = time.time(), os.getloadavg()
    grid = []
    for similarity in args.similarities:
        for n in args.ns:
            for B in batches + ([16] if args.quick and not args.batches and n == 6 else []):
                grid.append(cell(similarity, n, B, dim, args))
                print(summary_line(grid[-1]), flush=True)
    cubes = [] if args.no_cube else [cube_cell("v4", "regions", 6, 16, dim, args),
                                     cube_cell("v1", "regions", 6, 8, dim, args)]
    if args.v1_b12 and not args.no_cube:
        cubes.append(cube_cell("v1", "regions", 6, 12, dim, args))
    for row in cubes:
        print(f"cube {row['similarity']} {row['labels']} n={row['n']} B={row['B']}: {row['first_call_s']:.1f} s, "
              f"peak {format_bytes(row['peak_bytes'])} vs B^n·F·4 = {format_bytes(row['B^n*F*4_bytes'])} "
              f"({row['peak_over_BnF']:.3f}x)", flush=True)

    headline = {row["similarity"]: row for row in grid if (row["n"], row["B"]) == (6, 16)}
    targets = {
        "fibre_at_least_100x_faster_than_reference_n6_B16": {
            sim: {"ratio": row.get("reference_over_fibre"), "ratio_best": row.get("reference_over_fibre_best"),
                  "reference_extrapolated": row["reference"].get("extrapolated"),
                  "met": row.get("reference_over_fibre", 0) >= 100} for sim, row in headline.items()},
        "fibre_within_3x_of_n_clip_losses_n6_B16": {
            sim: {"ratio": row["fibre_over_clip"], "ratio_best": row["fibre_over_clip_best"],
                  "met": row["fibre_over_clip"] <= 3} for sim, row in headline.items()},
    }
    if cubes:
        targets["regions_cube_n6_B16_below_one_BnF_tensor"] = {
            "peak_bytes": cubes[0]["peak_bytes"], "B^n*F*4_bytes": cubes[0]["B^n*F*4_bytes"],
            "met": cubes[0]["peak_bytes"] < cubes[0]["B^n*F*4_bytes"]}
    result = {
        "benchmark": "n-dimensional contrastive loss: fibre path and chunked cube vs thesis-style reference",
        "device": args.device if args.device == "cpu" else torch.cuda.get_device_name(),
        "cpu": platform.processor() or platform.machine(), "cpu_count": os.cpu_count(), "threads": args.threads,
        "torch": torch.__version__, "loadavg_before": load_before, "loadavg_after": os.getloadavg(),
        "seconds": time.time() - started, "F": dim, "budget_gib": args.budget_gib, "quick": args.quick,
        "repeats": args.repeats, "min_time_s": args.min_time,
        "notes": "times are forward+backward; peaks are extra bytes over the inputs; reference values "
                 "marked extrapolated=true are linear fits in F from the two measured_at points",
        "targets": targets, "grid": grid, "cube": cubes,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1))
    print(json.dumps(targets, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
