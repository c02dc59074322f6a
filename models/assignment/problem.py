"""The batched assignment problem every solver shares: input checks, the valid-entry mask and
the `Assignment` result.

A problem is a batch of reward matrices `[N, H, W]`. Item `n` uses only its first
`row_lengths[n]` rows and `col_lengths[n]` columns; inside that block, `mask == False` marks a
forbidden entry. Solvers work on `Problem.reward`, which is always a *maximisation* problem in
fp32 (scores negated when the caller minimises) and is 0 wherever `Problem.valid` is False, so
that no solver ever does arithmetic on padding, NaN or infinities.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import torch
from torch import Tensor


@dataclass(frozen=True)
class Assignment:
    """A batch of one-to-one (partial) assignments.

    row_to_col: LongTensor [N, H], the column given to each row, -1 where the row is unassigned.
    mask:       BoolTensor [N, H, W], the same assignment one-hot (at most one True per row and
                per column).
    objective:  fp32 Tensor [N], the sum of the caller's scores over assigned entries (in the
                caller's orientation: a cost when minimising). Differentiable w.r.t. the scores.
    certified:  BoolTensor [N] — True where the assignment is proven optimal (by construction
                for "exact"/"hybrid", by a dual certificate for "sinkhorn"/"auction") — or None
                for methods that give no guarantee.
    For a 2-D input the batch dimension is squeezed away from every field.
    """

    row_to_col: Tensor
    mask: Tensor
    objective: Tensor
    certified: Tensor | None


class Problem:
    """A validated batch in maximisation form (see the module docstring).

    `valid` and `reward` are built on first use: the exact solver on an unmasked batch needs
    neither and hands SciPy zero-copy views of the caller's scores instead.
    """

    def __init__(self, scores: Tensor, n_rows: Tensor, n_cols: Tensor, mask: Tensor | None,
                 maximize: bool, squeezed: bool = False):
        self.scores = scores  # [N, H, W] the caller's scores (any float dtype, kept for the objective)
        self.n_rows = n_rows  # [N] long, valid rows per item
        self.n_cols = n_cols  # [N] long, valid columns per item
        self.mask = mask  # [N, H, W] bool or None: False = forbidden
        self.maximize = maximize
        self.squeezed = squeezed  # the caller passed a single [H, W] matrix

    @property
    def shape(self) -> tuple[int, int, int]:
        n, h, w = self.scores.shape
        return n, h, w

    @cached_property
    def valid(self) -> Tensor:
        """[N, H, W] bool: inside the item's lengths and allowed by the mask."""
        n, h, w = self.shape
        device = self.scores.device
        valid = ((torch.arange(h, device=device).view(1, h, 1) < self.n_rows.view(n, 1, 1))
                 & (torch.arange(w, device=device).view(1, 1, w) < self.n_cols.view(n, 1, 1)))
        return valid if self.mask is None else valid & self.mask

    @cached_property
    def reward(self) -> Tensor:
        """[N, H, W] fp32 rewards to maximise, 0 where not valid."""
        reward = self.scores.detach().float()
        return torch.where(self.valid, reward if self.maximize else -reward, 0.0)

    def reward64(self) -> Tensor:
        """`reward` in float64 from the caller's scores (no fp32 rounding of fp64 inputs)."""
        reward = self.scores.detach().double()
        return torch.where(self.valid, reward if self.maximize else -reward, 0.0)

    def subset(self, items: Tensor) -> Problem:
        """The sub-batch `items` (a LongTensor of item indices), e.g. for an exact fallback."""
        return Problem(self.scores[items], self.n_rows[items], self.n_cols[items],
                       None if self.mask is None else self.mask[items], self.maximize)


def value_range(values: Tensor, valid: Tensor) -> tuple[Tensor, Tensor]:
    """Per-item (lowest, range) of `values` [N, H, W] over valid entries; (0, 0) for none."""
    if values.shape[1] == 0 or values.shape[2] == 0:
        zero = values.new_zeros(values.shape[0])
        return zero, zero
    lo = torch.where(valid, values, torch.inf).amin((1, 2))
    hi = torch.where(valid, values, -torch.inf).amax((1, 2))
    has = valid.flatten(1).any(1)
    return torch.where(has, lo, 0.0), torch.where(has, hi - lo, 0.0)


