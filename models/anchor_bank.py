"""A bank of learnable anchors on the unit hypersphere with an InfoNCE-to-nearest-anchor term
(seed 000's "alignment bank" anchors).

K anchors are stored unconstrained and used L2-normalised, so they always lie on the sphere.
The term treats each feature's nearest anchor (by cosine, chosen without gradient) as its
positive and every other anchor as a negative:

    L = mean_i CE(cos(f_i, A) / τ, argmax_k cos(f_i, a_k))

It pulls a feature towards its anchor and away from the rest, and moves each anchor towards the
features that chose it. Its degenerate minimum — every feature on one anchor — is exactly the
seed's "total collapse" (1/256 anchors active, entropy 0), so a run using it must watch
`eval.health.anchor_stats` (active anchors, anchor entropy, nearest vs second-nearest distance)
and `collapse_warnings`.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class AnchorBank(nn.Module):
    """`num_anchors` learnable unit anchors in `dim` dimensions; `temperature` τ of the term."""

    def __init__(self, num_anchors: int, dim: int, *, temperature: float = 0.1, seed: int = 0):
        super().__init__()
        if num_anchors < 2 or dim < 1:
            raise ValueError(f"need at least 2 anchors of dimension >= 1, got {num_anchors} × {dim}")
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        generator = torch.Generator().manual_seed(seed)
        self.raw = nn.Parameter(torch.randn(num_anchors, dim, generator=generator))
        self.temperature = temperature

    @classmethod
    @torch.no_grad()
    def from_features(cls, features: Tensor, num_anchors: int, *, temperature: float = 0.1,
                      seed: int = 0) -> AnchorBank:
        """Anchors initialised at `num_anchors` distinct rows of `features [N, D]` (seeded choice)."""
        if features.ndim != 2 or features.shape[0] < num_anchors:
            raise ValueError(f"need features [N >= {num_anchors}, D], got {tuple(features.shape)}")
        bank = cls(num_anchors, features.shape[1], temperature=temperature, seed=seed)
        rows = torch.randperm(features.shape[0], generator=torch.Generator().manual_seed(seed))[:num_anchors]
        bank.raw.copy_(features[rows.to(features.device)].float().cpu())
        return bank.to(features.device)

    def anchors(self) -> Tensor:
        """`[K, D]` unit anchors."""
        return F.normalize(self.raw, dim=-1, eps=1e-12)

    def cosines(self, features: Tensor) -> Tensor:
        """`[N, K]` cosine of every feature row with every anchor."""
        return F.normalize(features.float(), dim=-1, eps=1e-12) @ self.anchors().float().T

    def nearest(self, features: Tensor) -> Tensor:
        """`[N]` index of each row's nearest anchor."""
        return self.cosines(features).detach().argmax(-1)

    def forward(self, features: Tensor) -> Tensor:
        """The InfoNCE-to-nearest-anchor term of `features [N, D]` (a scalar)."""
        if features.ndim != 2 or features.shape[1] != self.raw.shape[1]:
            raise ValueError(f"expected features [N, {self.raw.shape[1]}], got {tuple(features.shape)}")
        logits = self.cosines(features) / self.temperature
        return F.cross_entropy(logits, logits.detach().argmax(-1))
