"""Stage 1: the student read by CLIP, trained by `training.task.StudentTask`.

`StudentTrainer` builds the system, its objective and optimizer and prepares them with accelerate
once; `train` is the loop (batches → task → backward → optimizer, then logging, validation and
checkpoints), `resume` continues from the newest complete checkpoint, `finish` exports and
evaluates the model.

The loop's guard (`training.divergence`): a step whose loss or gradient norm is not finite is not
applied; the run stops with `Diverged` after a checkpoint of the last finite step. No checkpoint
and no export is written of weights that are not finite. A checkpoint records what its weights
belong to (the language and the digests of the source and target vocabularies); a resume checks
that and every tensor's shape against this run before it loads anything.
"""
from __future__ import annotations

import errno
import hashlib
import json
import random
import re
import signal
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from tqdm.auto import tqdm

from data_prep.collate import TrainCollator
from data_prep.errors import InputError
from data_prep.targets import TargetTable
from eval.concept_scores import TrainingConcepts
from eval.health import collapse_warnings, health_report
from eval.retrieval import in_batch_recall_at_1
from eval.system_eval import evaluate_system
from data_prep.words import words
from models.pair_rerank import PairLexicon
from models.run_dir import RunDir, checkpoint_problem
from models.student import enable_activation_checkpointing
from models.target_vocab import BridgedVocab, ClipShortlist
from training.batches import Batches, TargetStream
from training.build import (build_objective, build_optimizer, build_system, freeze_towers, frozen_features,
                            target_shortlist)
from training.data import TrainingData, lexicon_pairs
from training.divergence import Diverged, anywhere
from training.options import TrainConfig
from training.self_training import SelfTraining
from training.signals import StopSignal, stop_requested
from training.stage0 import Stage0
from training.task import Losses, StepReport, StudentTask
from translate.translator import non_finite_tensors

HEALTH_KEYS = ("effective_rank", "top_k_share", "mean_offdiag_cosine", "in_batch_r1", "uniqueness",
               "active_anchors", "anchor_entropy", "nearest_distance", "second_nearest_distance")


def batch_r1(query: torch.Tensor, gallery: torch.Tensor) -> float:
    """R@1 of `query` rows retrieving their own `gallery` row inside this batch (ties as expected hits)."""
    return in_batch_recall_at_1(gallery, query, batch_size=len(query))["b2a"]


