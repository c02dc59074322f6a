"""Every training option runs (issue 12, item 1): a smoke matrix through train.py.

The full product splice × EOT finder × decoding × labels × freeze × anchor × student kind is
4 × 3 × 3 × 5 × 4 × 3 × 2 = 4,320 runs; the matrix is a covering array of strength 2 over it —
every pair of values of any two options appears in at least one run (checked below) — plus the
runs of the grounding recipes (token CE only, grounding only, pivot, self-training). Each run
trains 2 steps of the micro system, must log finite losses and commit a complete checkpoint, and
then resumes to a third step. The combinations that cannot train are refused at parsing, in one
line: the reason each one gets is written in the test.
"""
from __future__ import annotations

import itertools
import json
import math

import pytest
import torch

import training
from tiny_run import tiny

FACTORS = {
    "splice": ("gumbel", "linear", "soft", "argmax"),
    "eot-finder": ("prob", "argmax", "gumbel"),
    "decoding": ("free-running", "teacher-forced", "parallel-bos"),
    "labels": ("diagonal", "exact", "regions", "smoothed", "sigmoid"),
    "freeze": ("both", "image", "text", "none"),
    "anchor": ("none", "cosine", "mse"),
    "student": ("scratch", "pretrained"),
}
RECIPES = {
    "token-ce-only": ["--grounding-weight", "0"],
    "grounding-only": ["--token-ce-weight", "0"],
    "pivot+self-training": ["--grounding-weight", "0", "--pivot", "--pivot-threshold", "0.1", "--pivot-every-name",
                            "--pivot-source-words", "--lexicon-pairs", "4", "--lexicon-phrase-words", "3",
                            "--lexicon-explain-away", "--self-train-rounds", "1", "--self-train-start", "0.5",
                            "--self-train-lexicon", "0.5", "--pseudo-anneal"],
    "self-training-confidence": ["--grounding-weight", "0", "--self-train-rounds", "1", "--self-train-start", "0.5",
                                 "--self-train-judge", "confidence"],
    "grounding+self-training+anchor": ["--anchor", "cosine", "--self-train-rounds", "1", "--self-train-start", "0.5"],
    "expert+anchor-bank+lsa": ["--expert", "minilm", "--anchor-bank", "4", "--lsa-weight", "0.1"],
}


def covering_array(factors: dict[str, tuple]) -> list[dict]:
    """A strength-2 covering array, built greedily (deterministic): each new row starts from the
    first uncovered pair and gives every other option the value that covers most uncovered pairs."""
    names = list(factors)
    uncovered = {((a, va), (b, vb)) for a, b in itertools.combinations(names, 2)
                 for va in factors[a] for vb in factors[b]}
    rows = []
    while uncovered:
        (a, va), (b, vb) = min(uncovered, key=lambda p: (names.index(p[0][0]), names.index(p[1][0]), p))
        row = {a: va, b: vb}
        for name in names:
            if name not in row:
                row[name] = max(factors[name], key=lambda v: sum(
                    tuple(sorted(((name, v), (other, row[other])), key=lambda x: names.index(x[0]))) in uncovered
                    for other in row))
        uncovered -= {tuple(sorted(pair, key=lambda x: names.index(x[0])))
                      for pair in itertools.combinations(row.items(), 2)}
        rows.append(row)
    return rows


MATRIX = covering_array(FACTORS)


def test_the_matrix_covers_every_pair_of_option_values():
    names = list(FACTORS)
    for a, b in itertools.combinations(names, 2):
        seen = {(row[a], row[b]) for row in MATRIX}
        assert seen == set(itertools.product(FACTORS[a], FACTORS[b])), (a, b)
    assert len(MATRIX) < 40  # versus 4,320 in the full product


def argv_of(row: dict, student_dir) -> list[str]:
    argv = []
    for name, value in row.items():
        if name == "student":
            argv += ["--student", str(student_dir)] if value == "pretrained" else []
        else:
            argv += [f"--{name}", value]
    return argv


def exit_code(argv: list[str]) -> int:
    """train.py's exit code: main's return value, or the code of argparse's exit for a refusal."""
    try:
        return training.main(argv)
    except SystemExit as stop:
        return stop.code


