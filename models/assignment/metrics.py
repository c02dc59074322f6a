"""How close an assignment is to a reference (usually the exact one): F1_LSA, regret, exact-rate.

F1_LSA (thesis §6.3.4, issue 7): with |A ∧ Â| the number of pairs both assignments share,
    precision = |A ∧ Â| / W,   recall = |A ∧ Â| / H,   F1 = 2 P R / (P + R)
where H and W are the item's valid rows and columns (`denominator="dims"`). On a rectangular
item even the reference scores F1 = 2k / (H + W) < 1 this way (the thesis' "stock" curve);
`denominator="pairs"` divides by |Â| and |A| instead, so that the reference itself scores 1.

Tie-aware: distinct assignments can share the optimal objective, so a prediction with the
reference's cardinality whose objective is within `rtol` of the reference's counts as fully
correct (|A ∧ Â| := |A|). Objectives are recomputed from the scores in float64.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from .problem import Assignment


@dataclass(frozen=True)
class AssignmentMetrics:
    """Per-item comparison of a predicted assignment with a reference (all Tensors [N])."""

    precision: Tensor
    recall: Tensor
    f1: Tensor
    regret: Tensor  # reference objective minus predicted one, in the problem's direction (>= 0 if ref is optimal)
    relative_regret: Tensor  # regret / |reference objective|
    optimal: Tensor  # bool: tie-aware "as good as the reference"

    def summary(self) -> dict[str, float]:
        """Batch means (exact_rate = fraction of optimal items) and the worst regret."""
        return {
            "f1": self.f1.mean().item(),
            "precision": self.precision.mean().item(),
            "recall": self.recall.mean().item(),
            "exact_rate": self.optimal.float().mean().item(),
            "regret_mean": self.regret.mean().item(),
            "regret_max": self.regret.max().item() if self.regret.numel() else 0.0,
            "relative_regret_mean": self.relative_regret.mean().item(),
        }


def _batched(t: Tensor, dims: int) -> Tensor:
    return t.unsqueeze(0) if t.dim() == dims - 1 else t


def _ratio(num: Tensor, den: Tensor) -> Tensor:
    """num / den with 0 / 0 := 1 (nothing to find, nothing missed)."""
    return torch.where(den > 0, num / den.clamp(min=1), torch.where(num > 0, 0.0, 1.0))


def assignment_metrics(pred: Assignment, ref: Assignment, scores: Tensor, *, maximize: bool = True,
                       row_lengths: Tensor | None = None, col_lengths: Tensor | None = None,
                       denominator: str = "dims", rtol: float = 1e-7) -> AssignmentMetrics:
    """Compare `pred` with `ref` (both solved on `scores`); see the module docstring."""
    if denominator not in ("dims", "pairs"):
        raise ValueError(f"denominator must be 'dims' or 'pairs', got {denominator!r}")
    pred_mask, ref_mask = _batched(pred.mask, 3), _batched(ref.mask, 3)
    scores = _batched(scores, 3)
    if not (pred_mask.shape == ref_mask.shape == scores.shape):
        raise ValueError(f"pred, ref and scores must have one shape, got {list(pred_mask.shape)}, "
                         f"{list(ref_mask.shape)} and {list(scores.shape)}")
    n, h, w = scores.shape
    device = scores.device
    rows = torch.full((n,), h, device=device) if row_lengths is None else row_lengths.to(device)
    cols = torch.full((n,), w, device=device) if col_lengths is None else col_lengths.to(device)

    s = scores.detach().double()
    zero = torch.zeros((), dtype=s.dtype, device=device)
    pred_obj = torch.where(pred_mask, s, zero).sum((1, 2))
    ref_obj = torch.where(ref_mask, s, zero).sum((1, 2))
    regret = ref_obj - pred_obj if maximize else pred_obj - ref_obj
    ref_size = ref_mask.sum((1, 2))
    pred_size = pred_mask.sum((1, 2))
    scale = torch.where(ref_mask, s.abs(), zero).sum((1, 2))
    optimal = (pred_size == ref_size) & (regret <= rtol * scale)

    shared = torch.where(optimal, ref_size, (pred_mask & ref_mask).sum((1, 2))).double()
    if denominator == "dims":
        precision, recall = _ratio(shared, cols.double()), _ratio(shared, rows.double())
    else:
        precision, recall = _ratio(shared, pred_size.double()), _ratio(shared, ref_size.double())
    total = precision + recall
    f1 = torch.where(total > 0, 2 * precision * recall / total.clamp(min=1e-300), 0.0)
    relative = regret / ref_obj.abs().clamp(min=1e-300)
    relative = torch.where(regret == 0, 0.0, relative)
    return AssignmentMetrics(precision, recall, f1, regret, relative, optimal)
