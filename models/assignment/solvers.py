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
`tol` and `steps`). "hybrid" certifies Sinkhorn's answers and solves the rest exactly; "auto"
is "hybrid" for large batches on a GPU (where Sinkhorn's fixed kernels replace N host solves) and
"exact" everywhere else. Small unmasked CPU batches of "exact" take a lean path straight to SciPy
(`SMALL_BATCH`), so one item costs little more than one SciPy call (benchmarks/bench_lsa.py).
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from torch import Tensor

from .auction import auction
from .certificate import DEFAULT_STEPS, DEFAULT_TOL, dual_certificate
from .exact import exact
from .greedy import choose_argmax, greedy_regret, local_search, sequential_match, stepped_argmax
from .problem import Assignment, Problem, build_assignment, prepare
from .sinkhorn import DEFAULT_EPSILON, DEFAULT_ITERS, log_plan

Solution = tuple[Tensor, Tensor | None]  # (row_to_col [N, H], certified [N] or None)
DEFAULT_REFINE = 8  # local-search steps after Sinkhorn rounding (benchmarked)
SMALL_BATCH = 8  # "exact" on at most this many unmasked CPU items skips the tensor bookkeeping
AUTO_HYBRID_MIN_ITEMS = 256  # "auto" picks "hybrid" on CUDA from this batch size on (docs/assignment.md)


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


def auto_method(scores: Tensor) -> str:
    """What method="auto" runs: "hybrid" on CUDA batches of at least AUTO_HYBRID_MIN_ITEMS items, else "exact"."""
    items = scores.shape[0] if scores.dim() == 3 else 1
    return "hybrid" if scores.is_cuda and items >= AUTO_HYBRID_MIN_ITEMS else "exact"


def _small_exact(scores: Tensor, maximize: bool) -> Assignment | None:
    """"exact" for a few unmasked CPU items: SciPy on a zero-copy NumPy view, the outputs built in NumPy.
    The same answer, objective bit for bit, as the general path; None where that path is needed
    (gradients, non-finite values: the general path names them, other dtypes or devices)."""
    if scores.device.type != "cpu" or scores.dtype not in (torch.float32, torch.float64) or scores.requires_grad:
        return None
    squeezed = scores.dim() == 2
    array = scores.numpy()
    if squeezed:
        array = array[None]
    n, h, w = array.shape
    row_to_col = np.full((n, h), -1, dtype=np.int64)
    onehot = np.zeros((n, h, w), dtype=bool)
    picked = np.zeros((n, h), dtype=np.float32)  # fp32 like the general path's objective
    for i in range(n):
        try:
            rows, cols = linear_sum_assignment(array[i], maximize=maximize)
        except ValueError:  # non-finite entries: the general path says where
            return None
        row_to_col[i, rows] = cols
        onehot[i, rows, cols] = True
        picked[i, rows] = array[i, rows, cols]
    objective = torch.from_numpy(picked).sum(-1)
    certified = torch.from_numpy(np.ones(n, dtype=bool))
    if squeezed:
        return Assignment(torch.from_numpy(row_to_col[0]), torch.from_numpy(onehot[0]), objective[0], certified[0])
    return Assignment(torch.from_numpy(row_to_col), torch.from_numpy(onehot), objective, certified)


def solve(scores: Tensor, *, method: str = "exact", maximize: bool = True, row_lengths: Tensor | None = None,
          col_lengths: Tensor | None = None, mask: Tensor | None = None, **method_kwargs) -> Assignment:
    """Solve a batch of assignment problems.

    scores: [N, H, W] (or [H, W]), any float dtype, any device. row_lengths / col_lengths:
    integer [N]; item n uses its first row_lengths[n] rows and col_lengths[n] columns.
    mask: bool [N, H, W], False = forbidden entry. method: one of `METHODS`, or "auto"
    (`auto_method`). method_kwargs go to that solver: exact/hybrid `workers`; sinkhorn/hybrid
    `epsilon`, `iters`; auction `epsilon`, `stages`, `rounds`; every approximate method `refine`,
    `certify`, `tol`, `steps`.
    """
    if method == "auto" and isinstance(scores, Tensor):
        method = auto_method(scores)
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; expected one of {sorted([*METHODS, 'auto'])}")
    if (method == "exact" and isinstance(scores, Tensor) and scores.dim() in (2, 3) and row_lengths is None
            and col_lengths is None and mask is None and set(method_kwargs) <= {"workers"}
            and (scores.dim() == 2 or scores.shape[0] <= SMALL_BATCH)):
        fast = _small_exact(scores, maximize)
        if fast is not None:
            return fast
    problem = prepare(scores, maximize=maximize, row_lengths=row_lengths, col_lengths=col_lengths, mask=mask)
    with torch.no_grad():
        row_to_col, certified = METHODS[method](problem, **method_kwargs)
    return build_assignment(problem, row_to_col, certified)
