"""`python -m eval analyze` on a tiny trained run (image tower trained, text tower frozen): files,
JSON keys and sane values; the layer hooks against open_clip; the student-path CKA against an
oracle (a student that writes the reference reproduces the teacher's states: CKA diagonal 1);
parameter movement, token usage and attribute labels by hand; the tags path; CLI errors; the
report's Analysis section, looked at in headless Chromium."""
from __future__ import annotations

import json
import math
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

import training
from chromium import screenshot
from eval.__main__ import main as eval_main
from eval.analysis import analyze as analyze_module
from eval.analysis.cka_maps import POOLINGS, cka_batches, student_vs_english
from eval.analysis.context import load_context
from eval.analysis.labels import SyntheticLabels, TagLabels
from eval.analysis.layers import block_states, layer_names
from eval.analysis.movement import layer_group, relative_distances
from eval.analysis.tokens import usage
from eval.report import build_report
from eval.report.collect import load_run
from models.decoding import Decoded
from tiny_run import tiny
from torch_threads import one_thread  # noqa: F401  (fixture)

pytestmark = pytest.mark.usefixtures("one_thread")
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def run(cache, tmp_path_factory) -> Path:
    """200 synthetic images (20 test images, 40 test sentences), image tower trained; 100 steps with
    human translations for every training caption, so that the student's translations differ
    (asserted: at least 6 distinct of 40; 8 to 17 measured over four seeds, 17 at seed 0, this
    run's; 8 steps gave one) and the student-path CKA is defined. A small tower learning rate keeps
    the image tower near the teacher (CKA diagonal 0.90-0.97 measured)."""
    out = tmp_path_factory.mktemp("analysis") / "run"
    assert training.main(tiny(cache, out, "--world-images", "200", "--freeze", "text", "--steps", "100",
                           "--parallel-fraction", "1", "--warmup-steps", "5", "--lr", "5e-3", "--tower-lr", "2e-4",
                           "--checkpoint-every", "50", "--eval-every", "50")) == 0
    hyps = (out / "eval" / "hyp.txt").read_text(encoding="utf-8").splitlines()
    assert len(hyps) == 40 and len(set(hyps)) >= 6, hyps
    return out


@pytest.fixture(scope="module")
def analysed(run) -> dict:
    assert eval_main(["analyze", str(run)]) == 0
    return json.loads((run / "analysis" / "analysis.json").read_text())


@pytest.fixture(scope="module")
def ctx(run):
    return load_context(load_run(run), limit=1000, batch_size=16, device="cpu")


# -- the whole command ----------------------------------------------------------------------------
def test_writes_every_part_and_its_figures(run, analysed):
    assert set(analysed["parts"]) == {"cka", "probes", "movement", "tokens", "health", "tail"}
    assert "no concept ids" in analysed["parts"]["tail"]["note"]  # a shapes-world run has no long tail
    assert analysed["test_sentences"] == 40 and analysed["teacher"] is not None
    files = {f["file"] for f in analysed["figures"]}
    assert {"cka_student_vs_english.png", "cka_image_tower.png", "probe_lm_head.png", "probe_attributes.png",
            "movement_to_final.png", "movement_from_teacher.png", "tokens.png", "health.png"} <= files
    for name in files:
        assert (run / "analysis" / name).read_bytes().startswith(PNG)
    assert all(f["title"] and f["caption"] and f["part"] in analysed["parts"] for f in analysed["figures"])


def test_cka_values(analysed):
    cka = analysed["parts"]["cka"]
    image = cka["image_tower"]
    for pooling in POOLINGS:
        grid = image[pooling]
        assert grid["rows"] == grid["cols"] == ["embed", "block 1"] and grid["samples"] == 20
        defined = [v for row in grid["matrix"] for v in row if v is not None]
        assert defined and all(-0.1 <= v <= 1.1 for v in defined)  # [0, 1] up to estimator noise
    # joint training with a small tower learning rate: every layer still matches its own layer before training
    assert all(image["mean"]["matrix"][i][i] > 0.8 for i in range(2))
    # the class token's input embedding is one vector for every image: CKA undefined there
    assert image["eot"]["matrix"][0][0] is None and image["eot"]["undefined_cells"] >= 1
    assert "did not move" in cka["text_tower"]["skipped"] and cka["text_tower"]["max_abs_parameter_change"] == 0
    student = cka["student_vs_english"]
    assert student["mean"]["rows"] == ["embed", "block 1", "block 2"] == student["mean"]["cols"]
    defined = [v for p in POOLINGS for row in student[p]["matrix"] for v in row if v is not None]
    assert analysed["parts"]["tokens"]["distinct_outputs"] > 1  # the fixture's guard: CKA has variance to read
    assert all(v is not None for row in student["mean"]["matrix"] for v in row)
    assert defined and all(-0.1 <= v <= 1.1 for v in defined)


