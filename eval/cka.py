"""Linear CKA with the unbiased HSIC estimator, accumulated over minibatches.

CKA(X, Y) = HSIC(K, L) / sqrt(HSIC(K, K) · HSIC(L, L)) with linear kernels K = XXᵀ,
L = YYᵀ. HSIC is Song et al.'s (2012) unbiased estimator, so the value does not drift with
the batch size the way the biased (centred-Gram) one does; over minibatches the three HSIC
terms are averaged before the ratio is taken (Nguyen, Raghu & Kornblith 2021). The thesis
(§4.1) averaged per-batch ratios of differently scaled terms; this is the corrected form.

Samples are rows of [B, D] inputs, or positions of [B, S, D] sequence states selected by a
token mask (token-level CKA) or by one position per sequence (`positions`, e.g. the EOT
position — the EOT-only variant).
"""
from __future__ import annotations

import torch


def hsic_unbiased(K: torch.Tensor, L: torch.Tensor) -> torch.Tensor:
    """Song et al.'s unbiased HSIC of two n×n kernel matrices (n >= 4), in float64."""
    n = K.shape[0]
    if n < 4 or K.shape != (n, n) or L.shape != (n, n):
        raise ValueError(f"unbiased HSIC needs two n×n kernels with n >= 4, got {tuple(K.shape)}, "
                         f"{tuple(L.shape)}")
    K = K.double().clone().fill_diagonal_(0)
    L = L.double().clone().fill_diagonal_(0)
    trace = (K * L).sum()  # tr(KL), both symmetric
    middle = K.sum() * L.sum() / ((n - 1) * (n - 2))
    last = 2.0 / (n - 2) * (K.sum(0) @ L.sum(1))
    return (trace + middle - last) / (n * (n - 3))


def select(states: torch.Tensor, *, mask: torch.Tensor | None = None,
           positions: torch.Tensor | None = None) -> torch.Tensor:
    """[n, D] samples from [B, D] rows, or from [B, S, D] states at `mask` (token-level)
    or at one position per sequence (`positions` [B], e.g. EOT)."""
    if states.ndim == 2:
        if mask is not None or positions is not None:
            raise ValueError("mask/positions apply to [B, S, D] sequence states, not [B, D] rows")
        return states
    if states.ndim != 3:
        raise ValueError(f"expected [B, D] or [B, S, D] states, got shape {tuple(states.shape)}")
    if (mask is None) == (positions is None):
        raise ValueError("sequence states need exactly one of mask (tokens) or positions (one per row)")
    if positions is not None:
        positions = torch.as_tensor(positions, dtype=torch.long, device=states.device)
        if positions.shape != states.shape[:1]:
            raise ValueError(f"positions must be [B] = [{states.shape[0]}], got {tuple(positions.shape)}")
        return states[torch.arange(states.shape[0], device=states.device), positions]
    if mask.shape != states.shape[:2]:
        raise ValueError(f"mask must be [B, S] = {list(states.shape[:2])}, got {list(mask.shape)}")
    return states[mask.bool()]


class LinearCKA:
    """Minibatch-accumulated linear CKA: `update` per batch, `compute` at the end."""

    def __init__(self) -> None:
        self.xy = self.xx = self.yy = 0.0
        self.batches = self.samples = 0
        self.spread = [0.0, 0.0]  # Σ over batches of ‖x − batch mean‖², ‖y − batch mean‖²
        self.energy = [0.0, 0.0]  # Σ over batches of ‖x‖², ‖y‖²

    def update(self, x: torch.Tensor, y: torch.Tensor, *, mask: torch.Tensor | None = None,
               positions: torch.Tensor | None = None) -> None:
        """Add one batch; x [B, Dx] / [B, S, Dx] and y likewise, the same samples in both."""
        x = select(x, mask=mask, positions=positions).double()
        y = select(y, mask=mask, positions=positions).double()
        if x.shape[0] != y.shape[0]:
            raise ValueError(f"x and y must hold the same samples: {x.shape[0]} vs {y.shape[0]}")
        K, L = x @ x.T, y @ y.T
        self.xy += float(hsic_unbiased(K, L))
        self.xx += float(hsic_unbiased(K, K))
        self.yy += float(hsic_unbiased(L, L))
        self.batches += 1
        self.samples += x.shape[0]
        for k, z in enumerate((x, y)):
            self.spread[k] += float((z - z.mean(0)).square().sum())
            self.energy[k] += float(z.square().sum())

    def compute(self) -> float:
        if self.batches == 0:
            raise ValueError("no batches were added")
        denom = self.xx * self.yy
        # rows equal up to rounding (a collapsed representation) leave only rounding noise in HSIC
        constant = any(s <= 1e-10 * e for s, e in zip(self.spread, self.energy))
        if denom <= 0 or constant:
            raise ValueError("a representation has no (estimated) variance across samples; "
                             "CKA is undefined")
        return self.xy / denom ** 0.5


def linear_cka(x: torch.Tensor, y: torch.Tensor, *, batch_size: int | None = None,
               mask: torch.Tensor | None = None, positions: torch.Tensor | None = None) -> float:
    """Linear CKA of two representations of the same inputs, over batches of `batch_size`
    rows/sequences (None: one batch)."""
    cka = LinearCKA()
    size = batch_size or x.shape[0]
    for s in range(0, x.shape[0], size):
        part = slice(s, s + size)
        cka.update(x[part], y[part], mask=None if mask is None else mask[part],
                   positions=None if positions is None else positions[part])
    return cka.compute()
