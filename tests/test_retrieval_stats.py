"""Retrieval, grounding and in-batch R@1 against brute force; CLIP embeddings against open_clip."""
import numpy as np
import open_clip
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from eval import stats
from eval.retrieval import (clip_embeddings, grounding_scores, in_batch_recall_at_1, ranks,
                            recall_at_k, retrieval_report)


def brute_force_recalls(img, txt, owner, ks):
    """R@k by sorting every similarity row (the textbook definition, ties favouring the truth)."""
    sim = F.normalize(txt, dim=-1) @ F.normalize(img, dim=-1).T
    t2i = {k: np.mean([int((sim[t] > sim[t, owner[t]]).sum()) < k for t in range(len(txt))]) for k in ks}
    i2t = {}
    for k in ks:
        hits = []
        for i in range(len(img)):
            mine = [t for t in range(len(txt)) if owner[t] == i]
            if mine:
                top = torch.argsort(sim[:, i], descending=True)[:k].tolist()
                hits.append(any(t in top for t in mine))
        i2t[k] = np.mean(hits)
    return t2i, i2t


def test_recall_at_k_equals_brute_force_with_several_texts_per_image():
    g = torch.Generator().manual_seed(0)
    img = torch.randn(40, 16, generator=g)
    owner = torch.randint(0, 35, (90,), generator=g)  # some images have no text
    txt = img[owner] + 1.2 * torch.randn(90, 16, generator=g)
    ours = recall_at_k(img, txt, owner)
    t2i, i2t = brute_force_recalls(img, txt, owner, (1, 5, 10))
    for k in (1, 5, 10):
        assert ours["t2i"][f"R@{k}"] == pytest.approx(t2i[k])
        assert ours["i2t"][f"R@{k}"] == pytest.approx(i2t[k])
    assert (ranks(img, txt, owner)["i2t"][35:] == -1).all()
    # chunking does not change anything
    small = ranks(img, txt, owner, chunk=7)
    full = ranks(img, txt, owner)
    assert torch.equal(small["t2i"], full["t2i"]) and torch.equal(small["i2t"], full["i2t"])


def test_perfect_and_random_retrieval():
    g = torch.Generator().manual_seed(1)
    img = torch.randn(64, 32, generator=g)
    assert recall_at_k(img, img.clone())["t2i"]["R@1"] == 1.0
    random_txt = torch.randn(64, 32, generator=g)
    assert recall_at_k(img, random_txt)["t2i"]["R@1"] < 0.1


def test_grounding_is_cosine_with_own_image():
    g = torch.Generator().manual_seed(2)
    img, txt = torch.randn(5, 8, generator=g), torch.randn(7, 8, generator=g)
    owner = torch.tensor([0, 0, 1, 2, 3, 4, 4])
    expected = F.cosine_similarity(txt, img[owner], dim=-1)
    assert torch.allclose(grounding_scores(img, txt, owner), expected, atol=1e-6)


def test_in_batch_recall_equals_brute_force_and_chance():
    g = torch.Generator().manual_seed(3)
    a = torch.randn(100, 16, generator=g)
    b = a + 0.9 * torch.randn(100, 16, generator=g)
    ours = in_batch_recall_at_1(a, b, batch_size=32, seed=5)
    perm = torch.randperm(100, generator=torch.Generator().manual_seed(5))[:96].view(3, 32)
    hits_ab, hits_ba = [], []
    for rows in perm:
        sim = F.normalize(a[rows], dim=-1) @ F.normalize(b[rows], dim=-1).T
        hits_ab += (sim.argmax(1) == torch.arange(32)).tolist()
        hits_ba += (sim.argmax(0) == torch.arange(32)).tolist()
    assert ours["a2b"] == pytest.approx(np.mean(hits_ab))
    assert ours["b2a"] == pytest.approx(np.mean(hits_ba))
    assert ours["chance"] == 1 / 32 and ours["batches"] == 3
    shuffled = in_batch_recall_at_1(a, torch.randn(100, 16, generator=g), batch_size=32)
    assert shuffled["a2b"] < 5 * shuffled["chance"]