def test_probe_values(analysed):
    head = analysed["parts"]["probes"]["lm_head"]
    assert head["heldout"]["fit_sentences"] > 0 and head["heldout"]["tokens"] == head["online"]["tokens"]
    for r in head.values():
        assert 0 < r["ce"] <= r["uniform_ce"] + 0.05 and 0 <= r["token_accuracy"] <= 1
    assert len(head["online"]["batch_losses"]) == math.ceil(40 / 32)
    attrs = analysed["parts"]["probes"]["attributes"]
    assert attrs["label_source"].startswith("synthetic") and attrs["fit_split"] == "train"
    english = attrs["features"]["english"]
    assert english["n_test"] == 40 and set(english["families"]) == {"count", "shape", "colour"}
    # an easy attribute: how many objects a caption names, read off the English text features
    count = english["tasks"]["count"]
    assert count["accuracy"] >= count["majority_baseline"] + 0.1
    image = attrs["features"]["image"]
    assert image["n_test"] == 20 and image["n_fit"] == 160
    for kind in ("image", "english", "student"):
        for r in attrs["features"][kind]["tasks"].values():
            assert 0 <= r["accuracy"] <= 1 and 0 <= r["majority_baseline"] <= 1 and r["classes"] >= 2


def test_movement_values(analysed):
    m = analysed["parts"]["movement"]
    assert [c["step"] for c in m["checkpoints"]] == [50, 100]
    assert all(v == 0 for v in m["to_final"]["100"].values())  # the last checkpoint is the exported model
    assert any(v > 0 for g, v in m["to_final"]["50"].items() if g.startswith("student"))
    final = m["from_teacher"]["final"]
    assert all(v == 0 for g, v in final.items() if g.startswith("text/"))  # --freeze text
    assert any(v > 0 for g, v in final.items() if g.startswith("image/"))
    assert final == m["from_teacher"]["100"]


def test_token_usage_recomputed_from_the_evaluated_translations(run, analysed):
    """Oracle: the evaluation's translations and references of the same 40 test sentences
    (eval/hyp.txt, eval/ref.txt) tokenised by open_clip's own tokenizer (the student writes CLIP
    BPE), counted over the student's vocabulary — the CLIP ids of the training split's English
    captions and translations (a token outside it, such as a word cut short, is not counted) — and
    the divergences written out by hand: Jensen–Shannon of the frequencies, KL both ways with
    α = 0.5 added to every count of the union of types."""
    import open_clip

    from data_prep.load import load_dataset_dir

    tokenizer = open_clip.get_tokenizer("groundmt-micro")

    def ids(texts):
        return [row[1:row.index(tokenizer.eot_token_id)] for row in tokenizer(texts).tolist()]  # between SOT and EOT

    train_split = load_dataset_dir(json.loads((run / "config.json").read_text())["data_path"])["train"]
    vocabulary = {i for column in ("english", "parallel") for row in ids([t for texts in train_split[column]
                                                                          for t in texts if t.strip()]) for i in row}
    hyps = (run / "eval" / "hyp.txt").read_text(encoding="utf-8").splitlines()
    refs = (run / "eval" / "ref.txt").read_text(encoding="utf-8").splitlines()
    hyp, ref = (Counter(i for row in ids(texts) for i in row if i in vocabulary) for texts in (hyps, refs))
    vocab = sorted(set(hyp) | set(ref))
    h, r = np.array([hyp[v] for v in vocab], float), np.array([ref[v] for v in vocab], float)
    p, q = r / r.sum(), h / h.sum()

    def kl(a, b):
        return sum(x * math.log2(x / y) for x, y in zip(a, b) if x > 0)

    smooth_r, smooth_h = (r + 0.5) / (r.sum() + 0.5 * len(vocab)), (h + 0.5) / (h.sum() + 0.5 * len(vocab))
    t = analysed["parts"]["tokens"]
    assert t["sentences"] == len(hyps) == 40 and t["distinct_outputs"] == len(set(hyps))
    assert t["tokens"] == {"student": h.sum(), "reference": r.sum()}
    assert t["types"] == {"student": len(hyp), "reference": len(ref), "union": len(vocab)}
    assert t["js_divergence_bits"] == pytest.approx(0.5 * kl(p, (p + q) / 2) + 0.5 * kl(q, (p + q) / 2))
    assert t["kl_ref_student_bits"] == pytest.approx(kl(smooth_r, smooth_h))
    assert t["kl_student_ref_bits"] == pytest.approx(kl(smooth_h, smooth_r))
    unused = [v for v in ref if v not in hyp]
    assert t["unused_reference_types"] == len(unused)
    assert t["unused_reference_mass"] == pytest.approx(sum(ref[v] for v in unused) / r.sum())
    assert [row["reference_count"] for row in t["top_reference"]] == sorted(ref.values(), reverse=True)[:25]


