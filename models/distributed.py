"""Cross-process plumbing for the n-dimensional loss: gather features with gradient.

Like open_clip's `gather_features(..., gather_with_grad=True)`: every rank sees every rank's
features (the global *columns*) and computes the loss only for the rows it owns (its local batch
indices). The all-gather's backward sums the gradients all ranks send back to a rank's
features, so each rank's per-row loss reaches every feature it used.

Averaging convention (as open_clip's local_loss + DDP): rank r returns a loss whose mean over
ranks equals the single-process loss on the concatenated batch. DDP averages parameter
gradients over ranks, so parameters get exactly the single-process gradient; the raw gradient
on a rank's local features is world_size × the single-process gradient of those rows (the
1/world_size lives in DDP's averaging).
Without an initialised process group (or with one process) everything is a passthrough.
"""
from __future__ import annotations

import warnings

import torch
import torch.distributed as dist
from torch.distributed.nn.functional import all_gather as all_gather_with_grad


def world() -> tuple[int, int]:
    """(rank, world_size), (0, 1) when not running distributed."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def gather_with_grad(local: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Concatenate every rank's `local` [n, b, F] along dim 1 -> ([n, world·b, F], row offset).

    Gradients flow back to each rank's own `local`. Every rank must pass the same shape; a
    mismatch is reported instead of hanging or mis-assembling the batch.
    """
    rank, size = world()
    if size == 1:
        return local, 0
    shape = torch.tensor(local.shape, device=local.device)
    shapes = [torch.empty_like(shape) for _ in range(size)]
    dist.all_gather(shapes, shape)
    if any(not torch.equal(s, shape) for s in shapes):
        raise ValueError(
            "NDimContrastiveLoss needs the same [n, b, F] on every rank, got "
            f"{[tuple(s.tolist()) for s in shapes]}; drop the last uneven batch (drop_last=True)")
    with warnings.catch_warnings():  # open_clip's gather; torch 2.14 marks it deprecated, not wrong
        warnings.filterwarnings("ignore", "torch.distributed.nn.functional.all_gather is deprecated")
        parts = all_gather_with_grad(local)
    return torch.cat([_ContiguousGrad.apply(p) for p in parts], dim=1), rank * local.shape[1]


class _ContiguousGrad(torch.autograd.Function):
    """Identity whose backward hands on a contiguous gradient.

    The all-gather's backward sends each part's gradient through an all-to-all; on gloo a
    non-contiguous gradient (e.g. the transposed layout a bmm backward produces) is sent as raw
    memory and arrives scrambled — silently wrong gradients (the pytorch/pytorch#192920 family
    of gloo bugs). Measured here: errors of order 10 before this guard, 0 after.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        return grad.contiguous()


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    """Sum of a gradient-free tensor over ranks (a copy; identity on one process)."""
    _, size = world()
    if size == 1:
        return t
    out = t.detach().clone()
    dist.all_reduce(out)
    return out
