"""The translation quality report on two small but real run directories: scores.json from
`eval.score` (BLEU, chrF, BERTScore, LiSAScore; retrieval with a tiny random CLIP on one run),
metrics.jsonl curves, a synthetic dataset for the example images."""
from __future__ import annotations

import json
import random
import shutil
from html.parser import HTMLParser

import numpy as np
import pytest
from scipy.optimize import linear_sum_assignment

from eval import score
from eval.__main__ import main as eval_main
from eval.report import build_report
from chromium import screenshot
from torch_threads import one_thread  # noqa: F401  (fixture)

pytestmark = pytest.mark.usefixtures("one_thread")
N_BOOT = 50


def _corrupt(sentence: str, rng: random.Random, p: float) -> str:
    words = sentence.split()
    kept = [w for w in words if rng.random() > p] or words[:1]
    if rng.random() < p:
        kept.append(rng.choice(["the", "red", "dog", "big"]))
    return " ".join(kept)


def _metrics_lines(steps: int, speed: float, extra: bool) -> list[str]:
    rng = np.random.default_rng(0)
    lines = []
    for step in range(0, steps, 2):
        decay = np.exp(-step * speed / 20)
        rec = {"step": step, "loss": 3 * decay + 0.1 * rng.random(), "loss/ndim": 2 * decay,
               "loss/anchor": decay, "logit_scale": 2.6 + step / 40, "logit/good": 5 - 3 * decay,
               "logit/bad": 1 + decay, "logit/gap": 4 - 4 * decay, "cos/student_english": 1 - decay,
               "cos/student_image": 0.3 - 0.2 * decay, "r1/image_text": 1 - decay, "lr": 1e-4}
        if extra:
            rec.update({"health/image/effective_rank": 20 + step, "health/student/effective_rank": 10 + step,
                        "region/diagonal/proportion": 0.2, "region/off/proportion": 0.8})
        lines.append(json.dumps(rec))
        if step % 10 == 0:
            lines.append(json.dumps({"step": step, "split": "validation", "loss": 3.2 * decay}))
    return lines


def _write_run(root, name, rows, hyps, *, data_dir, lr, clip=None, images=None, untrained=None,
               extra_curves=True, speed=1.0):
    run = root / name
    (run / "eval").mkdir(parents=True)
    metrics = ["bleu", "chrf", "bertscore", "lisascore"] + (["retrieval"] if clip else [])
    result = score(hyps, [r["references"] for r in rows], metrics, sources=[r["source"] for r in rows],
                   baseline_hyps=untrained, bootstrap=N_BOOT, images=images, clip=clip)
    for sentence, r in zip(result["sentences"], rows):
        sentence["image_id"] = r["image_id"]
    if untrained is not None:
        result["untrained"] = score(untrained, [r["references"] for r in rows], ["bleu", "chrf"],
                                    bootstrap=N_BOOT)
        result["probe"] = {"protocol": "heldout", "ce": 4.2, "token_accuracy": 0.31, "fit_ce": 3.9}
        result["grounded"] = {"trained": {"a2b": 0.5, "b2a": 0.4}, "untrained": {"a2b": 0.1, "b2a": 0.1}}
    result.update(run_id=name, split="test")
    (run / "eval" / "scores.json").write_text(json.dumps(result, indent=1))
    config = {"lang": "es", "lr": lr, "similarity": "v4", "batch_size": 8, "run_id": name,
              "data": "synthetic", "data_path": str(data_dir), "clip": "groundmt-micro",
              "clip_pretrained": None}
    (run / "config.json").write_text(json.dumps(config))
    (run / "metrics.jsonl").write_text("\n".join(_metrics_lines(30, speed, extra_curves)) + "\n")
    return run


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    from data_prep.synthetic.build import build_synthetic
    from models.clip_loading import load_clip

    root = tmp_path_factory.mktemp("report")
    data = root / "data"
    dsd = build_synthetic(data, lang="es", images=40, image_size=32, show_progress=False)
    test = dsd["test"]
    rows = [{"image_id": rec["image_id"], "source": src, "references": rec["english"]}
            for rec in test for src in rec["source"]]
    images = [rec["image"] for rec in test for _ in rec["source"]]
    rng = random.Random(0)
    hyps_a = [_corrupt(r["references"][0], rng, 0.3) for r in rows]
    untrained = [_corrupt(r["references"][-1], rng, 0.8) for r in rows]
    run_a = _write_run(root, "run-a", rows, hyps_a, data_dir=data, lr=1e-4,
                       clip=load_clip("groundmt-micro"), images=images, untrained=untrained)
    order = list(range(len(rows)))[::-1]  # run B lists the same test sentences in another order
    hyps_b = [_corrupt(rows[i]["references"][0], rng, 0.15) for i in order]
    run_b = _write_run(root, "run-b", [rows[i] for i in order], hyps_b, data_dir=data, lr=3e-4,
                       extra_curves=False, speed=2.0)
    return {"root": root, "a": run_a, "b": run_b, "rows": rows, "hyps_a": hyps_a,
            "hyps_b_aligned": [hyps_b[order.index(i)] for i in range(len(rows))]}


