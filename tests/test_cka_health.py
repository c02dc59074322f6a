"""Linear CKA (unbiased HSIC) against brute force; embedding-health statistics and warnings."""
import itertools
import math

import numpy as np
import pytest
import torch

from eval.cka import LinearCKA, hsic_unbiased, linear_cka
from eval.health import anchor_stats, collapse_warnings, embedding_stats, health_report


def hsic_u_statistic(K, L):
    """Song et al. (2012), Eq. 4 by definition: the U-statistic over ordered distinct quadruples."""
    n = K.shape[0]
    total = 0.0
    for i, j, q, r in itertools.permutations(range(n), 4):
        total += K[i, j] * (L[i, j] + L[q, r] - 2 * L[i, q])
    return total / math.perm(n, 4)


def test_unbiased_hsic_closed_form_equals_u_statistic():
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(7, 3, generator=g).double(), torch.randn(7, 5, generator=g).double()
    K, L = x @ x.T, y @ y.T
    assert float(hsic_unbiased(K, L)) == pytest.approx(float(hsic_u_statistic(K, L)), rel=1e-9)


def hsic_song_numpy(K: np.ndarray, L: np.ndarray) -> float:
    """Song et al. (2012), Eq. 5, written directly in numpy: with K~, L~ the kernels with zeroed
    diagonals, HSIC_1 = [tr(K~L~) + 1'K~1 1'L~1 / ((n-1)(n-2)) - 2/(n-2) 1'K~L~1] / (n(n-3))."""
    n = K.shape[0]
    Kt, Lt = K - np.diag(np.diag(K)), L - np.diag(np.diag(L))
    one = np.ones(n)
    return float((np.trace(Kt @ Lt) + (one @ Kt @ one) * (one @ Lt @ one) / ((n - 1) * (n - 2))
                  - 2.0 / (n - 2) * (one @ Kt @ Lt @ one)) / (n * (n - 3)))


def cka_numpy(x: np.ndarray, y: np.ndarray) -> float:
    K, L = x @ x.T, y @ y.T
    return hsic_song_numpy(K, L) / np.sqrt(hsic_song_numpy(K, K) * hsic_song_numpy(L, L))


def test_cka_equals_a_numpy_implementation_of_the_published_formula():
    rng = np.random.default_rng(10)
    x = rng.normal(size=(50, 7))
    y = np.tanh(x @ rng.normal(size=(7, 5))) + 0.3 * rng.normal(size=(50, 5))
    K, L = x @ x.T, y @ y.T
    assert float(hsic_unbiased(torch.from_numpy(K), torch.from_numpy(L))) == pytest.approx(
        hsic_song_numpy(K, L), rel=1e-10)
    assert linear_cka(torch.from_numpy(x), torch.from_numpy(y)) == pytest.approx(cka_numpy(x, y), rel=1e-10)


def test_cka_of_a_representation_with_itself_is_one():
    x = torch.randn(40, 6, generator=torch.Generator().manual_seed(11))
    assert linear_cka(x, x) == pytest.approx(1.0, abs=1e-12)
    assert linear_cka(x, x, batch_size=10) == pytest.approx(1.0, abs=1e-12)


def test_cka_invariant_to_orthogonal_transforms_and_isotropic_scaling_separately():
    g = torch.Generator().manual_seed(12)
    x = torch.randn(120, 9, generator=g).double()
    y = x[:, :4] @ torch.randn(4, 6, generator=g).double() + torch.randn(120, 6, generator=g).double()
    q, _ = torch.linalg.qr(torch.randn(6, 6, generator=g).double())
    base = linear_cka(x, y, batch_size=40)
    assert 0.05 < base < 0.95  # a non-trivial value, so invariance is not 1 == 1
    assert linear_cka(x, y @ q, batch_size=40) == pytest.approx(base, abs=1e-10)
    assert linear_cka(x, 7.5 * y, batch_size=40) == pytest.approx(base, abs=1e-10)
    assert linear_cka(0.01 * x, y, batch_size=40) == pytest.approx(base, abs=1e-10)


def test_minibatch_hsic_is_the_full_batch_estimator_on_average_over_subsets():
    """U-statistic identity: the full-batch unbiased HSIC equals the mean of the same estimator
    over every m-subset, so averaging per-batch HSIC (what LinearCKA accumulates) estimates the
    full-batch value without bias; on a large sample the two CKAs agree closely."""
    g = torch.Generator().manual_seed(13)
    x, y = torch.randn(8, 3, generator=g).double(), torch.randn(8, 4, generator=g).double()
    y[:, 0] += x[:, 0]
    K, L = x @ x.T, y @ y.T
    subsets = [list(c) for c in itertools.combinations(range(8), 5)]
    mean = sum(float(hsic_unbiased(K[c][:, c], L[c][:, c])) for c in subsets) / len(subsets)
    assert mean == pytest.approx(float(hsic_unbiased(K, L)), rel=1e-10)
    big_x = torch.randn(4000, 10, generator=g).double()
    big_y = big_x[:, :5] @ torch.randn(5, 8, generator=g).double() + torch.randn(4000, 8, generator=g).double()
    assert linear_cka(big_x, big_y, batch_size=250) == pytest.approx(linear_cka(big_x, big_y), abs=0.01)


