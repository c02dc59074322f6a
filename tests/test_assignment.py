"""Assignment toolkit against its oracles: SciPy's `linear_sum_assignment` and brute force."""
import dataclasses
import itertools

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import linear_sum_assignment

from models.assignment import METHODS, assignment_metrics, dual_certificate, sinkhorn_plan, solve
from models.assignment.precision_study import PRECISIONS, precision_study, quantize, sample_scores
from models.assignment.problem import Assignment, prepare

APPROXIMATE = ["greedy_regret", "stepped_argmax", "sinkhorn", "auction"]
FAST = settings(max_examples=60, deadline=None)


@st.composite
def problems(draw, max_side=7, masked=False):
    """A batch with random sizes (rectangular both ways), ties, lengths and maybe a mask."""
    n = draw(st.integers(1, 3))
    h, w = draw(st.integers(0, max_side)), draw(st.integers(0, max_side))
    seed = draw(st.integers(0, 2**31 - 1))
    g = torch.Generator().manual_seed(seed)
    kind = draw(st.sampled_from(["uniform", "ties", "wide"]))
    if kind == "ties":  # few distinct values: many optimal assignments
        scores = torch.randint(0, 3, (n, h, w), generator=g).double()
    elif kind == "wide":
        scores = torch.randn(n, h, w, generator=g, dtype=torch.float64) * 1e3
    else:
        scores = torch.rand(n, h, w, generator=g, dtype=torch.float64)
    rows = torch.randint(0, h + 1, (n,), generator=g) if draw(st.booleans()) else None
    cols = torch.randint(0, w + 1, (n,), generator=g) if draw(st.booleans()) else None
    mask = torch.rand(n, h, w, generator=g) < 0.7 if masked else None
    return scores, rows, cols, mask


def _blocks(scores, rows, cols, mask):
    """Per item: the valid block, its allowed-entry mask, and the (n, m) sizes."""
    n, h, w = scores.shape
    for i in range(n):
        r = h if rows is None else int(rows[i])
        c = w if cols is None else int(cols[i])
        allowed = np.ones((r, c), bool) if mask is None else mask[i, :r, :c].numpy()
        yield scores[i, :r, :c].numpy(), allowed


def brute_force(block, allowed, maximize):
    """Best (cardinality, objective) over all one-to-one partial assignments on allowed entries."""
    n, m = block.shape
    sign = 1.0 if maximize else -1.0
    best = (0, 0.0)
    for cols in itertools.product(range(-1, m), repeat=n):
        used = [c for c in cols if c >= 0]
        if len(used) != len(set(used)) or any(c >= 0 and not allowed[i, c] for i, c in enumerate(cols)):
            continue
        value = sum(sign * block[i, c] for i, c in enumerate(cols) if c >= 0)
        if (len(used), value) > (best[0], best[1] + 1e-9 * (1 + abs(best[1]))):
            best = (len(used), value)
    return best[0], sign * best[1]


def assert_valid(result, scores, rows, cols, mask, full):
    """One-to-one, valid entries only, consistent fields; `full`: min(n, m) pairs per item."""
    n, h, w = scores.shape
    assert result.row_to_col.shape == (n, h) and result.mask.shape == (n, h, w)
    assert result.row_to_col.dtype == torch.long and result.mask.dtype == torch.bool
    assert result.objective.dtype == torch.float32 and result.objective.shape == (n,)
    assert (result.mask.sum(2) <= 1).all() and (result.mask.sum(1) <= 1).all()
    onehot = torch.zeros(n, h, w, dtype=torch.bool)
    for i, j in zip(*torch.nonzero(result.row_to_col >= 0, as_tuple=True)):
        onehot[i, j, result.row_to_col[i, j]] = True
    assert torch.equal(onehot, result.mask)
    valid = prepare(scores, maximize=True, row_lengths=rows, col_lengths=cols, mask=mask).valid
    assert not (result.mask & ~valid).any()
    expected = torch.where(result.mask, scores, 0.0).sum((1, 2))
    torch.testing.assert_close(result.objective.double(), expected, rtol=1e-5, atol=1e-3)
    if full:
        for i, (block, _) in enumerate(_blocks(scores, rows, cols, mask)):
            assert int(result.mask[i].sum()) == min(block.shape)