class StudentTrainer:
    """The system, objective, optimizer and schedule of stage 1 (prepared by accelerate once), what
    every batch reads, and the self-training rounds."""

    def __init__(self, cfg: TrainConfig, accelerator, data: TrainingData, targets: TargetTable, stage0: Stage0,
                 log: Callable[[str], None], show: bool, shortlist: ClipShortlist | None = None) -> None:
        self.cfg, self.accelerator, self.data, self.targets, self.log, self.show = \
            cfg, accelerator, data, targets, log, show
        self.stage0, self.device = stage0, accelerator.device
        self.shortlist = shortlist if shortlist is not None else target_shortlist(cfg, stage0.tokenizer, data, targets)
        if self.shortlist is not None:
            log(f"student target vocabulary: {len(self.shortlist)} CLIP BPE ids of the training English text")
        log(f"translations use at most {cfg.student.max_target_length} CLIP positions")
        system = build_system(cfg, stage0.clip, stage0.tokenizer, data.source_tokenizer, seed=cfg.run.seed,
                              shortlist=self.shortlist)
        freeze_towers(system, cfg.teacher.freeze)
        if cfg.optim.activation_checkpointing:
            log(f"activation checkpointing: {enable_activation_checkpointing(system.student, cfg.student.decoding)}")
        objective = build_objective(cfg, stage0.clip)
        self.trainable, optimizer, scheduler = build_optimizer(cfg, system, objective)
        self.system, self.objective, self.optimizer, self.scheduler = accelerator.prepare(system, objective, optimizer,
                                                                                         scheduler)
        # The objective runs in fp32 under --mixed-precision (the n-dim loss turns autocast off itself): prepare's
        # autocast wrapper comes off its forward.
        accelerator.unwrap_model(self.objective, keep_fp32_wrapper=False)
        self.model = accelerator.unwrap_model(self.system)
        grounded = cfg.objective.contrastive_weight > 0
        frozen = frozen_features(cfg, self.model, stage0.preprocess, data, self.device, log, show)
        collate = TrainCollator(self.model.source_tokenizer, self.model.labels_for, k_english=cfg.objective.k_english,
                                m_source=cfg.objective.m_source,
                                preprocess=stage0.preprocess if grounded and frozen.images is None else None,
                                clip_tokenizer=stage0.tokenizer if grounded and cfg.teacher.freeze in ("image", "none")
                                else None,
                                forced_labels=cfg.student.decoding == "teacher-forced")
        rank, world = accelerator.process_index, accelerator.num_processes
        self.batches = Batches(cfg, data, collate, frozen, rank=rank, world=world, device=self.device)
        self.pairs = lexicon_pairs(cfg, data, log)
        self.stream = self.new_stream(targets, since=0)
        self.self_training = SelfTraining(cfg, data, self.model, stage0.preprocess, frozen.images, accelerator, log,
                                          show)
        self.task = StudentTask(self.system, self.objective, cfg)
        self.identity = run_identity(cfg, self.model)
        self.warnings: set[str] = set()
        self.done = 0
        self.before_step: tuple | None = None  # the RNG states and accelerate's step counter as the last step began

    def resume(self, run: RunDir) -> int:
        """Load the newest complete checkpoint (older ones when newer ones are damaged), drop the
        metrics logged after it and reload the pseudo targets it was training on; its step."""
        found = run.latest_checkpoint()
        for step, path in run.checkpoints_newest_first():
            if found is not None and step <= found[0]:
                break
            self.log(f"WARNING checkpoint {path} cannot be resumed from ({checkpoint_problem(path)}); trying an "
                     "older one")
        if found is None:
            if self.accelerator.is_main_process and run.metrics.is_file():  # logged by a run stopped before its
                dropped = run.truncate_metrics(0)  # first checkpoint: its steps are trained again
                self.log(f"no complete checkpoint: starting from step 0; dropped {dropped} metric records")
            return 0
        step, path = found
        self.check_belongs(run, path)
        self.accelerator.load_state(str(path))
        if self.accelerator.is_main_process:
            dropped = run.truncate_metrics(step)
            self.log(f"resumed from {path} (step {step}); dropped {dropped} metric records logged after it")
        r = self.self_training.resumed(run, step)
        if r is not None:  # the pseudo targets the interrupted run was training on
            self.stream = self.new_stream(self.self_training.table(run, r, self.targets), since=self.self_training.steps[r])
            self.log(f"self-training: round {r + 1} targets reloaded ({self.stream.table.summary(self.data.n_captions)})")
        return step

    def check_belongs(self, run: RunDir, path: Path) -> None:
        """`InputError`, before anything is loaded, when the checkpoint at `path` was written by a
        run of another language or vocabulary (as its manifest records) or holds a tensor whose
        shape differs from this run's model."""
        recorded = RunDir.checkpoint_identity(path) or {}
        differ = [f"{key} {recorded[key]} (this run: {value})" for key, value in self.identity.items()
                  if key in recorded and recorded[key] != value]
        for index, model in enumerate((self.system, self.objective)):  # the order accelerate saved them in
            file = path / ("model.safetensors" if index == 0 else f"model_{index}.safetensors")
            if not file.is_file():
                continue
            state = model.state_dict()
            with safe_open(str(file), framework="pt") as f:
                for key in f.keys():
                    shape = tuple(f.get_slice(key).get_shape())
                    if key not in state:
                        differ.append(f"a tensor {key} this run's model does not have")
                    elif tuple(state[key].shape) != shape:
                        differ.append(f"{key} of shape {list(shape)} (this run: {list(state[key].shape)})")
        if differ:
            raise InputError(f"{path} does not belong to this run ({run.config}): {'; '.join(differ[:3])}"
                             + (f", and {len(differ) - 3} more" if len(differ) > 3 else "")
                             + f". Its weights cannot continue it: resume the run it was written by, or move it out "
                               f"of {run.checkpoints}")

    def new_stream(self, table: TargetTable, since: int) -> TargetStream:
        return TargetStream(table, self.cfg, rank=self.accelerator.process_index,
                            world=self.accelerator.num_processes, since=since, pairs=self.pairs)

    def train(self, run: RunDir, start: int, stop: StopSignal) -> int:
        """Steps `start`..`--steps`; the signal number when a signal stopped it (after a checkpoint), else 0."""
        o, b, accelerator = self.cfg.optim, self.cfg.bookkeeping, self.accelerator
        bar = tqdm(range(start, o.steps), initial=start, total=o.steps, desc="stage 1: student", disable=not self.show)
        t0 = time.time()
        self.system.train()
        for step in bar:
            try:
                losses, report = self.step(run, step, start)
            except Diverged as exc:
                kept = self.keep_last_finite(run, step)
                raise Diverged(f"training diverged at step {step + 1} of {o.steps}: {exc}; "
                               + (f"the checkpoint of step {kept} (the last finite one) is kept in {run.checkpoints}"
                                  if kept else "no checkpoint holds a finite step")
                               + f"; nothing was exported or evaluated. Lower --lr ({o.lr:g}) or raise "
                                 f"--warmup-steps ({o.warmup_steps})") from None
            self.done = done = step + 1
            if done % b.log_every == 0 or done == o.steps or done == start + 1:
                record = self.record(done, losses, report, time.time() - t0)
                if accelerator.is_main_process:
                    run.append_metrics(record)
                    accelerator.log({k: v for k, v in record.items() if k != "step"}, step=done)
                bar.set_postfix({k: f"{record[key]:.3f}" for k, key in (("loss", "loss"), ("r1", "r1/student_image"))
                                 if key in record})
            if done % b.eval_every == 0 and done < o.steps:
                self.validate(run, done)
                self.system.train()
            stopping = stop_requested(stop, accelerator)
            if done % b.checkpoint_every == 0 or done == o.steps or stopping:
                try:
                    self.checkpoint(run, done)
                except Diverged as exc:
                    raise Diverged(f"training diverged at step {done} of {o.steps}: {exc}; no checkpoint was written "
                                   f"of it and nothing was exported or evaluated. Lower --lr ({o.lr:g})") from None
            if stopping:
                return stop.signum or signal.SIGTERM
        bar.close()
        return 0

    def step(self, run: RunDir, step: int, start: int) -> tuple[Losses, StepReport]:
        """One optimizer step: a self-training round first when one is due; then --grad-accum
        batches, each through the task and backward (divided by --grad-accum; DDP syncs on the last
        one only); then the clipped optimizer step and the schedule."""
        if self.self_training.due(run, step, start):
            self.stream = self.new_stream(self.self_training.round(run, step, self.targets), since=step)
            self.system.train()
        self.before_step = (random.getstate(), np.random.get_state(), torch.get_rng_state(),
                            torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
                            self.accelerator.step)
        accumulate, optim = self.cfg.optim.grad_accum, self.cfg.optim
        broken = None
        for number in range(step * accumulate, (step + 1) * accumulate):
            with self.accelerator.accumulate(self.system, self.objective):
                losses, report = self.task(self.batches.batch(number, self.stream), step)
                if losses.total is not None:  # None: no target yet and the n-dim loss off, nothing to learn
                    if broken is None and not torch.isfinite(losses.total.detach()):
                        broken = f"the loss is {float(losses.total.detach()):g}"
                    self.accelerator.backward(losses.total)
        if losses.total is not None:
            if optim.grad_clip > 0:
                norm = self.accelerator.clip_grad_norm_(self.trainable, optim.grad_clip)
            else:
                norm = torch.nn.utils.get_total_norm([p.grad for p in self.trainable if p.grad is not None])
            # under fp16 an infinite gradient is the loss scaler's business: it skips that step itself
            if broken is None and norm is not None and optim.mixed_precision != "fp16" and not torch.isfinite(norm):
                broken = f"the gradient norm is {float(norm):g}"
        if anywhere(broken is not None, self.accelerator):
            raise Diverged(broken or "another process's loss or gradient norm is not finite")
        if losses.total is not None:
            self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return losses, report

    def non_finite(self) -> list[str]:
        """The tensors of the model and its objective that hold a NaN or an infinity (`name: k of n ...`)."""
        return non_finite_tensors(self.model) + non_finite_tensors(self.accelerator.unwrap_model(self.objective))

    def checkpoint(self, run: RunDir, done: int) -> None:
        """A checkpoint of `done` steps; `Diverged` instead when a weight is not finite."""
        bad = self.non_finite()
        if anywhere(bool(bad), self.accelerator):
            raise Diverged(f"the weights are not finite ({bad[0] if bad else 'on another process'})")
        save_checkpoint(self.accelerator, run, done, self.cfg.bookkeeping.keep_checkpoints, self.identity)

    def keep_last_finite(self, run: RunDir, done: int) -> int | None:
        """After step `done` + 1 diverged (its update not applied): the step of a checkpoint of the
        last finite state — written now, with the RNG states as step `done` + 1 began, unless one is
        there already — or None when no step was finite."""
        if done == 0:
            return None
        if run.checkpoint_dir(done).is_dir():
            return done
        python, numpy, cpu, cuda, counter = self.before_step
        random.setstate(python)
        np.random.set_state(numpy)
        torch.set_rng_state(cpu)
        if cuda is not None:
            torch.cuda.set_rng_state_all(cuda)
        self.accelerator.step = counter
        try:
            self.checkpoint(run, done)
        except Diverged:
            return None
        return done

    def record(self, done: int, losses: Losses, report: StepReport, seconds: float) -> dict:
        """One metrics.jsonl record: the global batch's loss (the mean over processes), every term,
        the objective's statistics and in-batch R@1 between the axes, read by name."""
        record = {"step": done, "lr": self.scheduler.get_last_lr()[0], "seconds": seconds}
        if losses.total is not None:
            record["loss"] = self.accelerator.reduce(losses.total.detach().float(), "mean").item()
        record.update({f"loss/{name}": float(term.detach()) for name, term in losses.terms.items()})
        record.update(report.stats)
        if report.tau is not None:
            record["tau"] = report.tau
        axes = report.axes
        if axes is not None:
            student = axes.student[0]
            record["r1/student_image"] = batch_r1(student, axes.image)
            if axes.english:
                record["r1/english_image"] = batch_r1(axes.english[0], axes.image)
                record["r1/student_english"] = batch_r1(student, axes.english[0])
        return record

    def validate(self, run: RunDir, step: int, limit: int = 256) -> None:
        """Validation R@1 (student translation ↔ image) and embedding health; a collapse warning is
        printed when it first appears and when it clears, not at every validation."""
        if not self.accelerator.is_main_process:
            return
        system, ds = self.model.eval(), self.data.splits["validation"]
        subset = ds.select(self.data.scans["validation"].usable[:limit])
        sources = [next(s for s in row if s.strip()) for row in subset["source"]]
        english = [next(e for e in row if e.strip()) for row in subset["english"]]
        images = system.image_features(subset["image"])
        student, eng = system.student_features(sources), system.english_features(english)
        features = {"image": images, "english": eng, "student": student}
        report = health_report(features, reference="image",
                               anchors=self.accelerator.unwrap_model(self.objective).anchors())
        record = {"step": step, "split": "validation"}
        for axis, row in report.items():
            record.update({f"health/{axis}/{key}": value for key, value in {**row, **row.get("anchor", {})}.items()
                           if key in HEALTH_KEYS})
        run.append_metrics(record)
        self.accelerator.log({f"val/{k}": v for k, v in record.items() if k not in ("step", "split")}, step=step)
        self.log(f"validation @ {step}: in-batch R@1 student↔image {report['student']['in_batch_r1']:.3f}, "
                 f"English↔image {report['english']['in_batch_r1']:.3f} "
                 f"(chance {report['student']['in_batch_chance']:.3f})")
        current = {re.sub(r"\d+(\.\d+)?", "#", w): w for w in collapse_warnings(report)}
        for key, warning in current.items():
            if key not in self.warnings:
                self.log(f"WARNING embedding health: {warning}")
        for key in self.warnings - set(current):
            self.log(f"embedding health: cleared: {key.replace('#', '…')}")
        self.warnings = set(current)

    def finish(self, run: RunDir, write_report: Callable[[], None] | None) -> None:
        """Export RUN/model, evaluate it on the test split against the untrained student, then
        `write_report` (None: the report comes later)."""
        model = self.model.eval()
        bad = non_finite_tensors(model)
        if bad:
            raise Diverged(f"the trained weights are not finite ({bad[0]}"
                           + (f", and {len(bad) - 1} more tensor(s)" if len(bad) > 1 else "")
                           + "): nothing was exported or evaluated")
        if self.pairs:
            size, force = self.cfg.pseudo.pair_rerank, self.cfg.pseudo.pair_force
            model.pair_lexicon = PairLexicon.of(self.cfg.dataset.lang, self.pairs, size, words, force)
            forced = f", with forced names within {force:g} of the student's best" if force else ""
            self.log(f"translations: the student's {size}-best list, reranked by the {len(self.pairs)} word pairs"
                     + forced if size else
                     f"translations: greedy (the {len(self.pairs)} word pairs are saved, --pair-rerank 0)")
        model.save(run.model)
        self.log(f"exported the model to {run.model}")
        e = self.cfg.eval
        if not e.evaluate:
            return
        untrained = build_system(self.cfg, self.stage0.clip, self.stage0.tokenizer, self.data.source_tokenizer,
                                 seed=self.cfg.run.seed, shortlist=self.shortlist).to(self.device).eval() \
            if e.eval_untrained else None
        summary = evaluate_system(model, self.data.splits, self.data.scans, self.stage0.preprocess, run,
                                  untrained=untrained, probe=e.eval_untrained, bootstrap=e.eval_bootstrap,
                                  show_progress=self.show, clip_weights=self.stage0.weights,
                                  concepts=TrainingConcepts.of_run(self.data.path, self.data.train, self.data.train_rows,
                                                                   self.targets.human_keys()))
        self.log(summary)
        if write_report is not None:
            write_report()


