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

CHECKPOINT_NAME = "open_clip_model.pt"


def teacher_key(train: datasets.Dataset, rows: list[int], clip_name: str, settings: dict) -> str:
    """Cache key from what the teacher learns from — the training rows' image ids and English
    captions — and the teacher settings. The source side and the human translations do not enter,
    so datasets that differ only there (another source language of the embedded world, another
    `--parallel-fraction`) share one teacher."""
    digest = hashlib.sha256()
    for item in train.select(rows).select_columns(["image_id", "english"]):
        digest.update(json.dumps([item["image_id"], item["english"]], ensure_ascii=False).encode())
    blob = json.dumps({"data": digest.hexdigest(), "clip": clip_name, **settings}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _lr_at(step: int, steps: int, lr: float, warmup: int) -> float:
    if step < warmup:
        return lr * (step + 1) / warmup
    return 0.5 * lr * (1 + math.cos(math.pi * (step - warmup) / max(1, steps - warmup)))


def train_teacher(
    clip: torch.nn.Module,
    preprocess: Callable,
    tokenizer: Callable,
    train: datasets.Dataset,
    usable: list[int],
    accelerator,
    *,
    steps: int,
    batch_size: int,
    lr: float,
    seed: int,
    log: Callable[[dict], None] | None = None,
    show_progress: bool = True,
) -> dict:
    """Train `clip` in place with the two-tower CLIP loss on (image, random English caption)."""
    world, rank = accelerator.num_processes, accelerator.process_index
    clip.output_dict = True  # open_clip's forward then returns named features
    model = clip
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.1, betas=(0.9, 0.98), eps=1e-6)
    model, optimizer = accelerator.prepare(model, optimizer)
    loss_fn = ClipLoss(local_loss=True, gather_with_grad=True, rank=rank, world_size=world)
    gen = torch.Generator().manual_seed(seed)
    rng = random.Random(seed + rank)
    order: list[int] = []
    per_rank = batch_size // world
    model.train()
    bar = tqdm(range(steps), desc="stage 0: CLIP teacher", disable=not (show_progress and accelerator.is_local_main_process))
    last = {}
    for step in bar:
        while len(order) < batch_size:
            order += [usable[i] for i in torch.randperm(len(usable), generator=gen).tolist()]
        batch_idx, order = order[:batch_size], order[batch_size:]
        rows = train.select(batch_idx[rank * per_rank:(rank + 1) * per_rank])
        images = torch.stack([preprocess(im.convert("RGB")) for im in rows["image"]]).to(accelerator.device)
        texts = [rng.choice([e for e in eng if e.strip()]) for eng in rows["english"]]
        ids = tokenizer(texts).to(accelerator.device)
        for group in optimizer.param_groups:
            group["lr"] = _lr_at(step, steps, lr, warmup=max(1, steps // 20))
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
    model.eval()
    clip.output_dict = False
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
