"""`python -m eval ablation`: the grid runs end to end on tiny settings, resumes without training
again, aggregates means with t-intervals over seeds and paired differences to `ce` (a stratified
bootstrap that reduces to sacreBLEU's paired bootstrap for one stratum), with unseen/seen concept
accuracy where the captions carry concept ids, and renders its page."""
from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pytest
from scipy import stats as scipy_stats

from eval.__main__ import main as eval_main
from eval.ablation import CONCEPT_METRICS, METRICS, mean_ci
from eval.stats import Statistic, paired_bootstrap, stratified_paired_bootstrap


def test_one_stratum_is_the_paired_bootstrap():
    rng = np.random.default_rng(0)
    a, b = Statistic.mean(rng.random(50)), Statistic.mean(rng.random(50))
    got, want = stratified_paired_bootstrap([(a, b)], n_samples=300, seed=7), paired_bootstrap(a, b, n_samples=300,
                                                                                                seed=7)
    for key in ("delta", "delta_low", "delta_high", "p_value"):
        assert got[key] == pytest.approx(want[key])


def test_strata_average_and_identical_strata_change_nothing():
    rng = np.random.default_rng(1)
    a, b = Statistic.mean(rng.random(40) + 0.2), Statistic.mean(rng.random(40))
    c, d = Statistic.mean(rng.random(30)), Statistic.mean(rng.random(30) + 0.1)
    two = stratified_paired_bootstrap([(a, b), (c, d)], n_samples=200)
    assert two["delta"] == pytest.approx(((a.score - b.score) + (c.score - d.score)) / 2)
    assert two["strata"] == 2 and two["delta_low"] <= two["delta"] <= two["delta_high"]
    with pytest.raises(ValueError, match="same items"):
        stratified_paired_bootstrap([(a, c)])


def test_mean_ci_is_the_t_interval():
    values = [61.0, 64.5, 59.8]
    got = mean_ci(values)
    half = scipy_stats.t.ppf(0.975, 2) * np.std(values, ddof=1) / math.sqrt(3)
    assert got["mean"] == pytest.approx(np.mean(values))
    assert got["high"] - got["mean"] == pytest.approx(half) and got["mean"] - got["low"] == pytest.approx(half)
    assert mean_ci([3.0])["low"] is None


TINY = ("--clip groundmt-micro --student-preset micro --teacher-steps 3 --teacher-batch-size 8 "
        "--batch-size 8 --ce-batch-size 8 --k-english 1 --m-source 1 --eval-every 100 --checkpoint-every 100 "
        "--self-train-start 0.5 --self-train-nbest 2 --self-train-group 4")


def concept_accuracy_of(out, name: str, kind: str, split: str) -> float | None:
    """The recount: the share of `kind` mentions (by the split of run `split`) that run `name` got right."""
    def sentences(run):
        return [s["concepts"] for s in json.loads((out / "runs" / run / "eval" / "scores.json").read_text())["sentences"]]

    correct = mentions = 0
    for ours, theirs in zip(sentences(name), sentences(split)):
        correct += len(set(ours["correct"]) & set(theirs[kind]))
        mentions += len(theirs[kind])
    return correct / mentions if mentions else None


