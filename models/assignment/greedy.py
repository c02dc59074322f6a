"""Greedy assignment as tensor operations: stepped argmax, greedy regret ("MyLSA") and a
2-exchange local search. Every loop has a fixed trip count (no host sync) and every step keeps
the assignment one-to-one, so the result is always a valid (partial) assignment — unlike the
thesis' "recursive" variants, which could assign a column twice.
"""
from __future__ import annotations

from collections.abc import Callable
from functools import partial

import torch
from torch import Tensor

from .problem import Problem, value_range

Chooser = Callable[[Tensor], tuple[Tensor, Tensor, Tensor]]  # weights -> (row, col, ok) per item


def sequential_match(weights: Tensor, valid: Tensor, choose: Chooser) -> Tensor:
    """Pick one (row, column) pair per item per step, then strike out that row and column.

    `weights` [N, H, W] (larger = preferred) are masked to -inf where not valid; `choose` returns
    the pair to take in each item and whether there was one. min(H, W) steps always suffice and
    the count is fixed, so there is no host sync; removed lines can never be picked again, so the
    result is one-to-one by construction.
    """
    n, h, w = weights.shape
    wk = torch.where(valid, weights.float(), float("-inf"))
    row_to_col = torch.full((n, h), -1, dtype=torch.long, device=weights.device)
    items = torch.arange(n, device=weights.device)
    for _ in range(min(h, w)):
        i, j, ok = choose(wk)
        row_to_col[items, i] = torch.where(ok, j, row_to_col[items, i])
        wk[items, i, :] = float("-inf")
        wk[items, :, j] = float("-inf")
    return row_to_col


