"""Stage 0: a tiny CLIP teacher trained on the English side, cached for later runs.

When no pretrained CLIP is given, the student needs *some* CLIP that reads English: we train
the named open_clip architecture with open_clip's own `ClipLoss` on (image, English caption)
pairs of the training split. The result is saved as an open_clip checkpoint file and loaded
back through `load_clip(name, pretrained=path)` — the same path real weights take.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import random
import shutil
from collections.abc import Callable
from pathlib import Path

import datasets
import torch
from open_clip.loss import ClipLoss
from tqdm.auto import tqdm

from models.schedules import warmup_cosine

CHECKPOINT_NAME = "open_clip_model.pt"


def teacher_key(train: datasets.Dataset, rows: list[int], clip_name: str, settings: dict) -> str:
    """Cache key from what the teacher learns from — the training rows' image ids and English
    captions — and the teacher settings. The source side and the human translations do not enter,
    so datasets that differ only there (another source language of the embedded world, another
    `--parallel-fraction`) share one teacher."""
    digest = hashlib.sha256()
    for item in train.select(rows).select_columns(["image_id", "english"]):
        digest.update(json.dumps([item["image_id"], item["english"]], ensure_ascii=False).encode())
    blob = json.dumps({"data": digest.hexdigest(), "clip": clip_name, "batches": "step-sampler", **settings},
                      sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def caption_of(image_id: str, english: list[str], *, seed: int, step: int) -> str:
    """The English caption an image is paired with at `step`: a pure function of (seed, step, image)."""
    return random.Random(f"{seed}:{step}:{image_id}").choice([e for e in english if e.strip()])


def train_teacher(
    clip: torch.nn.Module,
    preprocess: Callable,
    tokenizer: Callable,
    train: datasets.Dataset,
    rows_of: Callable[[int], list[int]],
    accelerator,
    *,
    steps: int,
    lr: float,
    seed: int,
    state_dir: str | Path | None = None,
    save_every: int = 50,
    stop: Callable[[], bool] | None = None,
    log: Callable[[dict], None] | None = None,
    show_progress: bool = True,
) -> dict | None:
    """Train `clip` in place with the two-tower CLIP loss on (image, English caption) pairs.

    `rows_of(step)`: the dataset rows this process reads at `step` (its slice of the global batch;
    a pure function of the step, like `data_prep.sampling.StepSampler.indices`), so the run can
    resume exactly: with `state_dir`, model, optimizer, step and RNG state are saved there every
    `save_every` steps (atomically) and when `stop()` turns true at a step boundary (then None is
    returned instead of the last losses), and a later call continues from the newest save. The
    teacher is released from `accelerator` at the end, so the checkpoints of the next stage hold
    only that stage's models."""
    world, rank = accelerator.num_processes, accelerator.process_index
    clip.output_dict = True  # open_clip's forward then returns named features
    optimizer = torch.optim.AdamW(clip.parameters(), lr=lr, weight_decay=0.1, betas=(0.9, 0.98), eps=1e-6)
    start = 0
    state_file = Path(state_dir) / "teacher_state.pt" if state_dir is not None else None
    if state_file is not None and state_file.is_file():
        state = torch.load(state_file, map_location="cpu", weights_only=False)
        clip.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["torch_rng"])
        start = state["step"]
    model, optimizer = accelerator.prepare(clip, optimizer)
    loss_fn = ClipLoss(local_loss=True, gather_with_grad=True, rank=rank, world_size=world)
    model.train()
    bar = tqdm(range(start, steps), initial=start, total=steps, desc="stage 0: CLIP teacher",
               disable=not (show_progress and accelerator.is_local_main_process))
    last = {}
    for step in bar:
        batch = train.select(rows_of(step))
        images = torch.stack([preprocess(im.convert("RGB")) for im in batch["image"]]).to(accelerator.device)
        texts = [caption_of(i, eng, seed=seed, step=step) for i, eng in zip(batch["image_id"], batch["english"])]
        ids = tokenizer(texts).to(accelerator.device)
        for group in optimizer.param_groups:
            group["lr"] = lr * warmup_cosine(step, steps, warmup=max(1, steps // 20))
        with accelerator.autocast():
            out = model(images, ids)
            loss = loss_fn(out["image_features"], out["text_features"], out["logit_scale"])
        optimizer.zero_grad(set_to_none=True)
        accelerator.backward(loss)
        optimizer.step()
        with torch.no_grad():
            accelerator.unwrap_model(model).logit_scale.clamp_(0, math.log(100))
        last = {"teacher/loss": loss.item(), "teacher/logit_scale": out["logit_scale"].item()}
        if log is not None and (step % 50 == 0 or step == steps - 1):
            log({"teacher/step": step, **last})
        bar.set_postfix(loss=f"{last['teacher/loss']:.3f}")
        done = step + 1
        stopping = stop is not None and stop()
        if state_file is not None and done < steps and (done % save_every == 0 or stopping):
            if accelerator.is_main_process:
                state_file.parent.mkdir(parents=True, exist_ok=True)
                tmp = state_file.with_name(state_file.name + ".tmp")
                torch.save({"model": accelerator.unwrap_model(model).state_dict(),
                            "optimizer": optimizer.optimizer.state_dict(), "step": done,
                            "torch_rng": torch.get_rng_state()}, tmp)
                tmp.replace(state_file)
            accelerator.wait_for_everyone()
        if stopping and done < steps:
            last = None
            break
    model.eval()
    clip.output_dict = False
    accelerator.free_memory()  # unregister the teacher: stage 1's checkpoints hold stage 1's models only
    return last


def save_teacher(clip: torch.nn.Module, directory: str | Path, info: dict) -> Path:
    """Write the weights as an open_clip checkpoint plus `teacher.json`, atomically."""
    directory = Path(directory)
    tmp = directory.with_name(directory.name + f".tmp{os.getpid()}")
    tmp.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": clip.state_dict()}, tmp / CHECKPOINT_NAME)
    (tmp / "teacher.json").write_text(json.dumps(info, indent=2) + "\n")
    if directory.exists():  # another run finished first: keep theirs
        shutil.rmtree(tmp)
        return directory / CHECKPOINT_NAME
    tmp.rename(directory)
    return directory / CHECKPOINT_NAME
