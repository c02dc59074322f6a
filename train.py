"""Train a GroundMT student: `accelerate launch train.py --lang es` (DESIGN §4, §6, §9).

Data flows: resolve the dataset (build the embedded synthetic world when none is given) →
stage 0, a CLIP that reads English (real weights, or a tiny teacher trained and cached here) →
stage 1, the Marian student read by CLIP under the n-dim contrastive loss (+ anchor, + token
cross-entropy on captions that have a human translation) → evaluation on the test split →
`RUN/` (config.json, metrics.jsonl, checkpoints/, model/, eval/, report.html).

Every flag has a default that runs the embedded world; `--config FILE.yaml` sets any of them
(same names, `_` or `-`), and command-line flags override the file. `--resume` continues from
the last complete checkpoint with the same data order and RNG state.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import shlex
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

HELP_EPILOG = """examples:
  accelerate launch train.py --lang es
  accelerate launch train.py --lang zh --data coco-cn --data-dir DATA --clip ViT-B-32 \\
      --clip-pretrained PATH --student scratch --out runs/coco-cn
  accelerate launch --multi_gpu --num_processes 2 train.py --steps 20   # 2 processes (gloo on a CPU machine)
  accelerate launch train.py --out runs/NAME --resume
"""


def _flag(default, help: str, **kw):
    return field(default=default, metadata={"help": help, **kw})


# Named sets of defaults (defaults < --preset < --config YAML < command line; the values a run used
# are in RUN/config.json). `thesis` is the real-size configuration of DESIGN §4 (docs/scaling.md).
PRESETS: dict[str, dict] = {
    "embedded": {},  # the TrainConfig defaults: the embedded synthetic world in minutes on a CPU
    "thesis": dict(clip="ViT-B-32", teacher_steps=0, student_preset="thesis", target_vocab="full", batch_size=256,
                   mixed_precision="bf16"),
}


@dataclass
class TrainConfig:
    """Every training option; the defaults run the embedded synthetic world in minutes on a CPU."""

    # data
    lang: str = _flag("es", "source language (the embedded world has es and zh)")
    data: str = _flag("synthetic", "dataset builder name (synthetic, coco-cn, coco-es, coco-mt, multi30k, xm3600, "
                                   "imagefolder)")
    data_dir: str | None = _flag(None, "a dataset built by `python -m data_prep`, or the raw files of --data "
                                       "(then built once into the cache)")
    data_args: str = _flag("", "extra builder arguments when --data-dir holds raw files, e.g. \"--coco-dir COCO\"")
    synthetic_images: int = _flag(2000, "images in the embedded synthetic world")
    source_vocab: int = _flag(1000, "SentencePiece vocabulary size for the source language (an upper bound)")
    # run
    preset: str = _flag("embedded", "named defaults: 'thesis' = CLIP ViT-B-32, Marian-size student, all 49,408 CLIP "
                                    "BPE ids, batch 256, bf16 (docs/scaling.md); other flags override it",
                        choices=tuple(PRESETS))
    out: str | None = _flag(None, "run directory (default: runs/DATA-LANG-TIMESTAMP)")
    resume: bool = _flag(False, "continue the run in --out (default: the newest runs/DATA-LANG-*) from its last "
                                "complete checkpoint")
    seed: int = _flag(0, "seed of models, data order and sampling")
    cache_dir: str | None = _flag(None, "where built datasets and CLIP teachers are cached (default: "
                                        "$GROUNDMT_CACHE or ~/.cache/groundmt)")
    quiet: bool = _flag(False, "no progress bars")
    threads: int = _flag(0, "CPU threads per process; 0 = the machine's cores shared among this machine's processes "
                            "(`accelerate launch` alone would pin each process to 1 thread)")
    # CLIP and stage 0
    clip: str = _flag("groundmt-tiny", "open_clip architecture name")
    clip_pretrained: str | None = _flag(None, "an open_clip checkpoint file with the CLIP weights (skips stage 0)")
    teacher_steps: int = _flag(300, "stage 0: steps of the tiny CLIP teacher when no --clip-pretrained is given; "
                                    "0 = no stage 0: a randomly initialised CLIP (said loudly in the log)")
    teacher_batch_size: int = _flag(64, "stage 0 batch size")
    teacher_lr: float = _flag(1e-3, "stage 0 learning rate")
    freeze: str = _flag("both", "CLIP towers kept frozen in stage 1 (see docs/training.md)",
                        choices=("both", "image", "text", "none"))
    # student
    student: str = _flag("scratch", "'scratch' (decoder vocabulary = CLIP BPE) or a local MarianMT directory")
    student_preset: str = _flag("tiny", "size of a scratch student (micro, tiny, thesis)")
    dropout: float = _flag(0.1, "dropout of a scratch student (MarianConfig.dropout)")
    target_vocab: str = _flag("corpus", "a scratch student's decoder vocabulary: the CLIP BPE ids of the training "
                                        "split's English text (a shortlist, much faster), or all of CLIP's BPE",
                              choices=("corpus", "full"))
    max_target_length: int = _flag(0, "CLIP positions (SOT and EOT included) a translation may use; 0 = the longest "
                                      "training English caption + 2, at most CLIP's context length")
    splice: str = _flag("gumbel", "how the student's output reaches CLIP", choices=("gumbel", "linear", "soft", "argmax"))
    tau_start: float = _flag(1.0, "Gumbel/softmax temperature at step 0")
    tau_end: float = _flag(0.5, "temperature at the last step (exponential schedule)")
    eot_finder: str = _flag("prob", "where the CLIP tower pools the student's sequence",
                            choices=("prob", "argmax", "gumbel"))
    decoding: str = _flag("free-running", "student decoding during training",
                          choices=("free-running", "teacher-forced", "parallel-bos"))
    # stage 1 objective
    k_english: int = _flag(2, "English caption axes per image")
    m_source: int = _flag(2, "student axes per image (source captions translated)")
    similarity: str = _flag("v4", "n-way similarity (v0..v16, gram, pairwise)")
    labels: str = _flag("diagonal", "label scheme", choices=("diagonal", "exact", "regions", "smoothed", "sigmoid"))
    anchor: str = _flag("none", "anchor term between student and English axes", choices=("none", "cosine", "mse"))
    anchor_weight: float = _flag(1.0, "weight of the anchor term")
    token_ce_weight: float = _flag(1.0, "weight of the token cross-entropy on captions with a human translation "
                                        "(0 = purely grounded)")
    # optimisation
    steps: int = _flag(500, "stage 1 steps")
    batch_size: int = _flag(32, "images per step (global, over all processes)")
    lr: float = _flag(2e-3, "stage 1 peak learning rate (AdamW, warm-up then cosine)")
    weight_decay: float = _flag(0.01, "AdamW weight decay")
    warmup_steps: int = _flag(20, "linear warm-up steps")
    grad_clip: float = _flag(1.0, "gradient norm clip (0 = off)")
    grad_accum: int = _flag(1, "batches whose gradients are summed per optimizer step (accelerate's accumulate); "
                               "each batch stays its own contrastive batch of --batch-size")
    mixed_precision: str = _flag("no", "autocast precision through accelerate (fp16 needs CUDA); the splice and the "
                                       "n-dim loss reduce in fp32", choices=("no", "bf16", "fp16"))
    activation_checkpointing: bool = _flag(False, "recompute the student's layer activations in backward (its "
                                                  "encoder; its decoder too unless decoding is free-running)")
    # bookkeeping
    log_every: int = _flag(10, "steps between metric records")
    eval_every: int = _flag(100, "steps between validation checks (R@1, embedding health)")
    checkpoint_every: int = _flag(100, "steps between checkpoints")
    keep_checkpoints: int = _flag(2, "complete checkpoints kept")
    evaluate: bool = _flag(True, "evaluate on the test split at the end (RUN/eval)")
    eval_bootstrap: int = _flag(1000, "bootstrap resamples for the confidence intervals of the final evaluation")

    @property
    def n_axes(self) -> int:
        return 1 + self.k_english + self.m_source


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="accelerate launch train.py", description=__doc__.split("\n\n")[0],
        epilog=HELP_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", metavar="FILE.yaml", help="YAML file of options (command-line flags override it)")
    for f in dataclasses.fields(TrainConfig):
        name = "--" + f.name.replace("_", "-")
        meta = dict(f.metadata)
        help_text = meta.pop("help") + (f" (default: {f.default})" if f.default not in (None, "") else "")
        if f.type in ("bool", bool):
            parser.add_argument(name, action=argparse.BooleanOptionalAction, default=f.default, help=help_text)
        else:
            kind = {"int": int, "float": float}.get(f.type, str)
            parser.add_argument(name, type=kind, default=f.default, help=help_text, **meta)
    return parser


def parse_config(argv: list[str] | None = None) -> TrainConfig:
    """Defaults < --preset < YAML file < command line."""
    parser = build_parser()
    parser.set_defaults(preset=None)  # tells a preset given on the command line from the default
    args = parser.parse_args(argv)
    loaded = {}
    if args.config:
        import yaml

        try:
            loaded = yaml.safe_load(Path(args.config).read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            parser.error(f"--config {args.config}: {exc}")
        known = {f.name for f in dataclasses.fields(TrainConfig)}
        loaded = {k.replace("-", "_"): v for k, v in loaded.items()}
        unknown = sorted(set(loaded) - known)
        if unknown:
            parser.error(f"{args.config}: unknown options {unknown}")
    preset = args.preset or loaded.get("preset") or "embedded"
    if preset not in PRESETS:
        parser.error(f"{args.config}: unknown preset {preset!r}; choose one of {sorted(PRESETS)}")
    parser.set_defaults(**{**PRESETS[preset], **loaded, "preset": preset})
    args = parser.parse_args(argv)
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig)}
    if values["grad_accum"] < 1:
        parser.error(f"--grad-accum must be >= 1, got {values['grad_accum']}")
    if values["mixed_precision"] == "fp16":
        import torch

        if not torch.cuda.is_available():
            parser.error("--mixed-precision fp16 needs CUDA (fp16 autocast with loss scaling); use bf16 on a CPU")
    return TrainConfig(**values)


# -- data ---------------------------------------------------------------------------------------
def cache_root(cfg: TrainConfig) -> Path:
    return Path(cfg.cache_dir or os.environ.get("GROUNDMT_CACHE") or Path.home() / ".cache" / "groundmt")


def resolve_data(cfg: TrainConfig, is_main: bool) -> Path:
    """The dataset directory to train on; built here (once, cached) for the synthetic world or raw files.

    Fails before any model is built when the data is missing, naming the builder command."""
    from data_prep.__main__ import add_builder_arguments
    from data_prep.builders import BUILDERS, get_builder
    from data_prep.builders.files import InputError

    if cfg.data not in BUILDERS:
        raise SystemExit(f"error: unknown --data {cfg.data!r}; choose one of {sorted(BUILDERS)}")
    if cfg.data == "synthetic" and cfg.data_dir is None:
        path = cache_root(cfg) / "data" / f"synthetic-{cfg.lang}-{cfg.synthetic_images}-seed{cfg.seed}"
        if is_main and not (path / "dataset_dict.json").is_file():
            from data_prep.synthetic.build import build_synthetic

            print(f"building the embedded synthetic world ({cfg.synthetic_images} images, {cfg.lang}) at {path}")
            build_synthetic(path.with_name(path.name + ".tmp"), lang=cfg.lang, images=cfg.synthetic_images,
                            seed=cfg.seed, show_progress=not cfg.quiet)
            path.with_name(path.name + ".tmp").rename(path)
        return path
    if cfg.data_dir is None:
        raise SystemExit(f"error: --data {cfg.data} needs --data-dir: a dataset built with\n"
                         f"  python -m data_prep {cfg.data} --data-dir RAW_FILES --out DATASET\n"
                         f"or the raw files themselves (see `python -m data_prep {cfg.data} --help`)")
    data_dir = Path(cfg.data_dir)
    if (data_dir / "dataset_dict.json").is_file():
        return data_dir
    if not data_dir.is_dir():
        raise SystemExit(f"error: --data-dir {data_dir} does not exist. Build the dataset first:\n"
                         f"  python -m data_prep {cfg.data} --data-dir RAW_FILES --out {data_dir}\n"
                         f"(or pass the raw {cfg.data} files as --data-dir; layout: "
                         f"`python -m data_prep {cfg.data} --help`)")
    import hashlib

    builder = get_builder(cfg.data)
    key = hashlib.sha256(f"{data_dir.resolve()}|{cfg.lang}|{cfg.data_args}".encode()).hexdigest()[:12]
    path = cache_root(cfg) / "data" / f"{cfg.data}-{key}"
    if is_main and not (path / "dataset_dict.json").is_file():
        parser = argparse.ArgumentParser(prog=f"python -m data_prep {cfg.data}")
        add_builder_arguments(parser, builder)
        argv = ["--data-dir", str(data_dir), "--out", str(path.with_name(path.name + ".tmp")), *shlex.split(cfg.data_args)]
        if any(a.option_strings == ["--lang"] for a in parser._actions) and "--lang" not in argv:
            argv += ["--lang", cfg.lang]
        args = parser.parse_args(argv + (["--quiet"] if cfg.quiet else []))
        print(f"building {cfg.data} from {data_dir} into {path}")
        try:
            builder.build(args)
        except InputError as exc:  # wrong layout or options: the builder's message says what it expected
            raise SystemExit(f"error: {exc}") from None
        path.with_name(path.name + ".tmp").rename(path)
    return path


def resolve_run_dir(cfg: TrainConfig) -> Path:
    if cfg.out:
        return Path(cfg.out)
    prefix = f"{cfg.data}-{cfg.lang}-"
    if cfg.resume:
        runs = sorted(p for p in Path("runs").glob(prefix + "*") if (p / "config.json").is_file())
        if not runs:
            raise SystemExit(f"error: --resume without --out, and no run runs/{prefix}* to resume")
        return runs[-1]
    return Path("runs") / (prefix + time.strftime("%Y%m%d-%H%M%S"))


# -- training -----------------------------------------------------------------------------------
class StopSignal:
    """While active, SIGTERM / SIGINT set a flag; the loop checkpoints and exits at the next step
    boundary. A second signal stops at once. The previous handlers come back on exit."""

    def __init__(self):
        self.signum = None
        self._previous = {}

    def __enter__(self) -> StopSignal:
        for sig in (signal.SIGTERM, signal.SIGINT):
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    def _handle(self, signum, frame):
        if self.signum is not None:
            raise KeyboardInterrupt
        self.signum = signum


def stop_requested(stop: StopSignal, accelerator) -> bool:
    """True on every process once any process got a signal (they must checkpoint together)."""
    if accelerator.num_processes == 1:
        return stop.signum is not None
    import torch

    flag = torch.tensor([float(stop.signum is not None)], device=accelerator.device)
    return bool(accelerator.reduce(flag, "max").item())


def lr_factor(step: int, cfg: TrainConfig) -> float:
    if step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    progress = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
    return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def batch_r1(query, gallery) -> float:
    """R@1 of `query` rows retrieving their own `gallery` row inside this batch (ties as expected hits)."""
    from eval.retrieval import in_batch_recall_at_1

    return in_batch_recall_at_1(gallery.detach(), query.detach(), batch_size=len(query))["b2a"]


def main(argv: list[str] | None = None) -> int:
    cfg = parse_config(argv)
    for engine in ("FSDP", "DEEPSPEED"):  # asked for by an accelerate config: see docs/scaling.md
        if os.environ.get(f"ACCELERATE_USE_{engine}", "").lower() == "true":
            print(f"error: the accelerate config asks for {engine}, which train.py cannot run yet: accelerate's "
                  "FSDP2 and DeepSpeed take one prepared model and train.py prepares two (the system and the n-dim "
                  "loss with its logit scale), and accelerate runs FSDP only on GPUs; use a DDP config "
                  "(docs/scaling.md)",
                  file=sys.stderr)
            raise SystemExit(2)

    import torch
    from accelerate import Accelerator
    from accelerate.utils import DataLoaderConfiguration, broadcast_object_list, set_seed

    from data_prep.collate import TrainCollator, scan_usable
    from data_prep.load import load_dataset_dir
    from data_prep.sampling import StepSampler
    from data_prep.source_tokenizer import source_tokenizer_for
    from models.run_dir import RunDir

    # Data first: a missing dataset fails before any model is built.
    # (accelerate sets RANK for every launched process; only rank 0 builds, the others wait below)
    data_path = resolve_data(cfg, is_main=int(os.environ.get("RANK", "0")) == 0)
    run_path = [str(resolve_run_dir(cfg))]
    # Several processes on a machine without CUDA (`accelerate launch --multi_gpu --num_processes 2` starts them
    # with torchrun; accelerate's own `--cpu` launcher starts one unless MPI is installed): a gloo process group.
    multi_cpu = int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.cuda.is_available()
    # split_batches: --batch-size is global (StepSampler splits it), so the prepared scheduler steps once per
    # optimizer step (without it accelerate steps it num_processes times: a 2-process run's schedule ran twice as fast)
    accelerator = Accelerator(log_with="tensorboard", project_dir=run_path[0], cpu=multi_cpu,
                              mixed_precision=cfg.mixed_precision, gradient_accumulation_steps=cfg.grad_accum,
                              dataloader_config=DataLoaderConfiguration(split_batches=True))
    broadcast_object_list(run_path)  # one timestamped name for every process
    accelerator.wait_for_everyone()  # the main process may still be building the data
    run = RunDir(run_path[0])
    accelerator.project_configuration.project_dir = str(run.root)
    main_proc = accelerator.is_main_process
    show = main_proc and not cfg.quiet
    if not show:  # the libraries' own bars (dataset saving, weight loading) follow --quiet too
        import datasets
        import transformers

        datasets.disable_progress_bars()
        transformers.utils.logging.disable_progress_bar()
    log_file = None

    def say(message: str) -> None:
        if main_proc:
            print(message, flush=True)
            if log_file is not None:
                with log_file.open("a") as f:
                    f.write(message + "\n")

    resuming = cfg.resume and run.latest_checkpoint() is not None
    if run.config.is_file() and not cfg.resume:  # every process stops, before any writes
        raise SystemExit(f"error: {run.root} already holds a run; pass --resume to continue it, or a new --out")
    accelerator.wait_for_everyone()
    if main_proc:
        run.create()
        log_file = run.root / "train.log"
        record = {**dataclasses.asdict(cfg), "out": str(run.root), "run_id": run.root.name,
                  "data_path": str(data_path), "world_size": accelerator.num_processes,
                  "mixed_precision": accelerator.mixed_precision}
        run.write_config(record)
    accelerator.wait_for_everyone()
    set_seed(cfg.seed)
    if accelerator.device.type == "cpu":
        local = int(os.environ.get("LOCAL_WORLD_SIZE", accelerator.num_processes))
        torch.set_num_threads(cfg.threads or max(1, (os.cpu_count() or 1) // max(1, local)))
    say(f"run {run.root} ({'resuming' if resuming else 'new'}), data {data_path}, "
        f"{accelerator.num_processes} process(es) on {accelerator.device}")

    dsd = load_dataset_dir(data_path)
    for split in ("train", "validation", "test"):
        if split not in dsd or len(dsd[split]) == 0:
            raise SystemExit(f"error: {data_path} has no {split!r} rows; rebuild it with python -m data_prep")
    scans = {split: scan_usable(dsd[split], need_english=1, show_progress=show) for split in ("train", "validation", "test")}
    for split, scan in scans.items():
        say(f"{split}: {scan.summary()}")
    train_rows = scans["train"].usable
    source_tokenizer = None  # a pretrained student reads its own source vocabulary
    if cfg.student == "scratch":
        source_tokenizer = source_tokenizer_for(
            data_path, [s for row in dsd["train"].select(train_rows).select_columns(["source"]) for s in row["source"]
                        if s.strip()], vocab_size=cfg.source_vocab)

    # Stage 0: a CLIP that reads English.
    clip, preprocess, clip_tokenizer, clip_weights = stage0_clip(cfg, accelerator, dsd["train"], train_rows, data_path,
                                                                 say, show)

    # Stage 1: the student read by CLIP.
    train_text = dsd["train"].select(train_rows).select_columns(["english", "parallel"])
    captions = [t for row in train_text for t in row["english"] if t.strip()]
    targets = captions + [t for row in train_text for t in row["parallel"] if t.strip()]
    shortlist = None
    if cfg.student == "scratch" and cfg.target_vocab == "corpus":
        from models.shortlist import ClipShortlist

        shortlist = ClipShortlist.from_texts(clip_tokenizer, targets)
        say(f"student target vocabulary: {len(shortlist)} CLIP BPE ids of the training English text")
    if not cfg.max_target_length:
        cfg.max_target_length = int((clip_tokenizer(targets) != 0).sum(1).max()) + 2
        say(f"translations use at most {cfg.max_target_length} CLIP positions")
    system = build_system(cfg, clip, clip_tokenizer, source_tokenizer, seed=cfg.seed, shortlist=shortlist)
    freeze_towers(system, cfg.freeze)
    if cfg.activation_checkpointing:
        from models.student import enable_activation_checkpointing

        say(f"activation checkpointing: {enable_activation_checkpointing(system.student, cfg.decoding)}")
    loss_fn = build_loss(cfg)
    trainable = [p for p in (*system.parameters(), *loss_fn.parameters()) if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=cfg.lr, weight_decay=cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, cfg))
    system, loss_fn, optimizer, scheduler = accelerator.prepare(system, loss_fn, optimizer, scheduler)
    # The n-dim loss runs in fp32 under --mixed-precision: its features are promoted to fp32, but under bf16
    # autocast its matmuls would not be (labels=regions: loss 9.06 instead of 1.77; gram: no bf16 det), so
    # prepare's autocast wrapper comes off its forward and the loop calls it with autocast disabled.
    accelerator.unwrap_model(loss_fn, keep_fp32_wrapper=False)
    core = accelerator.unwrap_model(system)
    device = accelerator.device

    frozen_image = cfg.freeze in ("both", "image")
    frozen_text = cfg.freeze in ("both", "text")
    from models.feature_cache import FeatureTable

    image_table = english_table = None
    if frozen_image:
        image_table = FeatureTable.of_images(core.encode_images, preprocess, dsd["train"], train_rows, device=device,
                                             show_progress=show)
    if frozen_text and cfg.k_english:
        english_table = FeatureTable.of_texts(core.encode_english, clip_tokenizer, captions, device=device,
                                              show_progress=show)
    collate = TrainCollator(core.source_tokenizer, core.labels_for, k_english=cfg.k_english, m_source=cfg.m_source,
                            preprocess=None if frozen_image else preprocess,
                            clip_tokenizer=None if frozen_text else clip_tokenizer)
    sampler = StepSampler(train_rows, cfg.batch_size, seed=cfg.seed, rank=accelerator.process_index,
                          world=accelerator.num_processes)
    start = 0
    if resuming:
        step_done, path = run.latest_checkpoint()
        accelerator.load_state(str(path))
        start = step_done
        if main_proc:
            dropped = run.truncate_metrics(step_done)
            say(f"resumed from {path} (step {step_done}); dropped {dropped} metric records logged after it")
    elif cfg.resume:
        say("--resume: no complete checkpoint yet, starting from step 0")
    if main_proc:
        accelerator.init_trackers("tensorboard", config={k: v if isinstance(v, (int, float, str, bool)) else str(v)
                                                         for k, v in dataclasses.asdict(cfg).items()})

    from models.splice import TemperatureSchedule

    schedule = TemperatureSchedule(cfg.tau_start, cfg.tau_end, steps=max(1, cfg.steps))
    from tqdm.auto import tqdm

    with StopSignal() as stop:
        bar = tqdm(range(start, cfg.steps), initial=start, total=cfg.steps, desc="stage 1: student", disable=not show)
        t0 = time.time()
        system.train()
        for step in bar:
            core.splice.tau = schedule(step)
            for micro in range(step * cfg.grad_accum, (step + 1) * cfg.grad_accum):  # batches of this optimizer step
                rows = sampler.indices(micro)
                batch = collate(dsd["train"].select(rows), seed=cfg.seed * 1000 + sampler.epoch_of(micro))
                with accelerator.accumulate(system, loss_fn):
                    with accelerator.autocast():
                        out = system(batch["source_ids"].to(device), batch["source_mask"].to(device),
                                     batch["labels"].to(device))
                        B, M, K = len(rows), cfg.m_source, cfg.k_english
                        image = image_table[rows] if frozen_image else core.encode_images(batch["images"].to(device))
                        if K:
                            english = (english_table[[e for caps in batch["english_text"] for e in caps]].view(B, K, -1)
                                       if frozen_text else core.encode_english(batch["english_ids"].to(device)))
                        axes = [image, *(english.unbind(1) if K else ()), *out["features"].view(B, M, -1).unbind(1)]
                        with torch.autocast(device.type, enabled=False):
                            result = loss_fn(axes)
                        loss = result.loss + cfg.token_ce_weight * out["token_ce"]
                    accelerator.backward(loss)  # divided by --grad-accum; DDP syncs on the last batch only
            if cfg.grad_clip > 0:
                accelerator.clip_grad_norm_(trainable, cfg.grad_clip)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            done = step + 1
            if done % cfg.log_every == 0 or done == cfg.steps or done == start + 1:
                # the global batch's loss (the mean over processes; the token CE's when their counts are equal)
                record = {"step": done, "loss": accelerator.reduce(loss.detach().float(), "mean").item(),
                          "loss/token_ce": float(out["token_ce"].detach()),
                          **{f"loss/{k}": float(v.detach()) for k, v in result.terms.items()}, **result.stats,
                          "tau": core.splice.tau, "lr": scheduler.get_last_lr()[0], "seconds": time.time() - t0}
                student0 = axes[1 + K]
                record["r1/student_image"] = batch_r1(student0, image)
                if K:
                    record["r1/english_image"] = batch_r1(axes[1], image)
                    record["r1/student_english"] = batch_r1(student0, axes[1])
                if main_proc:
                    run.append_metrics(record)
                    accelerator.log({k: v for k, v in record.items() if k != "step"}, step=done)
                bar.set_postfix(loss=f"{record['loss']:.3f}", r1=f"{record['r1/student_image']:.2f}")
            if done % cfg.eval_every == 0 and done < cfg.steps:
                validate(core, dsd["validation"], scans["validation"].usable, preprocess, accelerator, run, done, say)
                system.train()
            stopping = stop_requested(stop, accelerator)
            if done % cfg.checkpoint_every == 0 or done == cfg.steps or stopping:
                save_checkpoint(accelerator, run, done, cfg.keep_checkpoints)
            if stopping:
                say(f"stopped by a signal after step {done}: checkpoint saved; continue with "
                    f"`accelerate launch train.py --out {run.root} --resume`")
                accelerator.end_training()
                return 128 + (stop.signum or signal.SIGTERM)
        bar.close()
    if start >= cfg.steps:
        say(f"run already complete at step {start}")
    accelerator.wait_for_everyone()
    if main_proc:
        core.eval()
        core.save(run.model)
        say(f"exported the model to {run.model} ({time.time() - t0:.0f}s of stage 1)")
        if cfg.evaluate:
            from eval.system_eval import evaluate_system

            untrained = build_system(cfg, clip, clip_tokenizer, source_tokenizer, seed=cfg.seed,
                                     shortlist=shortlist).to(device).eval()
            summary = evaluate_system(core, dsd, scans, preprocess, run, untrained=untrained,
                                      bootstrap=cfg.eval_bootstrap, show_progress=show, clip_weights=clip_weights)
            say(summary)
            write_report(run, say)
    accelerator.end_training()
    return 0


def write_report(run, say) -> None:
    """RUN/report.html (+ .md, .json). The run is complete without it, so a failure here is
    reported with the command that retries it rather than raised."""
    from eval.report import build_report

    try:
        build_report([run.root], run.report)
        say(f"report: {run.report}")
    except Exception as exc:  # noqa: BLE001 - the trained model and scores are already saved
        say(f"WARNING: the report could not be written ({type(exc).__name__}: {exc}); retry with "
            f"`python -m eval report {run.root} --out {run.report}`")


def stage0_clip(cfg, accelerator, train, rows, data_path, say, show):
    """(clip, preprocess, tokenizer, weights path): real weights, or the cached tiny teacher."""
    from models.clip_loading import load_clip

    if cfg.clip_pretrained:
        clip, preprocess, tokenizer = load_clip(cfg.clip, pretrained=cfg.clip_pretrained)
        say(f"stage 0: CLIP {cfg.clip} from {cfg.clip_pretrained}")
        return clip.to(accelerator.device), preprocess, tokenizer, cfg.clip_pretrained
    if cfg.teacher_steps == 0:  # the thesis preset without weights: a real-size CLIP cannot be trained here
        import torch

        torch.manual_seed(cfg.seed)
        clip, preprocess, tokenizer = load_clip(cfg.clip)
        say(f"WARNING stage 0 skipped: no --clip-pretrained and --teacher-steps 0, so CLIP {cfg.clip} is RANDOMLY "
            f"INITIALISED (seed {cfg.seed}); the student is grounded in a CLIP that has learnt nothing. Pass "
            f"--clip-pretrained FILE for real weights, or --teacher-steps N to train a teacher on this data first.")
        return clip.to(accelerator.device), preprocess, tokenizer, None
    from models.teacher import CHECKPOINT_NAME, save_teacher, teacher_key, train_teacher

    settings = dict(steps=cfg.teacher_steps, batch_size=cfg.teacher_batch_size, lr=cfg.teacher_lr, seed=cfg.seed,
                    world=accelerator.num_processes)
    directory = cache_root(cfg) / "teachers" / teacher_key(data_path, cfg.clip, settings)
    if (directory / CHECKPOINT_NAME).is_file():
        say(f"stage 0: cached CLIP teacher {directory}")
    else:
        import torch

        torch.manual_seed(cfg.seed)
        clip, preprocess, tokenizer = load_clip(cfg.clip)
        say(f"stage 0: training a {cfg.clip} CLIP teacher on the English captions ({cfg.teacher_steps} steps)")
        t0 = time.time()
        last = train_teacher(clip, preprocess, tokenizer, train, rows, accelerator, steps=cfg.teacher_steps,
                             batch_size=cfg.teacher_batch_size, lr=cfg.teacher_lr, seed=cfg.seed, show_progress=show)
        if accelerator.is_main_process:
            save_teacher(accelerator.unwrap_model(clip), directory, {"clip": cfg.clip, "data": str(data_path),
                                                                      **settings, **last})
        accelerator.wait_for_everyone()
        say(f"stage 0: teacher trained in {time.time() - t0:.0f}s (final loss {last.get('teacher/loss', float('nan')):.3f}), "
            f"cached at {directory}")
    clip, preprocess, tokenizer = load_clip(cfg.clip, pretrained=directory / CHECKPOINT_NAME)
    return clip.to(accelerator.device), preprocess, tokenizer, str(directory / CHECKPOINT_NAME)


def build_system(cfg, clip, clip_tokenizer, source_tokenizer, *, seed: int, shortlist=None):
    """The grounded system with a freshly initialised (scratch) or loaded (pretrained) student;
    the same seed gives the same initial student (the untrained baseline of the evaluation).
    `shortlist`: a scratch student's decoder vocabulary (`--target-vocab corpus`)."""
    import torch

    from models.grounded import GroundedSystem
    from models.splice import Splice
    from models.student import VocabBridge, build_scratch_student, load_pretrained_student

    context = clip.positional_embedding.shape[0]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        bridge = target_tokenizer = None
        if cfg.student != "scratch":
            student, target_tokenizer = load_pretrained_student(cfg.student)
            source_tokenizer = target_tokenizer  # a pretrained Marian reads its own source vocabulary
            bridge = VocabBridge.from_tokenizers(target_tokenizer, clip_tokenizer, clip.token_embedding.weight,
                                                 vocab_size=student.config.decoder_vocab_size or student.config.vocab_size)
            embedding, shortlist = bridge.weight, None
        elif shortlist is not None:
            sot, eot, pad = shortlist.special_ids()
            student = build_scratch_student(len(source_tokenizer), cfg.student_preset, max_length=context,
                                            decoder_vocab_size=len(shortlist), decoder_start_token_id=sot,
                                            sot_id=sot, eot_id=eot, pad_id=pad, dropout=cfg.dropout)
            embedding = clip.token_embedding.weight[shortlist.clip_ids]
        else:
            student = build_scratch_student(len(source_tokenizer), cfg.student_preset, max_length=context,
                                            dropout=cfg.dropout)
            embedding = clip.token_embedding.weight
        splice = Splice.for_student(cfg.splice, student, embedding, tau=cfg.tau_start)
    return GroundedSystem(clip, cfg.clip, clip_tokenizer, student, source_tokenizer, splice,
                          eot_finder=cfg.eot_finder, decoding=cfg.decoding, bridge=bridge,
                          target_tokenizer=target_tokenizer, shortlist=shortlist,
                          max_length=cfg.max_target_length or None).to(next(clip.parameters()).device)


