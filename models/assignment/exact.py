"""Exact batched assignment: SciPy's `linear_sum_assignment` per item, one host transfer per batch.

Semantics: a maximum-cardinality assignment and, among those, the best objective. Without
forbidden entries that is SciPy's usual min(n, m) pairs. With forbidden entries, every forbidden
entry gets the finite reward F = lo - (k + 1) * span (lo / span: the item's smallest allowed
reward and range, k = min(n, m)); then an assignment with a + 1 allowed pairs always beats any
with a, so SciPy's optimum maximises cardinality first, and pairs on forbidden entries are
dropped afterwards. (SciPy's own -inf handling raises "cost matrix is infeasible" as soon as a
full assignment does not exist, so it cannot express this.)

SciPy releases the GIL while it solves (checked: a Python thread keeps running during a long
solve), so chunks of the batch can run in threads (`workers`). The default is 1: whether threads
gain anything depends on the machine (benchmarks/bench_lsa.py, docs/assignment.md).
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from torch import Tensor

from .problem import Problem


def _solve_item(scores: np.ndarray, allowed: np.ndarray | None, maximize: bool) -> tuple[np.ndarray, np.ndarray]:
    """One item's valid block with SciPy; `allowed` None means no forbidden entry."""
    if allowed is None or allowed.all():
        return linear_sum_assignment(scores, maximize=maximize)
    reward = scores.astype(np.float64) if maximize else -scores.astype(np.float64)
    values = reward[allowed]
    if values.size == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    lo, span = values.min(), values.max() - values.min()
    penalty = lo - (min(reward.shape) + 1) * (span if span > 0 else 1.0)
    rows, cols = linear_sum_assignment(np.where(allowed, reward, penalty), maximize=True)
    keep = allowed[rows, cols]
    return rows[keep], cols[keep]


def _solve_items(scores: np.ndarray, mask: np.ndarray | None, n_rows: np.ndarray, n_cols: np.ndarray,
                 maximize: bool, items: range, out: np.ndarray) -> None:
    """Solve `items` one by one, writing row -> column into `out` (shared between threads)."""
    for i in items:
        n, m = n_rows[i], n_cols[i]
        if n and m:
            rows, cols = _solve_item(scores[i, :n, :m], None if mask is None else mask[i, :n, :m], maximize)
            out[i, rows] = cols


def exact(problem: Problem, *, workers: int = 1) -> Tensor:
    """SciPy per item (see the module docstring) on zero-copy views of the caller's fp32/fp64
    scores (other dtypes go through fp32, which holds them exactly). `workers` > 1 solves
    contiguous chunks of the batch in that many threads."""
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    n, h, w = problem.shape
    scores = problem.scores.detach()
    scores = (scores if scores.dtype in (torch.float32, torch.float64) else scores.float()).cpu().numpy()
    mask = None if problem.mask is None else problem.mask.cpu().numpy()
    n_rows, n_cols = problem.n_rows.cpu().numpy(), problem.n_cols.cpu().numpy()
    out = np.full((n, h), -1, dtype=np.int64)
    workers = min(workers, max(n, 1))  # no idle threads (nor a pool) for tiny batches
    if workers == 1:
        _solve_items(scores, mask, n_rows, n_cols, problem.maximize, range(n), out)
    else:
        bounds = np.linspace(0, n, workers + 1).astype(int)
        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(lambda ab: _solve_items(scores, mask, n_rows, n_cols, problem.maximize, range(*ab), out),
                          zip(bounds[:-1], bounds[1:])))
    return torch.from_numpy(out).to(problem.scores.device)