# ------------------------------------------------------------------------- exact and hybrid

@FAST
@given(problems(), st.booleans())
def test_exact_matches_scipy(problem, maximize):
    scores, rows, cols, _ = problem
    result = solve(scores, maximize=maximize, row_lengths=rows, col_lengths=cols)
    assert_valid(result, scores, rows, cols, None, full=True)
    assert result.certified.all()
    for i, (block, _) in enumerate(_blocks(scores, rows, cols, None)):
        r, c = linear_sum_assignment(block, maximize=maximize)
        assert result.objective[i].item() == pytest.approx(block[r, c].sum(), rel=1e-6, abs=1e-4)


@FAST
@given(problems(max_side=5, masked=True), st.booleans())
def test_exact_with_forbidden_entries_is_max_cardinality_then_optimal(problem, maximize):
    scores, rows, cols, mask = problem
    result = solve(scores, maximize=maximize, row_lengths=rows, col_lengths=cols, mask=mask)
    assert_valid(result, scores, rows, cols, mask, full=False)
    for i, (block, allowed) in enumerate(_blocks(scores, rows, cols, mask)):
        size, value = brute_force(block, allowed, maximize)
        assert int(result.mask[i].sum()) == size
        assert result.objective[i].item() == pytest.approx(value, rel=1e-6, abs=1e-4)


def test_exact_with_forbidden_entries_matches_scipy_infinite_costs():
    """Where a full assignment exists, SciPy with -inf on forbidden entries is an oracle too."""
    g = torch.Generator().manual_seed(3)
    scores = torch.rand(40, 6, 9, generator=g, dtype=torch.float64)
    mask = torch.rand(40, 6, 9, generator=g) < 0.6
    result = solve(scores, mask=mask)
    checked = 0
    for i in range(40):
        block = np.where(mask[i].numpy(), scores[i].numpy(), -np.inf)
        try:
            r, c = linear_sum_assignment(block, maximize=True)
        except ValueError:  # "cost matrix is infeasible": no full assignment
            continue
        checked += 1
        assert int(result.mask[i].sum()) == 6
        assert result.objective[i].item() == pytest.approx(block[r, c].sum(), rel=1e-6)
    assert checked > 10


@settings(max_examples=40, deadline=None)
@given(problems(max_side=6, masked=True), st.booleans())
def test_hybrid_is_optimal(problem, maximize):
    scores, rows, cols, mask = problem
    result = solve(scores, method="hybrid", maximize=maximize, row_lengths=rows, col_lengths=cols, mask=mask,
                   iters=20)
    exact = solve(scores, maximize=maximize, row_lengths=rows, col_lengths=cols, mask=mask)
    assert_valid(result, scores, rows, cols, mask, full=False)
    assert torch.equal(result.mask.sum((1, 2)), exact.mask.sum((1, 2)))
    torch.testing.assert_close(result.objective, exact.objective, rtol=1e-6, atol=1e-3)
    assert result.certified.all()


def test_exact_threads_agree_with_plain_loop():
    scores = torch.rand(300, 12, 15, generator=torch.Generator().manual_seed(0))
    loop = solve(scores, workers=1)
    threads = solve(scores, workers=3)
    assert torch.equal(loop.row_to_col, threads.row_to_col)


def test_exact_keeps_float64_precision():
    """Scores that differ only below fp32 resolution must still be told apart."""
    scores = torch.tensor([[1.0, 1.0 + 1e-12], [1.0 + 1e-12, 1.0]], dtype=torch.float64)
    assert solve(scores).row_to_col.tolist() == [1, 0]
    assert solve(scores, maximize=False).row_to_col.tolist() == [0, 1]


# ------------------------------------------------------------------------- approximations

