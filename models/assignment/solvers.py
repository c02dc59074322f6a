"""`solve(scores, method=...)`: one entry point over every assignment method.

Semantics shared by every method: each item gets a one-to-one (partial) assignment using only
valid entries (inside the item's lengths, allowed by the mask). "exact" returns a
maximum-cardinality assignment and, among those, the best objective; without forbidden entries
that is the usual min(n, m) pairs, exactly SciPy's `linear_sum_assignment`. The approximate
methods run as fixed sequences of tensor operations on the scores' device (no host sync inside
their loops) and always return valid one-to-one assignments; they may leave a pair unassigned
only where forbidden entries make a greedy choice a dead end.

Every approximate method takes `refine` (2-exchange local-search steps, `greedy.local_search`)
and `certify` (attach the weak-duality certificate of `certificate.dual_certificate`, with
`tol` and `steps`). "hybrid" certifies Sinkhorn's answers and solves the rest exactly.
"""
from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from .auction import auction
from .certificate import DEFAULT_STEPS, DEFAULT_TOL, dual_certificate
from .exact import exact
from .greedy import choose_argmax, greedy_regret, local_search, sequential_match, stepped_argmax
from .problem import Assignment, Problem, build_assignment, prepare
from .sinkhorn import DEFAULT_EPSILON, DEFAULT_ITERS, log_plan

Solution = tuple[Tensor, Tensor | None]  # (row_to_col [N, H], certified [N] or None)
DEFAULT_REFINE = 8  # local-search steps after Sinkhorn rounding (benchmarked)


def sinkhorn(problem: Problem, *, epsilon: float = DEFAULT_EPSILON, iters: int = DEFAULT_ITERS) -> Tensor:
    """Annealed log-domain Sinkhorn, rounded greedily: largest plan entry first."""
    plan = log_plan(problem.reward, problem, epsilon=epsilon, iters=iters)
    return sequential_match(plan, problem.valid, choose_argmax)


def _approximate(core: Callable[..., Tensor], *, refine: int, certify: bool) -> Callable[..., Solution]:
    """Wrap a tensor-op solver with the shared local search and certificate options."""

    def method(problem: Problem, *, refine: int = refine, certify: bool = certify, tol: float = DEFAULT_TOL,
               steps: int = DEFAULT_STEPS, **kwargs) -> Solution:
        row_to_col = local_search(problem, core(problem, **kwargs), refine)
        certified = dual_certificate(problem, row_to_col, tol=tol, steps=steps)[1] if certify else None
        return row_to_col, certified

    method.__doc__ = core.__doc__
    return method


def _exact(problem: Problem, *, workers: int = 1) -> Solution:
    row_to_col = exact(problem, workers=workers)
    return row_to_col, torch.ones(problem.shape[0], dtype=torch.bool, device=row_to_col.device)


_sinkhorn = _approximate(sinkhorn, refine=DEFAULT_REFINE, certify=True)


def _hybrid(problem: Problem, *, workers: int = 1, **sinkhorn_kwargs) -> Solution:
    """Sinkhorn with certificates; items it cannot certify are re-solved exactly. Always optimal."""
    row_to_col, certified = _sinkhorn(problem, certify=True, **sinkhorn_kwargs)
    todo = (~certified).nonzero().squeeze(1)
    if todo.numel():
        row_to_col[todo] = exact(problem.subset(todo), workers=workers)
    return row_to_col, torch.ones_like(certified)


METHODS: dict[str, Callable[..., Solution]] = {
    "exact": _exact,
    "greedy_regret": _approximate(greedy_regret, refine=0, certify=False),
    "stepped_argmax": _approximate(stepped_argmax, refine=0, certify=False),
    "sinkhorn": _sinkhorn,
    "auction": _approximate(auction, refine=0, certify=True),
    "hybrid": _hybrid,
}


def solve(scores: Tensor, *, method: str = "exact", maximize: bool = True, row_lengths: Tensor | None = None,
          col_lengths: Tensor | None = None, mask: Tensor | None = None, **method_kwargs) -> Assignment:
    """Solve a batch of assignment problems.

    scores: [N, H, W] (or [H, W]), any float dtype, any device. row_lengths / col_lengths:
    integer [N]; item n uses its first row_lengths[n] rows and col_lengths[n] columns.
    mask: bool [N, H, W], False = forbidden entry. method: one of `METHODS`. method_kwargs go to
    that solver: exact/hybrid `workers`; sinkhorn/hybrid `epsilon`, `iters`; auction `epsilon`,
    `stages`, `rounds`; every approximate method `refine`, `certify`, `tol`, `steps`.
    """
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; expected one of {sorted(METHODS)}")
    problem = prepare(scores, maximize=maximize, row_lengths=row_lengths, col_lengths=col_lengths, mask=mask)
    with torch.no_grad():
        row_to_col, certified = METHODS[method](problem, **method_kwargs)
    return build_assignment(problem, row_to_col, certified)