def build_loss(cfg):
    """The stage 1 n-dim loss over the axes [image, K English, M student] of `cfg`."""
    from models.ndim_loss import NDimContrastiveLoss

    return NDimContrastiveLoss(
        cfg.similarity, cfg.labels, n_axes=cfg.n_axes, anchor=None if cfg.anchor == "none" else cfg.anchor,
        anchor_weight=cfg.anchor_weight, image_axis=0, english_axis=1 if cfg.k_english else None,
        student_axis=1 + cfg.k_english)


def freeze_towers(system, freeze: str) -> None:
    """Freeze the CLIP towers named by --freeze (the text tower's gradient still reaches the student)."""
    import torch

    clip = system.clip
    text_names = ("token_embedding", "positional_embedding", "transformer", "ln_final", "text_projection", "text")
    for name, param in clip.named_parameters():
        is_text = name.split(".")[0] in text_names
        if freeze == "both" or (freeze == "text" and is_text) or (freeze == "image" and not is_text):
            param.requires_grad_(False)
    for name in ("logit_scale", "logit_bias"):  # unused in stage 1: the n-dim loss has its own
        if isinstance(getattr(clip, name, None), torch.nn.Parameter):
            getattr(clip, name).requires_grad_(False)


def save_checkpoint(accelerator, run, step: int, keep: int) -> None:
    """accelerate state into a staging directory, renamed into place once complete."""
    staging = run.staging_dir(step)
    accelerator.save_state(str(staging))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        (staging / "train_state.json").write_text(json.dumps({"step": step}) + "\n")
        run.commit_checkpoint(step, keep=keep)
    accelerator.wait_for_everyone()


