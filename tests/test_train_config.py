"""train.py's options: every wrong value is refused at parsing in one line with exit code 2, before
any data is built; older option names and config.json files still work; the metric keys the
code lists are the ones docs/training.md lists, and the ones runs write."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

import training
from models.run_dir import RunDir
from training.config import named_options, parse_config, resolve_place, resumed_config
from training.metrics import METRICS, unlisted
from training.options import OPTIONS

ROOT = Path(__file__).resolve().parents[1]


def refused(argv: list[str], tmp_path: Path, capsys) -> str:
    """The one line train.py prints for `argv` (asserting exit code 2 and that nothing was built)."""
    argv = [*argv, "--out", str(tmp_path / "run"), "--cache-dir", str(tmp_path / "cache")]
    try:
        code = training.main(argv)
    except SystemExit as stop:
        code = stop.code
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and err.startswith("error: "), err
    assert not (tmp_path / "cache").exists() and not (tmp_path / "run").exists()  # no dataset was built
    return err


CHOICES = [name for name, f in OPTIONS.items() if f.metadata["choices"]]


@pytest.mark.parametrize("name", CHOICES)
def test_every_misspelled_choice_is_refused_at_parsing(name, tmp_path, capsys):
    flag = "--" + name.replace("_", "-")
    wrong = OPTIONS[name].metadata["choices"][0] + "x"
    err = refused([flag, wrong], tmp_path, capsys)
    assert re.match(f"error: argument {flag}(/--[a-z-]+)?: invalid choice: '{re.escape(wrong)}'", err), err


@pytest.mark.parametrize("argv, message", [
    (["--similarity", "v44"], "argument --similarity: invalid choice: 'v44'"),
    (["--student-preset", "huge"], "argument --student-preset: invalid choice: 'huge'"),
    (["--anchor", "cosin"], "argument --english-anchor/--anchor: invalid choice: 'cosin'"),  # the older name
    (["--lr", "inf"], "--lr must be a finite number, got inf"),
    (["--grad-clip", "nan"], "--grad-clip must be a finite number, got nan"),
    (["--seed", "-1"], "--seed must be in [0, 4294967295] (the seeds NumPy accepts), got -1"),
    (["--seed", str(2**32)], "--seed must be in [0, 4294967295] (the seeds NumPy accepts), got 4294967296"),
    (["--max-target-length", "1"], "--max-target-length must be 0 (decided from the data) or at least 3, got 1"),
    (["--world-images", "2"], "--world-images must be at least 3, got 2"),
    (["--tau-end", "0"], "--tau-end must be positive, got 0.0"),
    (["--dropout", "1"], "--dropout must be in [0, 1), got 1.0"),
    (["--anchor-bank", "1"], "--anchor-bank must be 0 (none) or at least 2, got 1"),
    (["--steps", "2.5"], "argument --steps: invalid int value: '2.5'"),
    (["--data", "coco-cn"], "--data coco-cn needs --data-dir"),
])
def test_wrong_values_and_combinations_are_refused_at_parsing(argv, message, tmp_path, capsys):
    assert message in refused(argv, tmp_path, capsys)


@pytest.mark.parametrize("name", [n for n, f in OPTIONS.items() if "float" in str(f.type)])
def test_no_number_option_takes_nan(name, tmp_path, capsys):
    flag = "--" + name.replace("_", "-")
    assert f"{flag} must be a finite number, got nan" in refused([flag, "nan"], tmp_path, capsys)


def test_a_misspelled_choice_in_a_config_file_is_refused(tmp_path, capsys):
    config = tmp_path / "c.yaml"
    config.write_text("similarity: v44\n")
    assert "argument --similarity: invalid choice: 'v44'" in refused(["--config", str(config)], tmp_path, capsys)


def test_older_names_are_aliases():
    old = parse_config(["--grounding-weight", "1", "--anchor", "mse", "--anchor-weight", "0.5", "--similarity", "v4"])
    new = parse_config(["--contrastive-weight", "1", "--english-anchor", "mse", "--english-anchor-weight", "0.5",
                        "--similarity", "one-minus-sst"])
    assert old == new and new.objective.similarity == "one-minus-sst"
    assert parse_config(["--similarity", "v13"]).objective.similarity == "one-minus-sst"  # v13 is v4's function


def test_a_config_json_with_the_older_names_resumes_under_the_new_ones(tmp_path):
    saved = {**parse_config([]).flat(), "similarity": "v4", "anchor": "cosine", "anchor_weight": 0.3,
             "grounding_weight": 1.0}
    for name in ("english_anchor", "english_anchor_weight", "contrastive_weight", "recipe"):
        del saved[name]
    (tmp_path / "config.json").write_text(json.dumps(saved))
    cfg = resumed_config(RunDir(tmp_path), named_options(["--out", str(tmp_path), "--resume", "--similarity", "v4"]))
    o = cfg.objective
    assert (o.similarity, o.english_anchor, o.english_anchor_weight, o.contrastive_weight) == \
        ("one-minus-sst", "cosine", 0.3, 1.0)
    assert cfg.run.recipe == "auto" and cfg.run.resume


def test_a_run_saved_before_phrase_pairs_resumes_with_words_only(tmp_path):
    saved = {**parse_config(["--lexicon-pairs", "16"]).flat()}
    del saved["lexicon_phrase_words"]
    (tmp_path / "config.json").write_text(json.dumps(saved))
    cfg = resumed_config(RunDir(tmp_path), named_options(["--out", str(tmp_path), "--resume"]))
    assert (cfg.pseudo.lexicon_pairs, cfg.pseudo.lexicon_phrase_words) == (16, 1)  # as it trained


@pytest.mark.parametrize("steps, warmup", [(0, 20), (40, 20), (160, 20), (400, 50), (900, 100), (1800, 100)])
def test_the_warm_up_is_an_eighth_of_the_steps_within_20_and_100_unless_given(steps, warmup, tmp_path):
    assert resolve_place(parse_config(["--steps", str(steps)]), tmp_path, 1).optim.warmup_steps == warmup
    given = parse_config(["--steps", str(steps), "--warmup-steps", "7"])
    assert resolve_place(given, tmp_path, 1).optim.warmup_steps == 7


def test_a_resumed_run_keeps_its_warm_up_when_its_steps_change(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps(resolve_place(parse_config(["--steps", "400"]), tmp_path, 1).flat()))
    cfg = resumed_config(RunDir(tmp_path), named_options(["--out", str(tmp_path), "--resume", "--steps", "1800"]))
    assert cfg.optim.steps == 1800 and resolve_place(cfg, tmp_path, 1).optim.warmup_steps == 50


def test_the_metric_keys_of_the_code_are_the_documented_ones():
    text = (ROOT / "docs" / "training.md").read_text(encoding="utf-8")
    section = text[text.index("<!-- metric keys -->"):text.index("<!-- /metric keys -->")]
    documented = re.findall(r"^\| `([^`]+)` \|", section, flags=re.M)
    assert documented == list(METRICS)


def test_a_run_writes_only_listed_metric_keys(run):
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
    keys = {k for r in records for k in r}
    assert {"loss", "loss/contrastive", "cos/student_image", "r1/student_image", "tau"} <= keys
    assert unlisted(keys) == []