@settings(max_examples=50, deadline=None)
@given(problems(masked=False), st.booleans(), st.sampled_from(APPROXIMATE))
def test_approximations_are_valid_full_assignments(problem, maximize, method):
    scores, rows, cols, _ = problem
    result = solve(scores, method=method, maximize=maximize, row_lengths=rows, col_lengths=cols)
    assert_valid(result, scores, rows, cols, None, full=True)
    _assert_certificates_hold(result, scores, maximize, rows, cols, None)


@settings(max_examples=50, deadline=None)
@given(problems(max_side=6, masked=True), st.booleans(), st.sampled_from(APPROXIMATE))
def test_approximations_respect_forbidden_entries(problem, maximize, method):
    scores, rows, cols, mask = problem
    result = solve(scores, method=method, maximize=maximize, row_lengths=rows, col_lengths=cols, mask=mask,
                   certify=True)
    assert_valid(result, scores, rows, cols, mask, full=False)
    _assert_certificates_hold(result, scores, maximize, rows, cols, mask)


def _assert_certificates_hold(result, scores, maximize, rows, cols, mask):
    if result.certified is None:
        return
    exact = solve(scores, maximize=maximize, row_lengths=rows, col_lengths=cols, mask=mask)
    certified = result.certified
    torch.testing.assert_close(result.objective[certified], exact.objective[certified], rtol=1e-6, atol=1e-3)
    assert torch.equal(result.mask[certified].sum((1, 2)), exact.mask[certified].sum((1, 2)))


def test_approximations_survive_extreme_inputs():
    """Constant matrices, huge values, fp16 input and a single row or column."""
    cases = [torch.zeros(2, 5, 5), torch.full((2, 4, 6), 3.0e37), torch.rand(3, 6, 6).half(),
             torch.rand(2, 1, 7), torch.rand(2, 7, 1), torch.randn(2, 6, 6) * 1e-30]
    for scores in cases:
        for method in APPROXIMATE + ["hybrid"]:
            result = solve(scores, method=method)
            assert_valid(result, scores.double(), None, None, None, full=True)
            assert torch.isfinite(result.objective).all()


def test_sinkhorn_is_optimal_and_certified_on_planted_problems():
    g = torch.Generator().manual_seed(0)
    perm = torch.stack([torch.randperm(12, generator=g) for _ in range(20)])
    scores = 0.3 * torch.rand(20, 12, 12, generator=g)
    scores.scatter_add_(2, perm.unsqueeze(-1), torch.ones(20, 12, 1))
    result = solve(scores, method="sinkhorn")
    assert torch.equal(result.row_to_col, perm)
    assert result.certified.all()


def test_greedy_methods_follow_their_definitions():
    scores = torch.tensor([[10.0, 9.0], [9.0, 1.0]])
    # stepped argmax takes 10 first and is left with 1; regret settles row 1 (gap 8) first
    assert solve(scores, method="stepped_argmax").row_to_col.tolist() == [0, 1]
    assert solve(scores, method="greedy_regret").row_to_col.tolist() == [1, 0]
    assert solve(scores, method="greedy_regret").objective.item() == 18.0


def test_certificate_rejects_a_suboptimal_assignment():
    scores = torch.tensor([[[10.0, 9.0], [9.0, 1.0]]])
    problem = prepare(scores, maximize=True, row_lengths=None, col_lengths=None, mask=None)
    bound, certified = dual_certificate(problem, torch.tensor([[0, 1]]))
    assert not certified.item() and bound.item() >= 18.0
    bound, certified = dual_certificate(problem, torch.tensor([[1, 0]]))
    assert certified.item() and bound.item() == pytest.approx(18.0)


# ------------------------------------------------------------------------- API and errors

def test_two_dimensional_input_is_squeezed_back():
    scores = torch.rand(4, 6)
    result = solve(scores, method="sinkhorn")
    assert result.row_to_col.shape == (4,) and result.mask.shape == (4, 6)
    assert result.objective.shape == () and result.certified.shape == ()


