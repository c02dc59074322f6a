"""benchmarks/pair_rerank.py and benchmarks/forced_names.py on a micro grid of the invented-names
world (tests/conftest.py, `name_world`): the default recipe's run evaluated greedily (`--pair-rerank
0`) and its token-CE twin. Greedy's and `ce`'s chrF equal the runs' own evaluations
(eval/scores.json), the pair rerank's equals sacreBLEU's chrF of the candidates the rule picks from
`generate()`'s n-best list, forced names' equals that of the system's own translations with the
margin, and a folder without such runs or a bad margin is refused in one line."""
from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
import sacrebleu

import train as training
from data_prep.words import words
from models.grounded import GroundedSystem
from models.pair_rerank import PairLexicon
from torch_threads import one_thread  # noqa: F401  (fixture)

pytestmark = [pytest.mark.benchmark, pytest.mark.usefixtures("one_thread")]
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
SIZE = 4


@pytest.fixture(scope="module")
def grid(tmp_path_factory, cache, name_world) -> Path:
    path, _ = name_world
    root = tmp_path_factory.mktemp("grid")
    common = ["--data-dir", str(path), "--clip", "groundmt-micro", "--student-preset", "micro", "--teacher-steps", "3",
              "--teacher-batch-size", "8", "--batch-size", "8", "--steps", "60", "--lr", "5e-3",
              "--parallel-fraction", "0.5", "--self-train-rounds", "0", "--quiet", "--threads", "1",
              "--eval-bootstrap", "0", "--no-eval-untrained", "--no-compare-ce", "--checkpoint-every", "1000",
              "--cache-dir", str(cache)]
    assert training.main([*common, "--recipe", "ce+taught+pairs", "--pivot", "--pair-rerank", "0",
                          "--out", str(root / "runs" / "ce+taught+pairs-p0.5-s0")]) == 0
    assert training.main([*common, "--recipe", "ce", "--out", str(root / "runs" / "ce-p0.5-s0")]) == 0
    return root


def by_hand(run: Path) -> tuple[list[str], list[list[str]], list[str]]:
    """The run's test sentences reranked by its pairs here (n-best, then `PairLexicon.choose`), its
    n-best lists and the references."""
    sentences = json.loads((run / "eval" / "scores.json").read_text())["sentences"]
    sources, refs = [s["source"] for s in sentences], [s["references"][0] for s in sentences]
    lexicon = PairLexicon.load(run / "model", words)
    candidates, logprobs = GroundedSystem.load(run / "model").nbest(sources, size=SIZE)
    picked = [c[j] for c, j in zip(candidates, PairLexicon(lexicon.lang, lexicon.pairs, SIZE, words).choose(
        sources, candidates, logprobs))]
    return picked, candidates, refs


