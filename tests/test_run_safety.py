"""Issue 23, the training side: a run folder is owned by one process, a run whose numbers stop being
finite is a failure that keeps its last finite checkpoint, everything a run reads back is checked,
`--resume` means resume, a finished run is left as it is, a failed start leaves nothing that blocks
the retry, and a run that would not fit in memory is refused before its data is built. Each case
runs train.py's `main` (in-process, or as a real process where another process matters) on the
micro system for a few steps."""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

import training
from data_prep.locks import LOCK_FILE
from fuzzing import digest as all_files
from models.run_dir import MANIFEST, RunDir
from paused_run import start_paused
from tiny_run import tiny
from torch_threads import one_thread  # noqa: F401
from training.divergence import DIVERGED_EXIT

pytestmark = pytest.mark.usefixtures("one_thread")
ROOT = Path(__file__).resolve().parents[1]
SHORT = ("--steps", "4", "--checkpoint-every", "2", "--no-evaluate")


def digest(folder: Path) -> dict[str, str]:
    """Every file's SHA-256, the lock file aside (each process that asks for the folder writes its pid there)."""
    return {name: sha for name, sha in all_files(folder).items() if name != LOCK_FILE}


def env() -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}


def main(argv: list[str], capsys) -> tuple[int, str]:
    """(exit code, stderr) of train.py's main, in-process."""
    capsys.readouterr()
    try:
        code = training.main(argv)
    except SystemExit as exc:  # argparse
        code = exc.code
    return code, capsys.readouterr().err


def one_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    return lines[0]


@pytest.fixture(scope="module")
def finished(tmp_path_factory, cache) -> Path:
    """A finished run of 4 steps (checkpoints at 2 and 4, no evaluation)."""
    out = tmp_path_factory.mktemp("finished") / "run"
    assert training.main(tiny(cache, out, *SHORT)) == 0
    assert RunDir(out).completed_steps() == 4
    return out


@pytest.fixture
def copy(finished, tmp_path) -> Path:
    shutil.copytree(finished, tmp_path / "run")
    return tmp_path / "run"


