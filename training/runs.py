"""A training run from its configuration to its folder: `train(argv)` runs the configured student
and, when `--compare-ce` is on, the token-cross-entropy-only student on the same data beside it
(the `ce` recipe, in RUN/baseline-ce), then reports one against the other.

`run_student(cfg, given)`: the run's folder (new, or resumed from its config.json), one
Accelerator, the data, the resolved configuration written to config.json, stage 0, stage 1,
export, evaluation. Bad input is one line and exit code 2 (`main`); a signal checkpoints and
exits with 128 + its number.
"""
from __future__ import annotations

import json
import os
import signal
import sys
from dataclasses import dataclass
from pathlib import Path

import datasets
import torch
import transformers
from accelerate import Accelerator
from accelerate.utils import DataLoaderConfiguration, broadcast_object_list, set_seed

from data_prep.errors import InputError, run_command
from eval.report import build_report
from models.clip_loading import clip_tokenizer
from models.run_dir import RunDir, drop_tied_weights
from training.config import (RESUME_MAY_CHANGE, named_options, parse_config, resolve, resolve_place, resumed_config,
                             run_folder, with_recipe)
from training.data import open_data, teacher_pairs, teacher_pool, training_targets
from training.options import TrainConfig
from training.signals import StopSignal, stop_requested
from training.stage0 import stage0_clip
from training.trainer import StudentTrainer

BASELINE = "baseline-ce"


def main(argv: list[str] | None = None) -> int:
    """`accelerate launch train.py ...`: bad input is one line and exit code 2, Ctrl-C exit 130."""
    return run_command(lambda: train(argv))


def train(argv: list[str] | None = None) -> int:
    """The configured run, then (with `--compare-ce`) its token-CE-only baseline and the comparison."""
    argv = sys.argv[1:] if argv is None else list(argv)
    done = run_student(parse_config(argv), named_options(argv))
    if done.code or not done.cfg.eval.compare_ce:
        return done.code
    baseline = done.run.root / BASELINE
    done.log(f"training the token-CE-only baseline (same data, steps and seed) in {baseline}")
    cfg = with_recipe(done.cfg, "ce", out=str(baseline), compare_ce=False, resume=(baseline / "config.json").is_file())
    code = run_student(cfg, {k: v for k, v in cfg.flat().items() if k in RESUME_MAY_CHANGE}).code
    if code:
        return code
    if done.main_process and done.cfg.eval.evaluate:
        done.log(compare_with_baseline(done.run, RunDir(baseline)))
        write_report(done.run, done.log, baseline=baseline)
    return 0


@dataclass(frozen=True)
class Finished:
    """How a run ended (`code`: 0, or 128 + a signal), its resolved configuration and folder."""
    code: int
    cfg: TrainConfig
    run: RunDir
    log: RunLog
    main_process: bool


