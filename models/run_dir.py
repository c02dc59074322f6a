"""A run directory: where a training run keeps its config, metrics, checkpoints and model.

```
RUN/config.json        resolved configuration (its presence makes the folder a run)
RUN/metrics.jsonl      one JSON object per logged step
RUN/checkpoints/step_00000400/   complete accelerate states (written to .tmp-*, then renamed)
RUN/model/             the exported system that `translate` and `eval` load
RUN/targets/round_NN.jsonl   pseudo-parallel targets of grounded self-training round NN
RUN/eval/              scores and per-sentence outputs
RUN/report.html
RUN/complete.json      written last: the run is finished at its step (a resume leaves it as it is)
RUN/.groundmt.lock     held by the run's main process while it runs (data_prep.locks)
```
What the readers of a run expect in its `config.json` (`RunConfig`: the keys `translate` and
`eval` read), in a checkpoint's manifest (`Manifest`, with the run's language and vocabularies)
and in `complete.json` (`Completion`) is declared here and checked with `models.typed_json` (one
line naming the file and the field when it does not hold).
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from pathlib import Path
from typing import Any, NotRequired

from pydantic import NonNegativeInt
from typing_extensions import TypedDict

from models.typed_json import problem, read_json

_STEP_DIR = re.compile(r"^step_(\d{8})$")
MANIFEST = "train_state.json"
# Files only train.py writes at the top of a run folder: a folder holding any of them is (part of) a run.
RUN_FILES = ("config.json", "metrics.jsonl", "train.log", "checkpoints", "complete.json")


class RunConfig(TypedDict, total=False):
    """The keys of `config.json` that `translate` and `eval` read (train.py writes many more)."""

    run_id: str
    lang: str
    data_path: str | None
    eval_split: str
    freeze: str
    clip_weights: str | None
    clip_pretrained: str | None


class ManifestFile(TypedDict):
    bytes: NonNegativeInt
    sha256: str


class Manifest(TypedDict):
    """A checkpoint's `train_state.json`: its step, every file's size and SHA-256, and what the
    weights belong to (`run`: the language and digests of the source and target vocabularies;
    absent in checkpoints written before it was recorded)."""

    step: NonNegativeInt
    files: dict[str, ManifestFile]
    run: NotRequired[dict[str, str]]


class Completion(TypedDict):
    """`complete.json`: the step at which the run finished (export, evaluation, report done)."""

    steps: NonNegativeInt


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_durably(path: Path, text: str) -> None:
    """Write `text` to `path` through a flushed temporary file and an atomic rename."""
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    tmp.replace(path)


def checkpoint_problem(path: Path) -> str | None:
    """Why the checkpoint at `path` cannot be resumed from (None when it is complete)."""
    try:
        manifest = json.loads((path / MANIFEST).read_text())
    except (OSError, ValueError):
        return f"{path / MANIFEST} is missing or unreadable"
    why = problem(manifest, Manifest)
    if why is not None:
        return f"{path / MANIFEST}: {why}"
    for name, meta in manifest["files"].items():
        if os.path.isabs(name) or ".." in Path(name).parts:
            return f"{path / MANIFEST} names a file outside the checkpoint: {name}"
        file = path / name
        if not file.is_file():
            return f"{file} is missing"
        if file.stat().st_size != meta["bytes"]:
            return f"{file} has {file.stat().st_size} bytes, {meta['bytes']} were written"
        if _sha256(file) != meta["sha256"]:
            return f"{file} does not hold what was written (SHA-256 differs)"
    return None if manifest["files"] else f"{path / MANIFEST} lists no files"


class RunDir:
    """Paths and bookkeeping of one run directory."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.config = self.root / "config.json"
        self.metrics = self.root / "metrics.jsonl"
        self.checkpoints = self.root / "checkpoints"
        self.model = self.root / "model"
        self.eval = self.root / "eval"
        self.report = self.root / "report.html"
        self.targets_dir = self.root / "targets"
        self.complete = self.root / "complete.json"

    def targets(self, round_index: int) -> Path:
        """Pseudo-parallel targets of a grounded self-training round (JSONL, `data_prep.targets`)."""
        return self.targets_dir / f"round_{round_index + 1:02d}.jsonl"

    def create(self) -> None:
        for path in (self.root, self.checkpoints, self.eval, self.targets_dir):
            path.mkdir(parents=True, exist_ok=True)

    # -- config -------------------------------------------------------------------------
    def write_config(self, config: dict[str, Any]) -> None:
        write_durably(self.config, json.dumps(config, indent=2, sort_keys=True, default=str) + "\n")

    def read_config(self) -> dict[str, Any]:
        """config.json, checked against `RunConfig` (a `ReadBackError` naming the field when it does not hold)."""
        if not self.config.is_file():
            raise FileNotFoundError(f"{self.root} is not a run directory (no config.json); train one with "
                                    "`accelerate launch train.py --out RUN`")
        return read_json(self.config, RunConfig)

    def run_files(self) -> list[str]:
        """The files of `RUN_FILES` that the folder holds (none: not a run, nor the remains of one)."""
        return [name for name in RUN_FILES if (self.root / name).exists()]

    # -- completion ---------------------------------------------------------------------
    def mark_complete(self, steps: int) -> None:
        write_durably(self.complete, json.dumps({"steps": steps}) + "\n")

    def completed_steps(self) -> int | None:
        """The step the run finished at (None while it is not finished)."""
        return read_json(self.complete, Completion)["steps"] if self.complete.is_file() else None

    # -- checkpoints --------------------------------------------------------------------
    def checkpoint_dir(self, step: int) -> Path:
        return self.checkpoints / f"step_{step:08d}"

    def staging_dir(self, step: int) -> Path:
        """Where a checkpoint is written before the atomic rename that makes it count."""
        return self.checkpoints / f".tmp-step_{step:08d}"

    def checkpoints_newest_first(self) -> list[tuple[int, Path]]:
        """Every committed checkpoint directory (complete or not), newest first."""
        if not self.checkpoints.is_dir():
            return []
        return sorted(((int(m.group(1)), p) for p in self.checkpoints.iterdir() if (m := _STEP_DIR.match(p.name))),
                      reverse=True)

    def latest_checkpoint(self) -> tuple[int, Path] | None:
        """The newest *complete* checkpoint: every file its manifest lists is there with the same
        size and SHA-256 (a checkpoint damaged after it was committed — a truncated file, a disk
        that lost a write — is passed over for the one before it)."""
        for step, path in self.checkpoints_newest_first():
            if checkpoint_problem(path) is None:
                return step, path
        return None

    def commit_checkpoint(self, step: int, keep: int = 2, identity: dict[str, str] | None = None) -> Path:
        """Write the staged checkpoint's manifest (file sizes and hashes, flushed to disk with the
        files, and `identity`: what its weights belong to), rename it into place and prune older
        complete ones, keeping `keep`."""
        staging, final = self.staging_dir(step), self.checkpoint_dir(step)
        files = {}
        for path in sorted(p for p in staging.rglob("*") if p.is_file()):
            with path.open("rb") as f:
                os.fsync(f.fileno())
            files[str(path.relative_to(staging))] = {"bytes": path.stat().st_size, "sha256": _sha256(path)}
        manifest = {"step": step, "files": files, **({"run": identity} if identity else {})}
        write_durably(staging / MANIFEST, json.dumps(manifest, indent=1) + "\n")
        if final.exists():
            shutil.rmtree(final)
        staging.rename(final)
        complete = [p for _, p in self.checkpoints_newest_first() if checkpoint_problem(p) is None]
        for old in complete[keep:]:
            shutil.rmtree(old)
        for stale in self.checkpoints.glob(".tmp-step_*"):
            shutil.rmtree(stale, ignore_errors=True)
        return final

    @staticmethod
    def checkpoint_identity(path: Path) -> dict[str, str] | None:
        """What a complete checkpoint's weights belong to, as its manifest records it (None: not recorded)."""
        return json.loads((path / MANIFEST).read_text()).get("run")

    # -- metrics ------------------------------------------------------------------------
    def append_metrics(self, record: dict[str, Any]) -> None:
        with self.metrics.open("a") as f:
            f.write(json.dumps(record, default=float) + "\n")

    def truncate_metrics(self, after_step: int) -> int:
        """Drop records logged after `after_step` (lost with a killed run); return how many."""
        if not self.metrics.is_file():
            return 0
        kept, dropped = [], 0
        for line in self.metrics.read_text().splitlines():
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:  # a line cut by SIGKILL
                dropped += 1
                continue
            step = rec.get("step") if isinstance(rec, dict) else None
            if not isinstance(step, int) or step > after_step:  # after it, or not a record of ours
                dropped += 1
            else:
                kept.append(line)
        self.metrics.write_text("".join(line + "\n" for line in kept))
        return dropped

    def read_metrics(self) -> list[dict[str, Any]]:
        if not self.metrics.is_file():
            return []
        return [json.loads(line) for line in self.metrics.read_text().splitlines() if line.strip()]


def drop_tied_weights(models: list, weights: list[dict], output_dir: str) -> None:
    """accelerate save-state pre-hook (`Accelerator.register_save_state_pre_hook`): leave out of each
    model's state dict the weights a transformers submodule declares tied to another
    (`_tied_weights_keys`, e.g. a Marian student's LM head = its decoder embedding) — what
    `save_pretrained` leaves out too. safetensors cannot hold one tensor under two names, and
    accelerate would drop the alias itself with a warning at every checkpoint; loading restores it
    through the tie (`safetensors.torch.load_model` accepts a missing name that aliases a loaded one)."""
    for model, state in zip(models, weights):
        for prefix, module in model.named_modules():
            tied = getattr(module, "_tied_weights_keys", None)
            for name, source in (tied.items() if isinstance(tied, dict) else ()):
                key, kept = (f"{prefix}.{n}" if prefix else n for n in (name, source))
                if key in state and kept in state and state[key].data_ptr() == state[kept].data_ptr():
                    del state[key]
