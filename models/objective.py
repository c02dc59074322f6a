"""The grounding terms of stage 1, on the n-dim loss' axes: the n-dim contrastive loss itself, and
three optional terms on the student's CLIP features — the English anchor (`models.english_anchor`: the
student pulled towards its image's English caption), a bank of learnable anchors on the
hypersphere (`models.anchor_bank`) and the thesis' LSA loss on the student ↔ image logits
(`models.assignment.lsa_loss`). One module, so that accelerate prepares (and a DDP run syncs) every
parameter of the objective together, and checkpoints hold it whole. It returns the terms
unweighted: how they add up is the training task's (`training.task`)."""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models.english_anchor import anchor_loss, mean_cosine
from models.anchor_bank import AnchorBank
from models.assignment.lsa_loss import lsa_loss
from models.axes import Axes
from models.ndim_loss import NDimContrastiveLoss


@dataclass
class ObjectiveTerms:
    """`terms`: each term of the batch (scalar tensors; `contrastive` always, the optional ones
    when configured); `stats`: floats for the log (logit scale, logits, region shares, cosines)."""

    terms: dict[str, Tensor]
    stats: dict[str, float]


class ContrastiveObjective(nn.Module):
    """`ndim` over every axis; `english_anchor` ('cosine', 'mse' or None) between the first student
    and the first English axis; `bank` (an AnchorBank or None) on the first student axis; `lsa`:
    whether to compute the LSA loss on the logits of the first student axis against the image, at
    the n-dim loss' own logit scale."""

    def __init__(self, ndim: NDimContrastiveLoss, *, english_anchor: str | None = None,
                 bank: AnchorBank | None = None, lsa: bool = False) -> None:
        super().__init__()
        self.ndim, self.english_anchor, self.bank, self.lsa = ndim, english_anchor, bank, lsa

    def forward(self, axes: Axes) -> ObjectiveTerms:
        out = self.ndim(axes.ordered())
        terms, stats = {"contrastive": out.loss}, dict(out.stats)
        student, image = axes.student[0], axes.image
        with torch.autocast(image.device.type, enabled=False):  # as the n-dim loss: in fp32
            if self.english_anchor is not None:
                terms["english_anchor"] = anchor_loss(student, axes.english[0], self.english_anchor)
            stats["cos/student_image"] = float(mean_cosine(student, image))
            if axes.english:
                stats["cos/student_english"] = float(mean_cosine(student, axes.english[0]))
        if self.bank is not None:
            terms["anchor_bank"] = self.bank(student.float())
        if self.lsa:
            scale = self.ndim.logit_scale.clamp(max=self.ndim.logit_scale_max).exp()
            logits = scale * F.normalize(student.float(), dim=-1, eps=1e-6) @ F.normalize(image.float(), dim=-1,
                                                                                         eps=1e-6).T
            terms["lsa"] = lsa_loss(logits)
        return ObjectiveTerms(terms, stats)

    @torch.no_grad()
    def anchors(self) -> Tensor | None:
        """`[K, F]` unit anchors of the bank (None without one)."""
        return None if self.bank is None else self.bank.anchors()
