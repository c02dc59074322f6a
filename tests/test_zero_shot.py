"""Zero-shot concept recognition against a recount written here: features of one picture and one
prompt at a time with open_clip's own encode_image/encode_text, cosine, argmax."""
import random

import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from eval.zero_shot import concept_recognition
from models.clip_loading import load_clip

PROMPTS = {f"c{k}": f"a picture of a {w}" for k, w in enumerate(
    ["red apple", "dolphin", "rocket", "anchor", "blue heart", "clock", "tree", "cat face"])}


@pytest.fixture(scope="module")
def clip():
    torch.manual_seed(0)
    model, preprocess, tokenizer = load_clip("groundmt-micro")
    return model.eval(), preprocess, tokenizer


def pictures(n=24, seed=0):
    rng = random.Random(seed)
    return [Image.new("RGB", (40, 40), tuple(rng.randrange(256) for _ in range(3))) for _ in range(n)]


@torch.no_grad()
def argmax_one_by_one(model, preprocess, tokenizer, images, prompts):
    ids = list(prompts)
    text = torch.cat([F.normalize(model.encode_text(tokenizer([prompts[c]])), dim=-1) for c in ids])
    return [ids[int((F.normalize(model.encode_image(preprocess(im)[None]), dim=-1) @ text.T).argmax())]
            for im in images]


def test_r1_all_and_rare_equal_the_recount(clip):
    model, preprocess, tokenizer = clip
    images = pictures()
    predicted = argmax_one_by_one(model, preprocess, tokenizer, images, PROMPTS)
    ids = list(PROMPTS)
    # a picture's concept is the predicted one for every third picture, another one otherwise
    labels = [p if k % 3 == 0 else ids[(ids.index(p) + 1) % len(ids)] for k, p in enumerate(predicted)]
    rare = {"c0", "c1", "c2"}
    model.train()
    out = concept_recognition(model, preprocess, tokenizer, list(zip(labels, images)), PROMPTS, rare,
                              batch_size=5, bootstrap=50)
    assert model.training  # the mode is restored
    model.eval()
    hit = [p == c for p, c in zip(predicted, labels)]
    assert out["hits"] == [float(h) for h in hit]
    assert out["concepts"] == 8 and out["chance"] == 1 / 8
    assert out["all"]["pictures"] == 24 and out["all"]["score"] == pytest.approx(sum(hit) / 24) == pytest.approx(1 / 3)
    in_rare = [h for h, c in zip(hit, labels) if c in rare]
    assert out["rare"]["pictures"] == len(in_rare) and out["rare"]["score"] == pytest.approx(sum(in_rare) / len(in_rare))
    assert out["all"]["low"] <= out["all"]["score"] <= out["all"]["high"]


def test_a_collapsed_model_scores_chance_and_bad_input_is_refused(clip):
    model, preprocess, tokenizer = clip
    collapsed = load_clip("groundmt-micro")[0].eval()
    with torch.no_grad():
        collapsed.visual.proj.zero_()  # every picture gets the same (zero) feature: every prompt ties
    images = pictures(8)
    out = concept_recognition(collapsed, preprocess, tokenizer, list(zip(PROMPTS, images)), PROMPTS, bootstrap=10)
    assert out["all"]["score"] == pytest.approx(1 / 8) and "rare" not in out
    with pytest.raises(ValueError, match="no prompt"):
        concept_recognition(model, preprocess, tokenizer, [("nope", images[0])], PROMPTS)
    with pytest.raises(ValueError, match="no pictures"):
        concept_recognition(model, preprocess, tokenizer, [], PROMPTS)
