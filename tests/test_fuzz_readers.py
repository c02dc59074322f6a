"""Fuzz (hypothesis) of everything that reads a file back, called directly (fast, many examples):
the line and table readers, imagefolder metadata rows, and damaged copies of `system.json`, a run's
`config.json` and `eval/scores.json`, a corpus's `progress.json` and records, and a checkpoint
manifest. No input may raise anything but the one-line errors (`InputError`, `ReadBackError`: exit
2 through `run_command`), and no input file may change. The CLIs themselves are fuzzed in
tests/test_fuzz_cli.py."""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from unittest import mock

import pytest
from hypothesis import event, given
from hypothesis import strategies as st
from PIL import Image

from fuzzing import FAST, damaged, digest, exit_code, json_values, scratch

from data_prep.errors import InputError
from data_prep.text_files import numbered_lines, read_lines, read_table

MANIFEST = {"step": 4, "files": {"model.safetensors": {"bytes": 7, "sha256": "0" * 64}}}
PROGRESS = {"fingerprint": {"captions": "c.jsonl"}, "records": 1, "bytes": 0}
RECORD = {"id": "a#0", "image_id": "a", "file_name": "a.png", "lang": "es", "source": "una casa",
          "translation": "a house", "grounding": 0.3, "source_image_score": 0.2, "length_ratio": 0.9, "flags": [],
          "provenance": "c.jsonl:1", "run_id": "r", "model": "m"}


@pytest.fixture(scope="module")
def scored_run_dir(run, tmp_path_factory) -> Path:
    """The files of a run that translate and eval read back: the session run's `model/system.json`
    and `config.json`, and an `eval/scores.json` written by `eval.score.score`."""
    from eval.score import score

    folder = tmp_path_factory.mktemp("scored") / "run"
    (folder / "model").mkdir(parents=True)
    (folder / "eval").mkdir()
    shutil.copy(run / "model" / "system.json", folder / "model" / "system.json")
    shutil.copy(run / "config.json", folder / "config.json")
    result = score(["a red circle", "two squares", "a cross"], ["a red circle", "two blue squares", "a green cross"],
                   ["bleu", "chrf"], bootstrap=20, sources=["un círculo rojo", "dos cuadrados", "una cruz"])
    (folder / "eval" / "scores.json").write_text(json.dumps({**result, "run_id": "fuzz"}))
    return folder


def _expected_lines(content: bytes) -> list[bytes]:
    """The oracle of `numbered_lines`: split at b"\\n" only, no line after a final one."""
    if not content:
        return []
    parts = content.split(b"\n")
    return parts[:-1] if content.endswith(b"\n") else parts


@FAST
@given(content=st.binary(max_size=300) | st.text(max_size=120).map(str.encode),
       suffix=st.sampled_from([".txt", ".csv", ".tsv", ".gz"]))
def test_line_and_table_readers(content, suffix):
    with scratch() as tmp:
        path = Path(tmp) / f"f{suffix}"
        path.write_bytes(content)
        try:
            lines = list(numbered_lines(path, undecodable="none"))
        except InputError:
            assert suffix == ".gz"  # random bytes are no gzip stream
            return
        expected = _expected_lines(content)
        assert [n for n, _ in lines] == list(range(1, len(expected) + 1))
        for (number, text), raw in zip(lines, expected):
            raw = raw.removeprefix(b"\xef\xbb\xbf") if number == 1 else raw
            try:
                assert text == raw.removesuffix(b"\r").decode("utf-8")
            except UnicodeDecodeError:
                assert text is None
        for read in (lambda: read_lines(path), lambda: read_table(path, "\t" if suffix == ".tsv" else ",")):
            try:
                read()
            except InputError:
                assert any(text is None for _, text in lines)
        header, rows = read_table(path, undecodable="none")
        starts = [number for number, _, _ in rows]
        assert starts == sorted(set(starts)) and all(1 <= n <= len(expected) for n in starts)
        assert all((values is None) != (why is None) for _, values, why in rows)
        assert path.read_bytes() == content


ROW_KEYS = st.sampled_from(["file_name", "source", "english", "parallel", "split", "extra"])
ROW_VALUES = json_values | st.sampled_from(["a.png", "b.png", "../b.png", "/etc/passwd", "", "una casa", "train",
                                            "test", "dev", "\ud800"])


