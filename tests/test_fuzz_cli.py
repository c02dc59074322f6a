"""Fuzz (hypothesis) of the `data_prep`, `eval` and `translate` command lines, run in-process through
their `main`: numbers as a user may type them in every numeric flag, and damaged files where a CLI
reads one back (imagefolder metadata, a run's `system.json` and `config.json`, `eval/scores.json`
as the report and the ablation read it). Every example must end with exit code 0 or 1 (a result)
or 2 with one `error:` line, never a traceback, and leave every input file as it was."""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from unittest import mock

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from fuzzing import SCALE, SLOW, assert_clean, damaged, digest, number_texts, outcome, scratch
from torch_threads import one_thread  # noqa: F401

import data_prep.__main__ as data_prep_cli
import eval.__main__ as eval_cli
import translate.__main__ as translate_cli

pytestmark = pytest.mark.usefixtures("one_thread")
MEDIUM = settings(SLOW, max_examples=40 * SCALE)


def flags(*names: str) -> st.SearchStrategy[list[str]]:
    """Some of `names`, each with a number as a user may type it (an empty text too)."""
    return st.lists(st.tuples(st.sampled_from(names), number_texts), max_size=len(names)).map(
        lambda pairs: [part for name, value in pairs for part in (name, value)])


@SLOW
@given(argv=flags("--images", "--image-size", "--captions-per-image", "--seed", "--parallel-fraction",
                  "--eval-parallel-fraction"))
def test_data_prep_synthetic_numbers(argv):
    with scratch() as tmp:
        code, err = outcome(data_prep_cli.main, ["synthetic", "--images", "4", "--image-size", "16", *argv,
                                                 "--quiet", "--out", str(Path(tmp) / "ds")])
        assert_clean(code, err)


VALUES = st.sampled_from(["a.png", "../a.png", "una casa", "", "test", "train", None, 3, ["x", None], {"a": 1},
                          "\ud800"])
ROWS = st.lists(st.fixed_dictionaries({"file_name": st.sampled_from(["a.png", "a.png", "b.png", "../a.png", 4]),
                                       "source": VALUES, "english": VALUES},
                                      optional={"parallel": VALUES, "split": VALUES}), min_size=1, max_size=3)


@SLOW
@given(metadata=st.binary(max_size=200) | ROWS.map(lambda rows: "".join(json.dumps(r) + "\n" for r in rows).encode())
       | ROWS.map(lambda rows: "".join(json.dumps(r) + "\n" for r in rows).encode()), csv=st.booleans())
def test_data_prep_imagefolder_metadata(metadata, csv):
    with scratch() as tmp:
        folder = Path(tmp) / "photos"
        folder.mkdir()
        Image.new("RGB", (4, 4), "red").save(folder / "a.png")
        (folder / ("metadata.csv" if csv else "metadata.jsonl")).write_bytes(metadata)
        before = digest(folder)
        code, err = outcome(data_prep_cli.main, ["imagefolder", "--lang", "es", "--data-dir", str(folder), "--quiet",
                                                 "--out", str(Path(tmp) / "ds")])
        assert_clean(code, err)
        assert digest(folder) == before


@MEDIUM
@given(argv=flags("--bootstrap", "--seed", "--batch-size", "--num-layers"))
def test_eval_score_numbers(argv):
    with scratch() as tmp:
        hyp, ref = Path(tmp) / "hyp.txt", Path(tmp) / "ref.txt"
        hyp.write_text("a red circle\ntwo blue squares\na cross\n")
        ref.write_text("a red circle\ntwo squares\na green cross\n")
        code, err = outcome(eval_cli.main, ["score", "--hyp", str(hyp), "--ref", str(ref), "--metrics", "bleu,chrf",
                                            *argv, "--out", str(Path(tmp) / "s.json")])
        assert_clean(code, err)
        assert ref.read_text() == "a red circle\ntwo squares\na green cross\n"


@MEDIUM
@given(argv=flags("--seeds", "--jobs", "--steps"), fractions=st.none() | st.text(max_size=12)
       | st.lists(number_texts, min_size=1, max_size=3).map(",".join))
def test_eval_ablation_numbers(argv, fractions):
    """Parsing and planning only: `run_grid` (the training runs) is replaced by one that trains nothing."""
    with scratch() as tmp, mock.patch("eval.ablation.run_grid", lambda runs, out, **kw: list(runs)):
        extra = [] if fractions is None else ["--fractions", fractions]
        code, err = outcome(eval_cli.main, ["ablation", "--out", str(Path(tmp) / "a"), *argv, *extra])
        assert_clean(code, err)