def test_health_values(analysed):
    h = analysed["parts"]["health"]
    assert set(h["final"]["axes"]) == {"image", "english", "student"} and h["final"]["images"] == 20
    assert isinstance(h["final"]["warnings"], list)
    assert "effective_rank" in h["over_training"] and "student" in h["over_training"]["effective_rank"]


# -- pieces against oracles -----------------------------------------------------------------------
def test_block_states_are_open_clip_s_own(ctx):
    clip = ctx.system.clip
    ids = ctx.system.clip_tokenizer(["a red circle", "two blue squares and a green star"])
    with torch.no_grad(), block_states(clip.transformer) as states:
        features = clip.encode_text(ids)
    assert len(states) == len(layer_names(clip.transformer)) == 3
    embed = clip.token_embedding(ids) + clip.positional_embedding
    assert torch.allclose(states[0], embed, atol=1e-6)
    pooled = clip.ln_final(states[-1])[torch.arange(2), ids.argmax(-1)] @ clip.text_projection
    assert torch.allclose(pooled, features, atol=1e-5)
    image = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad(), block_states(clip.visual.transformer) as states:
        features = clip.encode_image(image)
    assert torch.allclose(clip.visual.ln_post(states[-1])[:, 0] @ clip.visual.proj, features, atol=1e-5)


def make_the_student_write(system, monkeypatch, next_text) -> None:
    """Replace the student's decoding by spliced CLIP token embeddings of `next_text()`, one per row."""
    def tokenize_source(texts, max_length=64):
        return {"source_ids": torch.zeros(len(texts), 1, dtype=torch.long),
                "source_mask": torch.ones(len(texts), 1, dtype=torch.long)}

    def decode(source_ids, source_mask):
        ids = system.clip_tokenizer([next_text() for _ in range(len(source_ids))])
        eot = ids.argmax(-1)
        positions = torch.arange(ids.shape[1])[None, :]
        return Decoded(embeddings=system.tower.token_embedding(ids), tokens=ids, eot_index=eot,
                       eot_prob=(positions == eot[:, None]).float(),
                       candidates=(positions >= 1) & (positions <= eot[:, None]),
                       hidden=torch.zeros(len(ids), ids.shape[1] - 1, 1), labels=None, head=(None, None))

    monkeypatch.setattr(system, "tokenize_source", tokenize_source)
    monkeypatch.setattr(system, "splice_decode", decode)


def test_student_writing_the_reference_reproduces_the_teacher(ctx, monkeypatch):
    """Oracle: with the text tower frozen, a student whose spliced output is the reference's own
    token embeddings gives the teacher's states layer for layer, so both CKA diagonals are 1."""
    references = iter([s["references"][0] for s in ctx.translated])  # in the order they are decoded
    make_the_student_write(ctx.system, monkeypatch, lambda: next(references))
    result = student_vs_english(ctx)
    for pooling in POOLINGS:
        grid = result[pooling]
        assert grid["samples"] == 40 and grid["batches"] == 3
        for i in range(3):
            assert grid["matrix"][i][i] == pytest.approx(1.0, abs=1e-6), (pooling, i)