def test_objective_is_differentiable():
    scores = torch.rand(2, 5, 5, requires_grad=True)
    result = solve(scores)
    result.objective.sum().backward()
    torch.testing.assert_close(scores.grad, result.mask.float())


def test_invalid_entries_may_hold_nan_and_inf():
    scores = torch.rand(1, 3, 4)
    scores[0, :, 3] = float("nan")
    scores[0, 0, 0] = float("-inf")
    mask = torch.ones(1, 3, 4, dtype=torch.bool)
    mask[0, 0, 0] = False
    for method in METHODS:
        result = solve(scores, method=method, mask=mask, col_lengths=torch.tensor([3]))
        assert torch.isfinite(result.objective).all() and result.mask[0, 0, 0].item() is False


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(scores=torch.rand(2, 3, 4, 5)), ValueError, r"\[N, H, W\] or \[H, W\]"),
    (dict(scores=torch.ones(2, 3, dtype=torch.long)), TypeError, "floating dtype"),
    (dict(scores=torch.tensor([[float("nan"), 1.0]])), ValueError, "non-finite"),
    (dict(scores=torch.rand(2, 3, 3), row_lengths=torch.tensor([1, 4])), ValueError,
     r"row_lengths must lie in \[0, 3\]"),
    (dict(scores=torch.rand(2, 3, 3), col_lengths=torch.tensor([1])), ValueError, "col_lengths must have shape"),
    (dict(scores=torch.rand(2, 3, 3), row_lengths=torch.tensor([1.0, 2.0])), TypeError, "integer Tensor"),
    (dict(scores=torch.rand(2, 3, 3), mask=torch.ones(2, 3, 3)), TypeError, "bool Tensor"),
    (dict(scores=torch.rand(2, 3, 3), mask=torch.ones(2, 3, 2, dtype=torch.bool)), ValueError, "shape of scores"),
    (dict(scores=torch.rand(2, 3, 3), method="hungarian"), ValueError, "unknown method 'hungarian'"),
    (dict(scores=torch.rand(2, 3, 3), method="sinkhorn", epsilon=2.0), ValueError, "epsilon"),
])
def test_bad_input_is_rejected_clearly(kwargs, error, match):
    with pytest.raises(error, match=match):
        solve(**kwargs)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_methods_run_on_cuda():
    """Every method on CUDA scores: its own result (not a CPU rerun) is valid, and the exact ones
    reach the optimum that SciPy finds."""
    scores = torch.rand(16, 9, 11, device="cuda")
    oracle = scores.cpu().double()
    optimum = torch.from_numpy(np.array([linear_sum_assignment(block, maximize=True) for block in oracle.numpy()]))
    best = oracle[torch.arange(16)[:, None], optimum[:, 0], optimum[:, 1]].sum(1)
    for method in METHODS:
        result = solve(scores, method=method)
        assert all(t.device.type == "cuda" for t in (result.row_to_col, result.mask, result.objective)), method
        on_cpu = Assignment(*(None if t is None else t.cpu() for t in dataclasses.astuple(result)))
        assert_valid(on_cpu, oracle, None, None, None, full=True)
        if method in ("exact", "hybrid"):
            torch.testing.assert_close(on_cpu.objective.double(), best, rtol=1e-5, atol=1e-5)


# ------------------------------------------------------------------------- soft plan

def test_sinkhorn_plan_is_a_differentiable_transport_plan():
    g = torch.Generator().manual_seed(1)
    scores = torch.rand(3, 5, 7, generator=g, requires_grad=True)
    plan = sinkhorn_plan(scores, epsilon=0.05, iters=100)
    torch.testing.assert_close(plan.sum(2), torch.ones(3, 5), atol=5e-3, rtol=0)
    assert (plan.sum(1) <= 1 + 1e-3).all()
    (plan * scores).sum().backward()
    assert torch.isfinite(scores.grad).all() and scores.grad.abs().sum() > 0
    # sharp temperature: the plan concentrates on the optimal assignment
    sharp = sinkhorn_plan(scores.detach(), epsilon=1e-3, iters=300)
    exact = solve(scores.detach())
    assert (sharp.argmax(2) == exact.row_to_col).float().mean() > 0.9


