"""The pieces behind issue 23, each against what it must guarantee: the output policy
(`data_prep.errors.output_file` / `output_dir`, the dataset writer), the advisory folder lock
(`data_prep.locks`, also across real processes), typed read-backs (`models.typed_json`, checkpoint
manifests), memory limits (`data_prep.memory`) and the outputs every CLI may still replace
(its own score file, report, dataset, translations with --overwrite)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import NotRequired

import pytest
from typing_extensions import TypedDict

import eval.__main__ as eval_cli
from data_prep.errors import Artefact, InputError, marker_files, output_dir, output_file, run_command, same_path
from data_prep.locks import LOCK_FILE, FolderBusy, FolderLock
from data_prep.memory import require_memory, size_text
from models.run_dir import MANIFEST, RunDir, checkpoint_problem
from models.typed_json import ReadBackError, parse, problem, read_json

ROOT = Path(__file__).resolve().parents[1]
MINE = Artefact("a thing of this command", marker_files("mine.json"))


# -- output policy -----------------------------------------------------------------------------------
def test_an_output_is_never_an_input_through_links(tmp_path):
    ref = tmp_path / "ref.txt"
    ref.write_text("keep\n")
    (tmp_path / "soft").symlink_to(ref)
    os.link(ref, tmp_path / "hard")
    for alias in (ref, tmp_path / "soft", tmp_path / "hard", tmp_path / "x" / ".." / "ref.txt"):
        with pytest.raises(InputError, match=r"is the input --ref .*ref.txt: writing it would destroy the input"):
            output_file(alias, "--out", inputs={"--ref": [ref]}, overwrite=True)
    assert same_path(tmp_path / "soft", ref) and not same_path(tmp_path / "new.txt", ref)
    assert ref.read_text() == "keep\n"


def test_an_existing_file_is_replaced_only_when_it_is_ours_or_with_overwrite(tmp_path):
    theirs, ours = tmp_path / "theirs.json", tmp_path / "ours.json"
    theirs.write_text("{}")
    ours.write_text('{"ours": 1}')
    artefact = Artefact("a file of ours", lambda p: "ours" in p.read_text())
    with pytest.raises(InputError, match="already exists and is not a file of ours: pass --overwrite"):
        output_file(theirs, "--out", artefact=artefact)
    with pytest.raises(InputError, match="was not written by this command"):
        output_file(theirs, "--out")
    assert output_file(theirs, "--out", artefact=artefact, overwrite=True) == theirs
    assert output_file(ours, "--out", artefact=artefact) == ours
    assert output_file(tmp_path / "new.json", "--out") == tmp_path / "new.json"


def test_a_folder_is_written_only_when_empty_or_ours_and_allowed(tmp_path):
    empty, locked_only, theirs, ours = (tmp_path / n for n in ("empty", "locked", "theirs", "ours"))
    for folder in (empty, locked_only, theirs, ours):
        folder.mkdir()
    (locked_only / LOCK_FILE).write_text("")
    (theirs / "notes.txt").write_text("mine\n")
    (ours / "mine.json").write_text("{}")
    assert output_dir(empty, "--out") == empty and output_dir(locked_only, "--out", artefact=MINE) == locked_only
    assert output_dir(tmp_path / "new" / "deeper", "--out") == tmp_path / "new" / "deeper"
    assert not (tmp_path / "new").exists()  # the check creates nothing
    for replace in (False, True):
        with pytest.raises(InputError, match="is not empty and does not hold a thing of this command"):
            output_dir(theirs, "--out", artefact=MINE, replace=replace)
    with pytest.raises(InputError, match="already holds a thing of this command: pass --restart"):
        output_dir(ours, "--out", artefact=MINE, replace_flag="--restart")
    assert output_dir(ours, "--out", artefact=MINE, replace=True) == ours
    with pytest.raises(InputError, match="holds the input --data-dir"):
        output_dir(tmp_path, "--out", inputs={"--data-dir": theirs})
    assert (theirs / "notes.txt").read_text() == "mine\n"


def _records(n: int) -> list[dict]:
    from PIL import Image

    return [{"image": Image.new("RGB", (8, 8), (i * 40 % 255, 0, 0)), "image_id": f"i{i}", "lang": "es",
             "source": [f"uno {i}"], "english": [f"one {i}"], "parallel": [""], "provenance": "t/train/source=hw"}
            for i in range(n)]


def test_the_writer_never_replaces_what_is_not_a_dataset_and_a_dataset_only_with_overwrite(tmp_path):
    from data_prep.build_report import BuildReport
    from data_prep.writer import write_dataset

    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "n.txt").write_text("mine\n")
    for overwrite in (False, True):
        with pytest.raises(InputError, match="does not hold a dataset"):
            write_dataset({"train": _records(2)}, notes, BuildReport("t"), show_progress=False, overwrite=overwrite)
    assert [p.name for p in notes.iterdir()] == ["n.txt"]
    out = tmp_path / "ds"
    assert len(write_dataset({"train": _records(2)}, out, BuildReport("t"), show_progress=False)["train"]) == 2
    with pytest.raises(InputError, match="already holds a dataset built by python -m data_prep: pass --overwrite"):
        write_dataset({"train": _records(3)}, out, BuildReport("t"), show_progress=False)
    assert len(write_dataset({"train": _records(3)}, out, BuildReport("t"), show_progress=False,
                             overwrite=True)["train"]) == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds", "notes"]  # no staging or previous copy left


def test_eval_score_replaces_its_own_score_file_and_another_file_only_with_overwrite(tmp_path, capsys):
    hyp, ref, out = tmp_path / "hyp.txt", tmp_path / "ref.txt", tmp_path / "s.json"
    hyp.write_text("a red circle\ntwo blue squares\n")
    ref.write_text("a red circle\ntwo squares\n")
    argv = ["score", "--hyp", str(hyp), "--ref", str(ref), "--metrics", "bleu", "--bootstrap", "0", "--out", str(out)]
    out.write_text("my notes\n")
    assert eval_cli.main(argv) == 2 and out.read_text() == "my notes\n"
    assert eval_cli.main(argv + ["--overwrite"]) == 0
    first = json.loads(out.read_text())
    assert eval_cli.main(argv[:-1] + [str(out)]) == 0  # a score file of ours is replaced without a flag
    assert json.loads(out.read_text())["metrics"] == first["metrics"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hyp.txt", "ref.txt", "s.json"]


# -- locks -------------------------------------------------------------------------------------------
def test_a_second_owner_is_refused_with_the_first_ones_pid_until_it_releases(tmp_path):
    folder = tmp_path / "out"
    first = FolderLock(folder, "python -m translate corpus").acquire()
    with pytest.raises(FolderBusy, match=rf"out is in use by process {os.getpid()} \(python -m translate corpus\)"):
        FolderLock(folder, "another").acquire()
    assert run_command(lambda: FolderLock(folder, "another").acquire() and 0) == 2
    first.release()
    with FolderLock(folder, "another"):
        assert json.loads((folder / LOCK_FILE).read_text()) == {"pid": os.getpid(), "command": "another"}


def test_a_killed_owner_leaves_no_stale_lock_and_a_live_one_blocks_a_real_cli(tmp_path, run, data):
    """Another process holds the corpus folder: the CLI (a real process) names its pid and exits 2
    before loading the model; once the holder is killed, the folder is free again."""
    out = tmp_path / "corpus"
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from data_prep.locks import FolderLock; "
                               "FolderLock(sys.argv[1], 'a holder').acquire(); print('held', flush=True); "
                               "time.sleep(600)", str(out)], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        done = subprocess.run([sys.executable, "-m", "translate", "corpus", "--run", str(run), "--data-dir", str(data),
                               "--out", str(out), "--quiet"], cwd=ROOT, capture_output=True, text=True,
                              env={**os.environ, "OMP_NUM_THREADS": "1"})
        assert done.returncode == 2 and done.stderr.splitlines() == [
            f"error: {out} is in use by process {holder.pid} (a holder); wait until it ends (or stop it), or choose "
            "another folder"], done.stderr
        assert sorted(p.name for p in out.iterdir()) == [LOCK_FILE]
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    with FolderLock(out, "after the holder died"):
        pass


# -- typed read-backs ----------------------------------------------------------------------------------
class Inner(TypedDict):
    n: int


class Doc(TypedDict):
    name: str
    values: list[float]
    inner: NotRequired[Inner]
    items: NotRequired[list[Inner]]


@pytest.mark.parametrize("data, expected", [
    ({"name": "a", "values": [1, 2.5]}, None),
    ({"name": "a", "values": [], "extra": {"newer": "writer"}}, None),
    ({"values": []}, 'field "name" is missing'),
    ({"name": 3, "values": []}, 'field "name": expected a string, found a JSON number'),
    ({"name": "a", "values": [1, "x"]}, 'field "values[1]": expected a number, found a JSON string'),
    ({"name": "a", "values": [], "inner": {"n": True}}, 'field "inner.n": expected an integer, found a JSON boolean'),
    ({"name": "a", "values": [], "items": [{"n": 1}, {}]}, 'field "items[1].n" is missing'),
    ([1, 2], "expected a JSON object, found a JSON array"),
])
def test_problem_names_the_field_and_both_kinds(data, expected):
    assert problem(data, Doc) == expected


def test_read_json_names_the_file_for_truncated_or_undecodable_content(tmp_path):
    path = tmp_path / "doc.json"
    path.write_text('{"name": "a", "values": [1')
    with pytest.raises(ReadBackError, match=r"doc.json: not valid JSON .* truncated or damaged"):
        read_json(path, Doc)
    path.write_bytes(b'{"name": "\xff"}')
    with pytest.raises(ReadBackError, match=r"doc.json: not valid UTF-8 \(byte 0xff at offset 10\)"):
        read_json(path, Doc)
    assert parse('{"name": "a", "values": []}', Doc, "x") == {"name": "a", "values": []}
    assert run_command(lambda: read_json(path, Doc)) == 2


def test_a_manifest_of_the_wrong_shape_makes_the_checkpoint_unusable_with_the_reason(tmp_path):
    run = RunDir(tmp_path)
    run.create()
    staging = run.staging_dir(4)
    staging.mkdir()
    (staging / "model.safetensors").write_bytes(b"weights")
    good = run.commit_checkpoint(4)
    assert checkpoint_problem(good) is None
    manifest = json.loads((good / MANIFEST).read_text())
    for change, reason in ((lambda m: m["files"]["model.safetensors"].update(bytes="7"),
                            'field "files.model.safetensors.bytes": expected an integer, found a JSON string'),
                           (lambda m: m.pop("files"), 'field "files" is missing'),
                           (lambda m: m["files"].update({"../../etc/passwd": {"bytes": 1, "sha256": "x"}}),
                            "names a file outside the checkpoint: ../../etc/passwd")):
        broken = json.loads(json.dumps(manifest))
        change(broken)
        (good / MANIFEST).write_text(json.dumps(broken))
        assert reason in checkpoint_problem(good)
        assert run.latest_checkpoint() is None


# -- memory limits -----------------------------------------------------------------------------------
def test_require_memory_refuses_above_what_is_available_and_names_the_estimate(monkeypatch):
    monkeypatch.setattr("data_prep.memory.available_memory", lambda: 8 * 2**30)
    require_memory(7 * 2**30, "--x 7", "use less")
    with pytest.raises(InputError, match=r"^--x 400 needs about 400 TiB of memory, more than the 8.0 GiB available "
                                         r"on this machine; use less$"):
        require_memory(400 * 2**40, "--x 400", "use less")
    assert [size_text(n) for n in (512, 1536, 5 * 2**50)] == ["512 B", "1.5 KiB", "5.0 PiB"]


def test_the_synthetic_estimate_bounds_the_memory_a_build_holds():
    """The per-record estimate of `data_prep synthetic` is at least what its records measure."""
    import tracemalloc

    from data_prep.synthetic.build import CAPTION_BYTES, RECORD_BYTES, make_sample, record

    for captions in (1, 4):
        tracemalloc.start()
        kept = [record(make_sample(i, seed=0, captions_per_image=captions, parallel_fraction=0.5, image_size=32),
                       "es", "train") for i in range(300)]
        used = tracemalloc.get_traced_memory()[0]
        tracemalloc.stop()
        assert len(kept) == 300 and used / 300 * 2 <= RECORD_BYTES + CAPTION_BYTES * captions


def test_the_bootstrap_estimate_bounds_what_the_resampling_allocates():
    from eval.stats import bootstrap_bytes, resample_indices

    assert resample_indices(50, 200).nbytes <= bootstrap_bytes(200, 50)
