"""Centred orthogonal Procrustes: recovers a known rotation with offsets; the uncentred variant
fails on the same offset case (seed 000's collapse around an off-centre point)."""
import pytest
import torch
from scipy.linalg import orthogonal_procrustes

from models.procrustes import ProcrustesMap


def _orthogonal(d: int, seed: int) -> torch.Tensor:
    q, r = torch.linalg.qr(torch.randn(d, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64))
    return q * torch.sign(torch.diagonal(r))


def test_recovers_a_known_rotation_with_an_offset():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(300, 16, generator=g, dtype=torch.float64) + 3.0
    q = _orthogonal(16, 1)
    offset = torch.randn(16, generator=g, dtype=torch.float64) * 5
    y = x @ q + offset
    m = ProcrustesMap.fit(x, y)
    assert torch.allclose(m.rotation, q, atol=1e-5)
    fresh = torch.randn(50, 16, generator=g, dtype=torch.float64) - 2.0
    assert (m(fresh) - (fresh @ q + offset)).abs().max() < 1e-5
    assert m.residual(x, y) < 1e-5


def test_rotation_equals_scipy_on_centred_data_and_scale_is_recovered():
    g = torch.Generator().manual_seed(2)
    x = torch.randn(100, 8, generator=g, dtype=torch.float64)
    y = 2.5 * (x + 1.0) @ _orthogonal(8, 3) - 4.0 + 0.01 * torch.randn(100, 8, generator=g, dtype=torch.float64)
    m = ProcrustesMap.fit(x, y, scale=True)
    xc, yc = (x - x.mean(0)).numpy(), (y - y.mean(0)).numpy()
    rotation, _ = orthogonal_procrustes(xc, yc)  # the oracle: SciPy's orthogonal Procrustes
    assert torch.allclose(m.rotation, torch.from_numpy(rotation), atol=1e-10)
    assert float(m.scale) == pytest.approx(2.5, rel=1e-3)
    assert float(ProcrustesMap.fit(x, y).scale) == 1.0


def test_uncentred_fails_where_centred_recovers():
    """Both clouds sit far from the origin (as CLIP and sentence-encoder embeddings do): the
    uncentred map can only rotate about the origin and misses; the centred one is exact."""
    g = torch.Generator().manual_seed(4)
    x = torch.randn(400, 12, generator=g, dtype=torch.float64) + torch.randn(12, generator=g, dtype=torch.float64) * 4
    y = x @ _orthogonal(12, 5) + torch.randn(12, generator=g, dtype=torch.float64) * 4
    centred = ProcrustesMap.fit(x, y)
    uncentred = ProcrustesMap.fit(x, y, center=False)
    assert centred.residual(x, y) < 1e-6
    assert uncentred.residual(x, y) > 0.3
    # its images miss the target cloud's centre: the rotation about the origin that best
    # explains the offset is not the one that aligns the points around it
    mean_error = lambda m: float((m(x).mean(0) - y.mean(0)).norm() / y.mean(0).norm())  # noqa: E731
    assert mean_error(uncentred) > 0.2 and mean_error(centred) < 1e-9


def test_different_widths_give_a_semi_orthogonal_map():
    g = torch.Generator().manual_seed(6)
    q = _orthogonal(24, 7)[:, :16]  # orthonormal columns: 24 → 16
    x = torch.randn(200, 24, generator=g, dtype=torch.float64)
    y = x @ q + 1.5
    m = ProcrustesMap.fit(x, y)
    assert m.rotation.shape == (24, 16)
    assert torch.allclose(m.rotation.T @ m.rotation, torch.eye(16, dtype=torch.float64), atol=1e-10)
    wide = ProcrustesMap.fit(y, x)  # 16 → 24: orthonormal rows
    assert torch.allclose(wide.rotation @ wide.rotation.T, torch.eye(16, dtype=torch.float64), atol=1e-10)
    assert m.residual(x, y) < 0.9  # the best 16-d view of a 24-d cloud: a fit, not an identity


def test_float32_state_dict_round_trip_and_errors():
    g = torch.Generator().manual_seed(8)
    x, y = torch.randn(20, 4, generator=g), torch.randn(20, 6, generator=g)
    m = ProcrustesMap.fit(x, y)
    assert m(x).dtype == torch.float32 and not list(m.parameters())
    clone = ProcrustesMap(torch.zeros(4, 6), torch.zeros(4), torch.zeros(6))
    clone.load_state_dict(m.state_dict())
    assert torch.equal(clone(x), m(x))
    with pytest.raises(ValueError, match="paired"):
        ProcrustesMap.fit(x, y[:5])
    with pytest.raises(ValueError, match="two paired rows"):
        ProcrustesMap.fit(x[:1], y[:1])
