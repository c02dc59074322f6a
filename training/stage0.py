"""Stage 0: a CLIP that reads English — real weights, or a tiny teacher trained here and cached.

When no pretrained CLIP is given, the student needs *some* CLIP that reads English: we train
the named open_clip architecture with open_clip's own `ClipLoss` on (image, English caption)
pairs (`TeacherPairs`: an English-only pool, or the training split's usable rows). The result is
saved as an open_clip checkpoint file under the cache and loaded back through `load_clip(name,
pretrained=path)` — the same path real weights take. Each picture is decoded and put through the
deterministic part of CLIP's preprocessing once (`PictureTable`) and each caption tokenized once;
a step only gathers and normalises. The recipe and its measurements: docs/teacher.md.

What stage 0 reads back is checked before it is used (one line naming the file and what is
wrong, with the step that repairs it): a `--clip-pretrained` file or a cached teacher that does not
load or whose weights are not finite, a cached teacher's `teacher.json` (`TeacherInfo`), a saved
teacher state (`read_teacher_state`). A teacher step whose loss is not finite stops the run
(`training.divergence.Diverged`) before it is applied, and no state with weights that are not
finite is saved.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import pickle
import random
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import datasets
import numpy as np
import torch
from open_clip.loss import ClipLoss
from pydantic import FiniteFloat, NonNegativeInt, PositiveInt
from PIL import Image
from torchvision.transforms import Normalize
from tqdm.auto import tqdm
from typing_extensions import TypedDict

from data_prep.errors import InputError
from data_prep.locks import WaitingLock
from data_prep.memory import require_memory
from data_prep.sampling import StepSampler
from models.clip_loading import CHECKPOINT_NAME, load_clip
from models.schedules import warmup_cosine
from models.typed_json import ReadBackError, read_json
from training.config import TrainConfig
from training.divergence import Diverged, anywhere
from translate.translator import non_finite_tensors

# A cached teacher's teacher.json (`save_teacher`): its settings and its last step's loss.
TeacherInfo = TypedDict("TeacherInfo", {"clip": str, "steps": NonNegativeInt, "batch_size": PositiveInt,
                                        "lr": FiniteFloat, "seed": NonNegativeInt, "world": PositiveInt,
                                        "teacher/loss": FiniteFloat, "teacher/logit_scale": FiniteFloat})
TEACHER_STATE_KEYS = ("model", "optimizer", "step", "torch_rng")
RECIPE = "decay-groups-1"  # what the cache key says about how a teacher is trained (docs/teacher.md)


@dataclass(frozen=True)
class TeacherPairs:
    """What a stage 0 teacher learns from: the `rows` of `dataset` (columns `image`, `image_id`,
    `english`), each image paired with one of its English captions per step."""

    dataset: datasets.Dataset
    rows: list[int]


@dataclass(frozen=True)
class Stage0:
    """The CLIP of stage 1: the model, its preprocessing and tokenizer, and the weights file it was
    loaded from (None for a randomly initialised CLIP)."""

    clip: torch.nn.Module
    preprocess: Callable
    tokenizer: Callable
    weights: str | None


def teacher_key(train: datasets.Dataset, rows: list[int], clip_name: str, settings: dict) -> str:
    """Cache key from what the teacher learns from — the training rows' image ids and English
    captions — and the teacher settings. The source side and the human translations do not enter,
    so datasets that differ only there (another source language of the embedded world, another
    `--parallel-fraction`) share one teacher."""
    digest = hashlib.sha256()
    for item in train.select(rows).select_columns(["image_id", "english"]):
        digest.update(json.dumps([item["image_id"], item["english"]], ensure_ascii=False).encode())
    blob = json.dumps({"data": digest.hexdigest(), "clip": clip_name, "batches": "step-sampler", "recipe": RECIPE,
                       **settings}, sort_keys=True)
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
    end in ToTensor + Normalize is applied in full at every batch instead. A table that could not
    fit in memory (3 bytes per pixel of every picture of `dataset`) is refused before it is filled."""

    def __init__(self, dataset: datasets.Dataset, preprocess: Callable, tokenizer: Callable) -> None:
        self.dataset, self.preprocess, self.tokenizer = dataset, preprocess, tokenizer
        steps = list(getattr(preprocess, "transforms", []))
        self.normalize = steps[-1] if len(steps) >= 2 and isinstance(steps[-1], Normalize) else None
        self.pil_steps = steps[:-2]
        if self.normalize is not None and len(dataset):
            picture = Image.new("RGB", (64, 64))  # resize and crop give every picture this one's size
            for step in self.pil_steps:
                picture = step(picture)
            width, height = picture.size
            require_memory(3 * width * height * len(dataset),
                           f"stage 0's picture table ({len(dataset)} teacher pictures at {width}x{height})",
                           "pretrain the teacher on fewer pictures (--teacher-data) or pass --clip-pretrained")
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
        state = read_teacher_state(state_file, clip, steps)
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
        if anywhere(not bool(torch.isfinite(loss.detach())), accelerator):
            raise Diverged(f"the CLIP teacher diverged at stage 0 step {step + 1} of {steps}: its loss is "
                           f"{loss.item():g}; the step was not applied, and its last saved state (if any) stays in "
                           f"{state_dir}. Lower --teacher-lr ({lr:g})")
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
            bad = non_finite_tensors(clip)
            if anywhere(bool(bad), accelerator):
                raise Diverged(f"the CLIP teacher diverged at stage 0 step {done} of {steps}: its weights are not "
                               f"finite ({bad[0] if bad else 'on another process'}), so that state was not saved. "
                               f"Lower --teacher-lr ({lr:g})")
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