class _Page(HTMLParser):
    """Collects <img> sources and the system-table rows with their cells."""

    def __init__(self):
        super().__init__()
        self.imgs, self.rows, self._row, self._in = [], [], None, []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "img":
            self.imgs.append(a)
        if tag == "tr" and "system" in (a.get("class") or "").split():
            self._row = {"attrs": a, "text": []}
            self.rows.append(self._row)
        if tag == "table":
            self._in.append(a.get("id"))

    def handle_endtag(self, tag):
        if tag == "table":
            self._in.pop()
        if tag == "tr":
            self._row = None

    def handle_data(self, data):
        if self._row is not None:
            self._row["text"].append(data)


@pytest.fixture(scope="module")
def report(runs):
    out = runs["root"] / "out" / "report.html"
    assert eval_main(["report", str(runs["a"]), str(runs["b"]), "--out", str(out)]) == 0
    return out, json.loads(out.with_suffix(".json").read_text())


def test_html_self_contained_table_one_row_per_run_with_cis(report):
    out, rep = report
    page = _Page()
    page.feed(out.read_text(encoding="utf-8"))
    assert page.imgs and all(i["src"].startswith("data:image/png;base64,") for i in page.imgs)
    assert "<script" not in out.read_text() and "<link" not in out.read_text()
    trained = [r for r in page.rows if "trained" in r["attrs"]["class"].split()]
    assert [r["attrs"]["data-run"] for r in trained] == ["run-a", "run-b"]
    assert [r["attrs"]["data-run"] for r in page.rows if "untrained" in r["attrs"]["class"]] == ["run-a"]
    for r in trained:  # every metric cell shows "[low, high]"
        text = "".join(r["text"])
        assert text.count("[") >= 8, text
    alts = [i.get("alt", "") for i in page.imgs]
    assert sum(a == "token alignment heatmap" for a in alts) == 6  # 3 kinds x 2 runs
    assert sum(a.startswith("image ") for a in alts) == 12  # every example has its test image
    assert {"loss", "logit", "cos", "health/*/effective_rank", "region/*/proportion", "r1"} <= set(rep["curves"])
    assert set(rep["curves"]["region/*/proportion"]) == {"run-a"}  # run B never logged regions
    # a dataset without concept ids: no concept column, section or figure (tests/test_concept_eval.py has them)
    assert rep["concepts"] == {} and not any(k.startswith("concepts.") for k in rep["columns"])
    assert "concepts-table" not in out.read_text() and "Concepts:" not in out.with_suffix(".md").read_text()


def test_table_values_are_the_scores_and_markdown_agrees(report, runs):
    out, rep = report
    md = out.with_suffix(".md").read_text(encoding="utf-8")
    scores = json.loads((runs["a"] / "eval" / "scores.json").read_text())["metrics"]
    row = next(r for r in rep["table"] if r["run"] == "run-a" and r["system"] == "trained")
    assert row["cells"]["bleu"]["value"] == scores["bleu"]["score"]
    assert row["cells"]["lisascore.F"]["low"] == scores["lisascore"]["ci"]["F"]["low"]
    assert row["cells"]["retrieval.t2i.R@5"]["value"] == scores["retrieval"]["translation"]["t2i"]["R@5"]
    assert "retrieval.grounding" not in next(r for r in rep["table"] if r["run"] == "run-b")["cells"]
    labels = ["run", "system", "n"] + rep["columns"]
    for r in rep["table"]:
        line = next(x for x in md.splitlines() if x.startswith(f"| {r['run']} | {r['system']} |"))
        cells = dict(zip(labels, (c.strip() for c in line.strip("|").split("|"))))
        for key, cell in r["cells"].items():
            digits = 2 if key in ("bleu", "chrf") else 4
            ci = "no CI" if cell["low"] is None else f"[{cell['low']:.{digits}f}, {cell['high']:.{digits}f}]"
            assert cells[key] == f"{cell['value']:.{digits}f} {ci}"
    assert row["cells"]["retrieval.i2t.R@1"]["low"] is None  # image→text has no per-sentence statistic
    assert "## Configuration differences" in md and "| `lr` |" in md


