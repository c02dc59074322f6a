"""Similarity registry (models.similarities): definitions against independent formulas, the
documented equivalences, the three evaluators against each other, and NaN-freedom."""
import functools
import itertools

import pytest
import torch
import torch.nn.functional as F

from models.cube import evaluate_grid, evaluate_tuples
from models.similarities import ALIASES, FAILING, NAMES, SIMILARITIES, fibre_tuples, get_similarity

torch.set_default_dtype(torch.float32)
f64 = torch.float64


def unit(*shape, seed=0, dtype=f64):
    return F.normalize(torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype), dim=-1)


def pair_sum(V):
    """P = Σ_{k<l} v_k·v_l, computed pair by pair."""
    n = V.shape[-2]
    return sum((V[..., k, :] * V[..., l, :]).sum(-1) for k in range(n) for l in range(k + 1, n))


def test_registry_has_the_thesis_numbering():
    assert {f"v{i}" for i in range(17)} | {"gram", "pairwise"} == set(NAMES)
    for alias, target in ALIASES.items():
        assert get_similarity(alias) is get_similarity(target)
        assert alias in get_similarity(target).__doc__     # the identity is documented there
    for name in NAMES:
        assert get_similarity(name).__doc__.strip()
    with pytest.raises(ValueError, match="v0, v1, v2"):
        get_similarity("v17")


@pytest.mark.parametrize("n", [2, 3, 4, 6])
def test_pairwise_sum_identities_on_unit_vectors(n):
    """DESIGN §4.3 with unit vectors and P = Σ_{k<l} cos(v_k, v_l)."""
    V = unit(200, n, 16, seed=n)
    P = pair_sum(V)
    s = {name: get_similarity(name).tuples(V) for name in ("v4", "v5", "v7", "v8", "v9", "v10", "v13", "v14", "pairwise")}
    torch.testing.assert_close(s["v4"], 2 - n + 2 * P / n)
    torch.testing.assert_close(s["v5"], 1 - (n - 1 - 2 * P / n).clamp_min(0).sqrt())
    torch.testing.assert_close(s["v7"], (n + 2 * P).sqrt())
    torch.testing.assert_close(s["v9"], (n + 2 * P).sqrt() / n)
    torch.testing.assert_close(s["v14"], s["v4"] + n - 1)
    torch.testing.assert_close(s["pairwise"], P)
    torch.testing.assert_close(s["v7"], V.sum(-2).norm(dim=-1))          # ‖Σ v‖
    for alias, target in (("v8", "v7"), ("v10", "v7"), ("v13", "v4")):
        torch.testing.assert_close(s[alias], s[target])


def test_v13_is_v4_for_any_vectors():
    """v13 = 1 − Σ_k ‖v_k − v̄‖² equals v4 = 1 − Q + N/n without unit norms."""
    V = 3 * torch.randn(100, 5, 7, dtype=f64)
    v13 = 1 - (V - V.mean(-2, keepdim=True)).square().sum((-2, -1))
    torch.testing.assert_close(get_similarity("v13").tuples(V), v13)


def test_dispersion_family_against_the_variance():
    """d_f = n · (population variance of the n values of feature f)."""
    V = unit(300, 4, 10, seed=1)
    d = 4 * V.var(dim=-2, unbiased=False)
    torch.testing.assert_close(get_similarity("v1").tuples(V), 1 - d.sqrt().mean(-1))
    torch.testing.assert_close(get_similarity("v6").tuples(V), 1 - d.abs().sqrt().mean(-1))
    torch.testing.assert_close(get_similarity("v2").tuples(V), 1 - d.norm(dim=-1))


def test_v1_is_finite_with_zero_slope_clamp_on_the_diagonal():
    """The thesis' v1 was NaN on diagonal tuples (sqrt of a −1e-9 rounding residue)."""
    v = unit(1, 1, 512, seed=2, dtype=torch.float32).expand(1, 6, 512).clone().requires_grad_()
    s = get_similarity("v1").tuples(v)
    s.sum().backward()
    assert torch.isfinite(s).all() and torch.isfinite(v.grad).all()
    assert abs(s.item() - 1) < 1e-5