def check_trains_and_resumes(cache, out, argv):
    common = ["--steps", "2", "--checkpoint-every", "1", "--log-every", "1", "--eval-every", "100",
              "--no-evaluate", "--parallel-fraction", "0.3", "--m-source", "2"]
    torch.manual_seed(0)
    assert training.main(tiny(cache, out, *common, *argv)) == 0
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in records if "split" not in r and "self_train/round" not in r]
    assert [r["step"] for r in steps] == [1, 2]
    for record in steps:
        assert "loss" in record and all(math.isfinite(v) for v in record.values() if isinstance(v, float)), record
    assert (out / "checkpoints" / "step_00000002" / "train_state.json").is_file()
    assert training.main(tiny(cache, out, *common, *argv, "--steps", "3", "--resume")) == 0
    resumed = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in resumed if "split" not in r and "self_train/round" not in r] == [1, 2, 3]
    assert "resumed from" in (out / "train.log").read_text()


@pytest.mark.slow
@pytest.mark.parametrize("row", MATRIX, ids=["-".join(row.values()) for row in MATRIX])
def test_every_option_combination_trains(row, cache, tmp_path, pretrained_student):
    """Every row trains (with tiny_run's token CE and grounding none of them is a refused combination)."""
    check_trains_and_resumes(cache, tmp_path / "run", argv_of(row, pretrained_student))


@pytest.mark.slow
@pytest.mark.parametrize("recipe", list(RECIPES))
def test_every_grounding_recipe_trains_and_resumes(recipe, cache, tmp_path):
    check_trains_and_resumes(cache, tmp_path / "run", RECIPES[recipe])


NO_PSEUDO_TARGETS = ("--pivot and --self-train-rounds make targets for the token cross-entropy, "
                     "which --token-ce-weight 0 turns off: add --no-pivot --self-train-rounds 0")
REFUSED = {  # case: (flags, the one-line reason)
    "argmax splice, no token CE": (["--splice", "argmax", "--token-ce-weight", "0"],
                                   ("--splice argmax passes no gradient to the student: with --token-ce-weight 0 "
                                    "nothing trains it")),
    "nothing to train": (["--contrastive-weight", "0", "--token-ce-weight", "0"],
                         "--contrastive-weight 0 and --token-ce-weight 0 leave nothing to train"),
    "towers trained without grounding": (["--contrastive-weight", "0", "--freeze", "none"],
                                         ("--freeze none trains CLIP towers through the n-dim loss, which "
                                          "--contrastive-weight 0 turns off")),
    "self-training without token CE": (["--token-ce-weight", "0", "--self-train-rounds", "1"], NO_PSEUDO_TARGETS),
    "pivot without token CE": (["--token-ce-weight", "0", "--pivot"], NO_PSEUDO_TARGETS),
    "lexicon pairs without token CE": (["--token-ce-weight", "0", "--lexicon-pairs", "4"],
                                       "--lexicon-pairs are targets of the token cross-entropy, which --token-ce-weight "
                                       "0 turns off"),
    "pair rerank without pairs": (["--pair-rerank", "4", "--lexicon-pairs", "0"],
                                  "--pair-rerank chooses translations by the word pairs, which --lexicon-pairs 0 leaves out"),
    "phrase pairs without pairs": (["--lexicon-phrase-words", "3", "--lexicon-pairs", "0"],
                                   "--lexicon-phrase-words adds phrases to the word pairs, which --lexicon-pairs 0 "
                                   "leaves out"),
    "forced names without the rerank": (["--pair-force", "1", "--pair-rerank", "0"],
                                         "--pair-force adds candidates to the rerank by word pairs, which "
                                         "--pair-rerank 0 turns off"),
    "explained pairs without pairs": (["--lexicon-explain-away", "--lexicon-pairs", "0"],
                                      "--lexicon-explain-away adds pairs to the word pairs, which --lexicon-pairs 0 leaves out"),
    "every name without explained words": (["--pivot", "--pivot-every-name", "--pivot-teaches", "all"],
                                           ("--pivot-every-name reads the words a pivot target's source explains: "
                                            "it needs --pivot and --pivot-teaches explained")),
    "source words without explained words": (["--pivot", "--pivot-source-words", "--pivot-teaches", "all"],
                                             ("--pivot-source-words reads the words a pivot target's source "
                                              "explains: it needs --pivot and --pivot-teaches explained")),
}


@pytest.mark.parametrize("case", list(REFUSED))
def test_combinations_that_cannot_train_are_refused_in_one_line(case, cache, tmp_path, capsys):
    flags, reason = REFUSED[case]
    assert exit_code(tiny(cache, tmp_path / "run", *flags)) == 2
    assert capsys.readouterr().err == f"error: {reason} (see accelerate launch train.py --help)\n"
    assert not (tmp_path / "run").exists()
