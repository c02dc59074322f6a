"""Cost model of one stage-1 training step: time and peak memory per part, per configuration and batch.

The step is train.py's own, built from the same functions (`training.config.parse_config`,
`training.build.build_system`, `freeze_towers`, `build_objective`, accelerate's `Accelerator` with
the configuration's mixed precision, `TrainCollator`), on the embedded synthetic world (built once
into the cache). Its parts:

- collate            host: caption choice, tokenisation, image preprocessing
- student decode     the Marian student (free-running by default), the splice calls excluded
- splice             every call of the splice module inside the decode (forward hooks)
- CLIP text tower    the tower reading the student's spliced embeddings
- token CE           the teacher-forced pass on captions with a human translation
- image tower        CLIP's image tower on the B images
- English tower      CLIP's text tower on the B·K English captions
- n-dim loss         NDimContrastiveLoss on the n axes (forward)
- backward           one backward through everything
- optimizer          gradient clipping, AdamW step, zero_grad

With frozen towers (`--freeze both`, the default) train.py reads image and English features from a
table computed once (`models.feature_cache`), so `step_as_trained_s` leaves those two parts out
(they are still measured: they are what that table costs per row). The n-dim loss share is its
forward + backward, timed alone on the step's detached axes, over `step_as_trained_s`.

Configurations: `embedded` (train.py defaults: CLIP groundmt-tiny, tiny student, corpus
shortlist), `mid` (CLIP ViT-S-32, tiny student, all 49,408 CLIP ids) and `thesis` (`--preset
thesis`: ViT-B-32, Marian-size student, all ids, bf16). CLIP weights are random: time and memory do
not depend on them. Batches larger than the world's training split repeat rows.

Method: every (configuration, B) runs in a fresh process. One warm-up step, then `--repeats` timed
steps; each part's median is reported (on CUDA every part boundary synchronises). Peak memory: CPU,
the resident-set high-water mark over each part and the whole step (`peak_memory.PeakMemory`, with
glibc's mmap threshold fixed so RSS follows live tensors); CUDA, `torch.cuda.max_memory_allocated`.
`process_peak_bytes` is the whole process's high-water mark (models included).

    python benchmarks/bench_train_step.py [--configs embedded mid] [--batches 8 32 128] [--device cpu|cuda]
        [--checkpointing-study] [--out JSON] [--plot PNG]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from contextlib import contextmanager, nullcontext
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from peak_memory import PeakMemory, fresh_process_env, status_bytes, sync  # noqa: E402
from shown_paths import shown_path  # noqa: E402

CONFIGS: dict[str, list[str]] = {
    "embedded": [],
    "mid": ["--clip", "ViT-S-32", "--target-vocab", "full"],
    "thesis": ["--preset", "thesis"],
}
PARTS = ("collate", "student decode", "splice", "CLIP text tower", "token CE", "image tower", "English tower",
         "n-dim loss", "backward", "optimizer")
TRAINED_PARTS = tuple(p for p in PARTS if p not in ("image tower", "English tower"))  # frozen: from the table
# --activation-checkpointing: free-running decoding checkpoints the student's encoder only (the decoder
# needs its KV cache), parallel-bos decoding its encoder and decoder
STUDY = {"free-running": [], "free-running+ckpt": ["--activation-checkpointing"],
         "parallel-bos": ["--decoding", "parallel-bos"],
         "parallel-bos+ckpt": ["--decoding", "parallel-bos", "--activation-checkpointing"]}


# --- one cell, inside a worker process ---------------------------------------------------------------

class Parts:
    """Wall time (synchronised) and peak memory of named parts of one step."""

    def __init__(self, device: torch.device):
        self.device = device
        self.seconds: dict[str, float] = {}
        self.peaks: dict[str, int] = {}
        self.memory = False  # per-part peaks (not nested: a part's reset would hide its parent's peak)

    @contextmanager
    def part(self, name: str, *, measure_memory: bool = True):
        sync(self.device)
        meter = PeakMemory(self.device) if self.memory and measure_memory else nullcontext()
        start = time.perf_counter()
        with meter:
            yield
            sync(self.device)
        self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - start
        if isinstance(meter, PeakMemory):
            self.peaks[name] = max(self.peaks.get(name, 0), meter.peak_bytes)

    def wrap(self, name: str, fn):
        def timed(*args, **kwargs):
            with self.part(name, measure_memory=False):
                return fn(*args, **kwargs)
        return timed


def run_cell(spec: dict) -> dict:
    """Build the configuration the way train.py does, then measure steps of batch `spec['B']`."""
    from accelerate import Accelerator

    from data_prep.collate import TrainCollator
    from data_prep.targets import TargetTable
    from data_prep.load import load_dataset_dir
    from data_prep.source_tokenizer import source_tokenizer_for
    from models.clip_loading import load_clip
    from models.target_vocab import ClipShortlist
    from models.student import enable_activation_checkpointing
    from training.build import build_objective, build_system, freeze_towers
    from training.config import parse_config, resolve_place
    from training.data import dataset_dir

    torch.set_num_threads(spec["threads"])
    device = torch.device(spec["device"])
    cfg = parse_config([*spec["args"], "--cache-dir", spec["cache"], "--quiet"])
    cfg = resolve_place(cfg, Path(spec["cache"]) / "unused-run", local_processes=1)
    data_path = dataset_dir(cfg, is_main=True, log=print)
    ds = load_dataset_dir(data_path)["train"]
    text = ds.select_columns(["source", "english", "parallel"])
    source_tokenizer = source_tokenizer_for(data_path, [s for row in text for s in row["source"] if s.strip()],
                                            vocab_size=cfg.dataset.source_vocab)
    torch.manual_seed(cfg.run.seed)
    clip, preprocess, clip_tokenizer = load_clip(cfg.teacher.clip)
    clip = clip.to(device)
    targets = [t for row in text for t in (*row["english"], *row["parallel"]) if t.strip()]
    shortlist = ClipShortlist.from_texts(clip_tokenizer, targets) if cfg.student.target_vocab == "corpus" else None
    cfg = cfg.replace(max_target_length=cfg.student.max_target_length
                      or int((clip_tokenizer(targets) != 0).sum(1).max()) + 2)
    system = build_system(cfg, clip, clip_tokenizer, source_tokenizer, seed=cfg.run.seed, shortlist=shortlist)
    freeze_towers(system, cfg.teacher.freeze)
    if cfg.optim.activation_checkpointing:
        enable_activation_checkpointing(system.student, cfg.student.decoding)
    objective = build_objective(cfg, clip)
    accelerator = Accelerator(cpu=device.type == "cpu", mixed_precision=cfg.optim.mixed_precision)
    trainable = [p for p in (*system.parameters(), *objective.parameters()) if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=cfg.optim.lr, weight_decay=cfg.optim.weight_decay)
    system, objective, optimizer = accelerator.prepare(system, objective, optimizer)
    accelerator.unwrap_model(objective, keep_fp32_wrapper=False)  # fp32 loss, as train.py runs it
    core = accelerator.unwrap_model(system)
    loss_fn = accelerator.unwrap_model(objective).ndim
    table = TargetTable.from_dataset(ds, list(range(len(ds))))
    collate = TrainCollator(core.source_tokenizer, core.labels_for, k_english=cfg.objective.k_english,
                            m_source=cfg.objective.m_source, preprocess=preprocess, clip_tokenizer=clip_tokenizer)
    B, M = spec["B"], cfg.objective.m_source
    rows = [i % len(ds) for i in range(B)]
    keys = sorted(k for k, _ in table)[:cfg.optim.ce_batch_size]  # the token CE's batch of captions with a target
    frozen_image, frozen_text = cfg.teacher.freeze in ("both", "image"), cfg.teacher.freeze in ("both", "text")

    parts = Parts(device)
    core.splice_decode = parts.wrap("decode+splice", core.splice_decode)
    core.encode_decoded = parts.wrap("CLIP text tower", core.encode_decoded)
    core.encode_images = parts.wrap("image tower", core.encode_images)
    core.encode_english = parts.wrap("English tower", core.encode_english)
    splice_start: list[float] = []

    def splice_begins(*_) -> None:
        sync(device)
        splice_start.append(time.perf_counter())

    def splice_ends(*_) -> None:
        sync(device)
        parts.seconds["splice"] = parts.seconds.get("splice", 0.0) + time.perf_counter() - splice_start.pop()

    core.splice.register_forward_pre_hook(splice_begins)
    core.splice.register_forward_hook(splice_ends)
    system.train()

    def step() -> list:
        with parts.part("collate"):
            batch = collate.sources(ds.select(rows), rows, seed=0, targets=table)
            targets = collate.targets_batch(keys, ds, table) if keys else None
        with accelerator.autocast():
            with parts.part("forward"):  # the towers run inside it (the frozen ones build no graph)
                out = system(batch.inputs.to(device), None if targets is None else targets.to(device))
            axes = out.axes.ordered()
            with parts.part("n-dim loss"):
                loss = objective(out.axes).terms["contrastive"] + (
                    cfg.objective.token_ce_weight * out.token_ce if out.token_ce is not None else 0.0)
        with parts.part("backward"):
            accelerator.backward(loss)
        with parts.part("optimizer"):
            if cfg.optim.grad_clip > 0:
                accelerator.clip_grad_norm_(trainable, cfg.optim.grad_clip)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        return [a.detach() for a in axes]

    step()  # warm-up: allocator, kernels, lazy initialisation
    parts.seconds.clear()
    with PeakMemory(device) as whole:
        axes = step()
    step_peak = whole.peak_bytes
    runs = []
    parts.memory = True
    for _ in range(spec["repeats"]):
        parts.seconds.clear()
        step()
        runs.append(dict(parts.seconds))
    median = {name: statistics.median(r.get(name, 0.0) for r in runs) for name in runs[0]}
    times = {
        "collate": median["collate"],
        "student decode": median["decode+splice"] - median.get("splice", 0.0),
        "splice": median.get("splice", 0.0),
        "CLIP text tower": median["CLIP text tower"],
        "token CE": median["forward"] - median["decode+splice"] - median["CLIP text tower"] - median["image tower"]
        - median.get("English tower", 0.0),
        "image tower": median["image tower"],
        "English tower": median.get("English tower", 0.0),
        "n-dim loss": median["n-dim loss"],
        "backward": median["backward"],
        "optimizer": median["optimizer"],
    }

    def loss_alone() -> float:  # forward + backward of the n-dim loss on the step's axes
        leaves = [a.clone().requires_grad_() for a in axes]
        sync(device)
        start = time.perf_counter()
        with torch.autocast(device.type, enabled=False):
            value = loss_fn(leaves).loss
        value.backward()
        sync(device)
        return time.perf_counter() - start

    loss_alone()
    loss_s = statistics.median(loss_alone() for _ in range(max(3, spec["repeats"])))
    as_trained = sum(times[p] for p in (TRAINED_PARTS if frozen_image and frozen_text else PARTS))
    return {
        "times_s": times, "step_s": sum(times.values()), "step_as_trained_s": as_trained,
        "ndim_loss_fwd_bwd_s": loss_s, "ndim_loss_share": loss_s / as_trained,
        "peak_step_bytes": step_peak, "peak_part_bytes": {k: v for k, v in parts.peaks.items()},
        "process_peak_bytes": status_bytes("VmHWM") if device.type == "cpu" else torch.cuda.max_memory_allocated(),
        "repeats": len(runs), "config": {**cfg.flat(), "cache_dir": shown_path(spec["cache"])},
        "parameters": {"trainable": sum(p.numel() for p in trainable),
                       "total": sum(p.numel() for p in core.parameters())},
        "n_axes": len(axes), "sequences_per_step": B * M,
    }


# --- the driver ---------------------------------------------------------------------------------------

def in_worker(spec: dict, timeout: float) -> dict:
    cmd = [sys.executable, __file__, "--worker", json.dumps(spec)]
    env = fresh_process_env(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
                            PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    if done.returncode != 0:
        return {"error": f"exit {done.returncode}: {done.stderr[-2500:]}"}
    return json.loads(done.stdout.strip().splitlines()[-1])


def mib(n: float) -> str:
    return f"{n / 2**20:,.0f} MiB"


def plot(result: dict, path: Path) -> None:
    """Each part's share of the step (left, stacked to 100 %, the step's time above each bar) and the
    peak step memory (right), per configuration and batch."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cells = [c for c in result["cells"] if "times_s" in c and c["variant"] == "base"]
    if not cells:
        return
    labels = [f"{c['name']}\nB={c['B']}" for c in cells]
    fig, (left, right) = plt.subplots(1, 2, figsize=(max(9, 1.4 * len(cells) + 5), 5.5),
                                      gridspec_kw={"width_ratios": [3, 1.5]})
    bottom = [0.0] * len(cells)
    colours = plt.get_cmap("tab10")
    for i, part in enumerate(PARTS):
        shares = [100 * c["times_s"][part] / c["step_s"] for c in cells]
        left.bar(labels, shares, bottom=bottom, label=part, color=colours(i),
                 hatch="//" if part in ("image tower", "English tower") else None)
        bottom = [b + v for b, v in zip(bottom, shares)]
    for x, c in enumerate(cells):
        left.annotate(f"{c['step_s']:.2f} s\nloss {100 * c['ndim_loss_share']:.2g} %", (x, 100), ha="center",
                      va="bottom", fontsize=7)
    left.set_ylim(0, 115)
    left.set_ylabel("% of the step (hatched: cached when the towers are frozen)")
    left.set_title(f"one stage-1 step by part ({result['device']}, {result['threads']} thread(s))", fontsize=10)
    left.legend(fontsize=7, ncol=5, loc="upper center", bbox_to_anchor=(0.5, -0.12))
    right.bar(labels, [c["peak_step_bytes"] / 2**20 for c in cells], color="grey")
    right.set_ylabel("peak step memory above the models (MiB)")
    for ax in (left, right):
        ax.tick_params(axis="x", labelsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--configs", nargs="+", default=["embedded", "mid"], choices=list(CONFIGS))
    parser.add_argument("--batches", nargs="+", type=int, default=[8, 32, 128])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads per worker")
    parser.add_argument("--repeats", type=int, default=3, help="timed steps after one warm-up step")
    parser.add_argument("--train-args", default="", help="extra train.py flags for every configuration "
                                                         "(e.g. a smaller CLIP for a dry run)")
    parser.add_argument("--synthetic-images", type=int, default=120, help="size of the synthetic world read")
    parser.add_argument("--skip", nargs="+", default=[], metavar="CONFIG:B", help="cells not run, e.g. mid:128")
    parser.add_argument("--checkpointing-study", nargs="*", metavar="CONFIG",
                        help="also run these configurations (default: all of --configs) at B=32 with "
                             "--activation-checkpointing on and off, free-running and parallel-bos decoding")
    parser.add_argument("--budget-s", type=float, default=3600, help="start no cell after this many seconds")
    parser.add_argument("--cache-dir", default=str(ROOT / ".cache" / "bench_train_step"))
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "bench_train_step.json")
    parser.add_argument("--plot", type=Path, default=ROOT / "docs" / "figures" / "bench_train_step.png")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(run_cell(json.loads(args.worker))))
        return
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("error: --device cuda, but torch sees no GPU")

    started, load_before = time.time(), os.getloadavg()
    extra = args.train_args.split()
    plan = [(name, B, "base", []) for name in args.configs for B in args.batches if f"{name}:{B}" not in args.skip]
    if args.checkpointing_study is not None:
        plan += [(name, 32, variant, flags) for name in args.checkpointing_study or args.configs
                 for variant, flags in STUDY.items()]
    cells = []
    result = {
        "benchmark": "one stage-1 training step by part (train.py's step, same functions)",
        "device": args.device if args.device == "cpu" else torch.cuda.get_device_name(),
        "machine": platform.processor() or platform.machine(), "cpu_count": os.cpu_count(), "threads": args.threads,
        "torch": torch.__version__, "loadavg_before": load_before, "repeats": args.repeats,
        "synthetic_images": args.synthetic_images, "configs": {name: CONFIGS[name] for name in args.configs},
        "train_args": extra, "skipped": args.skip, "parts": list(PARTS), "trained_parts_frozen_towers": list(TRAINED_PARTS),
        "notes": "times: median of the repeats, seconds; peaks: bytes above the memory held before the step "
                 "(CPU: RSS high-water mark; CUDA: max_memory_allocated); ndim_loss_share: the loss' own "
                 "forward+backward over step_as_trained_s; collate decodes and preprocesses the B images, "
                 "which train.py skips when the image tower is frozen",
        "cells": cells,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    for name, B, variant, flags in plan:
        left = args.budget_s - (time.time() - started)
        cell = {"name": name, "B": B, "variant": variant}
        if left <= 0:
            cells.append({**cell, "error": "not run: --budget-s spent"})
            continue
        spec = {"args": [*CONFIGS[name], "--synthetic-images", str(args.synthetic_images), *extra, *flags],
                "B": B, "device": args.device, "threads": args.threads, "repeats": args.repeats,
                "cache": args.cache_dir}
        cells.append({**cell, "train_args": spec["args"], **in_worker(spec, timeout=left)})
        c = cells[-1]
        if "error" in c:
            print(f"{name:>8} B={B:<4} {variant:<20} ERROR {c['error'][-400:]}", flush=True)
        else:
            print(f"{name:>8} B={B:<4} {variant:<20} step {c['step_as_trained_s'] * 1e3:9.1f} ms as trained "
                  f"({c['step_s'] * 1e3:9.1f} with towers), peak {mib(c['peak_step_bytes'])}, "
                  f"n-dim loss {100 * c['ndim_loss_share']:.2f} %", flush=True)
        result.update(loadavg_after=os.getloadavg(), seconds=time.time() - started)
        args.out.write_text(json.dumps(result, indent=1) + "\n")  # after every cell: an interrupted run keeps its cells
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.out}")
    if args.plot and str(args.plot) != "-":
        plot(result, args.plot)
        print(f"wrote {args.plot}")


if __name__ == "__main__":
    main()