def test_v0_is_the_n_operand_einsum_and_the_dot_product_at_n2():
    V = unit(50, 2, 8, seed=3)
    torch.testing.assert_close(get_similarity("v0").tuples(V), (V[:, 0] * V[:, 1]).sum(-1))
    X = unit(3, 4, 8, seed=4)
    cube = torch.einsum("az,bz,cz->abc", *X)                   # the thesis' formulation
    torch.testing.assert_close(evaluate_grid(get_similarity("v0"), X), cube)


def test_gram_is_the_negated_volume():
    """Volume of the parallelotope from a QR decomposition (|Π diag R|), not from det."""
    V = torch.randn(60, 3, 9, dtype=f64)
    R = torch.linalg.qr(V.transpose(-1, -2)).R
    volume = torch.diagonal(R, dim1=-2, dim2=-1).prod(-1).abs()
    torch.testing.assert_close(get_similarity("gram").tuples(V), -volume)
    v = unit(1, 9, seed=5)
    degenerate = torch.stack([torch.cat([v, v, v]), torch.cat([v, -v, v]), torch.zeros(3, 9, dtype=f64)])
    assert (get_similarity("gram").tuples(degenerate).abs() <= 1e-6).all()   # all maximal: degenerate optima


def test_v11_leave_one_out_from_the_vectors():
    V = torch.randn(80, 4, 6, dtype=f64)
    S = V.sum(-2, keepdim=True)
    direct = (V * (S - V) / (S - V).norm(dim=-1, keepdim=True)).sum((-2, -1))
    torch.testing.assert_close(get_similarity("v11").tuples(V), direct)
    torch.testing.assert_close(get_similarity("v12").tuples(V), direct)
    perfect = unit(5, 1, 6, seed=6).expand(5, 4, 6)
    torch.testing.assert_close(get_similarity("v11").tuples(perfect), torch.full((5,), 4.0, dtype=f64))


def noisy_copies(n, B, dim, noise, seed=0):
    """n views of the same B items: the diagonal tuples are the aligned ones."""
    g = torch.Generator().manual_seed(seed + 1)
    return F.normalize(unit(1, B, dim, seed=seed) + noise * torch.randn(n, B, dim, generator=g, dtype=f64), dim=-1)


def test_failing_heuristics_fail_as_documented():
    assert set(FAILING) == {"v3", "v15", "v16"}
    n, B = 4, 8
    X = noisy_copies(n, B, 32, noise=0.02)
    diag = torch.arange(B)

    def diagonal_is_row_max(name):
        rows = get_similarity(name).fibres(X)
        return rows.argmax(-1) == diag

    assert diagonal_is_row_max("v4").all() and diagonal_is_row_max("v7").all()
    # v15 scores off-diagonal tuples higher: the diagonal is the *minimum* of every fibre row.
    v15 = get_similarity("v15")
    assert (v15.fibres(X).argmin(-1) == diag).all()
    perfect = unit(1, 1, 32, seed=7).expand(1, n, 32)
    antipodes = torch.cat([perfect[:, :2], -perfect[:, 2:]], dim=1)
    assert v15.tuples(perfect).abs().item() < 1e-12 < v15.tuples(antipodes).item()
    # v3 sees only the all-ones direction: a perfect tuple orthogonal to it scores 0, below a
    # mismatched tuple, and a rotation of the space changes every score.
    v = unit(1, 32, seed=8)
    v = F.normalize(v - v.mean(), dim=-1)                                   # ⟂ (1, …, 1)
    w = F.normalize(torch.ones(1, 32, dtype=f64) + unit(1, 32, seed=9), dim=-1)
    v3 = get_similarity("v3")
    assert v3.tuples(v.expand(n, 32)).abs() < 1e-12 < v3.tuples(torch.cat([w, w, v, v])).item()
    rotation = torch.linalg.qr(torch.randn(32, 32, generator=torch.Generator().manual_seed(10), dtype=f64)).Q
    V = unit(20, n, 32, seed=11)
    assert not torch.allclose(v3.tuples(V), v3.tuples(V @ rotation))
    torch.testing.assert_close(get_similarity("v7").tuples(V), get_similarity("v7").tuples(V @ rotation))
    # v16 of a perfect tuple is the sum of its features: the same perfect tuple, negated, scores
    # below a mismatched tuple.
    v16 = get_similarity("v16")
    p = w.expand(n, 32)
    torch.testing.assert_close(v16.tuples(p), p[0].sum())
    assert v16.tuples(-p).item() < 0 < v16.tuples(torch.cat([w, w, w, v])).item()