@pytest.mark.slow
def test_the_grid_runs_resumes_and_renders(tmp_path, cache, concept_world):
    """On the tiny long-tail world (captions with concept ids): every cell carries unseen- and
    seen-concept accuracy beside chrF; then the same grid with the concept ids removed from its score
    files (a dataset without them) has no concept column and no error."""
    out = tmp_path / "ablation"
    argv = ["ablation", "--out", str(out), "--data-dir", str(concept_world), "--fractions", "0,0.1", "--systems",
            "ce,contrastive", "--seeds", "2", "--steps", "4", "--jobs", "2", "--train-args", f"{TINY} --cache-dir {cache}"]
    assert eval_main(argv) == 0
    result = json.loads((out / "ablation.json").read_text())
    assert not result["failed"] and not result["missing"]
    assert result["data"] == concept_world.name  # the dataset's name, not a path of this machine
    cells = {(r["system"], r["fraction"]): r for r in result["table"]}
    assert set(cells) == {(s, p) for s in ("ce", "contrastive") for p in (0.0, 0.1)}
    ground_0, ground_1 = cells[("contrastive", 0.0)], cells[("contrastive", 0.1)]
    for metric in METRICS:  # trained once per seed: it reads no translation
        assert ground_0["metrics"][metric] == ground_1["metrics"][metric]
    concept_columns = 0
    for row in result["table"]:
        assert row["seeds"] == [0, 1] and set(METRICS) <= set(row["metrics"])
        assert row["metrics"]["chrF"]["low"] <= row["metrics"]["chrF"]["mean"] <= row["metrics"]["chrF"]["high"]
        assert ("vs_ce" in row) == (row["system"] != "ce")
        p = f"{row['fraction']:g}"
        for name, kind in CONCEPT_METRICS.items():
            # counted with the split of ce at this P and seed, also for contrastive (which saw no translation)
            want = [a for seed in (0, 1) if (a := concept_accuracy_of(
                out, f"{row['system']}-p{'any' if row['system'] == 'contrastive' else p}-s{seed}", kind,
                f"ce-p{p}-s{seed}")) is not None]
            assert (name in row["metrics"]) == bool(want), (row["system"], p, name)
            if want:
                concept_columns += 1
                assert row["metrics"][name]["mean"] == pytest.approx(np.mean(want)) and row["metrics"][name]["n"] == len(want)
                assert (name in row.get("vs_ce", {})) == (row["system"] != "ce")
    assert "seen concepts" not in cells[("ce", 0.0)]["metrics"]  # nothing translated at P = 0: every concept unseen
    assert "unseen concepts" in cells[("ce", 0.0)]["metrics"] and concept_columns >= 5
    ce_0 = json.loads((out / "runs" / "ce-p0-s0" / "config.json").read_text())
    assert ce_0["steps"] == 0  # at P = 0 nothing trains ce: its cell is the untrained student
    for name in ("ce-p0.1-s1", "contrastive-pany-s0"):
        config = json.loads((out / "runs" / name / "config.json").read_text())
        assert config["steps"] == 4 and config["seed"] == int(name[-1])

    before = {p: p.stat().st_mtime for p in (out / "runs").glob("*/eval/scores.json")}
    assert eval_main(argv) == 0  # rerun: every run is complete, nothing is trained again
    assert {p: p.stat().st_mtime for p in (out / "runs").glob("*/eval/scores.json")} == before

    page = tmp_path / "page" / "ablation.html"
    assert eval_main(["report", str(out), "--out", str(page)]) == 0
    html, md = page.read_text(), page.with_suffix(".md").read_text()
    assert "Ablation over the parallel fraction" in html and html.count("<img") == 7  # 5 metrics, unseen, seen
    assert result["train_args"] == TINY.split() and str(cache) not in html + md + json.dumps(result)
    assert f"every run also: <code>{TINY}</code>" in html and f"Every run also: `{TINY}`." in md
    assert "<th>unseen concepts</th>" in html and "| unseen concepts | Δ unseen concepts |" in md
    assert "| 0.1 | contrastive |" in md

    plain = tmp_path / "plain"  # the same grid as if its dataset had no concept ids
    shutil.copytree(out, plain)
    for path in (plain / "runs").glob("*/eval/scores.json"):
        scores = json.loads(path.read_text())
        scores.pop("concepts")
        for sentence in scores["sentences"]:
            sentence.pop("concepts")
        path.write_text(json.dumps(scores))
    assert eval_main([argv[0], "--out", str(plain), *argv[3:]]) == 0  # nothing to train: it aggregates
    assert all(set(row["metrics"]) == set(METRICS) for row in json.loads((plain / "ablation.json").read_text())["table"])
    assert eval_main(["report", str(plain), "--out", str(tmp_path / "plain.html")]) == 0
    assert (tmp_path / "plain.html").read_text().count("<img") == 5 and "concepts" not in (tmp_path / "plain.md").read_text()


@pytest.mark.benchmark
def test_the_ndim_sweep_runs_a_small_grid(tmp_path, cache):
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    out = tmp_path / "sweep"
    done = subprocess.run([sys.executable, str(root / "benchmarks" / "ndim_sweep.py"), "--out", str(out),
                           "--similarities", "v4", "--labels", "diagonal", "--ns", "3", "--seeds", "2", "--no-lsa",
                           "--steps", "4", "--jobs", "2", "--train-args",
                           f"--data synthetic --world-images 60 {TINY} --cache-dir {cache}"],
                          capture_output=True, text=True, timeout=900, cwd=root)
    assert done.returncode == 0, done.stderr[-3000:]
    sweep = json.loads((out / "sweep.json").read_text())
    assert set(sweep["table"]) == {"v4-diagonal-n3"}
    row = sweep["table"]["v4-diagonal-n3"]
    assert row["student→image R@1"]["n"] == 2 and 0 <= row["most repeated output"]["mean"] <= 1
    assert "| v4-diagonal-n3 |" in done.stdout


def test_the_page_colours_a_difference_by_the_side_of_0_its_interval_lies_on():
    from eval.report.ablation_page import _significance

    assert _significance({"delta_low": 0.1, "delta_high": 2.0}) == " class='sig'"
    assert _significance({"delta_low": -2.0, "delta_high": -0.1}) == " class='worse'"
    assert _significance({"delta_low": -1.0, "delta_high": 1.0}) == "" == _significance(None)
