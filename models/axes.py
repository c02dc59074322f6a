"""The axes of the n-dim contrastive loss, by name.

One batch of B images gives the loss its axes, each `[B, F]` CLIP features: the image, K English
captions, E frozen text experts and the student's translations of M source captions.
`GroundedSystem.forward` returns them as an `Axes`; everything else (the objective, the logged
metrics, the health checks) reads them by name. Their order as the loss' positional list is
declared here once, in `AXIS_ORDER`.
"""
from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

AXIS_ORDER = ("image", "english", "experts", "student")  # the n-dim loss' axes, in this order


@dataclass(frozen=True)
class AxisLayout:
    """How many axes each group has; `first(name)` is a group's first position in the loss' list."""

    english: int
    experts: int
    student: int

    @property
    def n(self) -> int:
        return 1 + self.english + self.experts + self.student

    def first(self, name: str) -> int:
        sizes = {"image": 1, "english": self.english, "experts": self.experts, "student": self.student}
        return sum(sizes[group] for group in AXIS_ORDER[:AXIS_ORDER.index(name)])


@dataclass(frozen=True)
class Axes:
    """`image` [B,F]; `english`, `experts`, `student`: one [B,F] tensor per axis of the group."""

    image: Tensor
    english: tuple[Tensor, ...]
    experts: tuple[Tensor, ...]
    student: tuple[Tensor, ...]

    @property
    def layout(self) -> AxisLayout:
        return AxisLayout(len(self.english), len(self.experts), len(self.student))

    def ordered(self) -> list[Tensor]:
        """Every axis as the n-dim loss takes them, in `AXIS_ORDER`."""
        groups = {"image": (self.image,), "english": self.english, "experts": self.experts, "student": self.student}
        return [axis for name in AXIS_ORDER for axis in groups[name]]

    def detach(self) -> Axes:
        return Axes(self.image.detach(), tuple(a.detach() for a in self.english),
                    tuple(a.detach() for a in self.experts), tuple(a.detach() for a in self.student))
