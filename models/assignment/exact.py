"""Exact batched assignment: SciPy's `linear_sum_assignment` per item, one host transfer per batch.

Semantics: a maximum-cardinality assignment and, among those, the best objective. Without
forbidden entries that is SciPy's usual min(n, m) pairs. With forbidden entries, every forbidden
entry gets the finite reward F = lo - (k + 1) * span (lo / span: the item's smallest allowed
reward and range, k = min(n, m)); then an assignment with a + 1 allowed pairs always beats any
with a, so SciPy's optimum maximises cardinality first, and pairs on forbidden entries are
dropped afterwards. (SciPy's own -inf handling raises "cost matrix is infeasible" as soon as a
full assignment does not exist, so it cannot express this.)

SciPy releases the GIL while it solves, so chunks of the batch can run in threads.
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from torch import Tensor

from .problem import Problem


def _exact_items(reward: np.ndarray, valid: np.ndarray, n_rows: np.ndarray, n_cols: np.ndarray,
                 penalty: np.ndarray, items: range, out: np.ndarray) -> None:
    """Solve `items` one by one with SciPy, writing row→column into `out` (a shared array)."""
    h, w = reward.shape[1:]
    for i in items:
        n, m = n_rows[i], n_cols[i]
        if n == 0 or m == 0:
            continue
        if np.isnan(penalty[i]):  # the whole block is allowed: plain SciPy
            rows, cols = linear_sum_assignment(reward[i] if (n, m) == (h, w) else reward[i, :n, :m], maximize=True)
        else:  # forbidden entries: a penalty low enough that cardinality always comes first
            block = np.where(valid[i, :n, :m], reward[i, :n, :m], penalty[i])
            rows, cols = linear_sum_assignment(block, maximize=True)
            keep = valid[i, rows, cols]
            rows, cols = rows[keep], cols[keep]
        out[i, rows] = cols


def _auto_workers(items: int) -> int:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(cores, items // 64))


def exact(problem: Problem, *, workers: int | None = None) -> Tensor:
    """SciPy per item (see the module docstring); `workers` threads (default: one per available
    core, at most one per 64 items) each solve a contiguous chunk of the batch."""
    n, h, w = problem.shape
    reward = problem.reward64().cpu().numpy()
    valid = problem.valid.cpu().numpy()
    n_rows, n_cols = problem.n_rows.cpu().numpy(), problem.n_cols.cpu().numpy()
    allowed = valid.sum((1, 2))
    needs_penalty = allowed < n_rows * n_cols
    penalty = np.full(n, np.nan)
    if needs_penalty.any():
        sub, sub_valid = reward[needs_penalty], valid[needs_penalty]
        lo = np.where(sub_valid, sub, np.inf).min((1, 2), initial=np.inf)
        hi = np.where(sub_valid, sub, -np.inf).max((1, 2), initial=-np.inf)
        lo = np.where(np.isfinite(lo), lo, 0.0)
        span = np.where(np.isfinite(hi) & (hi > lo), hi - lo, 1.0)
        k = np.minimum(n_rows, n_cols)[needs_penalty]
        penalty[needs_penalty] = lo - (k + 1) * span

    out = np.full((n, h), -1, dtype=np.int64)
    workers = _auto_workers(n) if workers is None else workers
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    if workers == 1:
        _exact_items(reward, valid, n_rows, n_cols, penalty, range(n), out)
    else:
        bounds = np.linspace(0, n, workers + 1).astype(int)
        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(lambda ab: _exact_items(reward, valid, n_rows, n_cols, penalty, range(*ab), out),
                          zip(bounds[:-1], bounds[1:])))
    return torch.from_numpy(out).to(problem.reward.device)
