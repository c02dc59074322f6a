"""A training run from its configuration to its folder: `train(argv)` runs the configured student
and, when `--compare-ce` is on, the token-cross-entropy-only student on the same data beside it
(the `ce` recipe, in RUN/baseline-ce), then reports one against the other.

`run_student(cfg, given)`: the run's folder (new, or resumed from its config.json), one
Accelerator, the data, the resolved configuration written to config.json, stage 0, stage 1,
export, evaluation. Bad input is one line and exit code 2 (`main`); a run that diverged one line
and exit code 3 (`training.divergence`); a signal checkpoints and exits with 128 + its number.

The run folder (docs/training.md, "A run's folder"): its main process holds the folder's lock
(`data_prep.locks.FolderLock`) from before its first write until the run and its baseline end; the
folder must be new, empty, or a run (with `--resume`, which a new run never needs); a new run that
ends in an error before its first checkpoint removes what it wrote; a finished run
(`complete.json`) is left as it is.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import datasets
import torch
import transformers
from accelerate import Accelerator
from accelerate.utils import DataLoaderConfiguration, broadcast_object_list, get_cpu_distributed_information, set_seed

from data_prep.errors import Artefact, InputError, output_dir, run_command
from data_prep.locks import LOCK_FILE, FolderLock
from eval.report import build_report
from eval.system_eval import test_sentences
from models.clip_loading import clip_tokenizer
from models.run_dir import RunDir, drop_tied_weights
from training.build import target_shortlist
from training.config import (RESUME_MAY_CHANGE, named_options, parse_config, resolve, resolve_place, resumed_config,
                             run_folder, with_recipe)
from training.data import TrainingData, open_data, teacher_pairs, teacher_pool, training_targets
from training.divergence import Diverged, diverged_exit
from training.limits import Sizes, check_memory, data_sizes, least_sizes
from training.options import TrainConfig
from training.signals import StopSignal, stop_requested
from training.stage0 import stage0_clip
from training.trainer import StudentTrainer

BASELINE = "baseline-ce"
COMMAND = "accelerate launch train.py"
RUN = Artefact("a run written by train.py", lambda folder: bool(RunDir(folder).run_files()))


def main(argv: list[str] | None = None) -> int:
    """`accelerate launch train.py ...`: bad input is one line and exit code 2, a run that diverged
    one line and exit code 3, Ctrl-C exit 130."""
    return run_command(lambda: diverged_exit(lambda: train(argv), lambda: launcher_rank() == 0))


def train(argv: list[str] | None = None) -> int:
    """The configured run, then (with `--compare-ce`) its token-CE-only baseline and the comparison."""
    argv = sys.argv[1:] if argv is None else list(argv)
    cfg, given = parse_config(argv), named_options(argv)
    with ExitStack() as owned:  # the run folder's lock, held until the run and its baseline end
        done = run_student(cfg, given, owned)
        if done.code or done.was_complete or not done.cfg.eval.compare_ce:
            return done.code
        baseline = done.run.root / BASELINE
        done.log(f"training the token-CE-only baseline (same data, steps and seed) in {baseline}")
        cfg = with_recipe(done.cfg, "ce", out=str(baseline), compare_ce=False,
                          resume=RunDir(baseline).config.is_file())
        code = run_student(cfg, {k: v for k, v in cfg.flat().items() if k in RESUME_MAY_CHANGE}, None).code
        if code:
            return code
        if done.main_process:
            if done.cfg.eval.evaluate:
                done.log(compare_with_baseline(done.run, RunDir(baseline)))
                write_report(done.run, done.log, baseline=baseline)
            done.run.mark_complete(done.cfg.optim.steps)
    return 0


@dataclass(frozen=True)
class Finished:
    """How a run ended (`code`: 0, or 128 + a signal), its resolved configuration and folder;
    `was_complete`: it had finished before and was left as it was."""
    code: int
    cfg: TrainConfig
    run: RunDir
    log: RunLog
    main_process: bool
    was_complete: bool = False


def launcher_rank() -> int:
    """This process's rank as its launcher set it (torchrun's or MPI's variables, as accelerate
    reads them), known before any Accelerator exists: 0 for the main process and a plain `python`."""
    return get_cpu_distributed_information().rank


def run_student(cfg: TrainConfig, given: dict, owned: ExitStack | None) -> Finished:
    """Folder → data → resolved config.json → stage 0 → stage 1 (build, resume, loop) → export,
    evaluation (and the report, unless a baseline comes after). `given`: the options the command
    line names (a resumed run may change only RESUME_MAY_CHANGE). `owned`: where the top-level run
    keeps its folder's lock (its main process takes it here); None for the baseline, which lives
    inside that folder."""
    out = run_folder(cfg)
    main_rank = launcher_rank() == 0
    output_dir(out, "--out", inputs=input_paths(cfg), artefact=RUN, replace=True)  # not a file, nor someone's folder
    created = not out.exists()
    run = RunDir(out)
    try:
        if owned is not None and main_rank:
            owned.enter_context(FolderLock(out, COMMAND))  # FolderBusy names the owner
        cfg, resuming = start_or_resume(run, cfg, given, created)
    except BaseException:
        if created and main_rank and run.root.is_dir():  # the lock made the folder: nothing else is in it
            remove_started(run, created)
        raise
    finished = run.completed_steps() if resuming else None
    if finished is not None and finished == cfg.optim.steps:
        log = RunLog(main_rank)
        log(f"{run.root} is already complete at step {finished}: nothing to do, and nothing in it was changed "
            "(pass a larger --steps to train it further)")
        return Finished(0, cfg, run, log, main_rank, was_complete=True)
    with failed_start_removed(run, created, main_rank and not resuming):
        return train_student(cfg, run, resuming)


def start_or_resume(run: RunDir, cfg: TrainConfig, given: dict, created: bool) -> tuple[TrainConfig, bool]:
    """The configuration the run in `run` trains with, and whether it resumes: checked before
    anything is written. A new run needs a new or empty folder; `--resume` a run to resume (its
    config.json, with no option it may not change, and no fewer `--steps` than it has trained)."""
    out, files = run.root, run.run_files()
    if files and "config.json" not in files:
        raise InputError(f"{out} holds the remains of a run ({', '.join(files)}) but no config.json, so its options "
                         f"are unknown and it can neither be resumed nor reused: put its config.json back to --resume "
                         f"it, or choose a new --out (nothing in {out} was changed)")
    if not cfg.run.resume:
        if files:
            raise InputError(f"{out} already holds a run; pass --resume to continue it, or choose a new --out")
        return cfg, False
    if not files:
        raise InputError(f"--resume: {out} holds no run to resume ({'it does not exist' if created else 'it is empty'}); "
                         "a new run needs no flag: leave out --resume")
    cfg = resumed_config(run, given)
    latest = run.latest_checkpoint()
    trained = max(run.completed_steps() or 0, latest[0] if latest else 0)
    if cfg.optim.steps < trained:
        raise InputError(f"--resume --steps {cfg.optim.steps}: {out} has trained {trained} steps already and a run "
                         f"is never shortened: leave out --steps (or pass at least {trained}) to continue it, or "
                         f"train a new run in another --out (nothing in {out} was changed)")
    return cfg, True


def input_paths(cfg: TrainConfig) -> dict[str, str | list[str] | None]:
    """The files and folders a run reads, by option (none may be its --out, nor inside it)."""
    return {"--data-dir": cfg.dataset.data_dir, "--clip-pretrained": cfg.teacher.clip_pretrained,
            "--student": None if cfg.student.student == "scratch" else cfg.student.student,
            "--expert": [e for e in cfg.objective.expert or () if e != "minilm"]}


@contextmanager
def failed_start_removed(run: RunDir, created: bool, new_run: bool) -> Iterator[None]:
    """A new run (`new_run`, on its main process) that ends in an error (or an interruption before
    its config.json) before its first checkpoint removes what it wrote, so that the same or a
    corrected command can run again in the same --out; from its first checkpoint on, and when a
    signal stopped it for --resume, it stays."""
    try:
        yield
    except BaseException as exc:
        started = run.config.is_file()
        if new_run and not run.checkpoints_newest_first() and (isinstance(exc, Exception) or not started):
            remove_started(run, created)
            if started:
                print(f"removed the unfinished run in {run.root} (no step of it was checkpointed); the same --out "
                      "can be used again", flush=True)
        raise


def remove_started(run: RunDir, created: bool) -> None:
    """What a new run wrote in its folder (it found the folder new or empty): the folder itself
    when it created it, else everything in it but the lock it holds."""
    if created:
        shutil.rmtree(run.root, ignore_errors=True)
        return
    for entry in run.root.iterdir():
        if entry.name != LOCK_FILE:
            shutil.rmtree(entry) if entry.is_dir() and not entry.is_symlink() else entry.unlink()


def train_student(cfg: TrainConfig, run: RunDir, resuming: bool) -> Finished:
    """The stages of a run whose folder is decided and owned (see `run_student`)."""
    check_inputs(cfg)
    accelerator = make_accelerator(cfg, str(run.root))
    run_path = [str(run.root)]
    broadcast_object_list(run_path)  # one (timestamped) name for every process
    run = RunDir(run_path[0])
    accelerator.project_configuration.project_dir = str(run.root)
    main_proc = accelerator.is_main_process
    show = main_proc and not cfg.run.quiet
    quiet_libraries(show)
    log = RunLog(main_proc)
    set_seed(cfg.run.seed)
    cfg = resolve_place(cfg, run.root, int(os.environ.get("LOCAL_WORLD_SIZE", accelerator.num_processes)))
    if accelerator.device.type == "cpu":
        torch.set_num_threads(cfg.run.threads)
    world = accelerator.num_processes
    check_memory(cfg, least_sizes(cfg), world, accelerator.device)  # before the data is built

    data = open_data(cfg, accelerator, log, show)
    cfg = resolve(cfg, data, log)
    targets = training_targets(cfg, data, log)
    shortlist = target_shortlist(cfg, clip_tokenizer(cfg.teacher.clip), data, targets)
    check_memory(cfg, sizes_of(cfg, data, shortlist), world, accelerator.device)  # before any model is built
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
        trainer = StudentTrainer(cfg, accelerator, data, targets, stage0, log, show, shortlist=shortlist)
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
        try:
            signum = trainer.train(run, start, stop)
        except Diverged as exc:
            log.note(f"error: {exc}")  # the run's record; the line itself goes to stderr (`main`)
            raise
        if signum:
            log(f"stopped by a signal after step {trainer.done}: checkpoint saved; continue with "
                f"`accelerate launch train.py --out {run.root} --resume`")
            accelerator.end_training()
            return Finished(128 + signum, cfg, run, log, main_proc)
    if start >= cfg.optim.steps:
        log(f"all {start} steps were trained before: exporting and evaluating the model")
    accelerator.wait_for_everyone()
    if main_proc:  # with a baseline to come, the report and complete.json come after it
        try:
            trainer.finish(run, None if cfg.eval.compare_ce else lambda: write_report(run, log))
        except Diverged as exc:
            log.note(f"error: {exc}")
            raise
        if not cfg.eval.compare_ce:
            run.mark_complete(cfg.optim.steps)
    accelerator.end_training()
    return Finished(0, cfg, run, log, main_proc)


def sizes_of(cfg: TrainConfig, data: TrainingData, shortlist) -> Sizes:
    """The sizes the memory of the run depends on, from its data (`training.limits.Sizes`)."""
    sources = [s for row in data.train.select(data.train_rows)["source"] for s in row]
    return data_sizes(cfg, len(shortlist) if shortlist is not None else None, max(map(len, sources), default=0),
                      len(test_sentences(data.splits["test"], data.scans["test"].usable)))


def check_inputs(cfg: TrainConfig) -> None:
    """Files and names the options point at exist, and fit together, before anything is written."""
    try:
        tokenize = clip_tokenizer(cfg.teacher.clip)
    except (ValueError, RuntimeError) as exc:
        raise InputError(f"--clip: {exc}") from None
    if cfg.student.max_target_length > tokenize.context_length:
        raise InputError(f"--max-target-length {cfg.student.max_target_length}: CLIP {cfg.teacher.clip} reads at most "
                         f"{tokenize.context_length} positions (SOT and EOT included)")
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

    def note(self, message: str) -> None:
        """Append `message` to train.log (once it is open) without printing it."""
        if self.main_process and self.path is not None:
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