def read_teacher_state(path: Path, clip: torch.nn.Module, steps: int) -> dict:
    """A teacher state saved by `train_teacher`, checked before anything of it is loaded: a torch
    file holding every key of TEACHER_STATE_KEYS, a step inside the run, the model's tensors of the
    shapes of `clip`. Anything else is a `ReadBackError` naming the file and the part."""
    fix = "; remove it to train the teacher again from step 0"
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, ValueError, pickle.UnpicklingError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ReadBackError(f"{path}: not a complete teacher state ({reason}){fix}") from None
    missing = [key for key in TEACHER_STATE_KEYS if not isinstance(state, dict) or key not in state]
    if missing:
        raise ReadBackError(f'{path}: field "{missing[0]}" is missing{fix}')
    step, model, expected = state["step"], state["model"], clip.state_dict()
    if isinstance(step, bool) or not isinstance(step, int) or not 0 < step < steps:
        raise ReadBackError(f'{path}: field "step": expected a step in [1, {steps}), found {step!r}{fix}')
    if not isinstance(state["torch_rng"], torch.Tensor) or state["torch_rng"].dtype != torch.uint8:
        raise ReadBackError(f'{path}: field "torch_rng": expected a torch RNG state (a uint8 tensor){fix}')
    if not isinstance(model, dict) or set(model) != set(expected) \
            or any(not isinstance(t, torch.Tensor) or t.shape != expected[k].shape for k, t in model.items()):
        raise ReadBackError(f'{path}: field "model": expected the {len(expected)} tensors of this CLIP teacher{fix}')
    if not isinstance(state["optimizer"], dict):
        raise ReadBackError(f'{path}: field "optimizer": expected an optimizer state{fix}')
    return state


