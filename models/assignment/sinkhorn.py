"""Log-domain Sinkhorn for batched rectangular assignment: the entropic transport plan.

Entropic transport on an *extended, balanced* problem per item (n valid rows, m valid columns):
a dummy row of mass m and a dummy column of mass n are added, every real row and column has mass
1, and the dummy row/column accept anything at reward 0. Every real row can always fall back to
the dummy column, so the problem is feasible whatever the lengths or forbidden entries are.
Real entries carry the item's rewards rescaled to [0, 1] plus a bonus `k + 1` (k = min(n, m)):
with the bonus, one more real pair is always worth more than any rearrangement of the others,
so the unregularised optimum is "as many pairs as possible, then the best sum" — the same
semantics as the exact solver.

`epsilon` (the entropic temperature) is relative to each item's score range; it is annealed
geometrically from 1 to `epsilon` over the first 3/4 of the iterations and then held. The
potentials (u, v) follow the LP-dual convention for a maximisation: the plan is
exp((r_ij - u_i - v_j) / eps). Everything is a fixed sequence of tensor operations: no host
synchronisation, and autograd flows through it (`sinkhorn_plan`).
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from .problem import Problem, prepare, value_range

DEFAULT_EPSILON = 1e-3  # final temperature, relative to each item's score range (benchmarked)
DEFAULT_ITERS = 100  # total iterations, annealing included (benchmarked)


def _schedule(iters: int, epsilon: float) -> list[float]:
    """Geometric annealing from 1 to `epsilon` over the first 3/4 of the iterations, then hold."""
    if iters < 1:
        raise ValueError(f"iters must be >= 1, got {iters}")
    if not 0 < epsilon <= 1:
        raise ValueError(f"epsilon must be in (0, 1] (relative to the score range), got {epsilon}")
    anneal = max(1, (3 * iters) // 4)
    decay = math.log(epsilon) / max(1, anneal - 1)
    return [math.exp(decay * min(t, anneal - 1)) for t in range(iters)]


def log_plan(reward: Tensor, problem: Problem, *, epsilon: float = DEFAULT_EPSILON,
             iters: int = DEFAULT_ITERS) -> Tensor:
    """[N, H, W] log of the transport plan on the real entries (-inf where not valid).

    `reward` is [N, H, W] in maximisation form, 0 where not valid; it may carry autograd
    history. `problem` supplies the valid mask and lengths.
    """
    n, h, w = problem.shape
    device = reward.device
    valid = problem.valid
    rows, cols = problem.n_rows, problem.n_cols
    neg_inf = torch.tensor(float("-inf"), device=device)

    # Normalise each item to [0, 1] on its valid entries (constants: no gradient through them).
    with torch.no_grad():
        lo, span = value_range(reward, valid)
        span = torch.where(span > 0, span, 1.0)
        bonus = (torch.minimum(rows, cols) + 1).float()
    real = torch.where(valid, (reward - lo.view(n, 1, 1)) / span.view(n, 1, 1) + bonus.view(n, 1, 1), neg_inf)

    # Extended problem: row H is the dummy row, column W the dummy column.
    row_present = torch.cat([torch.arange(h, device=device).view(1, h) < rows.view(n, 1), (cols > 0).view(n, 1)], 1)
    col_present = torch.cat([torch.arange(w, device=device).view(1, w) < cols.view(n, 1), (rows > 0).view(n, 1)], 1)
    rho = torch.zeros((n, h + 1, w + 1), dtype=real.dtype, device=device)
    rho[:, :h, :w] = real
    rho = torch.where(row_present.unsqueeze(2) & col_present.unsqueeze(1), rho, neg_inf)
    # Absent rows/columns get finite filler in the update that would otherwise reduce over nothing
    # (their potentials are reset to 0 afterwards), so no logsumexp ever sees an all -inf slice.
    rho_rows = torch.where(row_present.unsqueeze(2), rho, 0.0)
    rho_cols = torch.where(col_present.unsqueeze(1), rho, 0.0)
    log_a = torch.cat([torch.zeros((n, h), device=device), cols.clamp(min=1).float().log().view(n, 1)], 1)
    log_b = torch.cat([torch.zeros((n, w), device=device), rows.clamp(min=1).float().log().view(n, 1)], 1)

    u = torch.zeros((n, h + 1), device=device)
    v = torch.zeros((n, w + 1), device=device)
    for eps in _schedule(iters, epsilon):
        u = eps * (torch.logsumexp((rho_rows - v.unsqueeze(1)) / eps, 2) - log_a)
        u = torch.where(row_present, u, 0.0)
        v = eps * (torch.logsumexp((rho_cols - u.unsqueeze(2)) / eps, 1) - log_b)
        v = torch.where(col_present, v, 0.0)
    return torch.where(valid, (real - u[:, :h, None] - v[:, None, :w]) / epsilon, neg_inf)


def sinkhorn_plan(scores: Tensor, *, maximize: bool = True, row_lengths: Tensor | None = None,
                  col_lengths: Tensor | None = None, mask: Tensor | None = None,
                  epsilon: float = 0.05, iters: int = 50) -> Tensor:
    """Differentiable soft assignment: the entropic transport plan on the real entries.

    Returns [N, H, W] (or [H, W]) with rows and columns summing to at most 1 (about 1 on the
    smaller side of a full problem), zeros at invalid entries. Gradients flow to `scores`
    through the unrolled iterations; `epsilon` (relative to each item's score range) trades
    sharpness for smoother gradients, hence its larger default here than in `solve`.
    """
    problem = prepare(scores, maximize=maximize, row_lengths=row_lengths, col_lengths=col_lengths, mask=mask)
    reward = problem.scores.float() if maximize else -problem.scores.float()
    reward = torch.where(problem.valid, reward, 0.0)
    plan = log_plan(reward, problem, epsilon=epsilon, iters=iters).exp()
    return plan[0] if problem.squeezed else plan
