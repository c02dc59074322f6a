"""Bertsekas' auction algorithm, Jacobi style, as batched tensor operations.

The smaller side bids (items with more rows than columns are transposed inside a square pad),
joined by dummy bidders that value every object at 0, so that every auction is balanced.
Each round, every unassigned bidder bids for its best object at price + (best - second best
value) + eps; each object goes to its highest bidder, whose rival is evicted. eps shrinks
geometrically over `stages` (eps-scaling, assignments reset between stages, prices kept).
Rounds have a fixed count, so an auction that has not settled is completed greedily on the
final values r - price: the answer is always one-to-one, and optimal only when the auction
settled with eps below the gap to the second-best assignment divided by the size.
"""
from __future__ import annotations

import torch
from torch import Tensor

from .greedy import choose_argmax, sequential_match
from .problem import Problem, value_range


def _auction_square(r: Tensor, valid: Tensor, epsilons: list[float], rounds: int) -> Tensor:
    """Rows bid for columns in [N, S, S] problems; returns row -> column (-1 unassigned)."""
    n, s, _ = r.shape
    device = r.device
    index = torch.arange(s, device=device).view(1, s).expand(n, s)  # bidder or object ids
    price = torch.zeros((n, s), device=device)
    can_bid = valid.any(2)
    span = value_range(r, valid)[1]
    span = torch.where(span > 0, span, 1.0).view(n, 1)
    row_to_col = torch.full((n, s), -1, dtype=torch.long, device=device)
    for eps in epsilons:
        row_to_col = torch.full((n, s), -1, dtype=torch.long, device=device)
        owner = torch.full((n, s), -1, dtype=torch.long, device=device)
        for _ in range(rounds):
            bidding = (row_to_col < 0) & can_bid
            value = torch.where(valid, r - price.unsqueeze(1), -torch.inf)
            top, arg = value.topk(min(2, s), dim=2)
            best, target = top[..., 0], arg[..., 0]
            second = top[..., 1] if s > 1 else torch.full_like(best, -torch.inf)
            increment = torch.where(second > -torch.inf, best - torch.where(second > -torch.inf, second, 0.0), span)
            bid = torch.where(bidding, price.gather(1, target) + increment + eps * span, -torch.inf)
            high = torch.full((n, s), -torch.inf, device=device).scatter_reduce(1, target, bid, "amax")
            is_high = bidding & (bid == high.gather(1, target))
            winner = torch.full((n, s), s, dtype=torch.long, device=device)
            winner = winner.scatter_reduce(1, target, torch.where(is_high, index, s), "amin")
            sold = winner < s  # objects that received a bid this round
            # evict previous owners, then seat the winners (slot s collects the no-ops)
            extended = torch.cat([row_to_col, row_to_col.new_full((n, 1), -1)], 1)
            extended.scatter_(1, torch.where(sold & (owner >= 0), owner, s), -1)
            extended.scatter_(1, torch.where(sold, winner, s), index)
            row_to_col = extended[:, :s]
            owner = torch.where(sold, winner, owner)
            price = torch.where(sold, high, price)
    # Complete greedily on r - price among the bidders and objects still free.
    free_rows, free_cols = row_to_col < 0, owner < 0
    rest = sequential_match(r - price.unsqueeze(1), valid & free_rows.unsqueeze(2) & free_cols.unsqueeze(1),
                            choose_argmax)
    return torch.where(free_rows, rest, row_to_col)


def auction(problem: Problem, *, epsilon: float = 1e-3, stages: int = 4, rounds: int | None = None) -> Tensor:
    """Auction with eps-scaling from 0.25 down to `epsilon` (relative to the score range) over
    `stages`, `rounds` bidding rounds per stage (default: 4 * the larger side + 32)."""
    n, h, w = problem.shape
    s = max(h, w)
    if s == 0 or n == 0:
        return torch.full((n, h), -1, dtype=torch.long, device=problem.scores.device)
    if stages < 1 or not 0 < epsilon <= 1:
        raise ValueError(f"auction needs stages >= 1 and 0 < epsilon <= 1, got {stages} and {epsilon}")
    epsilons = [0.25 * (epsilon / 0.25) ** (t / max(1, stages - 1)) for t in range(stages)] if stages > 1 else [epsilon]
    r = torch.zeros((n, s, s), device=problem.scores.device)
    valid = torch.zeros((n, s, s), dtype=torch.bool, device=r.device)
    r[:, :h, :w] = problem.reward
    valid[:, :h, :w] = problem.valid
    flip = (problem.n_rows > problem.n_cols).view(n, 1, 1)  # columns bid for these items
    r = torch.where(flip, r.transpose(1, 2), r)
    valid = torch.where(flip, valid.transpose(1, 2), valid)
    # Balance with dummy bidders worth 0 everywhere: a forward auction on an unbalanced problem
    # is only optimal if free objects end at the lowest price, which eps-scaling breaks.
    small = torch.minimum(problem.n_rows, problem.n_cols).view(n, 1)
    large = torch.maximum(problem.n_rows, problem.n_cols).view(n, 1)
    line = torch.arange(s, device=r.device).view(1, s)
    dummy = ((line >= small) & (line < large)).unsqueeze(2) & (line < large).unsqueeze(1)
    valid = valid | dummy
    bid_to_obj = _auction_square(r, valid, epsilons, 4 * s + 32 if rounds is None else rounds)
    bid_to_obj = torch.where(line < small, bid_to_obj, -1)
    # back to rows: for flipped items bid_to_obj maps columns to rows
    obj_to_bid = torch.full((n, s + 1), -1, dtype=torch.long, device=r.device)
    obj_to_bid.scatter_(1, torch.where(bid_to_obj >= 0, bid_to_obj, s), torch.arange(s, device=r.device).expand(n, s))
    return torch.where(flip.view(n, 1), obj_to_bid[:, :s], bid_to_obj)[:, :h]
