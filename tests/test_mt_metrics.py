"""sacreBLEU wrappers and the bootstrap machinery against sacreBLEU itself (CLI and API)."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
import sacrebleu
from sacrebleu.metrics import BLEU, CHRF
from sacrebleu.significance import PairedTest

from caption_pairs import caption_pairs
from eval import mt_metrics, stats
from eval.references import reference_lists, streams_to_lists

SACREBLEU = str(Path(sys.executable).with_name("sacrebleu"))


def sacrebleu_cli(tmp_path, hyps, ref_streams, *extra):
    """sacreBLEU's command line on files: {metric name: {"score", "signature", ...}}."""
    hyp_file = tmp_path / "hyp.txt"
    hyp_file.write_text("\n".join(hyps) + "\n", encoding="utf-8")
    ref_files = []
    for k, stream in enumerate(ref_streams):
        ref_files.append(tmp_path / f"ref{k}.txt")
        ref_files[-1].write_text("\n".join(stream) + "\n", encoding="utf-8")
    out = subprocess.run([SACREBLEU, *map(str, ref_files), "-i", str(hyp_file), "-m", "bleu", "chrf",
                          "-f", "json", "-w", "6", *extra], check=True, capture_output=True, text=True)
    return {d["name"]: d for d in json.loads(out.stdout)}


@pytest.fixture(scope="module")
def corpus():
    hyps, refs = caption_pairs(120, seed=3)
    second, _ = caption_pairs(120, seed=4)  # a second, mostly unrelated reference stream
    return hyps, refs, second


def test_corpus_scores_equal_sacrebleu_cli(tmp_path, corpus):
    hyps, refs, second = corpus
    cli = sacrebleu_cli(tmp_path, hyps, [refs])
    for name, cli_name in (("bleu", "BLEU"), ("chrf", "chrF2")):
        ours = mt_metrics.corpus_score(name, hyps, refs)
        assert round(ours["score"], 6) == pytest.approx(cli[cli_name]["score"], abs=1e-6)
        assert ours["signature"] == cli[cli_name]["signature"]


def test_multiple_reference_streams_equal_sacrebleu_cli(tmp_path, corpus):
    hyps, refs, second = corpus
    cli = sacrebleu_cli(tmp_path, hyps, [refs, second])
    per_hyp = streams_to_lists([refs, second])
    for name, cli_name in (("bleu", "BLEU"), ("chrf", "chrF2")):
        ours = mt_metrics.corpus_score(name, hyps, per_hyp)
        assert round(ours["score"], 6) == pytest.approx(cli[cli_name]["score"], abs=1e-6)
        assert ours["signature"] == cli[cli_name]["signature"]
        assert "nrefs:2" in ours["signature"]


def test_chinese_target_uses_zh_tokenizer_and_equals_cli(tmp_path):
    hyps = ["一只红色的狗在草地上奔跑", "两个人坐在长椅上", "一个男人骑着自行车"]
    refs = ["一只红狗在草地上跑", "两个人坐在公园的长椅上", "一个男人在街上骑自行车"]
    cli = sacrebleu_cli(tmp_path, hyps, [refs], "-tok", "zh")
    ours = mt_metrics.corpus_score("bleu", hyps, refs, target_lang="zh")
    assert "tok:zh" in ours["signature"]
    assert round(ours["score"], 6) == pytest.approx(cli["BLEU"]["score"], abs=1e-6)
    assert "tok:13a" in mt_metrics.corpus_score("bleu", hyps, refs, target_lang="en")["signature"]


def test_sentence_scores_equal_sacrebleu_sentence_api(corpus):
    hyps, refs, second = corpus
    per_hyp = [[r, s] for r, s in zip(refs, second)]
    bleu = mt_metrics.sentence_scores("bleu", hyps, per_hyp)
    chrf = mt_metrics.sentence_scores("chrf", hyps, per_hyp)
    for h, r, b, c in zip(hyps, per_hyp, bleu, chrf):
        assert b == pytest.approx(sacrebleu.sentence_bleu(h, r).score, abs=1e-9)
        assert c == pytest.approx(sacrebleu.sentence_chrf(h, r).score, abs=1e-9)