def _lengths(lengths: Tensor | None, n: int, limit: int, name: str, device: torch.device) -> Tensor:
    if lengths is None:
        return torch.full((n,), limit, dtype=torch.long, device=device)
    if not isinstance(lengths, Tensor) or lengths.dtype.is_floating_point or lengths.dtype == torch.bool:
        raise TypeError(f"{name} must be an integer Tensor of shape [{n}], got {lengths!r:.80}")
    if lengths.shape != (n,):
        raise ValueError(f"{name} must have shape [{n}] (one length per item), got {list(lengths.shape)}")
    lengths = lengths.to(device=device, dtype=torch.long)
    if n and (int(lengths.min()) < 0 or int(lengths.max()) > limit):
        raise ValueError(f"{name} must lie in [0, {limit}], got values in "
                         f"[{int(lengths.min())}, {int(lengths.max())}]")
    return lengths


def prepare(scores: Tensor, *, maximize: bool, row_lengths: Tensor | None,
            col_lengths: Tensor | None, mask: Tensor | None) -> Problem:
    """Check the caller's arguments and build the maximisation-form `Problem`."""
    if not isinstance(scores, Tensor):
        raise TypeError(f"scores must be a torch.Tensor of shape [N, H, W] or [H, W], got {type(scores).__name__}")
    if not scores.dtype.is_floating_point:
        raise TypeError(f"scores must have a floating dtype, got {scores.dtype}")
    if scores.dim() not in (2, 3):
        raise ValueError(f"scores must have shape [N, H, W] or [H, W], got {list(scores.shape)}")
    squeezed = scores.dim() == 2
    if squeezed:
        scores = scores.unsqueeze(0)
    n, h, w = scores.shape
    device = scores.device
    n_rows = _lengths(row_lengths, n, h, "row_lengths", device)
    n_cols = _lengths(col_lengths, n, w, "col_lengths", device)

    if mask is not None:
        if not isinstance(mask, Tensor) or mask.dtype != torch.bool:
            raise TypeError(f"mask must be a bool Tensor (False = forbidden entry), got {mask!r:.80}")
        if squeezed and mask.dim() == 2:
            mask = mask.unsqueeze(0)
        if mask.shape != scores.shape:
            raise ValueError(f"mask must have the shape of scores {list(scores.shape)}, got {list(mask.shape)}")
        mask = mask.to(device)
    problem = Problem(scores, n_rows, n_cols, mask, maximize, squeezed)
    # only values at valid entries must be finite (isfinite has no float8 kernels: check as fp32)
    finite = torch.isfinite(scores if scores.dtype.itemsize > 1 else scores.float())
    if not bool(finite.all()):
        bad = problem.valid & ~finite
        if bool(bad.any()):
            item = int(bad.flatten(1).any(1).nonzero()[0])
            raise ValueError(f"scores has non-finite values at valid entries (first in item {item}); "
                             "forbid such entries with mask=False instead of using inf or NaN")
    return problem


def build_assignment(problem: Problem, row_to_col: Tensor, certified: Tensor | None) -> Assignment:
    """Turn a row→column index tensor into the full `Assignment` (one-hot mask, objective)."""
    n, h, w = problem.shape
    assigned = row_to_col >= 0
    onehot = torch.zeros((n, h, w + 1), dtype=torch.bool, device=row_to_col.device)
    onehot.scatter_(2, torch.where(assigned, row_to_col, w).unsqueeze(-1), True)
    onehot = onehot[..., :w]
    scores = problem.scores.float()
    if w == 0:  # nothing can be assigned; keep the (empty) sum so the objective stays differentiable
        objective = scores.sum((1, 2))
    else:
        picked = scores.gather(2, row_to_col.clamp(min=0).unsqueeze(-1)).squeeze(-1)
        objective = torch.where(assigned, picked, torch.zeros((), device=picked.device)).sum(-1)
    if problem.squeezed:
        return Assignment(row_to_col[0], onehot[0], objective[0],
                          None if certified is None else certified[0])
    return Assignment(row_to_col, onehot, objective, certified)