def test_a_collapsed_student_leaves_the_student_path_cka_undefined(ctx, monkeypatch):
    """One sentence for every caption (what an 8-step student wrote): its states do not vary, so
    every cell is undefined — None, with the reason — never a number."""
    make_the_student_write(ctx.system, monkeypatch, lambda: "a red circle")
    result = student_vs_english(ctx)
    for pooling in POOLINGS:
        assert all(v is None for row in result[pooling]["matrix"] for v in row), pooling
    assert "variance" in result["mean"]["undefined_reason"]


def test_cka_batches_never_leave_fewer_than_four():
    for n in range(4, 80):
        for size in (1, 4, 5, 16, 32):
            parts = cka_batches(n, size)
            assert parts[0].start == 0 and parts[-1].stop == n
            assert all(p.stop - p.start >= 4 for p in parts)
            assert all(a.stop == b.start for a, b in zip(parts, parts[1:]))


def test_layer_groups_and_relative_distance_by_hand():
    assert layer_group("clip.visual.transformer.resblocks.0.attn.in_proj_weight") == "image/block 1"
    assert layer_group("clip.visual.conv1.weight") == "image/embed"
    assert layer_group("clip.visual.proj") == "image/head"
    assert layer_group("clip.transformer.resblocks.2.mlp.c_fc.bias") == "text/block 3"
    assert layer_group("clip.token_embedding.weight") == "text/embed"
    assert layer_group("clip.text_projection") == "text/head"
    assert layer_group("student.model.decoder.layers.1.fc1.weight") == "student decoder/layer 2"
    assert layer_group("student.model.encoder.embed_tokens.weight") == "student encoder/embed"
    assert layer_group("student.final_logits_bias") == "student/head"
    assert layer_group("splice.linear.weight") == "splice/all"
    ref = {"clip.transformer.resblocks.0.a": torch.tensor([3.0, 4.0]),
           "clip.transformer.resblocks.0.b": torch.tensor([0.0]), "student.final_logits_bias": torch.tensor([2.0])}
    state = {"clip.transformer.resblocks.0.a": torch.tensor([3.0, 4.0]),
             "clip.transformer.resblocks.0.b": torch.tensor([1.0]), "student.final_logits_bias": torch.tensor([1.0])}
    assert relative_distances(state, ref) == {"text/block 1": pytest.approx(1 / 5), "student/head": pytest.approx(0.5)}


def test_token_usage_by_hand():
    ref = Counter({1: 6, 2: 3, 3: 1})
    hyp = Counter({1: 2, 4: 2})
    out = usage(hyp, ref, str)
    p = np.array([6, 3, 1, 0]) / 10
    q = np.array([2, 0, 0, 2]) / 4
    m = (p + q) / 2

    def kl(a, b):
        return sum(x * math.log2(x / y) for x, y in zip(a, b) if x > 0)

    assert out["js_divergence_bits"] == pytest.approx(0.5 * kl(p, m) + 0.5 * kl(q, m))
    ps, qs = (np.array([6, 3, 1, 0]) + 0.5) / 12, (np.array([2, 0, 0, 2]) + 0.5) / 6
    assert out["kl_ref_student_bits"] == pytest.approx(kl(ps, qs))
    assert out["types"] == {"student": 2, "reference": 3, "union": 4}
    assert [r["token"] for r in out["unused"]] == ["2", "3"] and out["unused_reference_mass"] == pytest.approx(0.4)
    assert out["over_used"][0]["token"] == "4"  # never in the references, half of the output


def test_attribute_labels(run):
    from data_prep.load import load_dataset_dir

    config = json.loads((run / "config.json").read_text())
    report = json.loads((Path(config["data_path"]) / "build_report.json").read_text())
    labels = SyntheticLabels(report["settings"])
    row = load_dataset_dir(config["data_path"])["test"][0]
    image = labels.image(row["image_id"], row["english"])
    for caption in row["english"]:  # a caption names part of its scene, never more
        said = labels.caption(caption, image)
        assert said["count"] <= image["count"]
        assert all(image[k] for k, v in said.items() if k != "count" and v)
    with pytest.raises(ValueError, match="other English captions"):
        labels.image(row["image_id"], ["a green cross"])
    shapes, colours = ("circle", "square", "triangle", "star", "cross"), ("red", "green", "blue", "yellow", "purple",
                                                                           "black")
    assert labels.caption("two red circles and a blue square", {}) == {
        "count": 3, **{f"shape:{s}": s in ("circle", "square") for s in shapes},
        **{f"colour:{c}": c in ("red", "blue") for c in colours}}
    tags = TagLabels({"1": "dog cat", "2": "dog", "3": "tree"}, top=2)
    tags.choose(["1", "2", "3"])
    assert tags.vocabulary[0] == "dog" and len(tags.vocabulary) == 2
    assert tags.image("1", [])["tag:dog"] and not tags.image("3", [])["tag:dog"]
    with pytest.raises(KeyError):
        tags.image("4", [])