@SLOW
@given(argv=flags("--num-beams", "--batch-size", "--rerank-size", "--rerank-beta"), rerank=st.booleans())
def test_translate_text_numbers(argv, rerank, run, translator):
    """The session's loaded translator stands in for loading it again at every example; a beam
    width the model could run for minutes (7..10^8) is left out, the rest of the range is in."""
    if any(a.isdigit() and 7 <= int(a) < 10**8 for a in argv):
        argv = []
    with scratch() as tmp, mock.patch("translate.translator.Translator.from_run", lambda *a, **k: translator):
        image = Path(tmp) / "a.png"
        Image.new("RGB", (8, 8), "red").save(image)
        extra = ["--rerank", "clip", "--images", str(image)] if rerank else []
        code, err = outcome(translate_cli.main, ["text", "--run", str(run), *argv, "una casa roja", *extra])
        assert_clean(code, err)


@pytest.fixture(scope="module")
def scored_run(run, tmp_path_factory) -> Path:
    """A copy of the session run (model included, no checkpoints) with an `eval/scores.json` and
    `eval/hyp.txt` written by `eval.score.score` on its test sentences."""
    from data_prep.load import load_dataset_dir
    from eval.score import score

    folder = tmp_path_factory.mktemp("fuzz-run") / "run"
    shutil.copytree(run, folder, ignore=shutil.ignore_patterns("checkpoints", "tensorboard", "eval"))
    test = load_dataset_dir(json.loads((run / "config.json").read_text())["data_path"])["test"]
    refs = [row[0] for row in test["english"][:4]]
    hyps = ["a red circle", refs[1], "two", ""]
    (folder / "eval").mkdir()
    (folder / "eval" / "hyp.txt").write_text("".join(h + "\n" for h in hyps))
    result = score(hyps, refs, ["bleu", "chrf"], bootstrap=20)
    for row, image_id in zip(result["sentences"], test["image_id"]):
        row.update({"bertscore.F": 0.5, "lisascore.F": 0.5, "image_id": image_id})
    result["metrics"].update(bertscore={"corpus": {"P": 0.5, "R": 0.5, "F": 0.5}},
                             lisascore={"corpus": {"P": 0.5, "R": 0.5, "F": 0.5}},
                             retrieval={"translation": {"in_batch": {"b2a": 0.5, "b2a_hits": [1.0, 0.0]}}})
    (folder / "eval" / "scores.json").write_text(json.dumps({**result, "run_id": "fuzz", "split": "test"}))
    return folder


@SLOW
@given(data=st.data(), which=st.sampled_from(["model/system.json", "config.json"]))
def test_translate_text_with_a_damaged_run(data, which, scored_run):
    with scratch() as tmp:
        run = Path(tmp) / "run"
        shutil.copytree(scored_run, run)
        (run / which).write_bytes(data.draw(damaged(json.loads((scored_run / which).read_text()))))
        before = digest(run)
        assert_clean(*outcome(translate_cli.main, ["text", "--run", str(run), "una casa"]))
        assert digest(run) == before


@settings(SLOW, max_examples=8 * SCALE)
@given(data=st.data(), which=st.sampled_from(["eval/scores.json", "config.json"]))
def test_eval_report_with_a_damaged_run(data, which, scored_run):
    with scratch() as tmp:
        run = Path(tmp) / "run"
        shutil.copytree(scored_run, run, ignore=shutil.ignore_patterns("model"))
        (run / which).write_bytes(data.draw(damaged(json.loads((scored_run / which).read_text()))))
        before = digest(run)
        assert_clean(*outcome(eval_cli.main, ["report", str(run), "--out", str(Path(tmp) / "r.html")]))
        assert digest(run) == before


@SLOW
@given(data=st.data())
def test_eval_ablation_with_a_damaged_cell(data, scored_run):
    """A scored cell is not trained again: the table is built from its (damaged) score file."""
    with scratch() as tmp, mock.patch("eval.ablation.run_grid", lambda runs, out, **kw: []):
        out = Path(tmp) / "ablation"
        cell = out / "runs" / "ce-p0-s0" / "eval"
        cell.mkdir(parents=True)
        shutil.copy(scored_run / "eval" / "hyp.txt", cell / "hyp.txt")
        (cell / "scores.json").write_bytes(data.draw(damaged(json.loads((scored_run / "eval/scores.json").read_text()))))
        (out / "plan.json").write_text("{}")
        before = digest(out / "runs")
        assert_clean(*outcome(eval_cli.main, ["ablation", "--out", str(out), "--systems", "ce", "--fractions", "0",
                                              "--seeds", "1"]))
        assert digest(out / "runs") == before
