"""Fault injection (issue 13): a run killed with SIGKILL in stage 0, stage 1, the evaluation or the
report, a newest checkpoint truncated after it was written, and a write refused by the OS during a
checkpoint (as on a full disk) — each then resumed with `--resume` — ends exactly as the
uninterrupted run: the same logged losses (nothing lost or duplicated), the same CLIP teacher, the
same final student weights, the same test scores. Each fault strikes at a named point where the run
is held (tests/paused_run.py), not when a poll happens to notice it. benchmarks/fault_soak.py kills
at many more random points."""
from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from paused_run import Paused, start_paused
from tiny_run import tiny

ROOT = Path(__file__).resolve().parents[1]
ARGS = ["--teacher-steps", "12", "--steps", "12", "--checkpoint-every", "4", "--eval-every", "100",
        "--log-every", "1", "--self-train-rounds", "1", "--grounding-weight", "0", "--parallel-fraction", "0.5",
        "--no-eval-untrained"]


def env() -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}


def argv(cache: Path, out: Path, *extra: str) -> list[str]:
    return [str(ROOT / "train.py"), *tiny(cache, out, *ARGS, *extra)]


def run_to_end(cache: Path, out: Path, *extra: str, **kw) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, *argv(cache, out, *extra)], env=env(), cwd=ROOT, capture_output=True,
                          text=True, timeout=900, **kw)
    return done


def outcome(cache: Path, run: Path) -> dict:
    """What must be identical after any interruption: losses per step, teacher and student weights, scores."""
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    losses = {r["step"]: (r.get("loss"), r.get("loss/token_ce")) for r in records
              if "split" not in r and "self_train/round" not in r}
    teacher = next((cache / "teachers").glob("*/open_clip_model.pt"))
    scores = json.loads((run / "eval" / "scores.json").read_text())
    return {"losses": losses, "steps": [r["step"] for r in records if "split" not in r and "self_train/round" not in r],
            "teacher": torch.load(teacher, weights_only=True)["state_dict"],
            "student": load_file(run / "model" / "student" / "model.safetensors"),
            "scores": {k: v for k, v in scores.items() if k in ("metrics", "grounded")},
            "pseudo": (run / "targets" / "round_01.jsonl").read_text()}


def assert_same(got: dict, want: dict) -> None:
    assert got["steps"] == sorted(set(got["steps"])) == list(range(1, 13))  # nothing lost or duplicated
    assert got["losses"] == want["losses"]
    for part in ("teacher", "student"):
        assert got[part].keys() == want[part].keys()
        assert all(torch.equal(got[part][k], want[part][k]) for k in want[part]), part
    assert got["scores"] == want["scores"]
    assert got["pseudo"] == want["pseudo"]


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("reference")
    done = run_to_end(root / "cache", root / "run")
    assert done.returncode == 0, done.stderr[-3000:]
    return outcome(root / "cache", root / "run")


def paused_run(cache: Path, out: Path, event: str, pattern: str, nth: int = 1, **popen_kw) -> Paused:
    """A run held just before its `nth` `event` on a path matching `pattern` (tests/paused_run.py)."""
    kw = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL} | popen_kw
    return start_paused(argv(cache, out), event, pattern, nth, env=env(), cwd=ROOT, **kw)


def kill_at(cache: Path, out: Path, event: str, pattern: str, nth: int = 1) -> None:
    """SIGKILL a run held at its pause point, and wait for it to be gone."""
    paused = paused_run(cache, out, event, pattern, nth)
    paused.proc.send_signal(signal.SIGKILL)
    assert paused.proc.wait() == -signal.SIGKILL


KILL_POINTS = {  # (event, path pattern relative to the cache or the run, occurrence)
    "stage 0 (teacher)": ("os.rename", "{cache}/teachers/*.partial/teacher_state.pt", 2),  # the step-4 state saved
    "stage 1": ("open", "{run}/metrics.jsonl", 7),  # 6 records logged, the step-4 checkpoint committed
    "evaluation": ("open", "{run}/eval/scores.json", 1),  # the model exported and scored, the scores not written
    "report": ("open", "{run}/report.html", 1),  # the scores written, the report not
}


@pytest.mark.slow
@pytest.mark.parametrize("point", list(KILL_POINTS))
def test_sigkill_then_resume_equals_the_uninterrupted_run(point, reference, tmp_path):
    cache, run = tmp_path / "cache", tmp_path / "run"
    event, pattern, nth = KILL_POINTS[point]
    kill_at(cache, run, event, pattern.format(cache=cache, run=run), nth)
    done = run_to_end(cache, run, "--resume")
    assert done.returncode == 0, done.stderr[-3000:]
    assert_same(outcome(cache, run), reference)


@pytest.mark.slow
def test_a_truncated_newest_checkpoint_falls_back_to_the_previous_one(reference, tmp_path):
    cache, run = tmp_path / "cache", tmp_path / "run"
    kill_at(cache, run, "os.rename", str(run / "checkpoints" / "step_00000012"))  # step 8 committed, 12 staged
    newest = run / "checkpoints" / "step_00000008" / "model.safetensors"
    newest.write_bytes(newest.read_bytes()[: newest.stat().st_size // 2])
    done = run_to_end(cache, run, "--resume")
    assert done.returncode == 0, done.stderr[-3000:]
    log = (run / "train.log").read_text()
    assert "step_00000008 cannot be resumed from" in log and "resumed from" in log and "step 4)" in log
    assert_same(outcome(cache, run), reference)


@pytest.mark.slow
def test_a_write_refused_during_a_checkpoint_leaves_the_previous_one_usable(reference, tmp_path):
    """The OS refuses a write in the middle of the step-8 checkpoint, as a full disk would: the run is
    held once its step-4 checkpoint is committed, its file-size limit (RLIMIT_FSIZE) is lowered under
    the size of the checkpoint's model file (every log stays far below it), and it goes on. The run
    stops with one line naming the path, the first checkpoint stays complete, and — the limit gone,
    as when the disk has room again — it resumes in place to the reference's end."""
    cache, run = tmp_path / "cache", tmp_path / "run"
    probe = run_to_end(cache, tmp_path / "probe", "--steps", "4", "--no-evaluate")  # the size of a checkpoint file
    assert probe.returncode == 0, probe.stderr[-3000:]
    limit = max(p.stat().st_size for p in (tmp_path / "probe" / "checkpoints").rglob("*") if p.is_file()) // 2
    paused = paused_run(cache, run, "open", str(run / "metrics.jsonl"), 5, stderr=subprocess.PIPE)
    resource.prlimit(paused.proc.pid, resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))
    paused.release()
    stderr = paused.proc.stderr.read().decode()
    assert paused.proc.wait(timeout=900) == 2 and "Traceback" not in stderr, stderr[-3000:]
    error = stderr.strip().splitlines()[-1]
    assert error.startswith("error: ") and "File too large" in error and "step_00000008" in error, error
    assert [p.name for p in (run / "checkpoints").glob("step_*")] == ["step_00000004"]
    assert max(p.stat().st_size for p in run.rglob("*") if p.is_file() and "checkpoints" not in p.parts) < limit
    done = run_to_end(cache, run, "--resume")
    assert done.returncode == 0, done.stderr[-3000:]
    assert_same(outcome(cache, run), reference)
