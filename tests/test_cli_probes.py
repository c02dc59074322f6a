"""Bad input and interruptions, probed the way a hostile but realistic user would try them, on the
four CLIs (`accelerate launch train.py`, `python -m translate`, `python -m eval`,
`python -m data_prep`).

Every probe runs the CLI's `main(argv)` (stdout and stderr captured at the file descriptors) and
asserts the exit code (2 for bad input, 130 for Ctrl-C), that stderr is exactly one line, starting
with `error:` (or `interrupted` for Ctrl-C), with no traceback, and — where the probe puts
something at risk — that no output was lost or opened where it must not be. A few probes are run
again as real subprocesses (and one with a real SIGINT) to show the process behaves the same.

`GROUNDMT_PROBE_TABLE=docs/reliability.md python -m pytest tests/test_cli_probes.py -p no:xdist`
rewrites the probe table in docs/reliability.md from the actual outputs of this run.
"""
from __future__ import annotations

import json
import importlib
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import datasets
import pytest
import torch
from PIL import Image
from torch_threads import one_thread  # noqa: F401

import data_prep.__main__ as data_prep_cli
import eval.__main__ as eval_cli
import training
import translate.__main__ as translate_cli
from data_prep.builders.files import OUTSIDE
from data_prep.errors import InputError, run_command
from data_prep.locks import LOCK_FILE

pytestmark = pytest.mark.usefixtures("one_thread")
ROOT = Path(__file__).resolve().parents[1]
MAINS = {"translate": translate_cli.main, "eval": eval_cli.main, "data_prep": data_prep_cli.main, "train": training.main}
COMMANDS = {"train": "accelerate launch train.py"}  # how the table shows a tool's command line
TABLE_BEGIN, TABLE_END = "<!-- cli-probes:begin -->", "<!-- cli-probes:end -->"
RESULTS: list[dict] = []