def test_a_built_coco_cn_dataset_keeps_its_tags_for_the_probes(tmp_path):
    from data_prep.builders.coco_cn import build_coco_cn
    from eval.analysis.labels import label_source

    dsd = build_coco_cn(tmp_path / "cn", Path(__file__).parent / "fixtures" / "coco-cn", show_progress=False)
    source, why = label_source(tmp_path / "cn")
    assert isinstance(source, TagLabels) and why is None
    ids = [i for split in dsd for i in dsd[split]["image_id"]]
    tagged = [i for i in ids if i in source.tags]
    assert tagged and source.tags["000000296735"] == {"卧室", "床", "窗户"}
    source.choose(tagged)
    assert source.image("000000296735", [])["tag:床"]


# -- tags, --out and the CLI ----------------------------------------------------------------------
@pytest.fixture(scope="module")
def tagged_run(run, tmp_path_factory) -> Path:
    """The run, pointed at a copy of its dataset whose build report keeps image tags (as COCO-CN's
    builder does): the shapes of each scene, so the tags are readable off the images."""
    from data_prep.load import load_dataset_dir

    root = tmp_path_factory.mktemp("tagged")
    config = json.loads((run / "config.json").read_text())
    data = root / "data"
    shutil.copytree(config["data_path"], data)
    report = json.loads((data / "build_report.json").read_text())
    labels = SyntheticLabels(report["settings"])
    dsd = load_dataset_dir(data)
    tags = {}
    for split in dsd:
        for item in dsd[split].select_columns(["image_id", "english"]):
            scene = labels.image(item["image_id"], item["english"])
            tags[item["image_id"]] = " ".join(k.split(":")[1] for k, v in scene.items() if k.startswith("shape:") and v)
    report.update(builder="coco-cn", notes={"tags": tags})
    (data / "build_report.json").write_text(json.dumps(report))
    copy = root / "tagged-run"
    shutil.copytree(run, copy, ignore=shutil.ignore_patterns("checkpoints", "tensorboard", "analysis"))
    config["data_path"] = str(data)
    (copy / "config.json").write_text(json.dumps({**config, "run_id": "tagged-run"}))
    scores = json.loads((copy / "eval" / "scores.json").read_text())
    (copy / "eval" / "scores.json").write_text(json.dumps({**scores, "run_id": "tagged-run"}))
    return copy


def test_tags_out_dir_and_report_option(tagged_run, tmp_path):
    out = tmp_path / "analyses"
    assert eval_main(["analyze", str(tagged_run), "--out", str(out), "--parts", "probes,movement", "--limit", "30",
                      "--batch-size", "7", "--device", "cpu"]) == 0
    result = json.loads((out / "tagged-run" / "analysis.json").read_text())
    assert set(result["parts"]) == {"probes", "movement"} and result["test_sentences"] == 30
    assert result["settings"]["batch_size"] == 7 and not (tagged_run / "analysis").exists()
    attrs = result["parts"]["probes"]["attributes"]
    assert attrs["label_source"] == "image tags"
    image = attrs["features"]["image"]
    assert set(image["families"]) == {"tag"} and 1 <= len(image["tasks"]) <= 5
    assert all(t.startswith("tag:") for t in image["tasks"]) and image["n_fit"] == 30
    assert "holds no step_* checkpoint" in " ".join(result["parts"]["movement"]["notes"])
    assert eval_main(["report", str(tagged_run), "--out", str(tmp_path / "r.html"), "--analysis", str(out)]) == 0
    rep = json.loads((tmp_path / "r.json").read_text())
    assert "tagged-run" in rep["analysis"] and rep["analysis"]["tagged-run"]["figures"]
    missing = build_report([tagged_run], tmp_path / "r2.html", analysis=tmp_path / "nowhere")
    assert not missing["analysis"] and any("no analysis at" in n for n in missing["notes"])