@FAST
@given(rows=st.lists(st.dictionaries(ROW_KEYS, ROW_VALUES, max_size=6) | json_values, max_size=4),
       csv_text=st.text(max_size=80), as_csv=st.booleans())
def test_imagefolder_metadata_rows(rows, csv_text, as_csv):
    """Any metadata builds records or is a counted drop or one input error; the rows that reach the
    writer are cleaned by the writer's own rules (`writer._assign_splits`)."""
    from data_prep.builders import imagefolder
    from data_prep.writer import _assign_splits

    with scratch() as tmp:
        folder = Path(tmp) / "photos"
        folder.mkdir()
        for name in ("a.png", "b.png"):
            Image.new("RGB", (4, 4), "red").save(folder / name)
        if as_csv:
            (folder / "metadata.csv").write_text("file_name,source,english\n" + csv_text, encoding="utf-8",
                                                 errors="surrogatepass")
        else:
            (folder / "metadata.jsonl").write_bytes("".join(json.dumps(r) + "\n" for r in rows).encode(
                "utf-8", "surrogatepass"))
        before = digest(folder)
        written = []
        with mock.patch("data_prep.builders.skeleton.write_dataset",
                        lambda splits, out, report, **kw: written.append(_assign_splits(
                            splits, report, *([kw["keep_english_only"]] if "keep_english_only" in kw else [])))):
            try:
                imagefolder.build_imagefolder(Path(tmp) / "out", folder, "es", show_progress=False)
            except InputError:
                pass
        for splits in written:
            assert all(isinstance(t, str) for rows in splits.values() for r in rows for t in r["source"] + r["english"])
        assert digest(folder) == before and not (Path(tmp) / "out").exists()


@FAST
@given(data=st.data())
def test_checkpoint_manifests(data):
    """A damaged manifest is a reason to pass the checkpoint over, never an exception."""
    from models.run_dir import checkpoint_problem

    with scratch() as tmp:
        path = Path(tmp)
        (path / "model.safetensors").write_bytes(b"weights")
        (path / "train_state.json").write_bytes(data.draw(damaged(MANIFEST)))
        before = digest(path)
        assert isinstance(checkpoint_problem(path), str)  # the size or hash never matches the fake one
        assert digest(path) == before


@FAST
@given(data=st.data())
def test_corpus_progress_and_records(data):
    """A corpus folder with a damaged progress marker or record resumes, or is one error line."""
    from translate.corpus import CorpusWriter, read_records

    with scratch() as tmp:
        out = Path(tmp)
        which = data.draw(st.sampled_from(["none", "record", "progress"]))
        record = data.draw(damaged(RECORD)) if which == "record" else json.dumps(RECORD).encode()
        (out / "corpus.jsonl").write_bytes(record + b"\n")
        progress = dict(PROGRESS, bytes=len(record) + 1)
        (out / "progress.json").write_bytes(data.draw(damaged(progress)) if which == "progress"
                                            else json.dumps(progress).encode())
        code = exit_code(lambda: CorpusWriter(out, PROGRESS["fingerprint"]))
        event(f"resume: exit {code}")
        assert code in (0, 2)
        assert exit_code(lambda: read_records(out / "corpus.jsonl")) in (0, 2)


@FAST
@given(data=st.data(), which=st.sampled_from(["model/system.json", "config.json", "eval/scores.json"]))
def test_run_files_as_translate_and_eval_read_them(data, which, scored_run_dir):
    """`system.json` (as the beam-search estimate and the loader read it), `config.json` (translate
    and the report) and `eval/scores.json` (the report): damaged copies are read or refused in one line."""
    from eval.report.collect import load_run
    from models.grounded import SystemSpec
    from models.typed_json import read_json
    from translate.translator import run_config

    with scratch() as tmp:
        run = Path(tmp) / "run"
        shutil.copytree(scored_run_dir, run)
        document = json.loads((run / which).read_text())
        (run / which).write_bytes(data.draw(damaged(document)))
        before = digest(run)
        for read in (lambda: read_json(run / "model/system.json", SystemSpec), lambda: run_config(run),
                     lambda: load_run(run)):
            code = exit_code(read)
            event(f"exit {code}")
            assert code in (0, 2)
        assert digest(run) == before