def loaded_clip(name: str, weights: str | Path, what: str, fix: str) -> tuple:
    """`load_clip(name, pretrained=weights)`, with an `InputError` naming `what` (and `fix`: how to
    repair it) when the file does not load as that CLIP or its weights are not finite."""
    try:
        clip, preprocess, tokenizer = load_clip(name, pretrained=weights)
    except (RuntimeError, ValueError, KeyError, EOFError, pickle.UnpicklingError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(f"{what} {weights}: cannot be loaded as CLIP {name} ({reason}){fix}") from None
    bad = non_finite_tensors(clip)
    if bad:
        raise InputError(f"{what} {weights}: its weights are not finite ({bad[0]}){fix}")
    return clip, preprocess, tokenizer


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


def stage0_clip(cfg: TrainConfig, accelerator, pairs: TeacherPairs, log: Callable[[str], None], show: bool,
                stop: Callable[[], bool]) -> Stage0 | None:
    """Real weights (`--clip-pretrained`), a randomly initialised CLIP (`--teacher-steps 0`, said
    loudly), or the cached teacher of `pairs` — trained here when the cache has none (a stopped
    teacher resumes from `<cache>/teachers/<key>.partial`). None when a signal stopped the teacher
    (its state is saved)."""
    teacher, run = cfg.teacher, cfg.run
    device = accelerator.device
    if teacher.clip_pretrained:
        clip, preprocess, tokenizer = loaded_clip(teacher.clip, teacher.clip_pretrained, "--clip-pretrained", "")
        log(f"stage 0: CLIP {teacher.clip} from {teacher.clip_pretrained}")
        return Stage0(clip.to(device), preprocess, tokenizer, teacher.clip_pretrained)
    if teacher.teacher_steps == 0:  # the thesis preset without weights: a real-size CLIP cannot be trained here
        torch.manual_seed(run.seed)
        clip, preprocess, tokenizer = load_clip(teacher.clip)
        log(f"WARNING stage 0 skipped: no --clip-pretrained and --teacher-steps 0, so CLIP {teacher.clip} is RANDOMLY "
            f"INITIALISED (seed {run.seed}); the student is grounded in a CLIP that has learnt nothing. Pass "
            f"--clip-pretrained FILE for real weights, or --teacher-steps N to train a teacher on this data first.")
        return Stage0(clip.to(device), preprocess, tokenizer, None)
    world = accelerator.num_processes
    batch = min(teacher.teacher_batch_size, len(pairs.rows) // world * world)
    settings = dict(steps=teacher.teacher_steps, batch_size=batch, lr=teacher.teacher_lr, seed=run.seed, world=world)
    directory = Path(run.cache_dir) / "teachers" / teacher_key(pairs.dataset, pairs.rows, teacher.clip, settings)
    # Runs sharing a cache (an ablation's jobs) train one teacher: the first takes the lock, the others wait for it.
    lock = WaitingLock(directory.with_name(directory.name + ".lock"),
                       lambda owner: log(f"stage 0: waiting for {owner}, which trains the same teacher")) \
        if accelerator.is_main_process else contextlib.nullcontext()
    with lock:
        accelerator.wait_for_everyone()
        if (directory / CHECKPOINT_NAME).is_file():
            try:
                read_json(directory / "teacher.json", TeacherInfo)
            except (ReadBackError, OSError) as exc:
                raise ReadBackError(f"{exc}; remove {directory} to train the teacher again") from None
            log(f"stage 0: cached CLIP teacher {directory}")
        else:
            partial = directory.with_name(directory.name + ".partial")
            torch.manual_seed(run.seed)
            clip, preprocess, tokenizer = load_clip(teacher.clip)
            log(f"stage 0: training a {teacher.clip} CLIP teacher on the English captions ({teacher.teacher_steps} steps"
                + (", resuming its saved state" if (partial / "teacher_state.pt").is_file() else "") + ")")
            t0 = time.time()
            sampler = StepSampler(pairs.rows, batch, seed=run.seed, rank=accelerator.process_index, world=world)
            last = train_teacher(clip, preprocess, tokenizer, pairs.dataset, sampler.indices, accelerator,
                                 steps=teacher.teacher_steps, lr=teacher.teacher_lr, seed=run.seed, state_dir=partial,
                                 save_every=cfg.bookkeeping.checkpoint_every, stop=stop, show_progress=show)
            if last is None:
                return None
            if accelerator.is_main_process:
                save_teacher(clip, directory, {"clip": teacher.clip, **settings, **last})
                shutil.rmtree(partial, ignore_errors=True)
            accelerator.wait_for_everyone()
            log(f"stage 0: teacher trained in {time.time() - t0:.0f}s (final loss {last['teacher/loss']:.3f}), "
                f"cached at {directory}")
    clip, preprocess, tokenizer = loaded_clip(teacher.clip, directory / CHECKPOINT_NAME, "the cached CLIP teacher",
                                              f"; remove {directory} to train the teacher again")
    return Stage0(clip.to(device), preprocess, tokenizer, str(directory / CHECKPOINT_NAME))