def test_minibatch_accumulation_equals_direct_computation():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(60, 8, generator=g)
    y = x @ torch.randn(8, 6, generator=g) + 0.5 * torch.randn(60, 6, generator=g)
    # one batch: the full-batch unbiased CKA
    K, L = x.double() @ x.double().T, y.double() @ y.double().T
    direct = hsic_unbiased(K, L) / (hsic_unbiased(K, K) * hsic_unbiased(L, L)).sqrt()
    assert linear_cka(x, y) == pytest.approx(float(direct), rel=1e-9)
    # minibatches: the HSIC terms are averaged over batches before the ratio
    parts = [(x[s:s + 20].double(), y[s:s + 20].double()) for s in (0, 20, 40)]
    xy = sum(hsic_unbiased(a @ a.T, b @ b.T) for a, b in parts)
    xx = sum(hsic_unbiased(a @ a.T, a @ a.T) for a, _ in parts)
    yy = sum(hsic_unbiased(b @ b.T, b @ b.T) for _, b in parts)
    assert linear_cka(x, y, batch_size=20) == pytest.approx(float(xy / (xx * yy).sqrt()), rel=1e-9)


def test_cka_invariances_and_independence():
    g = torch.Generator().manual_seed(2)
    x = torch.randn(200, 10, generator=g)
    q, _ = torch.linalg.qr(torch.randn(10, 10, generator=g))
    assert linear_cka(x, 3.0 * x @ q, batch_size=50) == pytest.approx(1.0, abs=1e-6)
    assert abs(linear_cka(x, torch.randn(200, 7, generator=g), batch_size=50)) < 0.1


def test_token_and_eot_variants_select_the_right_samples():
    g = torch.Generator().manual_seed(3)
    a, b = torch.randn(12, 9, 5, generator=g), torch.randn(12, 9, 4, generator=g)
    b[..., :2] += a[..., :2]
    lengths = torch.randint(3, 10, (12,), generator=g)
    mask = torch.arange(9)[None, :] < lengths[:, None]
    assert linear_cka(a, b, mask=mask) == pytest.approx(linear_cka(a[mask], b[mask]), rel=1e-12)
    eot = lengths - 1
    rows = torch.arange(12)
    assert linear_cka(a, b, positions=eot) == pytest.approx(linear_cka(a[rows, eot], b[rows, eot]), rel=1e-12)
    cka = LinearCKA()
    cka.update(a[:6], b[:6], positions=eot[:6])
    cka.update(a[6:], b[6:], positions=eot[6:])
    assert cka.batches == 2


def test_rows_equal_up_to_rounding_make_cka_undefined():
    """A collapsed representation (one vector, float32 rounding apart) has no variance: its unbiased
    HSIC is rounding noise, so CKA is refused rather than reported as an arbitrary number."""
    g = torch.Generator().manual_seed(14)
    y = torch.randn(16, 5, generator=g)
    point = torch.randn(8, generator=g)
    x = point + 1e-7 * torch.randn(16, 8, generator=g) * point.abs().max()
    with pytest.raises(ValueError, match="no \\(estimated\\) variance"):
        linear_cka(x, y, batch_size=8)
    spread = point + 1e-3 * torch.randn(16, 8, generator=g)  # small but real variation: defined
    assert -1.0 <= linear_cka(spread, y, batch_size=8) <= 1.0


def test_cka_errors():
    with pytest.raises(ValueError, match="n >= 4"):
        linear_cka(torch.randn(3, 2), torch.randn(3, 2))
    with pytest.raises(ValueError, match="exactly one of mask"):
        linear_cka(torch.randn(5, 4, 3), torch.randn(5, 4, 3))
    with pytest.raises(ValueError, match="no batches"):
        LinearCKA().compute()


def test_embedding_stats_on_known_spectra():
    eye = torch.eye(16)
    s = embedding_stats(eye, top_k=4)
    assert s["effective_rank"] == pytest.approx(16.0)
    assert s["top_k_share"] == pytest.approx(4 / 16)
    assert s["mean_offdiag_cosine"] == pytest.approx(0.0, abs=1e-12)
    collapsed = embedding_stats(torch.ones(10, 16), top_k=4)
    assert collapsed["effective_rank"] == pytest.approx(1.0, abs=1e-6)
    assert collapsed["mean_offdiag_cosine"] == pytest.approx(1.0)


def test_collapse_is_warned_and_health_is_not():
    g = torch.Generator().manual_seed(4)
    images = torch.randn(128, 64, generator=g)
    healthy = {"image": images, "translation": images + 0.5 * torch.randn(128, 64, generator=g)}
    anchors = torch.randn(32, 64, generator=g)
    report = health_report(healthy, reference="image", anchors=anchors, top_k=8)
    assert collapse_warnings(report) == []
    point = torch.randn(64, generator=g)
    collapsed = {"image": images, "translation": point + 0.01 * torch.randn(128, 64, generator=g)}
    anchors[0] = point
    warnings = collapse_warnings(health_report(collapsed, reference="image", anchors=anchors, top_k=8))
    text = "\n".join(warnings)
    for needle in ("effective rank", "top-8", "off-diagonal cosine", "in-batch R@1",
                   "anchors active", "anchor entropy"):
        assert "translation: " in text and needle in text, needle
    assert not any(w.startswith("image:") for w in warnings)


def test_anchor_stats_by_hand():
    anchors = torch.eye(4, dtype=torch.float64)
    near0 = torch.tensor([[1.0, 0.1, 0, 0], [1.0, 0, 0.2, 0]])
    a = anchor_stats(near0, anchors)
    assert a["active_anchors"] == 1 and a["anchor_entropy"] == 0.0
    spread = torch.eye(4, dtype=torch.float64) + 0.05
    b = anchor_stats(spread, anchors)
    assert b["active_anchors"] == 4 and b["anchor_entropy"] == pytest.approx(math.log(4))
    cos = torch.nn.functional.normalize(spread, dim=-1) @ anchors.T
    assert b["nearest_distance"] == pytest.approx(float(1 - cos.max(1).values.mean()))
