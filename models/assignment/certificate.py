"""Weak-duality certificates: prove that a given assignment is optimal, with tensor operations.

For a maximisation with n <= m valid rows/columns where every row is assigned, the LP
    max sum r_ij x_ij  s.t. sum_j x_ij = 1, sum_i x_ij <= 1, x >= 0   (allowed entries only)
has the dual  min sum_i u_i + sum_j v_j  s.t. u_i + v_j >= r_ij (allowed entries), v >= 0.
Any dual-feasible (u, v) bounds every full assignment from above (weak duality), and the
bipartite polytope is integral, so an assignment whose objective reaches the bound is optimal.
n > m is the mirror image (u >= 0, v free); the relaxation below then runs on the transpose.

Finding the potentials. Complementary slackness says an optimal assignment has a dual that is
tight on its pairs (u_i = r[i, col(i)] - v[col(i)]) and zero on its free columns. Feasibility
then reads v_j >= r_ij - r[i, col(i)] + v[col(i)]: a longest-path problem on the exchange graph,
solved by Bellman-Ford relaxation from v = 0. It settles within (longest path) steps when the
assignment is optimal and keeps rising along a positive exchange cycle when it is not. Steps are
a fixed count (no host sync); one exact block-coordinate step afterwards (u = max_j(r - v),
v = max_i(r - u), clamped on the nonnegative side) makes (u, v) exactly feasible whatever
happened, so the bound is always valid. Computed in float64.

(Sinkhorn's potentials were tried as the starting point: on rectangular items they overshoot the
optimal dual face, because the dummy-row marginal converges slowly, and certified almost nothing;
from zero the relaxation reaches the minimal tight dual. See docs/assignment.md.)
"""
from __future__ import annotations

import torch
from torch import Tensor

from .problem import Problem, value_range

DEFAULT_TOL = 1e-9  # relative gap below which an assignment counts as certified optimal
DEFAULT_STEPS = 16  # Bellman-Ford relaxation steps (benchmarked)


def _invert(row_to_col: Tensor, w: int) -> Tensor:
    """[N, H] row -> column to [N, W] column -> row (-1 where free)."""
    n, h = row_to_col.shape
    col_to_row = torch.full((n, w + 1), -1, dtype=torch.long, device=row_to_col.device)
    col_to_row.scatter_(1, torch.where(row_to_col >= 0, row_to_col, w),
                        torch.arange(h, device=row_to_col.device).expand(n, h))
    return col_to_row[:, :w]


def _relax(r: Tensor, valid: Tensor, row_to_col: Tensor, steps: int) -> Tensor:
    """Column potentials that make `row_to_col` tight: `steps` Bellman-Ford relaxations from 0."""
    n, h, w = r.shape
    assigned = row_to_col >= 0
    col = row_to_col.clamp(min=0)
    v = torch.zeros((n, w), dtype=r.dtype, device=r.device)
    current = r.gather(2, col.unsqueeze(-1)).squeeze(-1)
    usable = valid & assigned.unsqueeze(2)
    for _ in range(steps):
        u = current - v.gather(1, col)
        v = torch.maximum(v, torch.where(usable, r - u.unsqueeze(2), -torch.inf).amax(1))
    return v


def dual_certificate(problem: Problem, row_to_col: Tensor, *, tol: float = DEFAULT_TOL,
                     steps: int = DEFAULT_STEPS) -> tuple[Tensor, Tensor]:
    """Weak-duality upper bound and certified-optimal flags for an assignment.

    Returns (bound: float64 [N], certified: bool [N]). An item is certified when its assignment
    has the full min(n, m) pairs (hence maximum cardinality) and
    bound - objective <= tol * (sum of |assigned rewards| + score range).
    """
    r = problem.reward64()
    valid = problem.valid
    n, h, w = problem.shape
    if h == 0 or w == 0:  # nothing to assign: the empty assignment is optimal
        return r.new_zeros(n), torch.ones(n, dtype=torch.bool, device=r.device)
    col_side = (problem.n_rows <= problem.n_cols).view(n, 1)  # v >= 0 for these items, else u >= 0
    neg_inf = torch.tensor(float("-inf"), dtype=r.dtype, device=r.device)
    zero = torch.zeros((), dtype=r.dtype, device=r.device)

    def row_max(v: Tensor) -> Tensor:
        u = torch.where(valid, r - v.unsqueeze(1), neg_inf).amax(2)
        return torch.where(col_side, u, u.clamp(min=0))

    u = row_max(_relax(r, valid, row_to_col, steps))
    if not bool(col_side.all()):  # items with more rows than columns: relax the transpose
        u_rows = _relax(r.transpose(1, 2), valid.transpose(1, 2), _invert(row_to_col, w), steps)
        u = torch.where(col_side, u, u_rows)
    v = torch.where(valid, r - u.unsqueeze(2), neg_inf).amax(1)
    v = torch.where(col_side, v.clamp(min=0), v)  # (u, v) is now exactly feasible

    row_in = torch.arange(h, device=r.device).view(1, h) < problem.n_rows.view(n, 1)
    col_in = torch.arange(w, device=r.device).view(1, w) < problem.n_cols.view(n, 1)
    bound = torch.where(row_in, u, zero).sum(1) + torch.where(col_in, v, zero).sum(1)

    assigned = row_to_col >= 0
    picked = torch.where(assigned, r.gather(2, row_to_col.clamp(min=0).unsqueeze(-1)).squeeze(-1), zero)
    full = assigned.sum(1) == torch.minimum(problem.n_rows, problem.n_cols)
    span = value_range(r, valid)[1]
    slack = tol * (picked.abs().sum(1) + span)
    certified = full & torch.isfinite(bound) & (bound - picked.sum(1) <= slack)
    return bound, certified
