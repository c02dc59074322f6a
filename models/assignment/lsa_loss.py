"""LSA loss (thesis §6.7): weight the assignment's mistakes by the length of their cycle.

In contrastive training the logits L [B, B] should make the identity the best assignment. The
optimal assignment σ of L is a permutation; read as a linked list (i -> σ(i)) it splits into
cycles — the thesis' "100 prisoners" view. The identity is B cycles of length 1; a confused
batch has long cycles. The loss scales each row's assigned logit by its cycle length and, as
the thesis suggests ("subtracting tr(x) ... so that the loss can become 0"), subtracts the
diagonal:

    loss = (1/B) * sum_i c_i * (L[i, σ(i)] - L[i, i])        c_i = length of i's cycle

Rows in 1-cycles contribute nothing. On each longer cycle C the sum of (L[i, σ(i)] - L[i, i])
is >= 0 when σ is optimal (undoing the cycle is another permutation), so with the exact solver
the loss is >= 0, and it is 0 exactly when the identity is an optimal assignment. Its gradient
(σ and c held fixed, as for any matching-based loss) lowers the logits the assignment took
instead of the diagonal and raises the diagonal of the rows they displaced, weighted by c_i:
long confusion cycles are corrected hardest. Use it as an extra term next to a contrastive loss.
"""
from __future__ import annotations

import torch
from torch import Tensor

from .solvers import solve


def cycle_lengths(perm: Tensor) -> Tensor:
    """Length of the cycle through each element of a permutation.

    perm: LongTensor [..., B], each last-dim slice a permutation of range(B) (i -> perm[i]).
    Returns a LongTensor of the same shape; the identity gives all ones, one B-cycle all B's.
    """
    if perm.dtype not in (torch.int64, torch.int32):
        raise TypeError(f"perm must be an integer tensor, got {perm.dtype}")
    b = perm.shape[-1]
    perm = perm.long()
    expected = torch.arange(b, device=perm.device).expand_as(perm)
    if not torch.equal(perm.sort(-1).values, expected):
        raise ValueError("perm must hold a permutation of range(B) along its last dimension")
    lengths = torch.zeros_like(perm)
    current = perm
    for step in range(1, b + 1):
        lengths = torch.where((current == expected) & (lengths == 0), step, lengths)
        current = perm.gather(-1, current)
    return lengths


def assignment_permutation(logits: Tensor, *, method: str = "exact", **method_kwargs) -> Tensor:
    """The maximising assignment of square logits [B, B] (or [N, B, B]) as a permutation."""
    if logits.dim() not in (2, 3) or logits.shape[-1] != logits.shape[-2]:
        raise ValueError(f"logits must be square, [B, B] or [N, B, B], got {list(logits.shape)}")
    perm = solve(logits.detach(), method=method, maximize=True, **method_kwargs).row_to_col
    if bool((perm < 0).any()):
        raise RuntimeError(f"method {method!r} left a row unassigned on a square problem")
    return perm


def lsa_loss(logits: Tensor, *, method: str = "exact", reduction: str = "mean", **method_kwargs) -> Tensor:
    """The cycle-length-weighted LSA loss of the module docstring, differentiable in `logits`.

    logits: [B, B] or [N, B, B] (row i's true partner is column i). reduction over the N items:
    "mean", "sum" or "none". Approximate methods may be used (`method`), but only "exact"
    guarantees loss >= 0.
    """
    if reduction not in ("mean", "sum", "none"):
        raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")
    perm = assignment_permutation(logits, method=method, **method_kwargs)
    weight = cycle_lengths(perm).to(logits.dtype)
    assigned = logits.gather(-1, perm.unsqueeze(-1)).squeeze(-1)
    diagonal = logits.diagonal(dim1=-2, dim2=-1)
    per_item = (weight * (assigned - diagonal)).mean(-1)
    if reduction == "none":
        return per_item
    return per_item.mean() if reduction == "mean" else per_item.sum()