class Env:
    """Paths a probe works with: `tmp` (its own folder), the session's trained `run` and its `data`."""

    def __init__(self, tmp: Path, run: Path, data: Path):
        self.tmp, self.run, self.data = tmp, run, data

    def file(self, name: str, content: str | bytes) -> Path:
        path = self.tmp / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
        return path

    def damaged_run(self, relative: str) -> Path:
        """A copy of the session run whose `model/<relative>` is cut to half its length."""
        copy = self.tmp / "run"
        shutil.copytree(self.run / "model", copy / "model")
        shutil.copy(self.run / "config.json", copy / "config.json")
        target = copy / "model" / relative
        target.write_bytes(target.read_bytes()[: target.stat().st_size // 2])
        return copy

    def damaged_data(self) -> Path:
        """A copy of the session dataset whose test arrow file is cut to half its length."""
        copy = self.tmp / "data"
        shutil.copytree(self.data, copy, ignore=shutil.ignore_patterns("tokenizers"))
        arrow = next((copy / "test").glob("*.arrow"))
        arrow.write_bytes(arrow.read_bytes()[: arrow.stat().st_size // 2])
        return copy

    def images(self, names: list[str]) -> Path:
        folder = self.tmp / "images"
        folder.mkdir(exist_ok=True)
        for name in names:
            Image.new("RGB", (16, 16), "red").save(folder / name)
        return folder

    def unwritable(self) -> Path:
        """A folder location the process cannot create or write (root ignores permission bits)."""
        if os.geteuid() == 0:
            if os.access("/sys", os.W_OK) and _can_create("/sys"):
                pytest.skip("no unwritable location on this machine")
            return Path("/sys/groundmt-probe")
        locked = self.tmp / "locked"
        locked.mkdir()
        locked.chmod(0o555)
        return locked / "out"


def _can_create(folder: str) -> bool:
    try:
        os.close(os.open(Path(folder) / ".groundmt-probe", os.O_CREAT | os.O_WRONLY))
        os.unlink(Path(folder) / ".groundmt-probe")
        return True
    except OSError:
        return False


@dataclass(frozen=True)
class Probe:
    """One bad input: the CLI (`tool`), its arguments, the expected exit code and message (a regex
    searched in the single stderr line), and optional setup / patch / check that nothing was lost."""

    name: str
    tool: str
    argv: Callable[[Env], list[str]]
    code: int
    message: str
    setup: Callable[[Env], None] | None = None
    patch: Callable[[Env, pytest.MonkeyPatch], None] | None = None
    kept: Callable[[Env], None] | None = None
    needs_no_cuda: bool = False


def _owner(target: str) -> tuple[object, str]:
    """`module:Attr.name` -> (the object holding `name`, `name`)."""
    module, _, attrs = target.partition(":")
    *path, name = attrs.split(".")
    owner = importlib.import_module(module)
    for attr in path:
        owner = getattr(owner, attr)
    return owner, name


def forbid(target: str, what: str) -> Callable[[Env, pytest.MonkeyPatch], None]:
    """A patch making `target` (`module:attr`) fail the test if called: the probe must stop before that work."""
    def patch(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
        def called(*args, **kwargs):
            raise AssertionError(f"{what} before the bad input was reported")
        monkeypatch.setattr(*_owner(target), called)
    return patch


def interrupt(target: str, after: int = 0) -> Callable[[Env, pytest.MonkeyPatch], None]:
    """A patch raising KeyboardInterrupt (Ctrl-C) on call number `after` + 1 of `target` (`module:attr`)."""
    def patch(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
        owner, name = _owner(target)
        real, calls = getattr(owner, name), []

        def wrapped(*args, **kwargs):
            if len(calls) == after:
                raise KeyboardInterrupt
            calls.append(1)
            return real(*args, **kwargs)
        monkeypatch.setattr(owner, name, wrapped)
    return patch


# -- the probes ------------------------------------------------------------------------------------
def text(env: Env, *extra: str) -> list[str]:
    return ["text", "--run", str(env.run), *extra]


def corpus(env: Env, *extra: str, data: Path | None = None, out: Path | None = None) -> list[str]:
    return ["corpus", "--run", str(env.run), "--data-dir", str(data or env.data), "--out",
            str(out or env.tmp / "corpus"), "--quiet", *extra]


def captions_corpus(env: Env, lines: list[dict | str]) -> list[str]:
    images = env.tmp / "images"
    images.mkdir(exist_ok=True)
    captions = env.file("captions.jsonl", "".join((json.dumps(x) if isinstance(x, dict) else x) + "\n"
                                                  for x in lines))
    return ["corpus", "--run", str(env.run), "--images", str(images), "--captions", str(captions),
            "--out", str(env.tmp / "corpus"), "--quiet"]


def escaping_captions(env: Env) -> list[str]:
    """Captions naming files outside --images (each a real, readable image)."""
    Image.new("RGB", (16, 16), "blue").save(env.tmp / "secret.png")
    return captions_corpus(env, [{"file_name": "../secret.png", "caption": "un secreto"},
                                 {"file_name": str(env.tmp / "secret.png"), "caption": "ruta absoluta"},
                                 {"file_name": "../../../../etc/passwd", "caption": "contraseñas"}])


def spy_on_image_open(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    """Record every file PIL opens (in env.opened) to show that escaping paths are never opened."""
    real, env.opened = Image.open, []

    def spy(fp, *args, **kwargs):
        env.opened.append(str(fp))
        return real(fp, *args, **kwargs)
    monkeypatch.setattr(Image, "open", spy)


def check_escapes_reported(env: Env) -> None:
    report = [json.loads(line) for line in (env.tmp / "corpus" / "input_report.jsonl").read_text().splitlines()]
    assert [r["reason"] for r in report] == [OUTSIDE] * 3
    assert not any("secret" in p or "passwd" in p for p in env.opened), env.opened


def check_all_skipped_report(env: Env) -> None:
    report = [json.loads(line) for line in (env.tmp / "corpus" / "input_report.jsonl").read_text().splitlines()]
    assert [(r["line"], r["reason"]) for r in report] == [(1, "missing image"), (2, "not valid JSON (Expecting value)"),
                                                          (3, "no file_name")]


def unchanged(name: str, content: str) -> Callable[[Env], None]:
    def check(env: Env) -> None:
        assert (env.tmp / name).read_text() == content, f"{name} was changed"
    return check


def absent(name: str) -> Callable[[Env], None]:
    def check(env: Env) -> None:
        assert not (env.tmp / name).exists(), f"{name} was created"
    return check


def other_corpus(env: Env) -> None:
    """A corpus of another input already in --out (its progress marker names another fingerprint)."""
    out = env.tmp / "corpus"
    out.mkdir()
    (out / "corpus.jsonl").write_text('{"id": "a#0"}\n')
    (out / "progress.json").write_text(json.dumps({"fingerprint": {"other": 1}, "records": 1, "bytes": 14}))


def check_partial_corpus(env: Env) -> None:
    out = env.tmp / "corpus"
    marker = json.loads((out / "progress.json").read_text())
    lines = (out / "corpus.jsonl").read_text(encoding="utf-8").splitlines()
    assert marker["records"] == len(lines) == 8 and marker["bytes"] == (out / "corpus.jsonl").stat().st_size


def built_dataset(env: Env) -> None:
    """A dataset from an earlier build at TMP/ds (8 synthetic images)."""
    assert data_prep_cli.main(["synthetic", "--images", "8", "--image-size", "16", "--quiet",
                               "--out", str(env.tmp / "ds")]) == 0
    env.before = datasets.load_from_disk(str(env.tmp / "ds"))["train"]["image_id"]


def dataset_intact(env: Env) -> None:
    assert datasets.load_from_disk(str(env.tmp / "ds"))["train"]["image_id"] == env.before


def imagefolder(env: Env, metadata_name: str, content: str | bytes) -> list[str]:
    env.file(f"folder/{metadata_name}", content)
    return ["imagefolder", "--lang", "es", "--data-dir", str(env.tmp / "folder"), "--out", str(env.tmp / "ds"),
            "--quiet"]


def escaping_metadata(env: Env) -> list[str]:
    Image.new("RGB", (16, 16), "blue").save(env.tmp / "secret.png")
    rows = [{"file_name": name, "source": "un secreto", "english": "a secret"}
            for name in ("../secret.png", str(env.tmp / "secret.png"), "../../../../etc/passwd")]
    return imagefolder(env, "metadata.jsonl", "".join(json.dumps(r) + "\n" for r in rows))


def hyp_ref(env: Env, hyp: str | bytes, ref: str | bytes, *extra: str, metrics: str = "bleu",
            bootstrap: str = "0") -> list[str]:
    return ["score", "--hyp", str(env.file("hyp.txt", hyp)), "--ref", str(env.file("ref.txt", ref)),
            "--metrics", metrics, "--bootstrap", bootstrap, "--out", str(env.tmp / "s.json"), *extra]


THREE = "a red circle\ntwo blue squares\na green cross\n"
def config_run(env: Env, yaml_text: str) -> list[str]:
    return ["--config", str(env.file("options.yaml", yaml_text)), "--out", str(env.tmp / "run")]


def copy_run(env: Env) -> None:
    shutil.copytree(env.run, env.tmp / "copy")
    env.before = {p: p.read_bytes() for p in (env.tmp / "copy").rglob("*") if p.is_file()}


def run_untouched(env: Env) -> None:
    after = {p: p.read_bytes() for p in (env.tmp / "copy").rglob("*") if p.is_file()}
    # not a byte written: config.json, run_id, metrics, checkpoints as they were (the lock names its last owner)
    assert {p: b for p, b in after.items() if p.name != LOCK_FILE} == \
        {p: b for p, b in env.before.items() if p.name != LOCK_FILE}


def damaged_copy(change: Callable[[dict], None] | None = None, text: Callable[[str], str] | None = None):
    """The session run copied, its config.json changed by `change` (a dict edit) or `text`."""
    def setup(env: Env) -> None:
        config = env.run / "config.json"
        shutil.copytree(env.run, env.tmp / "copy")
        target = env.tmp / "copy" / "config.json"
        if text is not None:
            target.write_text(text(config.read_text()))
        elif change is not None:
            values = json.loads(config.read_text())
            change(values)
            target.write_text(json.dumps(values))
        else:
            target.unlink()
        env.before = {p: p.read_bytes() for p in (env.tmp / "copy").rglob("*") if p.is_file()}
    return setup


def resume_copy(env: Env, *extra: str) -> list[str]:
    return ["--out", str(env.tmp / "copy"), "--resume", *extra]


def train_new(env: Env, *extra: str) -> list[str]:
    return ["--out", str(env.tmp / "run"), "--cache-dir", str(env.tmp / "cache"), *extra]


NO_DATA = forbid("training.runs:open_data", "the data was built")


# -- issue 23: outputs, locks, non-finite weights, typed read-backs, limits ----------------------------
NOTES = "my notes\n"


def notes_in(name: str) -> Callable[[Env], None]:
    """A folder `name` holding a file of the user (which nothing may delete)."""
    def setup(env: Env) -> None:
        env.file(f"{name}/notes.txt", NOTES)
    return setup


def only_notes(name: str) -> Callable[[Env], None]:
    def check(env: Env) -> None:
        assert sorted(p.name for p in (env.tmp / name).iterdir()) == ["notes.txt"], list((env.tmp / name).iterdir())
        assert (env.tmp / name / "notes.txt").read_text() == NOTES
    return check


def photos(env: Env, rows: list[dict] | None = None, name: str = "metadata.jsonl", raw: bytes | None = None) -> Path:
    """An image folder with three images and a metadata file (`rows`, or `raw` bytes)."""
    folder = env.tmp / "photos"
    folder.mkdir(exist_ok=True)
    for image, color in (("a.png", "red"), ("b.png", "blue"), ("c.png", "green")):
        Image.new("RGB", (16, 16), color).save(folder / image)
    rows = rows or [{"file_name": "a.png", "source": "una casa", "english": "a house"}]
    (folder / name).write_bytes(raw if raw is not None else "".join(json.dumps(r) + "\n" for r in rows).encode())
    return folder


def photos_build(env: Env, *extra: str, out: Path | None = None, **kw) -> list[str]:
    return ["imagefolder", "--lang", "es", "--data-dir", str(photos(env, **kw)), "--quiet", "--out",
            str(out or env.tmp / "ds"), *extra]


def photos_intact(env: Env) -> None:
    assert sorted(p.name for p in (env.tmp / "photos").iterdir()) == ["a.png", "b.png", "c.png", "metadata.jsonl"]


def edited_run(env: Env, edit: Callable[[Path], None], source: Path | None = None) -> Path:
    """A copy of a run (the session run without its checkpoints, or `source`) changed by `edit`."""
    copy = env.tmp / "run"
    if not copy.exists():
        shutil.copytree(source or env.run, copy, ignore=shutil.ignore_patterns("checkpoints", "tensorboard"))
    edit(copy)
    return copy


def json_edit(relative: str, change: Callable[[dict], None]) -> Callable[[Path], None]:
    def edit(run: Path) -> None:
        path = run / relative
        data = json.loads(path.read_text())
        change(data)
        path.write_text(json.dumps(data))
    return edit


def truncate(relative: str, keep: int = 40) -> Callable[[Path], None]:
    def edit(run: Path) -> None:
        path = run / relative
        path.write_bytes(path.read_bytes()[:keep])
    return edit


def nan_weights(run: Path) -> None:
    """Every weight of the student's first 2-d tensor NaN: what a diverged run exports."""
    from safetensors.torch import load_file, save_file

    path = run / "model" / "student" / "model.safetensors"
    weights = load_file(path)
    name = next(k for k, v in weights.items() if v.dim() == 2)
    weights[name] = torch.full_like(weights[name], float("nan"))
    save_file(weights, path, metadata={"format": "pt"})


def scored_run(env: Env) -> Path:
    """A run with eval/scores.json and eval/hyp.txt (the session run with a small score file)."""
    def add_scores(run: Path) -> None:
        (run / "eval").mkdir(exist_ok=True)
        hyps, refs = ["a red circle", "two blue squares"], [["a red circle"], ["two blue squares"]]
        (run / "eval" / "hyp.txt").write_text("".join(h + "\n" for h in hyps))
        m = {"score": 50.0, "signature": "x"}
        corpus = {"corpus": {"P": 0.5, "R": 0.5, "F": 0.5}}
        scores = {"n_sentences": 2, "target_lang": "en", "versions": {}, "bootstrap": None,
                  "metrics": {"bleu": m, "chrf": m, "bertscore": corpus, "lisascore": corpus,
                              "retrieval": {"translation": {"in_batch": {"b2a": 0.5, "b2a_hits": [1.0, 0.0]}}}},
                  "sentences": [{"hypothesis": h, "references": r, "bleu": 50.0, "chrf": 50.0, "bertscore.F": 0.5,
                                 "lisascore.F": 0.5} for h, r in zip(hyps, refs)]}
        (run / "eval" / "scores.json").write_text(json.dumps(scores))
    return edited_run(env, add_scores)


def ablation_cell(env: Env, change: Callable[[dict], None]) -> list[str]:
    """An ablation folder whose one cell (ce, P = 0, seed 0) is already scored, with `change` applied
    to that run's scores.json (no training runs: a scored cell is not trained again)."""
    run = scored_run(env)
    json_edit("eval/scores.json", change)(run)
    cell = env.tmp / "ablation" / "runs" / "ce-p0-s0"
    cell.parent.mkdir(parents=True)
    run.rename(cell)
    env.file("ablation/plan.json", json.dumps({"argv": [], "runs": ["ce-p0-s0"]}))
    return ["ablation", "--out", str(env.tmp / "ablation"), "--systems", "ce", "--fractions", "0", "--seeds", "1"]


def hold_lock(name: str, command: str) -> Callable[[Env], None]:
    """Another owner holds the advisory lock of folder `name` (a second open file: flock treats it as
    another process)."""
    def setup(env: Env) -> None:
        from data_prep.locks import FolderLock

        env.lock = FolderLock(env.tmp / name, command).acquire()
    return setup


def release_lock(check: Callable[[Env], None] | None = None) -> Callable[[Env], None]:
    def kept(env: Env) -> None:
        env.lock.release()
        if check is not None:
            check(env)
    return kept


def captions_raw(env: Env, content: bytes, name: str = "captions.jsonl") -> list[str]:
    images = env.images(["a.png"])
    return ["corpus", "--run", str(env.run), "--images", str(images), "--captions", str(env.file(name, content)),
            "--out", str(env.tmp / "corpus"), "--quiet"]


def only_files(env: Env, name: str, names: list[str]) -> None:
    assert sorted(p.name for p in (env.tmp / name).iterdir()) == sorted(names)


def notes_run(run: Path) -> None:
    """The run's analysis/ folder holds a file of the user."""
    (run / "analysis").mkdir()
    (run / "analysis" / "notes.txt").write_text(NOTES)


PROBES = [
    # translate text
    Probe("text: --batch-size -1", "translate", lambda e: text(e, "--batch-size", "-1", "una casa"), 2,
          r"argument --batch-size: must be a positive integer, got -1"),
    Probe("text: --batch-size 0", "translate", lambda e: text(e, "--batch-size", "0", "una casa"), 2,
          r"argument --batch-size: must be a positive integer, got 0"),
    Probe("text: --num-beams 0", "translate", lambda e: text(e, "--num-beams", "0", "una casa"), 2,
          r"argument --num-beams: must be a positive integer"),
    Probe("text: --out is a directory (checked before translating)", "translate",
          lambda e: text(e, "--out", str(e.tmp / "outdir"), "una casa"), 2, r"--out .*outdir is a directory",
          setup=lambda e: (e.tmp / "outdir").mkdir(), patch=forbid("translate.translator:Translator.from_run",
                                                                  "the model was loaded")),
    Probe("text: --out inside a file", "translate", lambda e: text(e, "--out", str(e.tmp / "plain" / "x.en"), "hola"),
          2, r"plain is a file, not a folder", setup=lambda e: e.file("plain", "keep\n"),
          patch=forbid("translate.translator:Translator.from_run", "the model was loaded"),
          kept=unchanged("plain", "keep\n")),
    Probe("text: --file is a directory", "translate", lambda e: text(e, "--file", str(e.tmp)), 2,
          r"--file .* is a directory, expected a file"),
    Probe("text: --file does not exist", "translate", lambda e: text(e, "--file", str(e.tmp / "none.es")), 2,
          r"--file .*none.es does not exist"),
    Probe("text: --file with a line that is not UTF-8", "translate",
          lambda e: text(e, "--file", str(e.file("in.es", b"una casa\ncami\xf3n rojo\n"))), 2,
          r"in.es:2: not valid UTF-8 \(byte 0xf3 at column 5\)"),
    Probe("text: sentences and --file together", "translate",
          lambda e: text(e, "hola", "--file", str(e.file("in.es", "una casa\n"))), 2, r"not both"),
    Probe("text: --device cuda on a machine without CUDA", "translate", lambda e: text(e, "--device", "cuda", "hola"),
          2, r"argument --device: cuda: CUDA is not available on this machine", needs_no_cuda=True),
    Probe("text: --device is not a device", "translate", lambda e: text(e, "--device", "gpu0", "hola"), 2,
          r"'gpu0' is not a torch device"),
    Probe("text: --run is not a run", "translate", lambda e: ["text", "--run", str(e.tmp), "hola"], 2,
          r"holds no trained model .*accelerate launch train.py --out RUN"),
    Probe("text: truncated RUN/model/student/model.safetensors", "translate",
          lambda e: ["text", "--run", str(e.damaged_run("student/model.safetensors")), "hola"], 2,
          r"student/model.safetensors: damaged model file \(Error while deserializing header"),
    Probe("text: truncated RUN/model/clip/open_clip_model.pt", "translate",
          lambda e: ["text", "--run", str(e.damaged_run("clip/open_clip_model.pt")), "hola"], 2,
          r"clip/open_clip_model.pt: damaged model file \(PytorchStreamReader failed"),
    Probe("text: Ctrl-C while translating (an earlier --out is kept)", "translate",
          lambda e: text(e, "--out", str(e.tmp / "out.en"), "--overwrite", "una casa"), 130, r"^interrupted$",
          setup=lambda e: e.file("out.en", "earlier\n"), patch=interrupt("translate.translator:Translator.translate"),
          kept=unchanged("out.en", "earlier\n")),
    Probe("text: --rerank-beta -1", "translate", lambda e: text(e, "--rerank", "clip", "--rerank-beta", "-1", "hola"),
          2, r"argument --rerank-beta: must be a finite number >= 0, got -1.0"),
    Probe("text: --rerank-size 0", "translate", lambda e: text(e, "--rerank", "clip", "--rerank-size", "0", "hola"),
          2, r"argument --rerank-size: must be a positive integer, got 0"),
    Probe("text: --rerank bleu", "translate", lambda e: text(e, "--rerank", "bleu", "hola"), 2,
          r"argument --rerank: invalid choice: 'bleu' \(choose from 'clip'\)"),
    Probe("text: --rerank-size without --rerank", "translate", lambda e: text(e, "--rerank-size", "4", "hola"), 2,
          r"a rerank size or beta takes effect only with reranking \(--rerank clip\)",
          patch=forbid("translate.translator:Translator.from_run", "the model was loaded")),
    Probe("text: --rerank clip without images", "translate", lambda e: text(e, "--rerank", "clip", "hola"), 2,
          r"--rerank clip needs one image per sentence: --images IMG \[IMG ...\] or --images-file LIST",
          patch=forbid("translate.translator:Translator.from_run", "the model was loaded")),
    Probe("text: --images without --rerank", "translate",
          lambda e: text(e, "hola", "--images", str(e.images(["a.png"]) / "a.png")), 2,
          r"--images and --images-file are used only with --rerank clip"),
    Probe("text: --rerank clip with 2 images for 1 sentence", "translate",
          lambda e: text(e, "hola", "--rerank", "clip", "--images", *(str(e.images(["a.png", "b.png"]) / n)
                                                                       for n in ("a.png", "b.png"))), 2,
          r"--images gives 2 image\(s\) for 1 input line\(s\)",
          patch=forbid("translate.translator:Translator.from_run", "the model was loaded")),
    Probe("text: a sentence put after --images (read as an image path)", "translate",
          lambda e: text(e, "--rerank", "clip", "--images", str(e.images(["a.png"]) / "a.png"), "una casa"), 2,
          r"--images una casa does not exist",
          patch=forbid("translate.translator:Translator.from_run", "the model was loaded")),
    Probe("text: --images-file with a blank line beside a sentence", "translate",
          lambda e: text(e, "--rerank", "clip", "--file", str(e.file("in.es", "una casa\ndos perros\n")),
                         "--images-file", str(e.file("images/list.txt", "a.png\n\n"))), 2,
          r"--images-file .*list.txt: no image for input line 2 \(1 sentence\(s\) without one\)",
          setup=lambda e: e.images(["a.png"]),
          patch=forbid("translate.translator:Translator.from_run", "the model was loaded")),
    Probe("text: --images names a file that is not an image", "translate",
          lambda e: text(e, "hola", "--rerank", "clip", "--images", str(e.file("fake.png", "not a picture\n"))), 2,
          r"fake.png: cannot read the image \(cannot identify image file"),
    Probe("text: --num-beams 2 --rerank-size 3", "translate",
          lambda e: text(e, "hola", "--rerank", "clip", "--num-beams", "2", "--rerank-size", "3"), 2,
          r"got --num-beams 2 and --rerank-size 3; give one of them, or equal values",
          patch=forbid("translate.translator:Translator.from_run", "the model was loaded")),
    # translate text: outputs, non-finite weights, typed read-backs, limits (issue 23)
    Probe("text: --out is the --file", "translate",
          lambda e: text(e, "--file", str(e.file("in.es", "una casa\n")), "--out", str(e.tmp / "in.es")), 2,
          r"--out .*in.es is the input --file .*in.es: writing it would destroy the input",
          patch=forbid("translate.translator:Translator.from_run", "the model was loaded"),
          kept=unchanged("in.es", "una casa\n")),
    Probe("text: --out is a file it did not write", "translate",
          lambda e: text(e, "--out", str(e.file("notes.txt", NOTES)), "una casa"), 2,
          r"--out .*notes.txt already exists and was not written by this command: pass --overwrite",
          patch=forbid("translate.translator:Translator.from_run", "the model was loaded"),
          kept=unchanged("notes.txt", NOTES)),
    Probe("text: a run whose weights are NaN (a diverged run)", "translate",
          lambda e: ["text", "--run", str(edited_run(e, lambda r: nan_weights(r))), "una casa"], 2,
          r"the model's weights are not finite \(student\..*: \d+ of \d+ values are NaN or infinite\): the run "
          r"diverged"),
    Probe("text: system.json \"tau\": \"abc\"", "translate",
          lambda e: ["text", "--run", str(edited_run(e, json_edit("model/system.json", lambda d: d.update(tau="abc")))),
                     "una casa"], 2, r"model/system.json: field \"tau\": expected a number, found a JSON string"),
    Probe("text: system.json without \"clip\"", "translate",
          lambda e: ["text", "--run", str(edited_run(e, json_edit("model/system.json", lambda d: d.pop("clip")))),
                     "una casa"], 2, r"model/system.json: field \"clip\" is missing"),
    Probe("text: system.json truncated", "translate",
          lambda e: ["text", "--run", str(edited_run(e, truncate("model/system.json"))), "una casa"], 2,
          r"model/system.json: not valid JSON .*truncated or damaged"),
    Probe("text: config.json truncated", "translate",
          lambda e: ["text", "--run", str(edited_run(e, truncate("config.json", 60))), "una casa"], 2,
          r"run/config.json: not valid JSON .*truncated or damaged"),
    Probe("text: config.json \"run_id\": 7", "translate",
          lambda e: ["text", "--run", str(edited_run(e, json_edit("config.json", lambda d: d.update(run_id=7)))),
                     "una casa"], 2, r"config.json: field \"run_id\": expected a string, found a JSON number"),
    Probe("text: a run without model/student/config.json", "translate",
          lambda e: ["text", "--run", str(edited_run(e, lambda r: (r / "model/student/config.json").unlink())),
                     "una casa"], 2, r"model is incomplete: student/config.json missing"),
    Probe("text: --num-beams 10000 --batch-size 10000 on 10000 lines (estimated before loading)", "translate",
          lambda e: text(e, "--num-beams", "10000", "--batch-size", "10000", "--file",
                         str(e.file("in.es", "una casa roja\n" * 10000))), 2,
          r"10000 beam\(s\) x 10000 sentence\(s\) per batch needs about .* of memory, more than the .* available",
          patch=forbid("translate.translator:Translator.from_run", "the model was loaded")),
    Probe("text: a sentence argument with a byte that is not UTF-8", "translate",
          lambda e: text(e, "una casa", os.fsdecode(b"cami\xf3n rojo")), 2,
          r"sentence argument 2 is not valid UTF-8 \(byte 0xf3 at column 5\)",
          patch=forbid("translate.translator:Translator.from_run", "the model was loaded")),
    # translate corpus
    Probe("corpus: --batch-size -1", "translate", lambda e: corpus(e, "--batch-size", "-1"), 2,
          r"argument --batch-size: must be a positive integer, got -1", kept=absent("corpus")),
    Probe("corpus: --out is a file", "translate", lambda e: corpus(e, out=e.tmp / "plain"), 2,
          r"--out .*plain is a file, expected a folder", setup=lambda e: e.file("plain", "keep\n"),
          patch=forbid("translate.translator:Translator.from_run", "the model was loaded"),
          kept=unchanged("plain", "keep\n")),
    Probe("corpus: --out cannot be written", "translate",
          lambda e: corpus(e, out=e.unwritable()), 2,
          r"--out .*: cannot write in",
          patch=forbid("translate.translator:Translator.from_run", "the model was loaded")),
    Probe("corpus: --out holds a corpus of another input", "translate", corpus, 2,
          r"holds a corpus of another run or input .* pass --restart", setup=other_corpus,
          kept=unchanged("corpus/corpus.jsonl", '{"id": "a#0"}\n')),
    Probe("corpus: --data-dir with a truncated arrow file", "translate", lambda e: corpus(e, data=e.damaged_data()),
          2, r"test/data-00000-of-00001.arrow: damaged dataset file",
          patch=forbid("translate.translator:Translator.from_run", "the model was loaded")),
    Probe("corpus: --data-dir is not a dataset", "translate", lambda e: corpus(e, data=e.tmp), 2,
          r"no dataset at .* \(no dataset_dict.json\)"),
    Probe("corpus: --split the dataset lacks", "translate", lambda e: corpus(e, "--split", "dev"), 2,
          r"has no split 'dev'"),
    Probe("corpus: --images without --captions", "translate",
          lambda e: ["corpus", "--run", str(e.run), "--images", str(e.tmp), "--out", str(e.tmp / "c")], 2,
          r"--images and --captions go together"),
    Probe("corpus: --min-grounding 2", "translate", lambda e: corpus(e, "--min-grounding", "2"), 2,
          r"argument --min-grounding: must be a number in \[-1, 1\]"),
    Probe("corpus: --rerank-beta nan", "translate", lambda e: corpus(e, "--rerank", "clip", "--rerank-beta", "nan"), 2,
          r"argument --rerank-beta: must be a finite number >= 0, got nan", kept=absent("corpus")),
    Probe("corpus: --rerank-beta without --rerank", "translate", lambda e: corpus(e, "--rerank-beta", "0.5"), 2,
          r"a rerank size or beta takes effect only with reranking", kept=absent("corpus"),
          patch=forbid("translate.translator:Translator.from_run", "the model was loaded")),
    Probe("corpus: captions naming ../secret.png, an absolute path, ../../../../etc/passwd", "translate",
          escaping_captions, 2, r"nothing to translate: .*all 3 lines skipped: \{'path outside the image folder': 3\}",
          patch=spy_on_image_open, kept=check_escapes_reported),
    Probe("corpus: every caption line skipped", "translate",
          lambda e: captions_corpus(e, [{"file_name": "missing.png", "caption": "uno"}, '{"file_name": ',
                                        {"caption": "sin archivo"}]), 2,
          r"nothing to translate: .*all 3 lines skipped.*see .*input_report.jsonl", kept=check_all_skipped_report),
    Probe("corpus: Ctrl-C after two batches (progress marker kept)", "translate",
          lambda e: corpus(e, "--batch-size", "4"), 130,
          r"^interrupted: 8 records are safe in .*corpus.jsonl; rerun the same command to resume$",
          patch=interrupt("translate.corpus:translate_batch", after=2), kept=check_partial_corpus),
    # translate corpus: outputs, lock, typed read-backs, caption types (issue 23)
    Probe("corpus: --out is a folder holding other files", "translate", corpus, 2,
          r"--out .*corpus is not empty and does not hold a corpus written by python -m translate corpus",
          setup=notes_in("corpus"), patch=forbid("translate.translator:Translator.from_run", "the model was loaded"),
          kept=only_notes("corpus")),
    Probe("corpus: --out in use by another process", "translate", corpus, 2,
          r"corpus is in use by process \d+ \(python -m translate corpus\); wait until it ends",
          setup=hold_lock("corpus", "python -m translate corpus"),
          patch=forbid("translate.translator:Translator.from_run", "the model was loaded"),
          kept=release_lock(lambda e: only_files(e, "corpus", [".groundmt.lock"]))),
    Probe("corpus: progress.json \"records\": \"many\"", "translate", corpus, 2,
          r"corpus/progress.json: field \"records\": expected an integer, found a JSON string; pass --restart",
          setup=lambda e: (e.file("corpus/corpus.jsonl", '{"id": "a#0"}\n'),
                           e.file("corpus/progress.json", json.dumps({"fingerprint": {}, "records": "many",
                                                                      "bytes": 14}))),
          kept=unchanged("corpus/corpus.jsonl", '{"id": "a#0"}\n')),
    Probe("corpus: config.json \"lang\": [\"es\"]", "translate",
          lambda e: ["corpus", "--run", str(edited_run(e, json_edit("config.json", lambda d: d.update(lang=["es"])))),
                     "--data-dir", str(e.data), "--out", str(e.tmp / "corpus"), "--quiet"], 2,
          r"config.json: field \"lang\": expected a string, found a JSON array", kept=absent("corpus")),
    Probe("corpus: captions given as a JSON list and a number", "translate",
          lambda e: captions_raw(e, b'{"file_name": "a.png", "caption": ["una", "casa"]}\n'
                                    b'{"file_name": "a.png", "caption": 5}\n'), 2,
          r"all 2 lines skipped: \{'field \"caption\": expected a string, found a JSON array': 1, 'field \"caption\": "
          r"expected a string, found a JSON number': 1\}"),
    Probe("corpus: a caption with a lone surrogate (JSON escape)", "translate",
          lambda e: captions_raw(e, b'{"file_name": "a.png", "caption": "una \\ud800 casa"}\n'), 2,
          r"all 1 lines skipped: \{'text that is not valid Unicode \(a lone surrogate\)': 1\}"),
    Probe("corpus: a CSV with an unterminated quote (the next row is still read)", "translate",
          lambda e: captions_raw(e, b'file_name,caption\na.png,"una casa\nmissing.png,un perro\n', "captions.csv"),
          2, r"all 2 lines skipped: \{'unterminated quote': 1, 'missing image': 1\}"),
    # eval
    Probe("eval score: --hyp with a line that is not UTF-8", "eval",
          lambda e: hyp_ref(e, b"a red circle\ncaf\xe9 au lait\n", "a red circle\ncoffee\n"), 2,
          r"hyp.txt:2: not valid UTF-8 \(byte 0xe9 at column 4\)"),
    Probe("eval score: --hyp and --ref of different lengths", "eval", lambda e: hyp_ref(e, THREE, "a red circle\n"),
          2, r"--hyp .*hyp.txt has 3 lines but --ref .*ref.txt has 1: the files must be line-aligned"),
    Probe("eval score: a U+2028 inside a line is not a line break", "eval",
          lambda e: hyp_ref(e, THREE, "a red\u2028circle\ntwo blue squares\n"), 2,
          r"--hyp .* has 3 lines but --ref .* has 2"),
    Probe("eval score: --hyp does not exist", "eval",
          lambda e: ["score", "--hyp", str(e.tmp / "none.txt"), "--ref", str(e.tmp / "none.txt"), "--out",
                     str(e.tmp / "s.json")], 2, r"--hyp .*none.txt does not exist"),
    Probe("eval score: --ref is a directory", "eval",
          lambda e: ["score", "--hyp", str(e.file("hyp.txt", THREE)), "--ref", str(e.tmp), "--out",
                     str(e.tmp / "s.json")], 2, r"--ref .* is a directory, expected a file"),
    Probe("eval score: --out is a directory (checked before scoring)", "eval",
          lambda e: hyp_ref(e, THREE, THREE)[:-2] + ["--out", str(e.tmp)], 2, r"--out .* is a directory",
          patch=forbid("eval.score:score", "scoring ran")),
    Probe("eval score: --batch-size 0", "eval", lambda e: hyp_ref(e, THREE, THREE, "--batch-size", "0"), 2,
          r"argument --batch-size: must be a positive integer, got 0"),
    Probe("eval score: --bootstrap -1", "eval", lambda e: hyp_ref(e, THREE, THREE, bootstrap="-1"), 2,
          r"argument --bootstrap: must be an integer >= 0, got -1"),
    Probe("eval score: unknown metric", "eval", lambda e: hyp_ref(e, THREE, THREE, metrics="bleu,meteor"), 2,
          r"unknown or no metric\(s\) \['meteor'\]"),
    Probe("eval score: retrieval without --images", "eval", lambda e: hyp_ref(e, THREE, THREE, metrics="retrieval"),
          2,
          r"the retrieval metric needs --images"),
    Probe("eval score: --device cuda on a machine without CUDA", "eval",
          lambda e: hyp_ref(e, THREE, THREE, "--device", "cuda"), 2, r"CUDA is not available", needs_no_cuda=True),
    Probe("eval score: Ctrl-C while scoring (an earlier --out is kept)", "eval",
          lambda e: hyp_ref(e, THREE, THREE, "--overwrite"),
          130, r"^interrupted$", setup=lambda e: e.file("s.json", "{}\n"), patch=interrupt("eval.score:score"),
          kept=unchanged("s.json", "{}\n")),
    Probe("eval report: a folder that is not a run", "eval",
          lambda e: ["report", str(e.tmp), "--out", str(e.tmp / "r.html")], 2,
          r"is not a run directory: it holds none of config.json, metrics.jsonl, eval/scores.json",
          kept=absent("r.html")),
    Probe("eval report: a run that does not exist", "eval",
          lambda e: ["report", str(e.tmp / "nowhere"), "--out", str(e.tmp / "r.html")], 2,
          r"run directory .*nowhere does not exist"),
    Probe("eval report: --out is not .html", "eval", lambda e: ["report", str(e.run), "--out", str(e.tmp / "r.pdf")],
          2, r"--out .*r.pdf should be an .html file"),
    # eval: outputs, lock, typed read-backs, limits, ablation options (issue 23)
    Probe("eval score: --out is the --ref file", "eval",
          lambda e: hyp_ref(e, THREE, THREE)[:-2] + ["--out", str(e.tmp / "ref.txt")], 2,
          r"--out .*ref.txt is the input --ref .*ref.txt: writing it would destroy the input",
          patch=forbid("eval.score:score", "scoring ran"), kept=unchanged("ref.txt", THREE)),
    Probe("eval score: --out is a symbolic link to the --ref file", "eval",
          lambda e: hyp_ref(e, THREE, THREE)[:-2] + ["--out", str(e.tmp / "link.json")], 2,
          r"--out .*link.json is the input --ref .*ref.txt",
          setup=lambda e: (e.tmp / "link.json").symlink_to(e.tmp / "ref.txt"),
          patch=forbid("eval.score:score", "scoring ran"), kept=unchanged("ref.txt", THREE)),
    Probe("eval score: --out is a file it did not write", "eval", lambda e: hyp_ref(e, THREE, THREE), 2,
          r"--out .*s.json already exists and is not a score file written by python -m eval score: pass --overwrite",
          setup=lambda e: e.file("s.json", '{"mine": 1}\n'), patch=forbid("eval.score:score", "scoring ran"),
          kept=unchanged("s.json", '{"mine": 1}\n')),
    Probe("eval score: --bootstrap 1000000000000", "eval", lambda e: hyp_ref(e, THREE, THREE, bootstrap="1000000000000"),
          2, r"--bootstrap 1000000000000 on 3 sentences needs about .* TiB of memory, more than the .* available",
          patch=forbid("eval.score:score", "scoring ran")),
    Probe("eval report: --out is an HTML file of the user", "eval",
          lambda e: ["report", str(e.run), "--out", str(e.file("mine.html", "<p>mine</p>\n"))], 2,
          r"--out .*mine.html already exists and is not a report written by python -m eval report: pass --overwrite",
          kept=unchanged("mine.html", "<p>mine</p>\n")),
    Probe("eval report: --out RUN/eval/scores.html (its .json would replace scores.json)", "eval",
          lambda e: ["report", str(scored_run(e)), "--out", str(e.tmp / "run" / "eval" / "scores.html"), "--overwrite"],
          2, r"--out .*run/eval/scores.json is the input .*run/eval/scores.json: writing it would destroy the input; "
             r"choose another --out \(the report writes scores.json beside scores.html\)",
          kept=absent("run/eval/scores.html")),
    Probe("eval report: config.json \"data_path\": 5", "eval",
          lambda e: ["report", str(edited_run(e, json_edit("config.json", lambda d: d.update(data_path=5)))), "--out",
                     str(e.tmp / "r.html")], 2, r"config.json: field \"data_path\": expected a string, found a "
                                               r"JSON number", kept=absent("r.html")),
    Probe("eval report: config.json truncated", "eval",
          lambda e: ["report", str(edited_run(e, truncate("config.json", 60))), "--out", str(e.tmp / "r.html")], 2,
          r"config.json: not valid JSON .*truncated or damaged", kept=absent("r.html")),
    Probe("eval report: scores.json \"metrics.bleu.score\": \"high\"", "eval",
          lambda e: ["report", str(e.tmp / "run"), "--out", str(e.tmp / "r.html")], 2,
          r"eval/scores.json: field \"metrics.bleu.score\": expected a number, found a JSON string",
          setup=lambda e: json_edit("eval/scores.json", lambda d: d["metrics"]["bleu"].update(score="high"))(
              scored_run(e)), kept=absent("r.html")),
    Probe("eval analyze: the analysis folder holds other files", "eval", lambda e: ["analyze", str(edited_run(e, notes_run))],
          2, r"the analysis folder .*run/analysis is not empty and does not hold an analysis written by",
          kept=lambda e: only_notes("run/analysis")(e)),
    Probe("eval analyze: a run whose weights are NaN", "eval",
          lambda e: ["analyze", str(edited_run(e, lambda r: nan_weights(r))), "--out", str(e.tmp / "a")], 2,
          r"the model's weights are not finite"),
    Probe("eval ablation: --out is a folder holding other files", "eval",
          lambda e: ["ablation", "--out", str(e.tmp / "ablation"), "--seeds", "1"], 2,
          r"--out .*ablation is not empty and does not hold an ablation folder", setup=notes_in("ablation"),
          patch=forbid("eval.ablation:run_grid", "training started"), kept=only_notes("ablation")),
    Probe("eval ablation: --out in use by another process", "eval",
          lambda e: ["ablation", "--out", str(e.tmp / "ablation"), "--seeds", "1"], 2,
          r"ablation is in use by process \d+ \(python -m eval ablation\)",
          setup=hold_lock("ablation", "python -m eval ablation"),
          patch=forbid("eval.ablation:run_grid", "training started"), kept=release_lock()),
    Probe("eval ablation: a run's scores.json \"metrics.chrf.score\": \"x\"", "eval",
          lambda e: ablation_cell(e, lambda d: d["metrics"]["chrf"].update(score="x")), 2,
          r"ce-p0-s0/eval/scores.json: field \"metrics.chrf.score\": expected a number, found a JSON string"),
    Probe("eval ablation: --seeds 0", "eval", lambda e: ["ablation", "--out", str(e.tmp / "a"), "--seeds", "0"], 2,
          r"argument --seeds: must be a positive integer, got 0", kept=absent("a")),
    Probe("eval ablation: --jobs 0", "eval", lambda e: ["ablation", "--out", str(e.tmp / "a"), "--jobs", "0"], 2,
          r"argument --jobs: must be a positive integer, got 0", kept=absent("a")),
    Probe("eval ablation: --fractions abc", "eval", lambda e: ["ablation", "--out", str(e.tmp / "a"), "--fractions",
                                                               "abc"], 2,
          r"argument --fractions: must be a number in \[0, 1\], got 'abc'", kept=absent("a")),
    Probe("eval ablation: --fractions 0,1.5", "eval",
          lambda e: ["ablation", "--out", str(e.tmp / "a"), "--fractions", "0,1.5"], 2,
          r"argument --fractions: must be a number in \[0, 1\], got 1.5", kept=absent("a")),
    Probe("eval ablation: --seeds 100000000000000", "eval",
          lambda e: ["ablation", "--out", str(e.tmp / "a"), "--seeds", "100000000000000"], 2,
          r"the grid would train \d+ runs \(--systems x --fractions x --seeds\); at most 10000",
          kept=absent("a")),
    Probe("eval ablation: --systems ce,bogus", "eval",
          lambda e: ["ablation", "--out", str(e.tmp / "a"), "--systems", "ce,bogus"], 2,
          r"--systems: unknown system\(s\) \['bogus'\]", kept=absent("a")),
    # data_prep
    Probe("data_prep imagefolder: metadata.jsonl holding a JSON array", "data_prep",
          lambda e: imagefolder(e, "metadata.jsonl", json.dumps([{"file_name": "a.png", "source": "x",
                                                                  "english": "y"}]) + "\n"), 2,
          r"metadata.jsonl:1: expected a JSON object, found a JSON array"),
    Probe("data_prep imagefolder: metadata.csv with a line that is not UTF-8", "data_prep",
          lambda e: imagefolder(e, "metadata.csv", b"file_name,source,english\na.png,una casa,a house\n"
                                                   b"b.png,cami\xf3n,truck\n"), 2,
          r"metadata.csv:3: not valid UTF-8"),
    Probe("data_prep imagefolder: file_name ../secret.png, an absolute path, ../../../../etc/passwd", "data_prep",
          escaping_metadata, 2, r"lists no usable image \(rows dropped: \{'path outside the image folder': 3\}\)",
          patch=spy_on_image_open, kept=lambda e: check_not_opened(e)),
    Probe("data_prep synthetic: --images -5", "data_prep", lambda e: ["synthetic", "--images", "-5", "--out",
                                                                      str(e.tmp / "ds")], 2,
          r"argument --images: must be a positive integer, got -5"),
    Probe("data_prep synthetic: --parallel-fraction 1.5", "data_prep",
          lambda e: ["synthetic", "--parallel-fraction", "1.5", "--out", str(e.tmp / "ds")], 2,
          r"argument --parallel-fraction: must be a number in \[0, 1\], got 1.5"),
    Probe("data_prep synthetic: --out is a file", "data_prep",
          lambda e: ["synthetic", "--images", "8", "--out", str(e.tmp / "plain")], 2,
          r"--out .*plain is a file, expected a folder", setup=lambda e: e.file("plain", "keep\n"),
          kept=unchanged("plain", "keep\n")),
    Probe("data_prep synthetic: Ctrl-C during a rebuild (the earlier dataset is kept)", "data_prep",
          lambda e: ["synthetic", "--images", "8", "--image-size", "16", "--seed", "1", "--quiet", "--overwrite",
                     "--out", str(e.tmp / "ds")], 130, r"^interrupted$", setup=built_dataset,
          patch=interrupt("datasets.arrow_writer:ArrowWriter.write", after=3), kept=dataset_intact),
    # data_prep: outputs, typed rows, limits (issue 23)
    Probe("data_prep synthetic: --out is a folder holding other files", "data_prep",
          lambda e: ["synthetic", "--images", "8", "--quiet", "--out", str(e.tmp / "notes")], 2,
          r"--out .*notes is not empty and does not hold a dataset built by python -m data_prep: choose a new or "
          r"empty folder", setup=notes_in("notes"), kept=only_notes("notes")),
    Probe("data_prep synthetic: --overwrite on a folder holding other files", "data_prep",
          lambda e: ["synthetic", "--images", "8", "--quiet", "--overwrite", "--out", str(e.tmp / "notes")], 2,
          r"is not empty and does not hold a dataset", setup=notes_in("notes"), kept=only_notes("notes")),
    Probe("data_prep synthetic: --out holds a dataset, no --overwrite", "data_prep",
          lambda e: ["synthetic", "--images", "8", "--image-size", "16", "--seed", "1", "--quiet", "--out",
                     str(e.tmp / "ds")], 2, r"already holds a dataset built by python -m data_prep: pass --overwrite",
          setup=built_dataset, kept=dataset_intact),
    Probe("data_prep imagefolder: --out is a folder holding other files", "data_prep",
          lambda e: photos_build(e, out=e.tmp / "notes"), 2, r"--out .*notes is not empty and does not hold a dataset",
          setup=notes_in("notes"), kept=only_notes("notes")),
    Probe("data_prep imagefolder: --out is the --data-dir", "data_prep",
          lambda e: photos_build(e, out=e.tmp / "photos"), 2,
          r"--out .*photos is the input --data-dir .*photos: writing it would destroy the input", kept=photos_intact),
    Probe("data_prep imagefolder: --out holds the --data-dir", "data_prep", lambda e: photos_build(e, out=e.tmp), 2,
          r"--out .* holds the input --data-dir .*photos", kept=photos_intact),
    Probe("data_prep imagefolder: source given as a number and as an object", "data_prep",
          lambda e: photos_build(e, rows=[{"file_name": "a.png", "source": 5, "english": "a house"},
                                          {"file_name": "b.png", "source": {"es": "un perro"}, "english": "a dog"}]), 2,
          r"rows dropped: \{'field \"source\": expected a string or a JSON array, found a JSON number': 1, "
          r"'field \"source\": expected a string or a JSON array, found a JSON object': 1\}"),
    Probe("data_prep imagefolder: a caption with a lone surrogate (JSON escape)", "data_prep",
          lambda e: photos_build(e, raw=b'{"file_name": "a.png", "source": "una \\ud800", "english": "a house"}\n'), 2,
          r"rows dropped: \{'text that is not valid Unicode \(a lone surrogate\)': 1\}"),
    Probe("data_prep imagefolder: metadata.csv with an unterminated quote (the next row is still read)", "data_prep",
          lambda e: photos_build(e, name="metadata.csv",
                                 raw=b'file_name,source,english\na.png,"una casa,a house\n../b.png,un perro,a dog\n'),
          2, r"rows dropped: \{'unterminated quote': 1, 'path outside the image folder': 1\}"),
    Probe("data_prep synthetic: --image-size 100000", "data_prep",
          lambda e: ["synthetic", "--image-size", "100000", "--out", str(e.tmp / "ds")], 2,
          r"--image-size 100000 \(each image is drawn at 4 times that side, then downsized\) needs about .* GiB of "
          r"memory, more than the .* available", kept=absent("ds")),
    Probe("data_prep synthetic: --images 1000000000000", "data_prep",
          lambda e: ["synthetic", "--images", "1000000000000", "--out", str(e.tmp / "ds")], 2,
          r"--images 1000000000000 with --captions-per-image 2 needs about .* PiB of memory", kept=absent("ds")),
    Probe("data_prep synthetic: --images 2", "data_prep", lambda e: ["synthetic", "--images", "2", "--out",
                                                                     str(e.tmp / "ds")], 2,
          r"--images must be at least 3 \(one per split\), got 2", kept=absent("ds")),
    # -- train.py: every option checked before anything is written; --resume keeps the run as it was --
    Probe("train: YAML steps: 2.7", "train", lambda e: config_run(e, "steps: 2.7\n"), 2,
          r"argument --steps: invalid int value: '2\.7'", kept=absent("run")),
    Probe('train: YAML evaluate: "no"', "train", lambda e: config_run(e, 'evaluate: "no"\n'), 2,
          r"evaluate must be true or false, got 'no'", kept=absent("run")),
    Probe("train: YAML is a list", "train", lambda e: config_run(e, "- steps\n- 3\n"), 2,
          r"must hold a mapping of option: value, not a list", kept=absent("run")),
    Probe("train: YAML malformed", "train", lambda e: config_run(e, "steps: [1, 2\n"), 2,
          r"is not valid YAML", kept=absent("run")),
    Probe("train: YAML missing", "train", lambda e: ["--config", str(e.tmp / "nope.yaml"), "--out", str(e.tmp / "run")],
          2, r"nope\.yaml: No such file or directory", kept=absent("run")),
    Probe("train: YAML unknown option", "train", lambda e: config_run(e, "stepz: 3\n"), 2,
          r"unknown option 'stepz'", kept=absent("run")),
    Probe("train: --batch-size 1 (in-batch retrieval needs 2)", "train",
          lambda e: ["--batch-size", "1", "--out", str(e.tmp / "run")], 2, r"--batch-size must be at least 2",
          kept=absent("run")),
    Probe("train: --lang xx on the embedded world", "train", lambda e: ["--lang", "xx", "--out", str(e.tmp / "run")],
          2, r"the embedded longtail world speaks es, .*zh", kept=absent("run")),
    Probe("train: --parallel-fraction 1.5", "train", lambda e: ["--parallel-fraction", "1.5", "--out", str(e.tmp / "run")],
          2, r"--parallel-fraction must be in \[0, 1\]", kept=absent("run")),
    Probe("train: --mixed-precision fp16 without CUDA", "train",
          lambda e: ["--mixed-precision", "fp16", "--out", str(e.tmp / "run")], 2, r"fp16 needs CUDA",
          kept=absent("run"), needs_no_cuda=True),
    Probe("train: --clip-pretrained missing", "train",
          lambda e: ["--clip-pretrained", str(e.tmp / "w.pt"), "--out", str(e.tmp / "run")], 2, r"w\.pt: no such file",
          kept=absent("run")),
    Probe("train: --student not a Marian directory", "train",
          lambda e: ["--student", str(e.tmp), "--out", str(e.tmp / "run")], 2, r"not a MarianMT directory",
          kept=absent("run")),
    Probe("train: --data coco-cn without --data-dir", "train",
          lambda e: ["--data", "coco-cn", "--out", str(e.tmp / "run")], 2, r"--data coco-cn needs --data-dir",
          kept=absent("run")),
    Probe("train: --out holds a run, no --resume", "train", lambda e: ["--out", str(e.tmp / "copy")], 2,
          r"already holds a run; pass --resume", setup=copy_run, kept=run_untouched),
    Probe("train: --resume with another --lang", "train", lambda e: ["--out", str(e.tmp / "copy"), "--resume",
                                                                      "--lang", "zh"], 2,
          r"these options differ: --lang zh \(the run has es\)", setup=copy_run, kept=run_untouched),
    # -- issue 23, the training side: the run folder, resume, read-backs, limits (all before the data) --
    Probe("train: --out in use by another process", "train", lambda e: resume_copy(e), 2,
          r"copy is in use by process \d+ \(accelerate launch train\.py\); wait until it ends",
          setup=lambda e: (copy_run(e), hold_lock("copy", "accelerate launch train.py")(e)), patch=NO_DATA,
          kept=release_lock(run_untouched)),
    Probe("train: --out is a folder holding other files", "train", lambda e: train_new(e), 2,
          r"--out .*run is not empty and does not hold a run written by train\.py: choose a new or empty folder "
          r"\(nothing in .*run was changed\)", setup=notes_in("run"), patch=NO_DATA, kept=only_notes("run")),
    Probe("train: --out is a file", "train", lambda e: train_new(e), 2, r"--out .*run is a file, expected a folder",
          setup=lambda e: e.file("run", NOTES), patch=NO_DATA),
    Probe("train: --resume on a missing --out", "train", lambda e: train_new(e, "--resume"), 2,
          r"--resume: .*run holds no run to resume \(it does not exist\); a new run needs no flag: leave out --resume",
          patch=NO_DATA, kept=absent("run")),
    Probe("train: --resume on an empty --out", "train", lambda e: train_new(e, "--resume"), 2,
          r"--resume: .*run holds no run to resume \(it is empty\)", setup=lambda e: (e.tmp / "run").mkdir(),
          patch=NO_DATA),
    Probe("train: --resume on a folder holding other files", "train", lambda e: train_new(e, "--resume"), 2,
          r"--out .*run is not empty and does not hold a run written by train\.py", setup=notes_in("run"),
          patch=NO_DATA, kept=only_notes("run")),
    Probe("train: --resume on checkpoints without config.json", "train", lambda e: resume_copy(e), 2,
          r"copy holds the remains of a run \(.*checkpoints.*\) but no config\.json, so its options are unknown .*: "
          r"put its config\.json back to --resume it", setup=damaged_copy(), patch=NO_DATA, kept=run_untouched),
    Probe("train: --resume --steps 100 on a run finished at 200", "train", lambda e: resume_copy(e, "--steps", "100"),
          2, r"--resume --steps 100: .*copy has trained 200 steps already and a run is never shortened",
          setup=copy_run, patch=NO_DATA, kept=run_untouched),
    Probe('train: --resume with config.json "steps": "many"', "train", lambda e: resume_copy(e), 2,
          r'copy/config\.json: field "steps": expected an integer, found a JSON string',
          setup=damaged_copy(lambda c: c.update(steps="many")), patch=NO_DATA, kept=run_untouched),
    Probe('train: --resume with config.json without "lang"', "train", lambda e: resume_copy(e), 2,
          r'copy/config\.json: field "lang" is missing', setup=damaged_copy(lambda c: c.pop("lang")), patch=NO_DATA,
          kept=run_untouched),
    Probe("train: --resume with config.json truncated", "train", lambda e: resume_copy(e), 2,
          r"copy/config\.json: not valid JSON \(.*\); it is truncated or damaged",
          setup=damaged_copy(text=lambda t: t[:60]), patch=NO_DATA, kept=run_untouched),
    Probe('train: --resume with config.json "similarity": "bogus"', "train", lambda e: resume_copy(e), 2,
          r'copy/config\.json: field "similarity": expected one of .*, found \'bogus\'',
          setup=damaged_copy(lambda c: c.update(similarity="bogus")), patch=NO_DATA, kept=run_untouched),
    Probe("train: --max-target-length 100 (the micro CLIP reads 16)", "train",
          lambda e: train_new(e, "--clip", "groundmt-micro", "--max-target-length", "100"), 2,
          r"--max-target-length 100: CLIP groundmt-micro reads at most 16 positions", patch=NO_DATA,
          kept=absent("run")),
    Probe("train: --threads 1000000", "train", lambda e: train_new(e, "--threads", "1000000"), 2,
          r"--threads 1000000: this machine has \d+ CPU cores", kept=absent("run")),
    Probe("train: --seed -1", "train", lambda e: train_new(e, "--seed", "-1"), 2, r"--seed must be in \[0, 4294967295\] \(the seeds NumPy accepts\), got -1",
          kept=absent("run")),
    Probe("train: --lr inf", "train", lambda e: train_new(e, "--lr", "inf"), 2,
          r"--lr must be a finite number, got inf", patch=NO_DATA, kept=absent("run")),
    Probe("train: --lr nan", "train", lambda e: train_new(e, "--lr", "nan"), 2,
          r"--lr must be a finite number, got nan", patch=NO_DATA, kept=absent("run")),
    Probe("train: --grad-clip nan", "train", lambda e: train_new(e, "--grad-clip", "nan"), 2,
          r"--grad-clip must be a finite number, got nan", patch=NO_DATA, kept=absent("run")),
    Probe("train: --max-target-length 1", "train", lambda e: train_new(e, "--max-target-length", "1"), 2,
          r"--max-target-length must be 0 \(decided from the data\) or at least 3, got 1", kept=absent("run")),
    Probe("train: --contrastive-weight 1 --batch-size 1000000000 --target-vocab full", "train",
          lambda e: train_new(e, "--contrastive-weight", "1", "--batch-size", "1000000000", "--target-vocab", "full"), 2,
          r"one training step \(--batch-size 1000000000 x --m-source 2 translations through the splice.*\) needs "
          r"about .* of memory, more than the .* available", patch=NO_DATA, kept=absent("run")),
    Probe("train: --self-train-nbest 1000000000", "train",
          lambda e: train_new(e, "--self-train-rounds", "1", "--self-train-nbest", "1000000000"), 2,
          r"self-training's beam search \(--self-train-nbest 1000000000 beams x 64 captions\) needs about",
          patch=NO_DATA, kept=absent("run")),
    Probe("train: --anchor-bank 1000000000000", "train",
          lambda e: train_new(e, "--contrastive-weight", "1", "--anchor-bank", "1000000000000"), 2,
          r"--anchor-bank 1000000000000 \(x \d+ dimensions\) needs about", patch=NO_DATA, kept=absent("run")),
    Probe("train: --eval-bootstrap 1000000000000000", "train",
          lambda e: train_new(e, "--eval-bootstrap", "1000000000000000"), 2,
          r"--eval-bootstrap 1000000000000000 on 1 test sentence\(s\) needs about", patch=NO_DATA, kept=absent("run")),
    Probe("train: --labels exact with 9 axes of 32", "train",
          lambda e: train_new(e, "--contrastive-weight", "1", "--labels", "exact", "--k-english", "4", "--m-source",
                              "4"), 2,
          r"--labels exact with --batch-size 32 and 9 axes: labels='exact' on a 32×32×32×32×32×32×32×32×32 cube",
          patch=NO_DATA, kept=absent("run")),
]


def check_not_opened(env: Env) -> None:
    assert not any("secret" in p or "passwd" in p for p in env.opened), env.opened


def shown(text: str, env: Env) -> str:
    """`text` with the probe's own paths replaced by TMP, RUN and DATA (for the table)."""
    for path, name in ((env.tmp, "TMP"), (env.run, "RUN"), (env.data, "DATA")):
        text = text.replace(str(path), name)
    return text


@pytest.fixture(scope="module", autouse=True)
def probe_table():
    """With GROUNDMT_PROBE_TABLE=FILE, write the table of this run's probe results into FILE."""
    yield
    target = os.environ.get("GROUNDMT_PROBE_TABLE")
    if not target or not RESULTS:
        return
    order = {p.name: i for i, p in enumerate(PROBES)}
    rows = ["| probe | command | exit | stderr (one line) |", "|---|---|---|---|"]
    for r in sorted(RESULTS, key=lambda r: order[r["name"]]):
        cells = [r["name"], f"`` {r['command']} ``", str(r["code"]), f"`` {r['stderr']} ``"]
        rows.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    path = Path(target)
    doc = path.read_text(encoding="utf-8")
    begin, end = doc.index(TABLE_BEGIN) + len(TABLE_BEGIN), doc.index(TABLE_END)
    path.write_text(doc[:begin] + "\n" + "\n".join(rows) + "\n" + doc[end:], encoding="utf-8")


@pytest.mark.parametrize("probe", PROBES, ids=[p.name for p in PROBES])
def test_probe(probe: Probe, run, data, tmp_path, monkeypatch, capfd):
    if probe.needs_no_cuda and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    env = Env(tmp_path, run, data)
    if probe.setup is not None:
        probe.setup(env)
    argv = probe.argv(env)
    if probe.patch is not None:
        probe.patch(env, monkeypatch)
    capfd.readouterr()
    try:
        code = MAINS[probe.tool](argv)
    except SystemExit as exc:  # argparse refuses an option
        code = exc.code
    err = capfd.readouterr().err
    lines = err.splitlines()
    assert code == probe.code, err
    assert "Traceback" not in err and len(lines) == 1, err
    assert lines[0].startswith("interrupted" if probe.code == 130 else "error: "), err
    assert re.search(probe.message, lines[0].removeprefix("error: ")), lines[0]
    if probe.kept is not None:
        probe.kept(env)
    RESULTS.append({"name": probe.name, "code": code, "stderr": shown(lines[0], env),
                    "command": shown(" ".join([COMMANDS.get(probe.tool, f"python -m {probe.tool}"), *map(_quote, argv)]),
                                     env)})


def _quote(arg: str) -> str:
    """`arg` as a shell would need it; bytes that are not UTF-8 (kept by Python as surrogates) as `$'\\xf3'`."""
    if any("\udc80" <= ch <= "\udcff" for ch in arg):
        raw = arg.encode("utf-8", "surrogateescape")
        return "$'" + "".join(chr(b) if 32 <= b < 127 and chr(b) not in "'\\" else f"\\x{b:02x}" for b in raw) + "'"
    return arg if re.fullmatch(r"[\w./:=,+-]+", arg) else json.dumps(arg, ensure_ascii=False)


def test_run_command_contract(capsys):
    """InputError and OSError on a path: one line, exit 2; Ctrl-C: one line, exit 130; a bug keeps
    its traceback (the exception propagates)."""
    def raising(exc: BaseException) -> Callable[[], int]:
        def command() -> int:
            raise exc
        return command

    cases = [(InputError("--x y is wrong"), 2, "error: --x y is wrong"),
             (PermissionError(13, "Permission denied", "/data/out"), 2, "error: /data/out: Permission denied"),
             (OSError(28, "No space left on device"), 2, "error: [Errno 28] No space left on device"),
             (KeyboardInterrupt(), 130, "interrupted"),
             (KeyboardInterrupt("3 records are safe"), 130, "interrupted: 3 records are safe")]
    for exc, code, line in cases:
        assert run_command(raising(exc)) == code
        assert capsys.readouterr().err.splitlines() == [line]
    with pytest.raises(ZeroDivisionError):
        run_command(lambda: 1 // 0)


# -- the same probes as real processes ---------------------------------------------------------------
def run_cli(tool: str, argv: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", tool, *argv], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "OMP_NUM_THREADS": "1"}, **kw)


@pytest.mark.parametrize("name", ["text: --batch-size 0", "text: truncated RUN/model/student/model.safetensors",
                                  "eval score: --hyp and --ref of different lengths",
                                  "data_prep imagefolder: metadata.jsonl holding a JSON array"])
def test_probe_as_a_process(name, run, data, tmp_path):
    """A real process prints the same single line and exit code (warnings included, which pytest
    would otherwise capture)."""
    probe = next(p for p in PROBES if p.name == name)
    env = Env(tmp_path, run, data)
    done = run_cli(probe.tool, probe.argv(env))
    assert done.returncode == probe.code and len(done.stderr.splitlines()) == 1, done.stderr
    assert re.search(probe.message, done.stderr), done.stderr


def test_real_sigint_during_a_corpus_then_resume(run, data, tmp_path):
    """SIGINT from outside after the second batch: one line, exit 130, the progress marker intact;
    the same command then resumes to the same corpus as an uninterrupted run."""
    out, full = tmp_path / "corpus", tmp_path / "full"
    script = ("import os, signal, sys\n"
              # as in a terminal: Python leaves SIGINT ignored when started from a shell's background job
              "signal.signal(signal.SIGINT, signal.default_int_handler)\n"
              "import translate.corpus as c\n"
              "real, calls = c.translate_batch, []\n"
              "def batch(*a, **k):\n"
              "    calls.append(1)\n"
              "    if len(calls) == 3:\n"
              "        os.kill(os.getpid(), signal.SIGINT)\n"
              "    return real(*a, **k)\n"
              "c.translate_batch = batch\n"
              "from translate.__main__ import main\n"
              "sys.exit(main(sys.argv[1:]))\n")
    argv = ["corpus", "--run", str(run), "--data-dir", str(data), "--batch-size", "4", "--quiet", "--out"]
    done = subprocess.run([sys.executable, "-c", script, *argv, str(out)], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 130 and done.stderr.splitlines() == [
        f"interrupted: 8 records are safe in {out / 'corpus.jsonl'}; rerun the same command to resume"], done.stderr
    assert json.loads((out / "progress.json").read_text())["records"] == 8
    assert translate_cli.main([*argv, str(out)]) == 0 and translate_cli.main([*argv, str(full)]) == 0
    assert (out / "corpus.jsonl").read_text() == (full / "corpus.jsonl").read_text()
    assert json.loads((out / "summary.json").read_text())["resumed_records"] == 8