def test_untagged_dataset_skips_attribute_probes_with_the_reason(tagged_run, tmp_path):
    config = json.loads((tagged_run / "config.json").read_text())
    report_file = Path(config["data_path"]) / "build_report.json"
    saved = report_file.read_text()
    try:
        report = json.loads(saved)
        report["notes"] = {}
        report_file.write_text(json.dumps(report))
        assert eval_main(["analyze", str(tagged_run), "--out", str(tmp_path), "--parts", "probes", "--limit", "8"]) == 0
    finally:
        report_file.write_text(saved)
    attrs = json.loads((tmp_path / "tagged-run" / "analysis.json").read_text())["parts"]["probes"]["attributes"]
    assert "keeps no attribute labels" in attrs["skipped"]


def test_cli_errors_are_one_line_and_exit_2(run, tmp_path, capsys):
    def error(argv):
        try:
            code = eval_main(argv)
        except SystemExit as stop:  # an argument refused at parsing
            code = stop.code
        err = capsys.readouterr().err.strip()
        assert code == 2 and err.startswith("error:") and "\n" not in err, err
        return err

    assert "does not exist" in error(["analyze", str(tmp_path / "nowhere")])
    empty = tmp_path / "empty-run"
    empty.mkdir()
    assert "is not a run directory" in error(["analyze", str(empty)])
    unexported = tmp_path / "unexported-run"
    shutil.copytree(run, unexported, ignore=shutil.ignore_patterns("model", "checkpoints", "tensorboard", "analysis"))
    assert "has no model/" in error(["analyze", str(unexported)])
    assert "unknown part" in error(["analyze", str(run), "--parts", "cka,bogus"])
    assert "positive integer" in error(["analyze", str(run), "--limit", "0"])
    moved = tmp_path / "moved-run"
    shutil.copytree(run, moved, ignore=shutil.ignore_patterns("checkpoints", "tensorboard", "analysis"))
    config = json.loads((moved / "config.json").read_text())
    config["data_path"] = str(tmp_path / "gone")
    (moved / "config.json").write_text(json.dumps(config))
    assert "unavailable" in error(["analyze", str(moved)])


def test_interrupt_keeps_the_finished_parts_and_exits_130(tagged_run, tmp_path, monkeypatch, capsys):
    def interrupted(ctx):
        raise KeyboardInterrupt

    monkeypatch.setitem(analyze_module.PARTS, "tokens", interrupted)
    assert eval_main(["analyze", str(tagged_run), "--out", str(tmp_path), "--parts", "movement,tokens"]) == 130
    assert "interrupted" in capsys.readouterr().err
    result = json.loads((tmp_path / "tagged-run" / "analysis.json").read_text())
    assert set(result["parts"]) == {"movement"}


# -- the report ---------------------------------------------------------------------------------
def test_report_shows_the_analysis_section_in_chromium(run, analysed, tmp_path):
    out = tmp_path / "report.html"
    assert eval_main(["report", str(run), "--out", str(out)]) == 0
    rep = json.loads(out.with_suffix(".json").read_text())
    section = rep["analysis"]["run"]
    assert [f["file"] for f in section["figures"]] == [f["file"] for f in analysed["figures"]]
    labels = [label for label, _ in section["summary"]]
    assert any(label.startswith("CKA student path") for label in labels) and "collapse warnings" in labels
    html = out.read_text(encoding="utf-8")
    assert html.count('alt="CKA: image tower before/after joint training"') == 1
    assert "## Analysis" in out.with_suffix(".md").read_text()
    # the section alone, as the reader sees it
    head, start = html[:html.index("<body>") + len("<body>")], html.index("<h2 id='analysis'>")
    page = tmp_path / "analysis-section.html"
    page.write_text(head + html[start:html.index("<h2>Examples</h2>")] + "</body></html>", encoding="utf-8")
    pixels = screenshot(page, tmp_path / "analysis-section.png", 1280, 2400)
    assert pixels.shape == (2400, 1280) and pixels.std() > 10, "screenshot is blank"
    coloured = (pixels < 200).mean(axis=1)  # rows with figure content, not just text on white
    assert (coloured > 0.2).sum() > 200