def test_variable_reference_counts():
    hyps = ["a dog runs", "a cat sits on a mat"]
    refs = [["a dog runs fast"], ["a cat sits", "the cat is sitting on the mat"]]
    ours = mt_metrics.corpus_score("bleu", hyps, refs)
    oracle = BLEU().corpus_score(hyps, [["a dog runs fast", "a cat sits"],
                                        [None, "the cat is sitting on the mat"]])
    assert ours["score"] == pytest.approx(oracle.score)
    assert "nrefs:var" in ours["signature"]


@pytest.mark.parametrize("name,metric_cls", [("bleu", BLEU), ("chrf", CHRF)])
def test_bootstrap_interval_equals_sacrebleu_confidence(monkeypatch, corpus, name, metric_cls):
    hyps, refs, _ = corpus
    monkeypatch.setenv("SACREBLEU_SEED", "777")
    oracle = metric_cls().corpus_score(hyps, [refs], n_bootstrap=300)
    metric, seg = mt_metrics.segment_statistics(name, hyps, refs)
    ci = stats.bootstrap_ci(stats.Statistic(seg, lambda s: mt_metrics.stats_to_score(metric, s)),
                            n_samples=300, seed=777)
    assert ci["score"] == pytest.approx(oracle.score, abs=1e-9)
    assert ci["mean"] == pytest.approx(oracle._mean, abs=1e-9)
    assert (ci["high"] - ci["low"]) / 2 == pytest.approx(oracle._ci, abs=1e-9)
    assert ci["low"] <= ci["score"] <= ci["high"]


def test_paired_bootstrap_equals_sacrebleu_paired_bs(monkeypatch, corpus):
    hyps, refs, second = corpus
    baseline = [h if i % 3 else s for i, (h, s) in enumerate(zip(hyps, second))]  # a worse system
    monkeypatch.setenv("SACREBLEU_SEED", "4321")
    test = PairedTest([("baseline", baseline), ("system", hyps)],
                      {"BLEU": BLEU(), "chrF": CHRF()}, [refs], test_type="bs", n_samples=400)
    _, oracle = test()
    for k, name in enumerate(("bleu", "chrf")):
        statistic = {}
        for system, h in (("system", hyps), ("baseline", baseline)):
            metric, seg = mt_metrics.segment_statistics(name, h, refs)
            statistic[system] = stats.Statistic(seg, lambda s, m=metric: mt_metrics.stats_to_score(m, s))
        ours = stats.paired_bootstrap(statistic["system"], statistic["baseline"], n_samples=400, seed=4321)
        expected = oracle[["BLEU", "chrF2"][k]][1]  # the "system" row
        assert ours["p_value"] == pytest.approx(expected.p_value)
        assert ours["system"] == pytest.approx(expected.score)
        assert ours["delta"] > 0 and ours["delta_low"] > 0


def test_mean_statistic_bootstrap_is_seeded_and_brackets_the_mean():
    values = [0.1 * (i % 7) for i in range(50)]
    a = stats.bootstrap_ci(stats.Statistic.mean(values), n_samples=200, seed=1)
    b = stats.bootstrap_ci(stats.Statistic.mean(values), n_samples=200, seed=1)
    c = stats.bootstrap_ci(stats.Statistic.mean(values), n_samples=200, seed=2)
    assert a == b and a != c
    assert a["low"] < sum(values) / 50 < a["high"]
    same = stats.paired_bootstrap(stats.Statistic.mean(values), stats.Statistic.mean(values), seed=1)
    assert same["delta"] == same["delta_low"] == same["delta_high"] == 0


def test_input_errors_are_clear():
    with pytest.raises(ValueError, match="2 hypotheses but 1 reference"):
        mt_metrics.corpus_score("bleu", ["a", "b"], ["a"])
    with pytest.raises(ValueError, match="unknown sacreBLEU metric"):
        mt_metrics.corpus_score("ter", ["a"], ["a"])
    with pytest.raises(ValueError, match="has no reference"):
        reference_lists(["a"], [[]])
    with pytest.raises(TypeError, match="not a single string"):
        reference_lists("a dog", "a dog")
    with pytest.raises(ValueError, match="NaN"):
        stats.Statistic.mean([0.5, float("nan")])
