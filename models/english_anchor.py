"""The English anchor (docs/design.md §4.3): keep the student's CLIP embedding near the English caption's.

With frozen CLIP towers the optimum of a product / volume / pairwise-sum similarity need not
be "student = English caption" (it can sit in the image–text gap, or be degenerate). The anchor
pulls the student axis towards the English axis directly, as Multilingual-CLIP trains its
student: `mse` on the raw embeddings (M-CLIP's loss) or `cosine` (1 − cos, scale-free).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

ANCHORS = ("cosine", "mse")


def anchor_loss(student: torch.Tensor, english: torch.Tensor, kind: str = "cosine",
                detach_english: bool = True) -> torch.Tensor:
    """Mean anchor loss over the batch: student, english [B, F] -> scalar (fp32).

    `detach_english` keeps the English side a target (it is the teacher's embedding); set it
    False only when the English tower is meant to move towards the student too.
    """
    if kind not in ANCHORS:
        raise ValueError(f"unknown anchor {kind!r}; choose one of {ANCHORS}")
    if student.shape != english.shape or student.dim() != 2:
        raise ValueError(f"anchor needs two [B, F] tensors of one shape, got {tuple(student.shape)} "
                         f"and {tuple(english.shape)}")
    student = student.float()
    english = english.detach().float() if detach_english else english.float()
    if kind == "mse":
        return F.mse_loss(student, english)
    return (1 - F.cosine_similarity(student, english, dim=-1, eps=1e-8)).mean()


@torch.no_grad()
def mean_cosine(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Mean row-wise cosine of two [B, F] tensors (for logging)."""
    return F.cosine_similarity(a.float(), b.float(), dim=-1, eps=1e-8).mean()
