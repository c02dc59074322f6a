"""Stage 0: a tiny CLIP teacher trained on the English side, cached for later runs.

When no pretrained CLIP is given, the student needs *some* CLIP that reads English: we train
the named open_clip architecture with open_clip's own `ClipLoss` on (image, English caption)
pairs of a dataset (the training split, or an English-only teacher pool). The result is saved as
an open_clip checkpoint file and loaded back through `load_clip(name, pretrained=path)` — the
same path real weights take. Each picture is decoded and put through the deterministic part of
CLIP's preprocessing once (`PictureTable`) and each caption tokenized once; a step only gathers
and normalises. The recipe and its measurements: docs/teacher.md.
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
import numpy as np
import torch
from open_clip.loss import ClipLoss
from torchvision.transforms import Normalize
from tqdm.auto import tqdm

from models.schedules import warmup_cosine

CHECKPOINT_NAME = "open_clip_model.pt"
RECIPE = "decay-groups-1"  # what the cache key says about how a teacher is trained (docs/teacher.md)


def teacher_key(train: datasets.Dataset, rows: list[int], clip_name: str, settings: dict) -> str:
    """Cache key from what the teacher learns from — the training rows' image ids and English
    captions — and the teacher settings. The source side and the human translations do not enter,
    so datasets that differ only there (another source language of the embedded world, another
    `--parallel-fraction`) share one teacher."""
    digest = hashlib.sha256()
    for item in train.select(rows).select_columns(["image_id", "english"]):
        digest.update(json.dumps([item["image_id"], item["english"]], ensure_ascii=False).encode())
    blob = json.dumps({"data": digest.hexdigest(), "clip": clip_name, "batches": "step-sampler", "recipe": RECIPE,
                       **settings},
                      sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def caption_index(image_id: str, captions: int, *, seed: int, step: int) -> int:
    """Which of an image's `captions` non-empty English captions it is paired with at `step`: a pure
    function of (seed, step, image)."""
    return random.Random(f"{seed}:{step}:{image_id}").randrange(captions)


class PictureTable:
    """The rows a teacher reads, each decoded once: its picture after the deterministic PIL part of
    CLIP's eval preprocessing (resize, crop: no randomness, so caching changes nothing) as uint8,
    and its non-empty English captions tokenized. `batch(rows, ...)` returns model inputs exactly
    equal to `preprocess(picture)` and `tokenizer(caption)` (tested). A preprocessing that does not
    end in ToTensor + Normalize is applied in full at every batch instead."""

    def __init__(self, dataset: datasets.Dataset, preprocess: Callable, tokenizer: Callable) -> None:
        self.dataset, self.preprocess, self.tokenizer = dataset, preprocess, tokenizer
        steps = list(getattr(preprocess, "transforms", []))
        self.normalize = steps[-1] if len(steps) >= 2 and isinstance(steps[-1], Normalize) else None
        self.pil_steps = steps[:-2]
        self.pictures: dict[int, torch.Tensor] = {}
        self.tokens: dict[int, torch.Tensor] = {}
        self.image_ids: dict[int, str] = {}

    def _load(self, rows: list[int]) -> None:
        missing = sorted({r for r in rows if r not in self.tokens})
        if not missing:
            return
        part = self.dataset.select(missing)
        for row, image, image_id, english in zip(missing, part["image"], part["image_id"], part["english"]):
            kept = [e for e in english if e.strip()]
            if not kept:
                raise ValueError(f"teacher row {row} ({image_id}) has no English caption")
            self.tokens[row], self.image_ids[row] = self.tokenizer(kept), image_id
            if self.normalize is not None:
                for step in self.pil_steps:
                    image = step(image)
                self.pictures[row] = torch.from_numpy(np.asarray(image.convert("RGB")).copy()).permute(2, 0, 1)

    def batch(self, rows: list[int], *, seed: int, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(pictures [B, 3, H, W] float, token ids [B, context]) of `rows` at `step`."""
        self._load(rows)
        if self.normalize is not None:
            images = self.normalize(torch.stack([self.pictures[r] for r in rows]).float().div_(255))
        else:
            part = self.dataset.select(rows)
            images = torch.stack([self.preprocess(im.convert("RGB")) for im in part["image"]])
        ids = torch.stack([self.tokens[r][caption_index(self.image_ids[r], len(self.tokens[r]), seed=seed, step=step)]
                           for r in rows])
        return images, ids


def parameter_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """AdamW groups: weight decay on matrices and convolution kernels only — not on embeddings
    (token, position, class), norms, biases or the logit scale (as open_clip's training does)."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            exempt = p.ndim < 2 or "embedding" in name or "logit_scale" in name or "class_embedding" in name
            (no_decay if exempt else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


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
    warmup: float = 0.05,
    weight_decay: float = 0.1,
    evaluate: Callable[[torch.nn.Module], dict] | None = None,
    eval_every: int = 0,
) -> dict | None:
    """Train `clip` in place with the two-tower CLIP loss on (image, English caption) pairs.

    `rows_of(step)`: the dataset rows this process reads at `step` (its slice of the global batch;
    a pure function of the step, like `data_prep.sampling.StepSampler.indices`), so the run can
    resume exactly: with `state_dir`, model, optimizer, step and RNG state are saved there every
    `save_every` steps (atomically) and when `stop()` turns true at a step boundary (then None is
    returned instead of the last losses), and a later call continues from the newest save. The
    teacher is released from `accelerator` at the end, so the checkpoints of the next stage hold
    only that stage's models. The learning rate warms up linearly over the first `warmup` fraction
    of the steps, then follows a cosine to 0. With `evaluate` and `eval_every`, `evaluate(clip)`
    runs every `eval_every` steps and at the end (main process), and its figures are logged with
    the step ("teacher/eval/..."): learning curves. Parameters with `requires_grad` off stay fixed."""
    world, rank = accelerator.num_processes, accelerator.process_index
    clip.output_dict = True  # open_clip's forward then returns named features
    optimizer = torch.optim.AdamW(parameter_groups(clip, weight_decay), lr=lr, betas=(0.9, 0.98), eps=1e-6)
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
    table = PictureTable(train, preprocess, tokenizer)
    last = {}

    def run_eval(done: int) -> None:
        if evaluate is not None and accelerator.is_main_process:
            inner = accelerator.unwrap_model(model)
            figures = evaluate(inner)
            inner.train()
            if log is not None:
                log({"teacher/step": done, **{f"teacher/eval/{k}": v for k, v in figures.items()}})

    for step in bar:
        images, ids = table.batch(rows_of(step), seed=seed, step=step)
        images, ids = images.to(accelerator.device), ids.to(accelerator.device)
        for group in optimizer.param_groups:
            group["lr"] = lr * warmup_cosine(step, steps, warmup=max(1, round(steps * warmup)))
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
        if eval_every and (done % eval_every == 0 or done == steps):
            run_eval(done)
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
