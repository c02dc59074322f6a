"""The learnable anchor bank (InfoNCE to the nearest anchor) and seed 000's diagnostics: active
anchors, anchor entropy, nearest vs second-nearest distance, expert uniqueness — and the
collapse warning on a constructed collapse."""
import math

import numpy as np
import pytest
import torch

from eval.health import anchor_stats, collapse_warnings, expert_uniqueness, health_report
from models.anchor_bank import AnchorBank


def _clusters(n_per: int, centres: int, dim: int, seed: int, noise: float = 0.05) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    means = torch.nn.functional.normalize(torch.randn(centres, dim, generator=g), dim=-1)
    return (means.repeat_interleave(n_per, 0) + noise * torch.randn(centres * n_per, dim, generator=g))


def test_anchors_are_unit_and_nearest_is_the_cosine_argmax():
    bank = AnchorBank(8, 5, seed=1)
    assert torch.allclose(bank.anchors().norm(dim=-1), torch.ones(8))
    x = torch.randn(30, 5, generator=torch.Generator().manual_seed(2))
    xs = x.numpy() / np.linalg.norm(x.numpy(), axis=1, keepdims=True)
    a = bank.anchors().detach().numpy()
    assert bank.nearest(x).tolist() == (xs @ a.T).argmax(1).tolist()


def test_term_is_cross_entropy_against_the_nearest_anchor():
    bank = AnchorBank(6, 4, temperature=0.2, seed=3)
    x = torch.randn(10, 4, generator=torch.Generator().manual_seed(4))
    cos = (torch.nn.functional.normalize(x, dim=-1) @ bank.anchors().T).detach().double().numpy()
    logits = cos / 0.2
    target = logits.argmax(1)
    log_softmax = logits - np.log(np.exp(logits - logits.max(1, keepdims=True)).sum(1, keepdims=True)) \
        - logits.max(1, keepdims=True)
    expected = -log_softmax[np.arange(10), target].mean()
    assert float(bank(x).detach()) == pytest.approx(expected, rel=1e-5)
    with pytest.raises(ValueError, match="expected features"):
        bank(torch.randn(3, 5))


def test_training_the_bank_spreads_over_the_clusters():
    features = _clusters(20, 4, 16, seed=5)
    bank = AnchorBank.from_features(features, 8, temperature=0.1, seed=0)
    unit = torch.nn.functional.normalize(features, dim=-1)
    chosen = (bank.anchors().detach() @ unit.T).max(1).values
    assert torch.allclose(chosen, torch.ones(8), atol=1e-6)  # every anchor starts on a feature row
    opt = torch.optim.Adam(bank.parameters(), lr=0.05)
    first = float(bank(features).detach())
    for _ in range(50):
        opt.zero_grad()
        loss = bank(features)
        loss.backward()
        opt.step()
    assert float(loss.detach()) < first
    stats = anchor_stats(features, bank.anchors().detach())
    assert stats["active_anchors"] >= 4 and stats["anchor_entropy"] >= 0.9 * math.log(4)
    assert stats["nearest_distance"] < 0.1 < stats["second_nearest_distance"]


def test_expert_uniqueness_against_brute_force():
    x = torch.randn(37, 6, generator=torch.Generator().manual_seed(6)).double()
    u = x.numpy() / np.linalg.norm(x.numpy(), axis=1, keepdims=True)
    cos = u @ u.T
    np.fill_diagonal(cos, -np.inf)
    assert expert_uniqueness(x, chunk=5) == pytest.approx(float((1 - cos.max(1)).mean()), rel=1e-12)
    assert expert_uniqueness(torch.ones(5, 3)) == 0.0


def test_constructed_collapse_raises_the_collapse_warning():
    """Seed 000's Experiment 1: every sample on one point, one anchor active, entropy 0."""
    images = _clusters(16, 8, 32, seed=7)
    bank = AnchorBank.from_features(images, 16, seed=1)
    collapsed = bank.anchors().detach()[3].expand(128, -1).clone()  # all features equal, on anchor 3
    report = health_report({"image": images, "student": collapsed}, reference="image",
                           anchors=bank.anchors().detach(), top_k=4)
    s = report["student"]
    assert s["uniqueness"] == 0.0 and s["effective_rank"] == pytest.approx(1.0, abs=1e-6)
    assert s["anchor"]["active_anchors"] == 1 and s["anchor"]["anchor_entropy"] == 0.0
    assert s["anchor"]["nearest_distance"] == pytest.approx(0.0, abs=1e-9)
    warnings = collapse_warnings(report)
    for needle in ("effective rank", "off-diagonal cosine", "in-batch R@1", "anchors active", "anchor entropy"):
        assert any(w.startswith("student:") and needle in w for w in warnings), needle
    assert not any(w.startswith("image:") for w in warnings)
    assert report["image"]["uniqueness"] > 0.0