def choose_argmax(wk: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """The largest remaining entry of each item."""
    best, flat = wk.flatten(1).max(1)
    w = wk.shape[2]
    return flat // w, flat % w, best > float("-inf")


def _top2(wk: Tensor, dim: int) -> tuple[Tensor, Tensor, Tensor]:
    """Best value, its index and the second-best value along `dim` (-inf when absent)."""
    if wk.shape[dim] >= 2:
        values, index = wk.topk(2, dim=dim)
        first, second = values.unbind(dim)
        return first, index.select(dim, 0), second
    first, index = wk.max(dim)
    return first, index, torch.full_like(first, float("-inf"))


def _regret(best: Tensor, second: Tensor) -> Tensor:
    """best - second; +inf for a line with a single option (it must take it), -inf for none."""
    has1, has2 = best > float("-inf"), second > float("-inf")
    gap = torch.where(has2, torch.where(has1, best, 0.0) - torch.where(has2, second, 0.0), float("inf"))
    return torch.where(has1, gap, float("-inf"))


def _choose_regret(wk: Tensor, rows_compete: Tensor, cols_compete: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """The thesis' "MyLSA": the line that loses most if denied its best entry.

    Only lines that must all be assigned compete (`rows_compete` / `cols_compete`, [N, 1]):
    in a 5x9 problem a column can stay empty at no cost, so its regret means nothing.
    """
    n, h, w = wk.shape
    row_best, row_arg, row_second = _top2(wk, 2)  # [N, H]
    col_best, col_arg, col_second = _top2(wk, 1)  # [N, W]
    regret = torch.cat([torch.where(rows_compete, _regret(row_best, row_second), float("-inf")),
                        torch.where(cols_compete, _regret(col_best, col_second), float("-inf"))], 1)
    top, line = regret.max(1)
    is_row = line < h
    line_row = line.clamp(max=h - 1)
    line_col = (line - h).clamp(min=0)
    items = torch.arange(n, device=wk.device)
    i = torch.where(is_row, line_row, col_arg[items, line_col])
    j = torch.where(is_row, row_arg[items, line_row], line_col)
    return i, j, top > float("-inf")


def stepped_argmax(problem: Problem) -> Tensor:
    """Greedy: repeatedly take the largest remaining entry (thesis §6.5.7)."""
    return sequential_match(problem.reward, problem.valid, choose_argmax)


def greedy_regret(problem: Problem) -> Tensor:
    """Greedy by regret (thesis "MyLSA", §6.4.2/§6.5.3): repeatedly settle the row or column with
    the largest gap between its best and second-best remaining entry, giving it its best entry.
    Lines of the smaller side compete (both sides when square; the thesis ranked columns only).
    The regret is only defined among remaining entries; a line whose options are all gone has
    regret -inf and a line with a single option +inf (it must take it now)."""
    n = problem.shape[0]
    rows_compete = (problem.n_rows <= problem.n_cols).view(n, 1)
    cols_compete = (problem.n_cols <= problem.n_rows).view(n, 1)
    choose = partial(_choose_regret, rows_compete=rows_compete, cols_compete=cols_compete)
    return sequential_match(problem.reward, problem.valid, choose)


def local_search(problem: Problem, row_to_col: Tensor, steps: int) -> Tensor:
    """Local search: `steps` times, apply each item's best improving 2-exchange.

    Moves (i a row, j a column, k = the row holding j): give an unassigned row a free column
    (more pairs always come first), move row i to free column j, swap the columns of i and k,
    or let unassigned row i take j from k. Gains are computed as tensors for all (i, j) at once;
    a move is applied only if it gains more than 1e-6 of the item's score range, so rounding
    cannot make two moves undo each other. Keeps the assignment one-to-one.
    """
    r, valid = problem.reward, problem.valid
    n, h, w = problem.shape
    if steps <= 0 or h == 0 or w == 0:
        return row_to_col
    items = torch.arange(n, device=r.device)
    neg_inf = torch.tensor(float("-inf"), device=r.device)
    threshold = 1e-6 * value_range(r, valid)[1]
    row_to_col = row_to_col.clone()
    for _ in range(steps):
        assigned = row_to_col >= 0
        col = row_to_col.clamp(min=0)
        owner = torch.full((n, w + 1), -1, dtype=torch.long, device=r.device)
        owner.scatter_(1, torch.where(assigned, row_to_col, w), torch.arange(h, device=r.device).expand(n, h))
        owner = owner[:, :w]
        owned = owner >= 0
        cur_row = torch.where(assigned, r.gather(2, col.unsqueeze(-1)).squeeze(-1), 0.0)  # [N, H]
        cur_col = torch.where(owned, cur_row.gather(1, owner.clamp(min=0)), 0.0)  # [N, W]
        # cross[n, i, j] = r[n, owner(j), col(i)]: what j's owner would get from i's column
        by_owner = owner.clamp(min=0).unsqueeze(-1).expand(n, w, w)
        at_col = col.unsqueeze(1).expand(n, w, h)
        cross = r.gather(1, by_owner).gather(2, at_col).transpose(1, 2)
        cross_ok = valid.gather(1, by_owner).gather(2, at_col).transpose(1, 2)
        a_i, o_j = assigned.unsqueeze(2), owned.unsqueeze(1)
        gain = torch.where(o_j, torch.where(a_i, (r - cur_row.unsqueeze(2)) + (cross - cur_col.unsqueeze(1)),
                                            r - cur_col.unsqueeze(1)),
                           torch.where(a_i, r - cur_row.unsqueeze(2), float("inf")))
        allowed = valid & (owner.unsqueeze(1) != torch.arange(h, device=r.device).view(1, h, 1))
        allowed = allowed & ~(o_j & a_i & ~cross_ok)
        best, flat = torch.where(allowed, gain, neg_inf).flatten(1).max(1)
        ok = best > threshold
        i, j = flat // w, flat % w
        k = owner[items, j]
        old = row_to_col[items, i]
        swap = ok & (k >= 0)
        kk = k.clamp(min=0)
        row_to_col[items, kk] = torch.where(swap, old, row_to_col[items, kk])
        row_to_col[items, i] = torch.where(ok, j, row_to_col[items, i])
    return row_to_col