# -- one process owns a run ---------------------------------------------------------------------------
@pytest.mark.parametrize("resume", [False, True])
def test_a_second_process_on_a_running_run_is_refused_naming_the_owner(cache, tmp_path, capsys, resume):
    out = tmp_path / "run"
    first = start_paused([str(ROOT / "train.py"), *tiny(cache, out, "--steps", "6", "--no-evaluate")], "open",
                         str(out / "metrics.jsonl"), 2, env=env(), cwd=ROOT, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    try:
        before = digest(out)
        code, err = main(tiny(cache, out, "--steps", "6", "--no-evaluate", *(["--resume"] if resume else [])), capsys)
        assert code == 2 and one_line(err) == (f"error: {out} is in use by process {first.proc.pid} (accelerate launch "
                                               "train.py); wait until it ends (or stop it), or choose another folder")
        assert digest(out) == before  # nothing written
    finally:
        first.release()
    assert first.proc.wait(timeout=600) == 0
    assert [m["step"] for m in RunDir(out).read_metrics() if "split" not in m] == list(range(1, 7))  # each once
    with open(out / LOCK_FILE) as f:  # released at the end
        assert json.loads(f.read())["pid"] == first.proc.pid


# -- non-finite is never success -----------------------------------------------------------------------
def test_a_diverging_run_stops_keeps_its_last_finite_checkpoint_and_exports_nothing(cache, tmp_path, capsys):
    out = tmp_path / "run"
    code, err = main(tiny(cache, out, "--steps", "6", "--lr", "1e30", "--checkpoint-every", "100"), capsys)
    line = one_line(err)
    assert code == DIVERGED_EXIT and "training diverged at step 2 of 6: the loss is nan" in line, line
    assert "the checkpoint of step 1 (the last finite one) is kept" in line and "nothing was exported" in line
    run = RunDir(out)
    assert [p.name for _, p in run.checkpoints_newest_first()] == ["step_00000001"]
    assert run.latest_checkpoint()[0] == 1  # complete, and of finite weights:
    weights = load_file(run.checkpoint_dir(1) / "model.safetensors")
    assert all(torch.isfinite(t).all() for t in weights.values() if t.is_floating_point())
    assert not run.model.exists() and not (run.eval / "scores.json").exists() and run.completed_steps() is None
    assert [m["step"] for m in run.read_metrics()] == [1]  # the broken step is not logged
    assert line in (out / "train.log").read_text()


def test_a_teacher_that_diverges_stops_stage_0_and_the_new_run_is_removed(tmp_path, capsys):
    out = tmp_path / "run"
    argv = tiny(tmp_path / "cache", out, "--teacher-steps", "6", "--teacher-lr", "1e30", "--steps", "2")
    code, err = main(argv, capsys)
    assert code == DIVERGED_EXIT and "the CLIP teacher diverged at stage 0 step" in one_line(err)
    assert not list((tmp_path / "cache" / "teachers").glob("*/open_clip_model.pt"))  # no teacher cached
    assert not out.exists()  # nothing was checkpointed: the retry may use the same --out


def test_evaluation_refuses_weights_that_are_not_finite(copy, cache, capsys):
    """The newest checkpoint's weights made NaN (its manifest rewritten to match): the resumed run
    stops before the export with exit 3, and RUN/model is never written."""
    run = RunDir(copy)
    shutil.rmtree(run.model)
    run.complete.unlink()
    checkpoint = run.checkpoint_dir(4)
    weights = load_file(checkpoint / "model.safetensors")
    name = next(k for k, t in weights.items() if k.startswith("student.") and t.is_floating_point())
    weights[name] = torch.full_like(weights[name], float("nan"))
    save_file(weights, checkpoint / "model.safetensors", metadata={"format": "pt"})
    manifest = json.loads((checkpoint / MANIFEST).read_text())
    data = (checkpoint / "model.safetensors").read_bytes()
    manifest["files"]["model.safetensors"] = {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    (checkpoint / MANIFEST).write_text(json.dumps(manifest))
    code, err = main(tiny(cache, copy, *SHORT, "--resume"), capsys)
    assert code == DIVERGED_EXIT and "the trained weights are not finite" in one_line(err)
    assert not run.model.exists() and run.completed_steps() is None


# -- typed read-backs ----------------------------------------------------------------------------------
def damage_config(path: Path, how: str) -> None:
    config = json.loads(path.read_text())
    if how == "truncated":
        path.write_text(path.read_text()[:40])
        return
    if how == "wrong type":
        config["steps"] = "many"
    elif how == "missing key":
        del config["lang"]
    elif how == "out of range":
        config["lr"] = -1
    path.write_text(json.dumps(config))


@pytest.mark.parametrize("how, message", [
    ("wrong type", r'config.json: field "steps": expected an integer, found a JSON string'),
    ("missing key", r'config.json: field "lang" is missing'),
    ("truncated", r"config.json: not valid JSON \(.*\); it is truncated or damaged"),
    ("out of range", r'config.json: field "lr": the value must be positive, got -1'),
])
def test_a_damaged_config_json_is_one_line_naming_the_field(copy, cache, capsys, how, message):
    damage_config(copy / "config.json", how)
    before = digest(copy)
    code, err = main(tiny(cache, copy, *SHORT, "--resume"), capsys)
    assert code == 2 and re.search(message, one_line(err)), err
    assert digest(copy) == before


def test_damaged_teacher_files_in_the_cache_are_one_line_with_the_repair(tmp_path, capsys):
    """A cached teacher's teacher.json with a wrong type, then its weights file cut short: one line
    each, naming the file and how to repair it; the new run is removed, so once the cache entry is
    removed the same command trains."""
    cache, out = tmp_path / "cache", tmp_path / "run"
    assert training.main(tiny(cache, tmp_path / "first", "--steps", "0", "--no-evaluate")) == 0
    teacher = next((cache / "teachers").glob("*/teacher.json")).parent
    info = json.loads((teacher / "teacher.json").read_text())
    (teacher / "teacher.json").write_text(json.dumps({**info, "teacher/loss": "low"}))
    code, err = main(tiny(cache, out, "--steps", "2", "--no-evaluate"), capsys)
    assert code == 2 and one_line(err) == (f'error: {teacher}/teacher.json: field "teacher/loss": expected a number, '
                                           f"found a JSON string; remove {teacher} to train the teacher again")
    assert not out.exists()
    (teacher / "teacher.json").write_text(json.dumps(info))
    weights = teacher / "open_clip_model.pt"
    weights.write_bytes(weights.read_bytes()[:1000])
    code, err = main(tiny(cache, out, "--steps", "2", "--no-evaluate"), capsys)
    assert code == 2 and f"the cached CLIP teacher {weights}: cannot be loaded" in one_line(err)
    shutil.rmtree(teacher)
    assert training.main(tiny(cache, out, "--steps", "2", "--no-evaluate")) == 0


def test_a_damaged_teacher_state_is_one_line_with_the_repair(tmp_path, capsys):
    cache, out = tmp_path / "cache", tmp_path / "run"
    argv = tiny(cache, out, "--teacher-steps", "6", "--checkpoint-every", "2", "--steps", "2", "--no-evaluate")
    paused = start_paused([str(ROOT / "train.py"), *argv], "os.rename", str(cache / "teachers" / "*.partial" /
                                                                             "teacher_state.pt"), 2, env=env(),
                          cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    paused.proc.send_signal(signal.SIGKILL)  # held as it saves the step-4 state: the step-2 state is there
    assert paused.proc.wait() == -signal.SIGKILL
    state = next((cache / "teachers").glob("*.partial/teacher_state.pt"))
    state.write_bytes(state.read_bytes()[:2000])
    code, err = main([*argv, "--resume"], capsys)
    line = one_line(err)
    assert code == 2 and line.startswith(f"error: {state}: not a complete teacher state (")
    assert line.endswith("; remove it to train the teacher again from step 0")
    state.unlink()
    assert training.main([*argv, "--resume"]) == 0


def test_damaged_pseudo_targets_of_a_resumed_run_are_one_line(cache, tmp_path, capsys):
    out = tmp_path / "run"
    argv = tiny(cache, out, "--steps", "4", "--checkpoint-every", "2", "--no-evaluate", "--self-train-rounds", "1",
                "--self-train-start", "0.25", "--contrastive-weight", "0", "--parallel-fraction", "0.5")
    assert training.main(argv) == 0
    RunDir(out).complete.unlink()  # as if killed during the export
    targets = RunDir(out).targets(0)
    lines = targets.read_text().splitlines()
    record = json.loads(lines[0])
    targets.write_text("\n".join([json.dumps({**record, "weight": "heavy"}), *lines[1:]]) + "\n")
    code, err = main([*argv, "--resume"], capsys)
    assert code == 2 and one_line(err) == f'error: {targets}:1: field "weight": expected a number, found a JSON string'


def test_a_checkpoint_of_another_language_is_refused_before_it_is_loaded(copy, cache, tmp_path, capsys, monkeypatch):
    """A zh run's newest checkpoint put into an es run: one line naming what differs; nothing loaded."""
    zh = tmp_path / "zh"
    assert training.main(tiny(cache, zh, "--lang", "zh", *SHORT)) == 0
    run = RunDir(copy)
    run.complete.unlink()
    shutil.copytree(zh / "checkpoints" / "step_00000004", run.checkpoint_dir(6))
    import accelerate

    monkeypatch.setattr(accelerate.Accelerator, "load_state", lambda *a, **k: pytest.fail("a checkpoint was loaded"))
    code, err = main(tiny(cache, copy, *SHORT, "--steps", "8", "--resume"), capsys)
    line = one_line(err)
    assert code == 2 and f"{run.checkpoint_dir(6)} does not belong to this run" in line, line
    assert "lang zh (this run: es)" in line and "source vocabulary" in line
    manifest = json.loads((run.checkpoint_dir(6) / MANIFEST).read_text())  # a checkpoint that records no identity:
    del manifest["run"]
    (run.checkpoint_dir(6) / MANIFEST).write_text(json.dumps(manifest))  # its shapes still tell
    code, err = main(tiny(cache, copy, *SHORT, "--steps", "8", "--resume"), capsys)
    assert code == 2 and "of shape" in one_line(err) and "(this run:" in one_line(err)


# -- --resume means resume -----------------------------------------------------------------------------
@pytest.mark.parametrize("setup, message", [
    ("missing", "--resume: {out} holds no run to resume (it does not exist); a new run needs no flag"),
    ("empty", "--resume: {out} holds no run to resume (it is empty); a new run needs no flag"),
    ("notes", "--out {out} is not empty and does not hold a run written by train.py: choose a new or empty folder"),
])
def test_resume_without_a_run_is_refused_and_changes_nothing(cache, tmp_path, capsys, setup, message):
    out = tmp_path / "run"
    if setup != "missing":
        out.mkdir()
    if setup == "notes":
        (out / "notes.txt").write_text("mine\n")
    code, err = main(tiny(cache, out, *SHORT, "--resume"), capsys)
    assert code == 2 and message.format(out=out) in one_line(err)
    assert (sorted(p.name for p in out.iterdir()) if out.exists() else None) == \
        {"missing": None, "empty": [LOCK_FILE], "notes": ["notes.txt"]}[setup]  # the lock of the refused run aside


def test_resume_without_out_and_no_run_to_pick_is_refused(cache, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    argv = tiny(cache, tmp_path / "x", *SHORT, "--resume")
    del argv[argv.index("--out"):argv.index("--out") + 2]
    code, err = main(argv, capsys)
    assert code == 2 and "--resume without --out, and no run runs/synthetic-es-* to resume" in one_line(err)
    assert not (tmp_path / "runs").exists()


def test_checkpoints_without_config_json_are_refused_with_the_repair(copy, cache, capsys):
    (copy / "config.json").unlink()
    before = digest(copy)
    for extra in (["--resume"], []):
        code, err = main(tiny(cache, copy, *SHORT, *extra), capsys)
        assert code == 2 and "holds the remains of a run (metrics.jsonl, train.log, checkpoints, complete.json) but " \
                             "no config.json" in one_line(err) and "put its config.json back" in one_line(err)
    assert digest(copy) == before


def test_a_finished_run_is_never_rewritten(copy, cache, capsys):
    before = digest(copy)
    code, err = main(tiny(cache, copy, *SHORT, "--steps", "2", "--resume"), capsys)
    assert code == 2 and "--resume --steps 2: " in one_line(err) and "has trained 4 steps already" in err
    code = training.main(tiny(cache, copy, *SHORT, "--resume"))
    assert code == 0 and "is already complete at step 4: nothing to do" in capsys.readouterr().out
    assert digest(copy) == before  # config.json, model, metrics: not a byte written
    assert training.main(tiny(cache, copy, *SHORT, "--steps", "6", "--resume")) == 0  # more steps: it continues
    assert [m["step"] for m in RunDir(copy).read_metrics() if "split" not in m] == list(range(1, 7))
    assert RunDir(copy).completed_steps() == 6


def test_a_new_run_never_writes_into_a_folder_that_is_not_its_own(cache, tmp_path, capsys):
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "mine.txt").write_text("mine\n")
    code, err = main(tiny(cache, notes, *SHORT), capsys)
    assert code == 2 and "is not empty and does not hold a run written by train.py" in one_line(err)
    assert sorted(p.name for p in notes.iterdir()) == ["mine.txt"]
    (tmp_path / "file").write_text("x")
    code, err = main(tiny(cache, tmp_path / "file", *SHORT), capsys)
    assert code == 2 and one_line(err) == f"error: --out {tmp_path / 'file'} is a file, expected a folder"


def test_a_run_killed_before_its_first_checkpoint_resumes_without_duplicated_metrics(cache, tmp_path):
    out = tmp_path / "run"
    argv = tiny(cache, out, "--steps", "6", "--checkpoint-every", "100", "--no-evaluate")
    paused = start_paused([str(ROOT / "train.py"), *argv], "open", str(out / "metrics.jsonl"), 4, env=env(),
                          cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    paused.proc.send_signal(signal.SIGKILL)
    assert paused.proc.wait() == -signal.SIGKILL
    assert [m["step"] for m in RunDir(out).read_metrics()] == [1, 2, 3]
    assert training.main([*argv, "--resume"]) == 0
    assert [m["step"] for m in RunDir(out).read_metrics() if "split" not in m] == list(range(1, 7))


# -- failed starts leave nothing that blocks the retry ---------------------------------------------------
def test_an_error_after_set_up_leaves_nothing_and_the_retry_works(cache, tmp_path, capsys):
    """A --clip-pretrained file that is not a checkpoint fails in stage 0, after config.json is
    written: one line, the new run removed (an empty folder given as --out stays, empty), and the
    corrected command trains in the same --out."""
    out = tmp_path / "run"
    out.mkdir()
    (tmp_path / "w.pt").write_bytes(b"not a checkpoint")
    code, err = main(tiny(cache, out, *SHORT, "--clip-pretrained", str(tmp_path / "w.pt")), capsys)
    assert code == 2 and f"--clip-pretrained {tmp_path / 'w.pt'}: cannot be loaded as CLIP groundmt-micro" in one_line(err)
    assert [p.name for p in out.iterdir()] == [LOCK_FILE]
    assert training.main(tiny(cache, out, *SHORT)) == 0


@pytest.mark.parametrize("argv, message", [
    (["--seed", "-1"], "--seed must be in [0, 4294967295] (the seeds NumPy accepts), got -1"),
    (["--max-target-length", "1"], "--max-target-length must be 0 (decided from the data) or at least 3, got 1"),
    (["--max-target-length", "100"], "--max-target-length 100: CLIP groundmt-micro reads at most 16 positions"),
    (["--threads", "1000000"], "--threads 1000000: this machine has"),
])
def test_values_refused_before_anything_is_written(tmp_path, capsys, argv, message):
    code, err = main(tiny(tmp_path / "cache", tmp_path / "run", *SHORT, *argv), capsys)
    assert code == 2 and message in one_line(err)
    assert not (tmp_path / "run").exists() and not (tmp_path / "cache" / "data").exists()


# -- limits before allocation --------------------------------------------------------------------------
@pytest.mark.parametrize("argv, message", [
    (["--batch-size", "1000000000", "--target-vocab", "full"],
     r"one training step \(--batch-size 1000000000 x --m-source 1 translations through the splice.*, over 49408 "
     r"target ids\) needs about .* of memory, more than the .* available on this machine"),
    (["--self-train-rounds", "1", "--self-train-nbest", "1000000000"],
     r"self-training's beam search \(--self-train-nbest 1000000000 beams x 64 captions\) needs about"),
    (["--anchor-bank", "1000000000000"], r"--anchor-bank 1000000000000 \(x 32 dimensions\) needs about"),
    (["--eval-bootstrap", "1000000000000000", "--evaluate"], r"--eval-bootstrap 1000000000000000 on 1 test sentence"),
    (["--labels", "exact", "--k-english", "4", "--m-source", "4", "--batch-size", "32"],
     r"--labels exact with --batch-size 32 and 9 axes: labels='exact' on a 32×32×.* cube"),
])
def test_a_run_that_cannot_fit_is_refused_before_its_data_is_built(tmp_path, capsys, argv, message):
    code, err = main(tiny(tmp_path / "cache", tmp_path / "run", *SHORT, *argv), capsys)
    assert code == 2 and re.search(message, one_line(err)), err
    assert not (tmp_path / "cache" / "data").exists() and not (tmp_path / "run").exists()


def test_the_step_estimate_bounds_what_a_step_takes(cache, tmp_path):
    """A real process, two steps of the splice over all of CLIP's BPE (49,408 ids): the growth of its
    resident memory from the first step on is under the estimate of `training.limits` (and large
    enough that the step's tensors are what is measured)."""
    from training.config import parse_config
    from training.limits import Sizes, step_estimate

    script = ("import json, resource, sys, psutil\n"
              "import training\nfrom training.trainer import StudentTrainer\n"
              "seen, step = {}, StudentTrainer.step\n"
              "def measured(self, *a):\n"
              "    seen.setdefault('before', psutil.Process().memory_info().rss)\n"
              "    out = step(self, *a)\n"
              "    seen['peak'] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024\n"
              "    return out\n"
              "StudentTrainer.step = measured\n"
              "assert training.main(sys.argv[1:]) == 0\n"
              "print(json.dumps(seen))\n")
    argv = tiny(cache, tmp_path / "run", "--steps", "2", "--no-evaluate", "--batch-size", "32", "--target-vocab", "full",
                "--token-ce-weight", "0")
    done = subprocess.run([sys.executable, "-c", script, *argv], env=env(), cwd=ROOT, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    seen = json.loads(done.stdout.splitlines()[-1])
    growth = seen["peak"] - seen["before"]
    estimate, _ = step_estimate(parse_config(argv), Sizes(vocab=49408, length=16, source_length=40, test_sentences=1), 1)
    print(f"step memory: measured growth {growth / 2**20:.0f} MiB, estimate {estimate / 2**20:.0f} MiB")
    assert 100 * 2**20 < growth <= estimate, (growth, estimate)


def test_a_waiting_lock_waits_for_its_owner_and_names_it(tmp_path):
    """`WaitingLock`: while another process holds the file, a second taker reports the owner's pid
    once and blocks; it gets the lock as soon as the owner lets go."""
    import threading

    from data_prep.locks import WaitingLock

    path = tmp_path / "entry.lock"
    owner = subprocess.Popen([sys.executable, "-c", "import sys\nfrom data_prep.locks import WaitingLock\n"
                              f"with WaitingLock({str(path)!r}):\n    print('held', flush=True)\n    sys.stdin.readline()"],
                             env=env(), cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert owner.stdout.readline().strip() == "held"
    told, got = [], threading.Event()

    def take():
        with WaitingLock(path, told.append):
            got.set()

    taker = threading.Thread(target=take)
    taker.start()
    assert not got.wait(1.0)  # blocked while the owner holds it
    assert len(told) == 1 and f"process {owner.pid}" in told[0]
    owner.stdin.write("\n")
    owner.stdin.flush()
    assert got.wait(60) and owner.wait(60) == 0
    taker.join()


def test_runs_sharing_a_cache_train_one_teacher(cache, tmp_path):
    """Two runs started together on one cache (an ablation's jobs) need the same teacher: one trains
    it, the other waits and loads it — never two trainings writing one partial state."""
    shared = tmp_path / "cache"
    runs = [subprocess.Popen([sys.executable, str(ROOT / "train.py"), *tiny(shared, tmp_path / f"run{i}",
                                                                            "--teacher-steps", "30", "--steps", "2",
                                                                            "--no-evaluate")],
                             env=env(), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            for i in range(2)]
    output = [run.communicate(timeout=600)[0] for run in runs]
    assert [run.returncode for run in runs] == [0, 0], output
    logs = [(tmp_path / f"run{i}" / "train.log").read_text() for i in range(2)]
    assert sum("training a groundmt-micro CLIP teacher" in log for log in logs) == 1, logs
    teachers = [p for p in (shared / "teachers").iterdir() if p.is_dir()]
    assert len(teachers) == 1 and not any(p.name.endswith(".partial") for p in teachers)