def validate(system, ds, rows, preprocess, accelerator, run, step, say, limit: int = 256) -> None:
    """Validation R@1 (student translation ↔ image) and embedding health; warns on collapse."""
    import torch

    from eval.health import collapse_warnings, health_report
    from eval.system_eval import image_features, student_features

    if not accelerator.is_main_process:
        return
    system.eval()
    rows = rows[:limit]
    subset = ds.select(rows)
    images = image_features(system, preprocess, ds, rows)
    with torch.no_grad():
        sources = [next(s for s in row if s.strip()) for row in subset["source"]]
        english = [next(e for e in row if e.strip()) for row in subset["english"]]
        student = student_features(system, sources)
        eng = system.encode_english(system.clip_tokenizer(english).to(accelerator.device))
    report = health_report({"image": images, "english": eng, "student": student}, reference="image")
    record = {"step": step, "split": "validation"}
    for axis, row in report.items():
        for key in ("effective_rank", "top_k_share", "mean_offdiag_cosine", "in_batch_r1"):
            if key in row:
                record[f"health/{axis}/{key}"] = row[key]
    run.append_metrics(record)
    accelerator.log({f"val/{k}": v for k, v in record.items() if k not in ("step", "split")}, step=step)
    say(f"validation @ {step}: in-batch R@1 student↔image {report['student']['in_batch_r1']:.3f}, "
        f"English↔image {report['english']['in_batch_r1']:.3f} (chance {report['student']['in_batch_chance']:.3f})")
    for warning in collapse_warnings(report):
        say(f"WARNING embedding health: {warning}")


if __name__ == "__main__":
    sys.exit(main())