def test_sinkhorn_plan_respects_lengths_and_mask():
    scores = torch.rand(2, 4, 4, requires_grad=True)
    mask = torch.ones(2, 4, 4, dtype=torch.bool)
    mask[:, 0, 0] = False
    plan = sinkhorn_plan(scores, row_lengths=torch.tensor([4, 2]), col_lengths=torch.tensor([3, 4]), mask=mask)
    assert (plan[:, 0, 0] == 0).all() and (plan[0, :, 3] == 0).all() and (plan[1, 2:] == 0).all()
    plan.sum().backward()
    assert torch.isfinite(scores.grad).all()


# ------------------------------------------------------------------------- metrics

def _assignment(scores, row_to_col):
    """An Assignment for hand-built row->column indices (via solve's own mask builder)."""
    problem = prepare(scores, maximize=True, row_lengths=None, col_lengths=None, mask=None)
    from models.assignment.problem import build_assignment
    return build_assignment(problem, torch.tensor(row_to_col), None)


def test_f1_lsa_on_hand_built_assignments():
    scores = torch.tensor([[[5.0, 1.0, 0.0], [1.0, 5.0, 0.0], [0.0, 0.0, 5.0]]])
    ref = solve(scores)
    same = assignment_metrics(ref, ref, scores)
    assert same.f1.item() == 1.0 and same.optimal.item() and same.regret.item() == 0
    wrong = _assignment(scores, [[1, 0, 2]])
    m = assignment_metrics(wrong, ref, scores)
    assert m.precision.item() == pytest.approx(1 / 3) and m.recall.item() == pytest.approx(1 / 3)
    assert m.regret.item() == pytest.approx(8.0) and not m.optimal.item()
    assert m.summary()["exact_rate"] == 0.0


def test_f1_lsa_rectangular_denominators():
    scores = torch.rand(1, 2, 5)
    ref = solve(scores)
    dims = assignment_metrics(ref, ref, scores)
    assert dims.precision.item() == pytest.approx(2 / 5) and dims.recall.item() == 1.0
    assert dims.f1.item() == pytest.approx(2 * 2 / (2 + 5))  # the reference itself: 2k / (H + W)
    assert assignment_metrics(ref, ref, scores, denominator="pairs").f1.item() == 1.0


def test_f1_lsa_is_tie_aware():
    scores = torch.tensor([[[1.0, 1.0], [1.0, 1.0]]])  # both permutations are optimal
    ref = _assignment(scores, [[0, 1]])
    other = _assignment(scores, [[1, 0]])
    m = assignment_metrics(other, ref, scores)
    assert (other.mask & ref.mask).sum() == 0
    assert m.optimal.item() and m.f1.item() == 1.0 and m.regret.item() == 0.0


def test_metrics_in_minimisation_and_with_lengths():
    scores = torch.tensor([[[1.0, 2.0, 9.0], [2.0, 1.0, 9.0], [9.0, 9.0, 9.0]]])
    lengths = torch.tensor([2])
    ref = solve(scores, maximize=False, row_lengths=lengths, col_lengths=lengths)
    worse = _assignment(scores, [[1, 0, -1]])
    m = assignment_metrics(worse, ref, scores, maximize=False, row_lengths=lengths, col_lengths=lengths)
    assert m.regret.item() == pytest.approx(2.0) and m.f1.item() == 0.0
    m = assignment_metrics(ref, ref, scores, maximize=False, row_lengths=lengths, col_lengths=lengths)
    assert m.f1.item() == 1.0


# ------------------------------------------------------------------------- precision study

