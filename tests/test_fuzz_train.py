"""Fuzz (hypothesis) of train.py without training: numbers as a user may type them in every numeric
option (parsed by `training.config.parse_config`, and run through `training.main` up to the point
where the data would be built), damaged copies of a run's `config.json` read back by a resume
(`training.config.saved_options` and `training.main --resume`) and of a saved pseudo-target table.
Every example must end in a configuration, or exit code 2 with one `error:` line, never a
traceback; a refused run leaves its `--out` as it found it, and a resume changes no file of the run."""
from __future__ import annotations

import json
from pathlib import Path
from unittest import mock

import pytest
from hypothesis import event, example, given, settings
from hypothesis import strategies as st

from fuzzing import FAST, SCALE, SLOW, assert_clean, damaged, digest, exit_code, json_values, number_texts, outcome, \
    scratch
from tiny_run import tiny
from torch_threads import one_thread  # noqa: F401

import training
from data_prep.locks import LOCK_FILE
from data_prep.targets import TargetTable
from models.run_dir import RunDir
from training.config import parse_config, saved_options
from training.options import OPTIONS, bound_problem

pytestmark = pytest.mark.usefixtures("one_thread")
NUMERIC = tuple("--" + name.replace("_", "-") for name, f in OPTIONS.items()
                if "int" in str(f.type) or "float" in str(f.type))
MEDIUM = settings(SLOW, max_examples=40 * SCALE)


class DataReached(Exception):
    """Raised where the data would be built: every check before it passed."""


def numeric_flags() -> st.SearchStrategy[list[str]]:
    return st.lists(st.tuples(st.sampled_from(NUMERIC), number_texts), min_size=1, max_size=4).map(
        lambda pairs: [part for name, value in pairs for part in (name, value)])


@FAST
@given(argv=numeric_flags())
def test_parse_config_numbers(argv):
    code, err = outcome(lambda a: (parse_config(a), 0)[1], argv)
    assert_clean(code, err)
    if code == 0:
        cfg = parse_config(argv)
        assert not [name for name, value in cfg.flat().items() if bound_problem(name, value)]


@MEDIUM
@given(argv=numeric_flags())
@example(argv=["--seed", "1000000000000"])  # found by CI: NumPy refused the seed deep in training
def test_train_numbers_up_to_the_data(argv, tmp_path_factory):
    """The checks between parsing and the data (the folder, the inputs, the memory limits) on any
    number: a refused run leaves no --out behind, nor does one stopped where its data would be built."""
    with scratch() as tmp, mock.patch("training.runs.open_data", side_effect=DataReached):
        out = Path(tmp) / "run"
        try:
            code, err = outcome(training.main, [*tiny(Path(tmp) / "cache", out), *argv])
        except DataReached:
            event("reached the data")
        else:
            assert_clean(code, err)
        assert not out.exists()


def saved_config() -> dict:
    """config.json as a tiny run writes it (its options, run id and data path)."""
    return {**parse_config(tiny(Path("cache"), Path("run"))).flat(), "run_id": "run", "data_path": "data",
            "world_size": 1}


@FAST
@given(data=st.data())
def test_saved_options_of_a_damaged_config_json(data):
    with scratch() as tmp:
        run = RunDir(tmp)
        run.config.write_bytes(data.draw(damaged(saved_config())))
        assert exit_code(lambda: saved_options(run)) in (0, 2)


@MEDIUM
@given(data=st.data())
def test_resume_with_a_damaged_config_json(data):
    """`--resume` on a run whose config.json is damaged: one line, or on to where the data would be
    built; no file of the run changes (its lock aside)."""
    with scratch() as tmp, mock.patch("training.runs.open_data", side_effect=DataReached):
        run = RunDir(Path(tmp) / "run")
        run.create()
        run.config.write_bytes(data.draw(damaged(saved_config())))
        before = digest(run.root)
        try:
            code, err = outcome(training.main, [*tiny(Path(tmp) / "cache", run.root), "--resume"])
        except DataReached:
            event("reached the data")
        else:
            assert_clean(code, err)
        assert {k: v for k, v in digest(run.root).items() if k != LOCK_FILE} == before


@FAST
@given(data=st.data(), rows=st.integers(1, 3))
def test_pseudo_target_rows(data, rows):
    record = {"row": 3, "caption": 1, "text": "a red circle", "weight": 0.5, "origin": "self"}
    with scratch() as tmp:
        path = Path(tmp) / "round_01.jsonl"
        path.write_bytes(b"\n".join([json.dumps(record).encode()] * (rows - 1) + [data.draw(damaged(record))]) + b"\n")
        assert exit_code(lambda: TargetTable.load(path)) in (0, 2)


@FAST
@given(name=st.sampled_from(sorted(OPTIONS)), value=json_values)
def test_saved_options_of_any_value_of_any_option(name, value):
    """Any option of config.json replaced by any JSON value."""
    with scratch() as tmp:
        run = RunDir(tmp)
        run.config.write_text(json.dumps({**saved_config(), name: value}))
        assert exit_code(lambda: saved_options(run)) in (0, 2)