def test_the_benchmark_recounts_greedy_ce_and_the_rerank(grid, tmp_path):
    import pair_rerank

    out = tmp_path / "r.json"
    assert pair_rerank.main([str(grid), "--size", str(SIZE), "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    (cell,) = result["cells"]
    assert (cell["lang"], cell["fraction"], cell["seeds"]) == ("es", 0.5, [0])
    run = grid / "runs" / "ce+taught+pairs-p0.5-s0"
    lexicon = PairLexicon.load(run / "model", words)
    assert cell["pairs"] == [len(lexicon.pairs)] and lexicon.pairs and lexicon.size == 0
    scores = {name: json.loads((grid / "runs" / name / "eval" / "scores.json").read_text())
              for name in ("ce+taught+pairs-p0.5-s0", "ce-p0.5-s0")}
    assert cell["scores"]["greedy"]["chrF"] == [pytest.approx(scores["ce+taught+pairs-p0.5-s0"]["metrics"]["chrf"]["score"])]
    assert cell["scores"]["ce"]["chrF"] == [pytest.approx(scores["ce-p0.5-s0"]["metrics"]["chrf"]["score"])]
    picked, candidates, refs = by_hand(run)
    assert cell["scores"][f"pair rerank {SIZE}"]["chrF"] == [pytest.approx(sacrebleu.corpus_chrf(picked, [refs]).score)]
    assert cell["scores"][f"beam {SIZE}"]["chrF"] == [
        pytest.approx(sacrebleu.corpus_chrf([c[0] for c in candidates], [refs]).score)]
    assert "unseen concepts" not in cell["scores"]["greedy"] or not cell["scores"]["greedy"]["unseen concepts"]
    assert set(cell["rerank_vs_ce"]) == {"chrF", "BLEU"}  # no concept ids in this world


def test_a_folder_without_the_recipe_s_runs_is_refused(grid, tmp_path, capsys):
    import pair_rerank

    assert pair_rerank.main([str(grid), "--system", "contrastive", "--out", str(tmp_path / "r.json")]) == 2
    assert "no evaluated contrastive run under" in capsys.readouterr().err
    assert not (tmp_path / "r.json").exists()


def test_paired_runs_recounts_both_runs_and_their_difference(grid, tmp_path):
    import paired_runs

    system, baseline = grid / "runs" / "ce+taught+pairs-p0.5-s0", grid / "runs" / "ce-p0.5-s0"
    out = tmp_path / "p.json"
    assert paired_runs.main(["--name", "default vs ce", f"{system}:{baseline}", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    own = [json.loads((run / "eval" / "scores.json").read_text())["metrics"]["chrf"]["score"] for run in (system, baseline)]
    (row,) = result["pairs"]
    assert (row["system"], row["baseline"]) == (system.name, baseline.name) and str(tmp_path) not in out.read_text()
    assert row["scores"]["chrF"] == [pytest.approx(own[0]), pytest.approx(own[1])]
    delta = result["delta"]["chrF"]
    assert delta["delta"] == pytest.approx(own[0] - own[1]) and delta["delta_low"] <= delta["delta"] <= delta["delta_high"]
    assert own[0] != own[1]  # the two runs translate differently, so a zero difference would be a bug
    assert paired_runs.main(["--name", "self", f"{system}:{system}", "--out", str(out)]) == 0
    assert json.loads(out.read_text())["delta"]["chrF"]["delta"] == pytest.approx(0.0)


def test_paired_runs_decodes_a_greedy_run_of_pairs_by_the_rerank(grid, tmp_path):
    import paired_runs

    system, baseline = grid / "runs" / "ce+taught+pairs-p0.5-s0", grid / "runs" / "ce-p0.5-s0"
    out = tmp_path / "p.json"
    assert paired_runs.main(["--name", "reranked", f"{system}:{baseline}", "--rerank", str(SIZE),
                             "--out", str(out)]) == 0
    (row,) = json.loads(out.read_text())["pairs"]
    assert row["decoded"] == [f"pair rerank {SIZE}", "as evaluated"]  # token CE keeps no pairs to rerank by
    picked, _, refs = by_hand(system)
    assert row["scores"]["chrF"][0] == pytest.approx(sacrebleu.corpus_chrf(picked, [refs]).score)
    greedy = json.loads((system / "eval" / "scores.json").read_text())["metrics"]["chrf"]["score"]
    assert picked != (system / "eval" / "hyp.txt").read_text().splitlines() and row["scores"]["chrF"][0] != greedy


def test_paired_runs_refuses_other_test_sentences_and_foreign_outputs(grid, tmp_path, capsys):
    import shutil

    import paired_runs

    system, baseline = grid / "runs" / "ce+taught+pairs-p0.5-s0", grid / "runs" / "ce-p0.5-s0"
    other = tmp_path / "other"
    shutil.copytree(baseline, other)
    scores = json.loads((other / "eval" / "scores.json").read_text())
    scores["sentences"][0]["source"] += " otra"
    (other / "eval" / "scores.json").write_text(json.dumps(scores))
    out = tmp_path / "p.json"
    assert paired_runs.main(["--name", "x", f"{system}:{other}", "--out", str(out)]) == 2
    assert "not scored on the same test sentences" in capsys.readouterr().err and not out.exists()
    out.write_text("a user's notes\n")
    assert paired_runs.main(["--name", "x", f"{system}:{baseline}", "--out", str(out)]) == 2
    assert "not written by this script" in capsys.readouterr().err and out.read_text() == "a user's notes\n"
    assert paired_runs.main(["--name", "x", "no-colon", "--out", str(tmp_path / "q.json")]) == 2


def test_the_forced_names_benchmark_recounts_the_rerank_and_each_margin(grid, name_world, tmp_path, capsys):
    """On a copy of the run whose saved pairs are every name of the world (the run's own pair only
    the names no kept translation shows, none of the test sentences' words)."""
    import forced_names

    run, ce = tmp_path / "ce+taught+pairs-p0.5-s0", grid / "runs" / "ce-p0.5-s0"
    shutil.copytree(grid / "runs" / run.name, run, ignore=shutil.ignore_patterns("checkpoints"))
    PairLexicon("es", name_world[1], 0, words).save(run / "model")
    out = tmp_path / "f.json"
    assert forced_names.main([str(run), "--ce", str(ce), "--size", str(SIZE), "--margins", "0,100",
                              "--out", str(out)]) == 0
    (cell,) = json.loads(out.read_text())["cells"]
    picked, _, refs = by_hand(run)
    assert cell["scores"]["rerank"]["chrF"] == [pytest.approx(sacrebleu.corpus_chrf(picked, [refs]).score)]
    system = GroundedSystem.load(run / "model")
    sources = [s["source"] for s in json.loads((run / "eval" / "scores.json").read_text())["sentences"]]
    lexicon = PairLexicon.load(run / "model", words)
    for margin in (0, 100):
        system.pair_lexicon = PairLexicon(lexicon.lang, lexicon.pairs, SIZE, words, margin)
        assert cell["scores"][f"forced {margin}"]["chrF"] == [
            pytest.approx(sacrebleu.corpus_chrf(system.translate(sources), [refs]).score)]
    assert cell["forced_sentences"][0] > 0 and cell["changed"][0]["forced 100"] > 0  # the names were missing
    assert cell["scores"]["ce"]["chrF"] == [pytest.approx(json.loads((ce / "eval" / "scores.json").read_text())[
        "metrics"]["chrf"]["score"])]
    assert set(cell["vs_rerank"]) == {"forced 0", "forced 100"} and set(cell["vs_ce"]["forced 100"]) == {"chrF", "BLEU"}
    assert forced_names.main([str(run), "--margins", "1,-1", "--out", str(tmp_path / "g.json")]) == 2
    assert "--margins: expected numbers of at least 0" in capsys.readouterr().err


def test_paired_runs_decodes_with_forced_names(grid, name_world, tmp_path, capsys):
    import paired_runs

    system, baseline = tmp_path / "ce+taught+pairs-p0.5-s0", grid / "runs" / "ce-p0.5-s0"
    shutil.copytree(grid / "runs" / system.name, system, ignore=shutil.ignore_patterns("checkpoints"))
    PairLexicon("es", name_world[1], SIZE, words).save(system / "model")  # evaluated greedily, now saved with a rerank
    out = tmp_path / "p.json"
    assert paired_runs.main(["--name", "forced", f"{system}:{baseline}", "--rerank", str(SIZE), "--force", "100",
                             "--out", str(out)]) == 0
    (row,) = json.loads(out.read_text())["pairs"]
    assert row["decoded"] == [f"pair rerank {SIZE}, forced names 100", "as evaluated"]
    model = GroundedSystem.load(system / "model")
    model.pair_lexicon = PairLexicon("es", name_world[1], SIZE, words, 100.0)
    sentences = json.loads((system / "eval" / "scores.json").read_text())["sentences"]
    forced = model.translate([s["source"] for s in sentences])
    assert row["scores"]["chrF"][0] == pytest.approx(
        sacrebleu.corpus_chrf(forced, [[s["references"][0] for s in sentences]]).score)
    picked, _, _ = by_hand(system)
    assert forced != picked  # the forced names changed translations
    assert paired_runs.main(["--name", "x", f"{system}:{baseline}", "--force", "1", "--out", str(out)]) == 2
    assert "--force adds forced names to the rerank: give --rerank N as well" in capsys.readouterr().err