def test_precision_study_grid():
    assert {"fp32", "fp16", "bf16"} <= set(PRECISIONS)
    rows = precision_study(methods=["exact", "stepped_argmax"], sizes=[6], distributions=["uniform", "detr"],
                           precisions=["fp32", "fp16"], n_items=8)
    assert len(rows) == 2 * 2 * 2
    fp32_exact = [r for r in rows if r["dtype"] == "fp32" and r["method"] == "exact"]
    assert all(r["f1"] == 1.0 and r["exact_rate"] == 1.0 for r in fp32_exact)
    assert all(0.0 <= r["f1"] <= 1.0 for r in rows)


def test_distributions_and_quantisation():
    g = torch.Generator().manual_seed(0)
    for name in ["uniform", "normal", "half_normal", "detr", "bertscore"]:
        scores = sample_scores(name, 4, 8, 8, g)
        assert scores.shape == (4, 8, 8) and scores.dtype == torch.float32
    bert = sample_scores("bertscore", 16, 16, 16, g)
    assert bert.abs().max() <= 1 + 1e-5 and 0.15 < bert.median() < 0.5 and bert.max() > 0.8
    if "fp8_e4m3" in PRECISIONS:
        assert quantize(torch.tensor([0.3]), "fp8_e4m3").item() == pytest.approx(0.3125)
    with pytest.raises(ValueError, match="unknown precision"):
        quantize(bert, "fp4")


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16] + [PRECISIONS[p] for p in ("fp8_e4m3", "fp8_e5m2")
                                                                     if p in PRECISIONS])
def test_low_precision_inputs_are_accepted(dtype):
    scores = torch.rand(4, 5, 6).to(dtype)
    exact = solve(scores.float())
    for method in METHODS:
        result = solve(scores, method=method)
        assert_valid(result, scores.double(), None, None, None, full=True)
    torch.testing.assert_close(solve(scores).objective, exact.objective)


@pytest.mark.parametrize("shape", [(1, 16, 16), (3, 5, 9), (4, 9, 5), (8, 0, 3), (2, 7, 7), (16, 16)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("maximize", [True, False])
def test_small_batch_fast_path_equals_the_general_path(shape, dtype, maximize):
    """Few unmasked CPU items skip the tensor bookkeeping; full lengths take the general path: same
    assignment, mask, objective (bit for bit) and certificate."""
    scores = torch.randn(*shape, dtype=dtype, generator=torch.Generator().manual_seed(0))
    fast = solve(scores, maximize=maximize)
    if scores.dim() == 2:
        general = solve(scores, maximize=maximize, mask=torch.ones(shape, dtype=torch.bool))
    else:
        general = solve(scores, maximize=maximize, row_lengths=torch.full((shape[0],), shape[1]))
    for name in ("row_to_col", "mask", "objective", "certified"):
        assert torch.equal(getattr(fast, name), getattr(general, name)), name
    if scores.numel():
        rows, cols = linear_sum_assignment(scores.reshape(-1, *shape[-2:])[0].numpy(), maximize=maximize)
        assert fast.row_to_col.reshape(-1, shape[-2])[0][rows].tolist() == cols.tolist()


def test_fast_path_leaves_gradients_and_bad_values_to_the_general_path():
    scores = torch.rand(1, 4, 4, requires_grad=True)
    solve(scores).objective.sum().backward()
    assert scores.grad is not None and scores.grad.sum() == 4  # one per assigned entry
    bad = torch.rand(1, 4, 4)
    bad[0, 1, 2] = float("nan")
    with pytest.raises(ValueError, match="non-finite values at valid entries"):
        solve(bad)


def test_auto_is_exact_on_cpu_and_hybrid_for_large_cuda_batches():
    from models.assignment.solvers import AUTO_HYBRID_MIN_ITEMS, auto_method

    scores = torch.rand(AUTO_HYBRID_MIN_ITEMS, 6, 6)
    assert auto_method(scores) == "exact" and auto_method(scores[0]) == "exact"
    assert torch.equal(solve(scores, method="auto").row_to_col, solve(scores).row_to_col)
    if torch.cuda.is_available():
        assert auto_method(scores.cuda()) == "hybrid" and auto_method(scores[:8].cuda()) == "exact"
