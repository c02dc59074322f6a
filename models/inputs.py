"""What one training step hands `GroundedSystem.forward`: two optional parts, each a dataclass of
tensors (`to(device)` moves every tensor it holds).

`GroundingInputs` — B images with M source captions each, for the n-dim loss: `source_ids`,
`source_mask` [B*M, L] (image-major), `labels` [B*M, S-1] when decoding is teacher-forced; the
images as pixels `images` [B,3,H,W] or as a frozen tower's `image_features` [B,F]; the English
captions as CLIP ids `english_ids` [B,K,L] or frozen `english_features` [B,K,F]; the frozen text
experts' features of each image's first English caption, `expert_features` [B,E,F].

`TargetInputs` — N source captions that have a (human or pseudo) translation, for the token
cross-entropy: `source_ids`, `source_mask`, `labels` [N,S-1], `weight` [N] (each row's share),
`human` [N] (which targets are human translations), `counted` [N] (the rows whose target
tokens normalise the loss) and `scored` [N,S-1]: the labels the loss scores when some targets
teach only some of their words (IGNORE_INDEX elsewhere; None: `labels` themselves).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
from torch import Tensor


class _OnDevice:
    def to(self, device: torch.device | str):
        return dataclasses.replace(self, **{f.name: getattr(self, f.name).to(device) for f in dataclasses.fields(self)
                                            if isinstance(getattr(self, f.name), Tensor)})


@dataclass(frozen=True)
class GroundingInputs(_OnDevice):
    source_ids: Tensor
    source_mask: Tensor
    labels: Tensor | None = None
    images: Tensor | None = None
    image_features: Tensor | None = None
    english_ids: Tensor | None = None
    english_features: Tensor | None = None
    expert_features: Tensor | None = None


@dataclass(frozen=True)
class TargetInputs(_OnDevice):
    source_ids: Tensor
    source_mask: Tensor
    labels: Tensor
    weight: Tensor
    human: Tensor
    counted: Tensor
    scored: Tensor | None = None
