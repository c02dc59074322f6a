"""`python -m eval ablation`: the grid runs end to end on tiny settings, resumes without training
again, aggregates means with t-intervals over seeds and paired differences to `ce` (a stratified
bootstrap that reduces to sacreBLEU's paired bootstrap for one stratum), and renders its page."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy import stats as scipy_stats

from eval.__main__ import main as eval_main
from eval.ablation import mean_ci
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


TINY = ("--clip groundmt-micro --student-preset micro --synthetic-images 60 --teacher-steps 3 --teacher-batch-size 8 "
        "--batch-size 8 --ce-batch-size 8 --k-english 1 --m-source 1 --eval-every 100 --checkpoint-every 100 "
        "--self-train-start 0.5 --self-train-nbest 2 --self-train-group 4")


@pytest.mark.slow
def test_the_grid_runs_resumes_and_renders(tmp_path, cache, capsys):
    out = tmp_path / "ablation"
    argv = ["ablation", "--out", str(out), "--fractions", "0,0.3", "--systems", "ce,contrastive", "--seeds", "2",
            "--steps", "4", "--jobs", "2", "--train-args", f"{TINY} --cache-dir {cache}"]
    assert eval_main(argv) == 0
    result = json.loads((out / "ablation.json").read_text())
    assert not result["failed"] and not result["missing"]
    cells = {(r["system"], r["fraction"]): r for r in result["table"]}
    assert set(cells) == {(s, p) for s in ("ce", "contrastive") for p in (0.0, 0.3)}
    ground_0, ground_3 = cells[("contrastive", 0.0)], cells[("contrastive", 0.3)]
    assert ground_0["metrics"] == ground_3["metrics"]  # trained once per seed: it reads no translation
    for row in result["table"]:
        assert row["seeds"] == [0, 1] and set(row["metrics"]) == {"chrF", "BLEU", "BERTScore F", "LiSAScore F", "R@1"}
        assert row["metrics"]["chrF"]["low"] <= row["metrics"]["chrF"]["mean"] <= row["metrics"]["chrF"]["high"]
        assert ("vs_ce" in row) == (row["system"] != "ce")
    ce_0 = json.loads((out / "runs" / "ce-p0-s0" / "config.json").read_text())
    assert ce_0["steps"] == 0  # at P = 0 nothing trains ce: its cell is the untrained student
    for name in ("ce-p0.3-s1", "contrastive-pany-s0"):
        config = json.loads((out / "runs" / name / "config.json").read_text())
        assert config["steps"] == 4 and config["seed"] == int(name[-1])

    before = {p: p.stat().st_mtime for p in (out / "runs").glob("*/eval/scores.json")}
    assert eval_main(argv) == 0  # rerun: every run is complete, nothing is trained again
    assert {p: p.stat().st_mtime for p in (out / "runs").glob("*/eval/scores.json")} == before

    page = tmp_path / "page" / "ablation.html"
    assert eval_main(["report", str(out), "--out", str(page)]) == 0
    html = page.read_text()
    assert "Ablation over the parallel fraction" in html and html.count("<img") == 5
    assert "| 0.3 | contrastive |" in page.with_suffix(".md").read_text()


@pytest.mark.benchmark
def test_the_ndim_sweep_runs_a_small_grid(tmp_path, cache):
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    out = tmp_path / "sweep"
    done = subprocess.run([sys.executable, str(root / "benchmarks" / "ndim_sweep.py"), "--out", str(out),
                           "--similarities", "v4", "--labels", "diagonal", "--ns", "3", "--seeds", "2", "--no-lsa",
                           "--steps", "4", "--jobs", "2", "--train-args", f"{TINY} --cache-dir {cache}"],
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