def test_report_has_oracle_row_and_bootstrappable_hits():
    g = torch.Generator().manual_seed(4)
    img = torch.randn(50, 16, generator=g)
    ref = img + 0.3 * torch.randn(50, 16, generator=g)
    hyp = img + 2.0 * torch.randn(50, 16, generator=g)
    report = retrieval_report(img, hyp, ref)
    assert report["oracle"]["t2i"]["R@1"] > report["translation"]["t2i"]["R@1"]
    assert report["oracle"]["grounding"] > report["translation"]["grounding"]
    assert len(report["translation"]["grounding_per_sentence"]) == 50
    hits = (ranks(img, hyp)["t2i"] < 1).double().numpy()
    ci = stats.bootstrap_ci(stats.Statistic.mean(hits), n_samples=200, seed=0)
    assert ci["score"] == pytest.approx(report["translation"]["t2i"]["R@1"])
    assert ci["low"] <= ci["score"] <= ci["high"]


def test_clip_embeddings_equal_open_clip_encoders():
    model, _, preprocess = open_clip.create_model_and_transforms("groundmt-micro")
    tokenizer = open_clip.get_tokenizer("groundmt-micro")
    model.eval()
    images = [Image.new("RGB", (40, 30), c) for c in ("red", "blue", "green")]
    texts = ["a red square", "a blue circle", "a green star"]
    img, txt = clip_embeddings(model, preprocess, tokenizer, images=images, texts=texts, batch_size=2)
    with torch.no_grad():
        ref_img = model.encode_image(torch.stack([preprocess(i) for i in images]))
        ref_txt = model.encode_text(tokenizer(texts))
    assert torch.allclose(img, ref_img, atol=1e-5) and torch.allclose(txt, ref_txt, atol=1e-5)


def test_bad_inputs_are_explained():
    with pytest.raises(ValueError, match="pass text_image"):
        recall_at_k(torch.randn(3, 4), torch.randn(5, 4))
    with pytest.raises(ValueError, match="image indices"):
        recall_at_k(torch.randn(3, 4), torch.randn(2, 4), torch.tensor([0, 3]))
    with pytest.raises(ValueError, match="aligned rows"):
        in_batch_recall_at_1(torch.randn(3, 4), torch.randn(4, 4))


def test_ties_count_as_expected_hits_so_collapse_scores_chance():
    """A collapsed embedding (every row identical) must score chance, not a perfect recall."""
    img = torch.randn(40, 8)
    collapsed = torch.ones(40, 8)
    r = recall_at_k(img[:1].expand(40, 8), collapsed)  # every score equal
    assert r["t2i"]["R@1"] == pytest.approx(1 / 40)
    assert r["t2i"]["R@5"] == pytest.approx(5 / 40)
    in_batch = in_batch_recall_at_1(torch.randn(64, 8), collapsed[:1].expand(64, 8), batch_size=32)
    assert in_batch["b2a"] == pytest.approx(1 / 32) and in_batch["a2b"] <= 1.0
    assert in_batch_recall_at_1(collapsed[:1].expand(64, 8), collapsed[:1].expand(64, 8))["a2b"] == pytest.approx(1 / 32)


def test_hits_against_brute_force_over_tie_orders():
    """hits() equals the hit rate averaged over every order of the tied items (brute force)."""
    import itertools

    from eval.retrieval import hits

    for better, ties, k in [(0, 0, 1), (0, 3, 1), (1, 2, 2), (2, 1, 5), (4, 0, 3), (0, 4, 3)]:
        orders = list(itertools.permutations(range(ties + 1)))
        expected = sum((better + order.index(0)) < k for order in orders) / len(orders)
        assert float(hits(torch.tensor([better]), torch.tensor([ties]), k)) == pytest.approx(expected)