def test_paired_test_matches_eval_score_on_aligned_sentences(report, runs):
    out, rep = report
    tests = rep["paired_vs_baseline"]["run-b"]["tests"]
    oracle = score(runs["hyps_b_aligned"], [r["references"] for r in runs["rows"]], ["bleu", "chrf"],
                   baseline_hyps=runs["hyps_a"], bootstrap=N_BOOT)["paired"]
    for key in ("bleu", "chrf"):
        assert tests[key]["p_value"] == pytest.approx(oracle[key]["p_value"])
        assert tests[key]["delta"] == pytest.approx(oracle[key]["delta"])
    assert "reason" in tests["retrieval.t2i.R@1"] and "reason" in tests["retrieval.grounding"]
    assert "t2i R@1" in out.with_suffix(".md").read_text().split("- n/a: run-b (")[1]  # its "n/a" cells explained
    assert {c["key"] for c in rep["configs"] if c["differs"]} == {"lr", "run_id"}


def test_heatmap_alignment_is_the_optimal_assignment_and_gives_the_stored_score(report, runs):
    _, rep = report
    scores = json.loads((runs["a"] / "eval" / "scores.json").read_text())
    aligned = [ex for ex in rep["examples"]["run-a"] if ex["alignment"]]
    assert [ex["kind"] for ex in aligned] == ["best", "median", "worst"]
    for ex in aligned:
        a = ex["alignment"]
        sim = np.array(a["sim"])
        h, w = sim.shape
        reward = sim * (1 / h + 1 / w)  # uniform weights (no idf): s_ij (a_i + b_j)
        rows, cols = linear_sum_assignment(reward, maximize=True)
        chosen = [(i, j) for i, j in enumerate(a["lsa"]) if j >= 0]
        assert reward[tuple(zip(*chosen))].sum() == pytest.approx(reward[rows, cols].sum(), abs=1e-3)
        assert a["greedy_hyp"] == sim.argmax(1).tolist()
        stored = scores["sentences"][ex["index"]]["lisascore.F"]
        assert a["scores"]["lsa"]["F"] == pytest.approx(stored, abs=1e-4)
        assert a["scores"]["lsa"]["P"] <= a["scores"]["greedy"]["P"] + 1e-6


def test_differing_test_sets_are_reported_and_missing_parts_tolerated(runs, tmp_path):
    small = tmp_path / "small"
    shutil.copytree(runs["b"], small)
    scores = json.loads((small / "eval" / "scores.json").read_text())
    scores["sentences"] = scores["sentences"][1:]
    (small / "eval" / "scores.json").write_text(json.dumps(scores))
    (small / "metrics.jsonl").unlink()
    cfg = json.loads((small / "config.json").read_text())
    cfg["data_path"] = str(tmp_path / "nowhere")
    (small / "config.json").write_text(json.dumps(cfg))
    rep = build_report([runs["a"], small], tmp_path / "r.html", examples=1, heatmaps=0)
    assert "test sets differ" in rep["paired_vs_baseline"]["run-b"]["reason"]
    assert any("unavailable" in n for n in rep["notes"]) and any("metrics.jsonl" in n for n in rep["notes"])
    assert not any(ex["has_image"] for ex in rep["examples"]["run-b"])
    assert "test sets differ" in (tmp_path / "r.md").read_text()


def test_headless_chromium_renders_a_non_blank_page(report, tmp_path):
    out, _ = report
    pixels = screenshot(out, tmp_path / "shot.png")
    assert pixels.shape == (2000, 1280)
    assert pixels.std() > 10, "screenshot is blank"
