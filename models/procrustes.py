"""Orthogonal Procrustes maps between two embedding spaces, fitted on paired features.

Given paired rows X [N, Dx] → Y [N, Dy] (the same items embedded by two models), the
*centred* map subtracts each side's mean, takes the SVD U S Vᵀ of X_cᵀ Y_c and uses the
rotation R = U Vᵀ [Dx, Dy]:

    x ↦ s · (x − μx) R + μy        (s = 1, or the least-squares isotropic scale tr(S) / ‖X_c‖²)

For Dx ≤ Dy (e.g. MiniLM's 384 → ViT-B-32's 512) R has orthonormal rows, ‖X_c R‖ = ‖X_c‖,
and R is the exact least-squares minimiser of ‖s X_c R − Y_c‖_F among such maps (a rotation or
reflection when Dx = Dy). For Dx > Dy (a wide expert into a tiny CLIP) R has orthonormal
columns: the first Dy columns of the optimal rotation of the problem with Y zero-padded to Dx
dimensions — a rotation followed by dropping coordinates, not the (closed-form-less) least
squares over all such projections. The *uncentred* variant uses X and Y
as they are (x ↦ s · x R): it can only rotate about the origin, so when either cloud sits off
the origin — CLIP and sentence-encoder embeddings always do — the best rotation drags every
point towards the other cloud's off-centre mean. Seed 000's log records exactly that failure
("the collapse forms ... around the outside middlepoint ... which is not the direct center");
the centred map is the fix. Fitting is done in float64; the map is a frozen module (buffers,
no parameters), so it moves with `.to(device)` and saves in a state dict.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn


class ProcrustesMap(nn.Module):
    """x ↦ scale · (x − mean_in) @ rotation + mean_out; fit with `ProcrustesMap.fit`."""

    def __init__(self, rotation: Tensor, mean_in: Tensor, mean_out: Tensor, scale: float | Tensor = 1.0):
        super().__init__()
        if rotation.ndim != 2 or mean_in.shape != rotation.shape[:1] or mean_out.shape != rotation.shape[1:]:
            raise ValueError(f"rotation [Dx, Dy] with means [Dx], [Dy] expected, got {tuple(rotation.shape)}, "
                             f"{tuple(mean_in.shape)}, {tuple(mean_out.shape)}")
        self.register_buffer("rotation", rotation.detach().clone())
        self.register_buffer("mean_in", mean_in.detach().clone())
        self.register_buffer("mean_out", mean_out.detach().clone())
        self.register_buffer("scale", torch.as_tensor(scale, dtype=rotation.dtype).detach().clone())

    @classmethod
    @torch.no_grad()
    def fit(cls, x: Tensor, y: Tensor, *, center: bool = True, scale: bool = False) -> ProcrustesMap:
        """The map taking rows of `x [N, Dx]` to the paired rows of `y [N, Dy]` (see the module
        docstring); `center=False` gives the uncentred variant, `scale=True` fits s as well."""
        if x.ndim != 2 or y.ndim != 2 or x.shape[0] != y.shape[0]:
            raise ValueError(f"paired features [N, Dx] and [N, Dy] expected, got {tuple(x.shape)} and {tuple(y.shape)}")
        if x.shape[0] < 2:
            raise ValueError("Procrustes needs at least two paired rows")
        xd, yd = x.detach().double(), y.detach().double()
        mean_in = xd.mean(0) if center else xd.new_zeros(xd.shape[1])
        mean_out = yd.mean(0) if center else yd.new_zeros(yd.shape[1])
        xc, yc = xd - mean_in, yd - mean_out
        u, s, vh = torch.linalg.svd(xc.T @ yc, full_matrices=False)
        rotation = u @ vh
        s_fit = float(s.sum() / (xc @ rotation).square().sum().clamp_min(1e-300)) if scale else 1.0
        dtype = x.dtype if x.is_floating_point() else torch.float32
        return cls(rotation.to(dtype), mean_in.to(dtype), mean_out.to(dtype), s_fit)

    def forward(self, x: Tensor) -> Tensor:
        """Map rows `x [..., Dx]` into the target space `[..., Dy]`."""
        return self.scale * ((x.to(self.rotation.dtype) - self.mean_in) @ self.rotation) + self.mean_out

    def residual(self, x: Tensor, y: Tensor) -> float:
        """Relative fit error ‖map(x) − y‖_F / ‖y − mean(y)‖_F on paired rows (0 = exact; 1 = no better
        than predicting y's mean)."""
        y = y.to(self.rotation.dtype)
        return float((self(x) - y).norm() / (y - y.mean(0)).norm().clamp_min(1e-12))
