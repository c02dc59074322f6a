"""Test-time grounding (`Translator.rerank_clip`, `translate --rerank clip`): the reranked choice
against a brute-force loop over `GroundedSystem.nbest` candidates scored with open_clip features
computed separately; beta = 0 is beam search's best; the image decides between equally likely
candidates; the `text` and `corpus` options end to end, with the settings in the corpus summary
and its resume fingerprint. One-line refusals of bad options are probes in test_cli_probes.py."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch_threads import one_thread  # noqa: F401

from data_prep.errors import InputError
from data_prep.schema import normalize_text
from eval.retrieval import clip_embeddings
from models.clip_loading import load_clip
from models.grounded import GroundedSystem
from translate import corpus as corpus_mod
from translate.__main__ import main

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def captions(test_split) -> tuple[list[str], list]:
    """Every non-empty source caption of the test split with its image (PIL)."""
    sources, images = [], []
    for image, row in zip(test_split["image"], test_split["source"]):
        for source in row:
            if source.strip():
                sources.append(normalize_text(source))
                images.append(image)
    return sources, images


@pytest.fixture(scope="module")
def oracle_clip(run):
    """The run's CLIP loaded afresh through open_clip: an encoder independent of the Translator's."""
    system = GroundedSystem.load(run / "model")
    clip, preprocess, tokenizer = load_clip(system.clip_name, pretrained=run / "model" / "clip" / "open_clip_model.pt")
    return system, (clip, preprocess, tokenizer)


def test_rerank_equals_a_brute_force_loop_over_the_candidates(translator, captions, oracle_clip):
    sources, images = captions
    system, (clip, preprocess, tokenizer) = oracle_clip
    size, beta = 4, 0.7
    got = translator.rerank_clip(sources, images, size=size, beta=beta, batch_size=5)
    candidates, logprobs = system.nbest(sources, size=size)
    assert got.candidates == candidates
    scale = float(clip.logit_scale.detach().exp())
    decided, changed = 0, 0
    for n, (source_candidates, image) in enumerate(zip(candidates, images)):
        img, txt = clip_embeddings(clip, preprocess, tokenizer, images=[image], texts=source_candidates)
        cos = [float(F.cosine_similarity(t, img[0], dim=0)) for t in txt]
        scores = [float(logprobs[n, k]) + beta * scale * cos[k] for k in range(size)]
        best = max(range(size), key=scores.__getitem__)
        runner_up = max(s for k, s in enumerate(scores) if k != best)
        if scores[best] - runner_up > 1e-4:  # a near-tie may go either way at float precision
            decided += 1
            assert got.choice[n] == best and got.translations[n] == source_candidates[best], n
        if got.choice[n] != 0:  # a lower log-probability is only ever bought with a higher CLIP score
            changed += 1
            assert logprobs[n, got.choice[n]] <= logprobs[n, 0] and cos[got.choice[n]] > cos[0]
    assert decided >= len(sources) - 2 and changed > 0, (decided, changed)
    assert translator.translate(sources, images=images, rerank="clip", rerank_size=size, rerank_beta=beta,
                                batch_size=7) == got.translations


def test_beta_zero_is_beam_search(translator, captions):
    sources, images = captions
    for size in (1, 3):
        beam = translator.translate(sources, num_beams=size)
        assert translator.rerank_clip(sources, images, size=size, beta=0.0).translations == beam
    assert translator.translate(sources, num_beams=3, images=images, rerank="clip", rerank_beta=0.0) == \
        translator.translate(sources, num_beams=3)


def test_the_image_decides_between_near_equally_likely_candidates(translator, test_split, oracle_clip, monkeypatch):
    """Two candidates A (the student's best) and B, and two images X, Y, with the student's
    log-probability gap between A and B set halfway between what CLIP adds for B over A on X and on
    Y: X keeps A, Y takes B — the image alone decides; beta = 0, or no image, keeps A."""
    system, (clip, preprocess, tokenizer) = oracle_clip
    texts = sorted({e for row in test_split["english"] for e in row if e.strip()})
    img, txt = clip_embeddings(clip, preprocess, tokenizer, images=test_split["image"], texts=texts)
    cos = F.normalize(txt, dim=-1) @ F.normalize(img, dim=-1).T  # [text, image]
    diff = cos[:, None, :] - cos[None, :, :]  # [a, b, image]: how much closer text a is to the image than b
    a, b = divmod(int((diff.amax(2) - diff.amin(2)).argmax()), len(texts))
    x, y = int(diff[a, b].argmax()), int(diff[a, b].argmin())
    dx, dy = float(diff[a, b, x]), float(diff[a, b, y])
    if dx + dy > 0:  # make A the student's best: B then needs the image to win
        a, b, x, y, dx, dy = b, a, y, x, -dy, -dx
    beta, scale = 0.2, float(system.clip.logit_scale.detach().exp())
    assert beta * scale * (dx - dy) / 2 > 1e-4, "the run's CLIP tells no two test images apart"
    handicap = -beta * scale * (dx + dy) / 2  # >= 0: B is as much less likely as CLIP prefers it on average

    def nbest(sources, *, size, batch_size=32):
        assert size == 2
        return [[texts[a], texts[b]] for _ in sources], torch.tensor([[-1.0, -1.0 - handicap]] * len(sources))

    monkeypatch.setattr(translator.system, "nbest", nbest)
    images = [test_split["image"][x], test_split["image"][y]]
    chosen = translator.rerank_clip(["una frase", "una frase"], images, size=2, beta=beta)
    assert chosen.translations == [texts[a], texts[b]] and chosen.choice == [0, 1]
    for beta_, images_ in ((0.0, images), (beta, [images[0], None])):  # no image weight, or no image
        assert translator.rerank_clip(["una frase"] * 2, images_, size=2, beta=beta_).translations == [texts[a]] * 2


def test_api_refusals(translator, captions):
    sources, images = captions
    with pytest.raises(InputError, match="needs images"):
        translator.translate(sources[:2], rerank="clip")
    with pytest.raises(InputError, match="only to rerank"):
        translator.translate(sources[:2], images=images[:2])
    with pytest.raises(InputError, match="only with reranking"):
        translator.translate(sources[:2], rerank_size=4)
    with pytest.raises(InputError, match="unknown reranker"):
        translator.translate(sources[:2], images=images[:2], rerank="bleu")
    with pytest.raises(InputError, match="finite number >= 0"):
        translator.rerank_clip(sources[:2], images[:2], beta=-0.1)
    with pytest.raises(InputError, match="as wide as the list"):
        translator.translate(sources[:2], num_beams=2, images=images[:2], rerank="clip", rerank_size=3)
    with pytest.raises(ValueError, match="aligned by index"):
        translator.rerank_clip(sources[:2], images[:1])
    assert translator.rerank_clip(["", " "], [None, None]).translations == ["", ""]


# -- command line ----------------------------------------------------------------------------------
def test_text_cli_reranks_with_images_as_arguments_or_a_list(run, translator, captions, tmp_path, capsys):
    sources, images = captions
    sources, images = sources[:3], images[:3]
    folder = tmp_path / "pics"
    folder.mkdir()
    paths = []
    for n, image in enumerate(images):
        image.save(folder / f"{n}.png")
        paths.append(folder / f"{n}.png")
    expected = translator.rerank_clip(sources, paths, size=3, beta=0.5).translations
    assert main(["text", "--run", str(run), *sources, "--rerank", "clip", "--rerank-size", "3", "--rerank-beta",
                 "0.5", "--images", *map(str, paths)]) == 0
    assert capsys.readouterr().out.split("\n") == [*expected, ""]

    # --file with a blank line, --images-file line-aligned with it (relative paths, a blank line beside it)
    (tmp_path / "in.es").write_text(f"{sources[0]}\n\n{sources[1]}\n", encoding="utf-8")
    (folder / "list.txt").write_text("0.png\n\n1.png\n", encoding="utf-8")
    assert main(["text", "--run", str(run), "--file", str(tmp_path / "in.es"), "--images-file",
                 str(folder / "list.txt"), "--rerank", "clip", "--num-beams", "3", "--rerank-beta", "0.5"]) == 0
    assert capsys.readouterr().out.split("\n") == [expected[0], "", expected[1], ""]


def corpus_args(run: Path, data: Path, out: Path, *extra: str) -> list[str]:
    return ["corpus", "--run", str(run), "--data-dir", str(data), "--split", "test", "--out", str(out),
            "--batch-size", "4", "--quiet", *extra]


def test_corpus_reranks_and_records_the_settings(run, data, translator, test_split, tmp_path, monkeypatch):
    out = tmp_path / "reranked"
    rerank = ("--rerank", "clip", "--rerank-size", "3", "--rerank-beta", "0.5")
    assert main(corpus_args(run, data, out, *rerank)) == 0
    records = corpus_mod.read_records(out / "corpus.jsonl")
    images = [im for im, row in zip(test_split["image"], test_split["source"]) for _ in row]
    sources = [normalize_text(s) for row in test_split["source"] for s in row]
    expected = translator.rerank_clip(sources, images, size=3, beta=0.5)
    assert [r["translation"] for r in records] == expected.translations
    assert [r["nbest_index"] for r in records] == [None if c < 0 else c for c in expected.choice]
    summary = json.loads((out / "summary.json").read_text())
    changed = sum(c > 0 for c in expected.choice)
    assert summary["decoding"] == {"num_beams": 3, "rerank": {"method": "clip", "size": 3, "beta": 0.5,
                                                              "changed": changed}}
    assert f"n-best of 3 reranked by CLIP with each caption's image (beta = 0.5); {changed} translations" in \
        (out / "summary.md").read_text()
    assert json.loads((out / "progress.json").read_text())["fingerprint"]["rerank"] == \
        {"method": "clip", "size": 3, "beta": 0.5}

    assert main(corpus_args(run, data, out)) == 2  # the same OUT without reranking: refused, not mixed
    assert main(corpus_args(run, data, out, "--rerank", "clip", "--rerank-size", "3")) == 2  # another beta
    assert main(corpus_args(run, data, out, *rerank)) == 0  # the same settings: finished, nothing redone
    assert corpus_mod.read_records(out / "corpus.jsonl") == records

    # a corpus begun without reranking (interrupted after one batch) is never continued with it
    plain = tmp_path / "plain"
    real = corpus_mod.translate_batch
    calls = []

    def interrupted(*args, **kw):
        if calls:
            raise KeyboardInterrupt
        calls.append(1)
        return real(*args, **kw)

    monkeypatch.setattr(corpus_mod, "translate_batch", interrupted)
    assert main(corpus_args(run, data, plain)) == 130
    monkeypatch.setattr(corpus_mod, "translate_batch", real)
    assert main(corpus_args(run, data, plain, *rerank)) == 2
    assert len(corpus_mod.read_records(plain / "corpus.jsonl")) == 4
