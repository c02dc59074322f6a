"""The teacher recipe, end to end: build the English-only pool of the long-tail world, pretrain the
teacher on it (`training.stage0.train_teacher`), and measure its zero-shot concept recognition on
held-out single-object pictures of every concept (`eval.zero_shot`): R@1 over all concepts and over
the rarest third, with the learning curve, the wall and CPU time of the pretraining, and the time of
one step of the recipe against one step of the old stage 0 (groundmt-tiny, batch 64, every picture
through PIL preprocessing at every step, AdamW with weight decay on everything) measured in the same
process before and after the pretraining, in wall and in CPU time (on a machine shared with other
jobs wall times are inflated, CPU time much less: it is the estimate of a single idle core's time).

    python benchmarks/teacher_pretrain.py [--steps 1500] [--threads 2] [--work DIR] [--out JSON]

docs/teacher.md reads its figures.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import datasets
import torch
from accelerate import Accelerator
from open_clip.loss import ClipLoss

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from data_prep.longtail.build import World, build_longtail  # noqa: E402
from data_prep.longtail.held_out import concept_prompts, held_out_pictures, rarest_third  # noqa: E402
from data_prep.sampling import StepSampler  # noqa: E402
from eval.zero_shot import concept_recognition  # noqa: E402
from models.clip_loading import load_clip  # noqa: E402
from training.stage0 import train_teacher  # noqa: E402

RECIPE = {"clip": "groundmt-teacher", "pool_images": 12000, "single_share": 0.7, "batch_size": 128, "lr": 2e-3,
          "warmup": 0.05, "weight_decay": 0.1, "steps": 1500}
OLD = {"clip": "groundmt-tiny", "batch_size": 64, "lr": 1e-3}


def old_step_seconds(train: datasets.Dataset, repeats: int, seed: int = 0) -> dict:
    """Median wall and CPU seconds of one step of the old stage 0 (the loop train_teacher ran
    before PictureTable: PIL preprocessing and tokenization of every row at every step)."""
    torch.manual_seed(seed)
    clip, preprocess, tokenizer = load_clip(OLD["clip"])
    optimizer = torch.optim.AdamW(clip.parameters(), lr=OLD["lr"], weight_decay=0.1, betas=(0.9, 0.98), eps=1e-6)
    loss_fn = ClipLoss()
    sampler = StepSampler(list(range(len(train))), OLD["batch_size"], seed=seed)
    walls, cpus = [], []
    for step in range(repeats + 1):
        start, cpu = time.perf_counter(), time.process_time()
        batch = train.select(sampler.indices(step))
        images = torch.stack([preprocess(im.convert("RGB")) for im in batch["image"]])
        ids = tokenizer([eng[step % len(eng)] for eng in batch["english"]])
        features = clip.encode_image(images, normalize=True), clip.encode_text(ids, normalize=True)
        loss = loss_fn(*features, clip.logit_scale.exp())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if step:  # the first step warms up
            walls.append(time.perf_counter() - start)
            cpus.append(time.process_time() - cpu)
    return {"wall_s": statistics.median(walls), "cpu_s": statistics.median(cpus)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=RECIPE["steps"])
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2: the README's machine)")
    parser.add_argument("--eval-every", type=int, default=250, help="steps between points of the learning curve")
    parser.add_argument("--old-repeats", type=int, default=20, help="timed steps of the old stage 0")
    parser.add_argument("--work", type=Path, default=None, help="folder for the pool (default: a temporary one)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "teacher_pretrain.json")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    work = Path(tempfile.mkdtemp(prefix="teacher-pool-")) if args.work is None else args.work
    pool_dir = work / "pool"
    load_start = os.getloadavg()

    t0, c0 = time.perf_counter(), time.process_time()
    reused = (pool_dir / "dataset_dict.json").is_file()
    if not reused:
        build_longtail(pool_dir, lang="es", images=RECIPE["pool_images"], seed=0, english_only=True,
                       single_share=RECIPE["single_share"], show_progress=False)
    build = {"wall_s": time.perf_counter() - t0, "cpu_s": time.process_time() - c0, "reused": reused}
    train = datasets.load_from_disk(str(pool_dir))["train"]

    world = World("es")
    pictures, prompts, rare = held_out_pictures(world, copies=1), concept_prompts(world), rarest_third(world)
    old_before = old_step_seconds(train, args.old_repeats)

    torch.manual_seed(0)
    clip, preprocess, tokenizer = load_clip(RECIPE["clip"])
    curve, eval_seconds, eval_cpu = [], [0.0], [0.0]

    def evaluate(model: torch.nn.Module) -> dict:
        start, cpu = time.perf_counter(), time.process_time()
        out = concept_recognition(model, preprocess, tokenizer, pictures, prompts, rare, bootstrap=200)
        eval_seconds[0] += time.perf_counter() - start
        eval_cpu[0] += time.process_time() - cpu
        return {"r1_all": out["all"]["score"], "r1_rare": out["rare"]["score"]}

    def log(row: dict) -> None:
        if "teacher/eval/r1_all" in row:
            curve.append({"step": row["teacher/step"], "r1_all": row["teacher/eval/r1_all"],
                          "r1_rare": row["teacher/eval/r1_rare"]})
            print(f"step {row['teacher/step']}: R@1 all {row['teacher/eval/r1_all']:.3f}, "
                  f"rarest third {row['teacher/eval/r1_rare']:.3f}", flush=True)

    sampler = StepSampler(list(range(len(train))), RECIPE["batch_size"], seed=0)
    t0, c0 = time.perf_counter(), time.process_time()
    last = train_teacher(clip, preprocess, tokenizer, train, sampler.indices, Accelerator(cpu=True),
                         steps=args.steps, lr=RECIPE["lr"], seed=0, warmup=RECIPE["warmup"],
                         weight_decay=RECIPE["weight_decay"], log=log, show_progress=False,
                         evaluate=evaluate, eval_every=args.eval_every)
    wall, cpu = time.perf_counter() - t0 - eval_seconds[0], time.process_time() - c0 - eval_cpu[0]
    final = concept_recognition(clip, preprocess, tokenizer, pictures, prompts, rare)
    final.pop("hits")
    old_after = old_step_seconds(train, args.old_repeats)  # again: the machine's load may have changed
    old = {k: (old_before[k] + old_after[k]) / 2 for k in old_before}
    result = {
        "recipe": {**RECIPE, "steps": args.steps},
        "threads": args.threads,
        "pool": {"train_rows": len(train), "build": build},
        "zero_shot": final,
        "curve": curve,
        "final_loss": last,
        "pretraining": {"wall_s": wall, "cpu_s": cpu, "per_step_wall_s": wall / args.steps,
                        "per_step_cpu_s": cpu / args.steps, "evaluations_wall_s": eval_seconds[0]},
        "old_stage0_step": {"before": old_before, "after": old_after, "mean": old,
                            "batch_size": OLD["batch_size"], "clip": OLD["clip"]},
        "step_ratio_to_old": {"wall": wall / args.steps / old["wall_s"], "cpu": cpu / args.steps / old["cpu_s"]},
        "load_average": {"start": load_start, "end": os.getloadavg()},
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "torch": torch.__version__},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"zero-shot R@1 all {final['all']['score']:.3f} [{final['all']['low']:.3f}, {final['all']['high']:.3f}], "
          f"rarest third {final['rare']['score']:.3f} [{final['rare']['low']:.3f}, {final['rare']['high']:.3f}] "
          f"after {args.steps} steps; pretraining {wall:.0f} s wall, {cpu:.0f} s CPU; one step = "
          f"{result['step_ratio_to_old']['wall']:.2f} x (wall) / {result['step_ratio_to_old']['cpu']:.2f} x (CPU) "
          f"the old stage-0 step ({old['wall_s']:.3f} s wall, same process); written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