def run_student(cfg: TrainConfig, given: dict) -> Finished:
    """Folder → data → resolved config.json → stage 0 → stage 1 (build, resume, loop) → export,
    evaluation (and the report, unless a baseline comes after). `given`: the options the command
    line names (a resumed run may change only RESUME_MAY_CHANGE)."""
    out = run_folder(cfg)
    resuming = cfg.run.resume and RunDir(out).config.is_file()
    if resuming:  # the run's config.json is the truth; only RESUME_MAY_CHANGE options may differ
        cfg = resumed_config(RunDir(out), given)
    check_inputs(cfg)
    accelerator = make_accelerator(cfg, str(out))
    run_path = [str(out)]
    broadcast_object_list(run_path)  # one (timestamped) name for every process
    run = RunDir(run_path[0])
    if run.config.is_file() and not resuming:  # every process stops, before any writes
        raise InputError(f"{run.root} already holds a run; pass --resume to continue it, or a new --out")
    accelerator.project_configuration.project_dir = str(run.root)
    main_proc = accelerator.is_main_process
    show = main_proc and not cfg.run.quiet
    quiet_libraries(show)
    log = RunLog(main_proc)
    set_seed(cfg.run.seed)
    cfg = resolve_place(cfg, run.root, int(os.environ.get("LOCAL_WORLD_SIZE", accelerator.num_processes)))
    if accelerator.device.type == "cpu":
        torch.set_num_threads(cfg.run.threads)

    data = open_data(cfg, accelerator, log, show)
    cfg = resolve(cfg, data, log)
    targets = training_targets(cfg, data, log)
    if not resuming:
        if main_proc:
            run.create()
            run.write_config({**cfg.flat(), "run_id": run.root.name, "data_path": str(data.path),
                              "world_size": accelerator.num_processes})
            log.open(run.root / "train.log")
        accelerator.wait_for_everyone()
    log(f"run {run.root} ({'resuming' if resuming else 'new'}), data {data.path}, "
        f"{accelerator.num_processes} process(es) on {accelerator.device}")

    with StopSignal() as stop:
        pool = teacher_pool(cfg, data, main_proc, log)
        accelerator.wait_for_everyone()  # the main process may have been building the teacher pool
        stage0 = stage0_clip(cfg, accelerator, teacher_pairs(data, pool, log, show), log, show,
                             stop=lambda: stop_requested(stop, accelerator))
        if stage0 is None:
            log(f"stopped by a signal during stage 0: its state is saved; continue with "
                f"`accelerate launch train.py --out {run.root} --resume`")
            return Finished(128 + (stop.signum or signal.SIGTERM), cfg, run, log, main_proc)
        # Seeded again, so that stage 1 does not depend on whether stage 0 trained the teacher here or found it cached.
        set_seed(cfg.run.seed)
        trainer = StudentTrainer(cfg, accelerator, data, targets, stage0, log, show)
        start = 0
        if resuming:
            start = trainer.resume(run)
            if main_proc:
                run.write_config({**run.read_config(), **{k: cfg.flat()[k] for k in RESUME_MAY_CHANGE}})
                log.open(run.root / "train.log")
                log(f"resumed at step {start}" if start else "--resume: no complete checkpoint yet, starting from "
                                                              "step 0")
        if main_proc:
            accelerator.init_trackers("tensorboard", config={k: v if isinstance(v, (int, float, str, bool)) else str(v)
                                                             for k, v in cfg.flat().items()})
        signum = trainer.train(run, start, stop)
        if signum:
            log(f"stopped by a signal after step {trainer.done}: checkpoint saved; continue with "
                f"`accelerate launch train.py --out {run.root} --resume`")
            accelerator.end_training()
            return Finished(128 + signum, cfg, run, log, main_proc)
    if start >= cfg.optim.steps:
        log(f"run already complete at step {start}")
    accelerator.wait_for_everyone()
    if main_proc:  # with a baseline to come, the report comes after it
        trainer.finish(run, None if cfg.eval.compare_ce else lambda: write_report(run, log))
    accelerator.end_training()
    return Finished(0, cfg, run, log, main_proc)


def check_inputs(cfg: TrainConfig) -> None:
    """Files and names the options point at exist, before anything is written."""
    try:
        clip_tokenizer(cfg.teacher.clip)
    except (ValueError, RuntimeError) as exc:
        raise InputError(f"--clip: {exc}") from None
    if cfg.teacher.clip_pretrained and not Path(cfg.teacher.clip_pretrained).is_file():
        raise InputError(f"--clip-pretrained {cfg.teacher.clip_pretrained}: no such file (an open_clip checkpoint "
                         "file)")
    student = cfg.student.student
    if student != "scratch" and not (Path(student) / "config.json").is_file():
        raise InputError(f"--student {student}: not a MarianMT directory (no config.json); pass 'scratch' or a "
                         "directory written by save_pretrained")
    for expert in cfg.objective.expert or ():
        if expert != "minilm" and not Path(expert).is_dir():
            raise InputError(f"--expert {expert}: not 'minilm' and no such directory (a local transformers encoder)")


