"""The grounded objective of stage 1: the n-dim contrastive loss over the axes, plus two optional
terms on the student's CLIP features — a bank of learnable anchors on the hypersphere
(`models.anchor_bank`, seed 000's alignment bank) and the thesis' LSA loss on the student ↔ image
logits (`models.assignment.lsa_loss`, §6.7). One module, so that accelerate prepares (and a DDP run
syncs) every parameter of the objective together, and checkpoints hold it whole."""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models.anchor_bank import AnchorBank
from models.assignment.lsa_loss import lsa_loss
from models.ndim_loss import NDimContrastiveLoss, NDimLossOutput


class GroundedObjective(nn.Module):
    """`ndim(axes)` + `bank_weight` × anchor-bank term + `lsa_weight` × LSA loss.

    `student_axis`, `image_axis`: indices in the axes; `bank`: an AnchorBank or None; the LSA
    logits are the n-dim loss' own logit scale × cosine between student and image rows."""

    def __init__(self, ndim: NDimContrastiveLoss, *, student_axis: int, image_axis: int = 0,
                 bank: AnchorBank | None = None, bank_weight: float = 0.0, lsa_weight: float = 0.0) -> None:
        super().__init__()
        self.ndim, self.bank = ndim, bank
        self.student_axis, self.image_axis = student_axis, image_axis
        self.bank_weight, self.lsa_weight = float(bank_weight), float(lsa_weight)

    def forward(self, axes: Sequence[Tensor]) -> NDimLossOutput:
        out = self.ndim(axes)
        student, image = axes[self.student_axis].float(), axes[self.image_axis].float()
        if self.bank is not None:
            out.terms["anchor_bank"] = self.bank(student)
            out.loss = out.loss + self.bank_weight * out.terms["anchor_bank"]
        if self.lsa_weight:
            scale = self.ndim.logit_scale.clamp(max=self.ndim.logit_scale_max).exp()
            logits = scale * F.normalize(student, dim=-1, eps=1e-6) @ F.normalize(image, dim=-1, eps=1e-6).T
            out.terms["lsa"] = lsa_loss(logits)
            out.loss = out.loss + self.lsa_weight * out.terms["lsa"]
        return out

    @torch.no_grad()
    def anchors(self) -> Tensor | None:
        """`[K, F]` unit anchors of the bank (None without one)."""
        return None if self.bank is None else self.bank.anchors()
