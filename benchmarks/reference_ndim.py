"""Thesis-style reference for the n-dimensional loss (the baseline of benchmarks/bench_ndim.py).

Written the way thesis chapter 5 computes it: the whole B^n logit cube from broadcast
(B, …, B, F) intermediates — the per-feature sums of Figure "calculate_loss3" — or, for v0, the
single n-operand einsum "az,bz,cz,…->abc…"; then a dense one-hot label cube ("diagonally
embedding the ones into a cube") and cross-entropy along every axis ("rotating through the
dimensions"), averaged. Memory O(B^n·F); it computes the same number as
`NDimContrastiveLoss(similarity, labels="diagonal")`.
"""
from __future__ import annotations

import math
import string

import torch
import torch.nn.functional as F

from models.similarities import GramSimilarity, MomentSimilarity, PairSumSimilarity, get_similarity


def reference_cube(name: str, X: torch.Tensor) -> torch.Tensor:
    """s on the whole cube, X [n, B, F] -> [B]*n, through broadcast (B, …, B, F) tensors."""
    n, B, dim = X.shape
    sim = get_similarity(name)
    if sim.name == "v0":
        letters = string.ascii_lowercase[:n]
        return torch.einsum(",".join(f"{c}z" for c in letters) + "->" + letters, *X)
    views = [X[k].view([1] * k + [B] + [1] * (n - k - 1) + [dim]) for k in range(n)]
    if isinstance(sim, PairSumSimilarity):
        total = sum(views)                                   # (B, …, B, F)
        Q = sum(v.square().sum(-1) for v in views)
        return sim.from_qn(Q, total.square().sum(-1), n)
    if isinstance(sim, MomentSimilarity):
        return sim.fn(sum(views), sum(v.square() for v in views), n)
    stacked = torch.stack(torch.broadcast_tensors(*views), dim=-2)   # (B, …, B, n, F)
    return sim.tuples(stacked) if not isinstance(sim, GramSimilarity) else sim.fn(stacked @ stacked.transpose(-1, -2))


def reference_loss(name: str, features: list[torch.Tensor], logit_scale: torch.Tensor) -> torch.Tensor:
    """Diagonal n-dimensional CE on the full cube with a dense one-hot label cube."""
    X = torch.stack([F.normalize(f.float(), dim=-1) for f in features])
    n, B = X.shape[:2]
    logits = logit_scale.exp() * reference_cube(name, X)
    labels = torch.zeros_like(logits)
    labels[tuple([torch.arange(B)] * n)] = 1
    return sum(-(labels * logits.log_softmax(k)).sum() / B for k in range(n)) / n


def reference_bytes(name: str, n: int, B: int, dim: int) -> int:
    """Rough peak of `reference_loss` forward + backward (fp32), to decide what can run."""
    if get_similarity(name).name == "v0":
        return 4 * (3 * B ** (n - 1) * dim + 6 * B**n)       # the (B^(n-1), F) einsum partial and its grad
    per_tuple = dim * (n + 2) if get_similarity(name).family in ("gram", "per-vector", "leave-one-out") else 4 * dim
    return 4 * math.prod([B] * n) * (per_tuple + 8)