def compare_with_baseline(run: RunDir, baseline: RunDir) -> str:
    """This run's test figures beside the token-CE-only baseline's."""
    rows = []
    for name, r in (("this run", run), ("token CE only", baseline)):
        scores = json.loads((r.eval / "scores.json").read_text())
        m = scores["metrics"]
        row = (f"  {name:<14} chrF {m['chrf']['score']:5.1f}  BLEU {m['bleu']['score']:5.1f}  "
               f"translation→image R@1 {m['retrieval']['translation']['in_batch']['b2a']:.3f}")
        unseen = scores.get("concepts", {}).get("unseen")
        if unseen and unseen["mentions"]:
            row += f"  unseen concepts {unseen['correct']}/{unseen['mentions']} ({unseen['accuracy']:.1%})"
        rows.append(row)
    return "test, against the token-CE-only baseline on the same data (report.html has the paired tests):\n" + \
        "\n".join(rows)


class RunLog:
    """Messages of the main process: printed, and appended to RUN/train.log once it is opened
    (what was said before — data building, a resume being checked — is written then)."""

    def __init__(self, main_process: bool) -> None:
        self.main_process, self.path, self.pending = main_process, None, []

    def __call__(self, message: str) -> None:
        if not self.main_process:
            return
        print(message, flush=True)
        if self.path is None:
            self.pending.append(message)
        else:
            with self.path.open("a", encoding="utf-8") as f:
                f.write(message + "\n")

    def open(self, path: Path) -> None:
        self.path = path
        with path.open("a", encoding="utf-8") as f:
            f.writelines(m + "\n" for m in self.pending)
        self.pending = []


def make_accelerator(cfg: TrainConfig, project_dir: str) -> Accelerator:
    """One Accelerator for both stages. Several processes on a machine without CUDA (`accelerate
    launch --multi_gpu --num_processes 2` starts them with torchrun; accelerate's own `--cpu`
    launcher starts one unless MPI is installed) form a gloo group."""
    for engine in ("FSDP", "DEEPSPEED"):  # asked for by an accelerate config: see docs/scaling.md
        if os.environ.get(f"ACCELERATE_USE_{engine}", "").lower() == "true":
            raise InputError(f"the accelerate config asks for {engine}, which train.py cannot run yet: accelerate's "
                             "FSDP2 and DeepSpeed take one prepared model and train.py prepares two (the system and "
                             "its objective with the n-dim loss' logit scale), and accelerate runs FSDP only on GPUs; "
                             "use a DDP config (docs/scaling.md)")
    multi_cpu = int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.cuda.is_available()
    # split_batches: --batch-size is global (StepSampler splits it), so the prepared scheduler steps once per
    # optimizer step (without it accelerate steps it once per process and step)
    accelerator = Accelerator(log_with="tensorboard", project_dir=project_dir, cpu=multi_cpu,
                              mixed_precision=cfg.optim.mixed_precision, gradient_accumulation_steps=cfg.optim.grad_accum,
                              dataloader_config=DataLoaderConfiguration(split_batches=True))
    accelerator.register_save_state_pre_hook(drop_tied_weights)  # tied weights saved once, without a warning
    return accelerator


def quiet_libraries(show: bool) -> None:
    """The libraries' own bars (dataset saving, weight loading) follow --quiet (and non-main processes)."""
    if not show:
        datasets.disable_progress_bars()
        transformers.utils.logging.disable_progress_bar()


def write_report(run: RunDir, say, baseline: Path | None = None) -> None:
    """RUN/report.html (+ .md, .json), with paired tests against `baseline` (a run directory) when
    given. The run is complete without it, so a failure here is reported with the command that
    retries it rather than raised."""
    try:
        build_report([baseline, run.root] if baseline else [run.root], run.report)
        say(f"report: {run.report}")
    except Exception as exc:  # noqa: BLE001 - the trained model and scores are already saved
        say(f"WARNING: the report could not be written ({type(exc).__name__}: {exc}); retry with "
            f"`python -m eval report {run.root} --out {run.report}`")