def _grad_of(fn, X, weights):
    X = X.detach().clone().requires_grad_()
    out = fn(X)
    (out * weights).sum().backward()
    return out.detach(), X.grad


@pytest.mark.parametrize("name", sorted(SIMILARITIES))
@pytest.mark.parametrize(("n", "B"), [(2, 4), (4, 3), (6, 2)])
def test_fibres_and_cube_equal_the_definition(name, n, B):
    """fibres and cube (chunked or not) against `tuples` on gathered vectors, with gradients."""
    sim = get_similarity(name)
    X = torch.randn(n, B, 5, generator=torch.Generator().manual_seed(n * 10 + B), dtype=f64)
    axes = torch.arange(n)
    rows = torch.tensor([B - 1, 0])
    fibre_idx = fibre_tuples(n, B, rows).reshape(-1, n)
    all_idx = torch.tensor(list(itertools.product(range(B), repeat=n)))
    w_fibre = torch.randn(n, len(rows), B, dtype=f64)
    w_cube = torch.randn([B] * n, dtype=f64)

    ref_f, g_ref_f = _grad_of(lambda X: sim.tuples(X[axes, fibre_idx]).view(n, len(rows), B), X, w_fibre)
    for chunk_bytes in (4096, 2**30):          # several chunks, then one
        out, grad = _grad_of(lambda X, c=chunk_bytes: sim.fibres(X, rows, chunk_bytes=c), X, w_fibre)
        torch.testing.assert_close(out, ref_f)
        torch.testing.assert_close(grad, g_ref_f)

    ref_c, g_ref_c = _grad_of(lambda X: sim.tuples(X[axes, all_idx]).view([B] * n), X, w_cube)
    quarter = sim.bytes_per_tuple(n, 5, 8) * -(-B**n // 4)
    for chunk_bytes in (quarter, 2**30):       # four chunks, then one
        out, grad = _grad_of(lambda X, c=chunk_bytes: evaluate_grid(sim, X, chunk_bytes=c), X, w_cube)
        torch.testing.assert_close(out, ref_c)
        torch.testing.assert_close(grad, g_ref_c)
        out, grad = _grad_of(lambda X, c=chunk_bytes: evaluate_tuples(sim, X, all_idx, c).view([B] * n), X, w_cube)
        torch.testing.assert_close(out, ref_c)
        torch.testing.assert_close(grad, g_ref_c)


@functools.cache
def degenerate_tuples(n, dim, count, dtype, seed=0):
    """`count` tuples [count, n, F]: random unit, identical, zeros, antipodes, one-hot,
    half-zero, tiny and large vectors, repeated."""
    g = torch.Generator().manual_seed(seed)
    v = F.normalize(torch.randn(count, 1, dim, generator=g), dim=-1)
    signs = torch.tensor([1.0, -1.0]).repeat(n)[:n].view(1, n, 1)
    kinds = [
        F.normalize(torch.randn(count, n, dim, generator=g), dim=-1),
        v.expand(-1, n, -1),
        torch.zeros(count, n, dim),
        v * signs,
        torch.eye(dim)[torch.randint(dim, (count,), generator=g)].unsqueeze(1).expand(-1, n, -1),
        torch.cat([v.expand(-1, n // 2, -1), torch.zeros(count, n - n // 2, dim)], dim=1),
        1e-20 * torch.randn(count, n, dim, generator=g),
        10 * torch.randn(count, n, dim, generator=g),
    ]
    picks = torch.randint(len(kinds), (count,), generator=g)
    return torch.stack(kinds)[picks, torch.arange(count)].to(dtype)


@pytest.mark.parametrize("n", [2, 5, 6])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("name", sorted(SIMILARITIES))     # aliases are the same objects
def test_no_nan_on_10000_random_and_degenerate_tuples(name, dtype, n):
    V = degenerate_tuples(n, 8, 10_000, dtype).clone().requires_grad_()
    s = get_similarity(name).tuples(V.float())
    s.sum().backward()
    assert torch.isfinite(s).all()
    assert torch.isfinite(V.grad).all()