def vocabulary_digest(items) -> str:
    """A short SHA-256 of a vocabulary (its pieces and ids, or a list of ids), as JSON."""
    return hashlib.sha256(json.dumps(items, ensure_ascii=False, sort_keys=True).encode()).hexdigest()[:16]


def run_identity(cfg: TrainConfig, system) -> dict[str, str]:
    """What a checkpoint's weights belong to: the source language and the digests of the
    student's source vocabulary and target vocabulary (a shortlist's CLIP ids, a pretrained
    student's own pieces, or all of CLIP's BPE)."""
    vocab = system.vocab
    target = (vocab.shortlist_ids.tolist() if isinstance(vocab, ClipShortlist)
              else sorted(vocab.target_tokenizer.get_vocab().items()) if isinstance(vocab, BridgedVocab)
              else vocab.kind)
    return {"lang": cfg.dataset.lang,
            "source vocabulary": vocabulary_digest(sorted(system.source_tokenizer.get_vocab().items())),
            "target vocabulary": vocabulary_digest(target)}


def save_checkpoint(accelerator, run: RunDir, step: int, keep: int, identity: dict[str, str] | None = None) -> None:
    """accelerate state into a staging directory; the main process writes its manifest (sizes and
    hashes, flushed to disk, and `identity`) and renames it into place (models.run_dir)."""
    try:
        accelerator.save_state(str(run.staging_dir(step)))
    except SafetensorError as exc:  # safetensors reports a failed write (a full disk) in its own type
        if "I/O error" not in str(exc):
            raise
        raise OSError(errno.EIO, f"checkpoint not written ({exc}); the previous one is intact",
                      str(run.staging_dir(step))) from None
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        run.commit_checkpoint(step, keep=keep, identity=identity)
    accelerator.wait_for_everyone()
