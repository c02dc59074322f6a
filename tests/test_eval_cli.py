"""`python -m eval score` end to end: sacreBLEU parity on files, every metric, paired tests,
retrieval with a tiny CLIP, and clear errors."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from caption_pairs import caption_pairs
from eval.__main__ import main

ROOT = Path(__file__).resolve().parents[1]
SACREBLEU = str(Path(sys.executable).with_name("sacrebleu"))


def write(path, lines):
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return str(path)


@pytest.fixture()
def files(tmp_path):
    hyps, refs = caption_pairs(40, seed=21)
    other, _ = caption_pairs(40, seed=22)
    baseline = [h if i % 2 else o for i, (h, o) in enumerate(zip(hyps, other))]
    return {"hyp": write(tmp_path / "hyp.txt", hyps), "ref": write(tmp_path / "ref.txt", refs),
            "ref2": write(tmp_path / "ref2.txt", other), "base": write(tmp_path / "base.txt", baseline),
            "src": write(tmp_path / "src.txt", [f"fuente {i}" for i in range(40)]), "dir": tmp_path}


def test_cli_bleu_chrf_equal_sacrebleu_cli(files):
    out = files["dir"] / "s.json"
    subprocess.run([sys.executable, "-m", "eval", "score", "--hyp", files["hyp"], "--ref", files["ref"],
                    "--ref", files["ref2"], "--metrics", "bleu,chrf", "--bootstrap", "200",
                    "--out", str(out)], check=True, cwd=ROOT, capture_output=True, text=True)
    ours = json.loads(out.read_text())
    cli = subprocess.run([SACREBLEU, files["ref"], files["ref2"], "-i", files["hyp"], "-m", "bleu", "chrf",
                          "-f", "json", "-w", "6"], check=True, capture_output=True, text=True)
    expected = {d["name"]: d for d in json.loads(cli.stdout)}
    for name, cli_name in (("bleu", "BLEU"), ("chrf", "chrF2")):
        m = ours["metrics"][name]
        assert round(m["score"], 6) == pytest.approx(expected[cli_name]["score"], abs=1e-6)
        assert m["signature"] == expected[cli_name]["signature"]
        assert m["ci"]["low"] <= m["score"] <= m["ci"]["high"]
    assert ours["bootstrap"]["n_samples"] == 200 and ours["n_sentences"] == 40
    assert ours["sentences"][0]["references"] == [Path(files["ref"]).read_text().splitlines()[0],
                                                  Path(files["ref2"]).read_text().splitlines()[0]]


def test_cli_all_text_metrics_with_paired_test(files, capsys):
    out = files["dir"] / "all.json"
    assert main(["score", "--hyp", files["hyp"], "--ref", files["ref"], "--src", files["src"],
                 "--compare", files["base"], "--metrics", "bleu,chrf,bertscore,lisascore",
                 "--bootstrap", "100", "--seed", "7", "--out", str(out)]) == 0
    assert "lisascore: P=" in capsys.readouterr().out
    result = json.loads(out.read_text())
    metrics = result["metrics"]
    for name in ("bertscore", "lisascore"):
        for k in "PRF":
            ci = metrics[name]["ci"][k]
            assert ci["low"] <= metrics[name]["corpus"][k] <= ci["high"]
    # LiSAScore (one-to-one) never exceeds BERTScore, sentence by sentence
    for row in result["sentences"]:
        assert row["lisascore.P"] <= row["bertscore.P"] + 1e-6
        assert row["source"].startswith("fuente")
    paired = result["paired"]
    assert set(paired) == {"bleu", "chrf", *(f"{m}.{k}" for m in ("bertscore", "lisascore") for k in "PRF")}
    assert all(p["delta"] > 0 and 0 < p["p_value"] <= 1 and p["seed"] == 7 for p in paired.values())
    assert result["versions"]["sacrebleu"] and result["versions"]["bert-score"]


def test_cli_retrieval_equals_retrieval_from_independently_encoded_features(tmp_path):
    """`eval score --metrics retrieval` with a tiny random CLIP given as a weights file: R@1 and R@5
    both ways, the mean grounding and in-batch R@1 (one batch: fewer than 32 items) of the
    translations and of the references equal what open_clip's own encoders give here, from the
    same file, scored by hand. The figures are arbitrary (the CLIP is untrained) but exact."""
    import open_clip
    import torch
    import torch.nn.functional as F

    colours = ["red", "blue", "green", "yellow", "purple", "orange", "black", "white"]
    img_dir = tmp_path / "images"
    img_dir.mkdir()
    for i, c in enumerate(colours):
        Image.new("RGB", (32, 32), c).save(img_dir / f"{i:03d}.png")
    texts = {"translation": [f"a {c} square" for c in colours], "oracle": [f"a {c} picture" for c in colours]}
    hyp, ref = write(tmp_path / "h.txt", texts["translation"]), write(tmp_path / "r.txt", texts["oracle"])
    torch.manual_seed(0)
    clip, _, preprocess = open_clip.create_model_and_transforms("groundmt-micro")
    weights = tmp_path / "clip.pt"
    torch.save({"state_dict": clip.state_dict()}, weights)
    out = tmp_path / "r.json"
    assert main(["score", "--hyp", hyp, "--ref", ref, "--images", str(img_dir), "--clip", "groundmt-micro",
                 "--clip-pretrained", str(weights), "--metrics", "retrieval", "--bootstrap", "50",
                 "--out", str(out)]) == 0
    r = json.loads(out.read_text())["metrics"]["retrieval"]
    assert set(r) == {"translation", "oracle", "ci"} and "t2i.R@1" in r["ci"] and "grounding" in r["ci"]

    clip.eval()
    tokenizer = open_clip.get_tokenizer("groundmt-micro")
    with torch.no_grad():
        images = torch.stack([preprocess(Image.open(img_dir / f"{i:03d}.png").convert("RGB")) for i in range(8)])
        image = F.normalize(clip.encode_image(images), dim=-1)
        for row, lines in texts.items():
            sim = (F.normalize(clip.encode_text(tokenizer(lines)), dim=-1) @ image.T).double()  # [text, image]
            own = sim.diagonal()
            t2i, i2t = (sim > own[:, None]).sum(1), (sim.T > own[:, None]).sum(1)  # competitors ranked higher
            got = r[row]
            for k in (1, 5):
                assert got["t2i"][f"R@{k}"] == pytest.approx(float((t2i < k).double().mean())), (row, k)
                assert got["i2t"][f"R@{k}"] == pytest.approx(float((i2t < k).double().mean())), (row, k)
            assert got["grounding"] == pytest.approx(float(own.mean()), abs=1e-6)
            assert got["in_batch"]["b2a"] == pytest.approx(float((t2i < 1).double().mean()))
            assert got["in_batch"]["a2b"] == pytest.approx(float((i2t < 1).double().mean()))
            assert got["in_batch"]["chance"] == 1 / 8


def test_cli_errors_are_clear(files, tmp_path):
    short = write(tmp_path / "short.txt", ["only one line"])
    run = [sys.executable, "-m", "eval", "score", "--hyp", files["hyp"], "--out", str(tmp_path / "x.json")]
    bad = subprocess.run(run + ["--ref", short], cwd=ROOT, capture_output=True, text=True)
    assert bad.returncode == 2 and "has 40 lines but --ref" in bad.stderr and "short.txt has 1" in bad.stderr
    bad = subprocess.run(run + ["--ref", files["ref"], "--metrics", "bleu,meteor"], cwd=ROOT,
                         capture_output=True, text=True)
    assert bad.returncode == 2 and "unknown or no metric" in bad.stderr
    bad = subprocess.run(run + ["--ref", files["ref"], "--metrics", "retrieval"], cwd=ROOT,
                         capture_output=True, text=True)
    assert bad.returncode == 2 and "needs --images" in bad.stderr
    bad = subprocess.run(run + ["--ref", files["ref"], "--metrics", "lisascore", "--matching", "hungarian"],
                         cwd=ROOT, capture_output=True, text=True)
    assert bad.returncode == 2 and "unknown matching 'hungarian'" in bad.stderr
    assert "Traceback" not in bad.stderr
    helps = subprocess.run([sys.executable, "-m", "eval", "--help"], cwd=ROOT, capture_output=True, text=True)
    assert helps.returncode == 0 and "score" in helps.stdout


def test_library_api_returns_plain_dict_matching_sacrebleu():
    import sacrebleu

    from eval import score

    hyps, refs = caption_pairs(30, seed=5)
    result = score(hyps, refs, ["bleu", "chrf"], bootstrap=50, seed=3)
    assert callable(score) and json.loads(json.dumps(result)) == result
    assert result["metrics"]["bleu"]["score"] == pytest.approx(sacrebleu.corpus_bleu(hyps, [refs]).score)
    assert result["metrics"]["chrf"]["score"] == pytest.approx(sacrebleu.corpus_chrf(hyps, [refs]).score)
    assert [row["hypothesis"] for row in result["sentences"]] == hyps


def test_baseline_scores_equal_scoring_the_baseline_alone():
    """score(..., baseline_hyps=B)["baseline"] is what score(B) gives, intervals included (same resamples)."""
    from eval import score

    refs = ["a red circle above a blue square", "two small green stars", "a black cross", "three triangles"] * 5
    hyps = ["a red circle above a square", "two green stars", "a black cross", "two triangles"] * 5
    base = ["a circle", "stars", "a cross", "triangles"] * 5
    paired = score(hyps, refs, ["bleu", "chrf"], baseline_hyps=base, bootstrap=50)
    alone = score(base, refs, ["bleu", "chrf"], bootstrap=50)
    assert paired["baseline"]["metrics"] == alone["metrics"]
    assert paired["baseline"]["n_sentences"] == alone["n_sentences"] == 20
