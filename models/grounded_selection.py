"""The image as a judge of translations: choose and filter candidate translations by CLIP.

Two uses of one rule (docs/design.md §11: the image as a *filter* helped where the image as a *gradient*
hurt):
- grounded self-training (train.py `--self-train-rounds`): the student's n-best translations of
  the training captions that have no human translation are re-scored with their image, and the
  winner becomes a pseudo-parallel target only when its CLIP pair ranks its own image first
  among a group of images;
- test-time reranking (`translate --rerank clip`): the n-best list of a caption is re-scored with
  its image.

Score of candidate c of a caption with image x: `log p(c | source) + β · scale · cos(CLIP(c), x)`
— the student's length-normalised log-probability keeps the choice faithful to the source; the
image decides between candidates the student finds equally likely (which colour, which shape).
`scale` is the CLIP logit scale, so β = 1 weighs one nat of the student against one nat of CLIP.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor


@dataclass
class Selection:
    """Per caption: `choice` (index into its candidates), `image_rank` (0 = its own image scores
    highest among its group), `image_prob` (softmax probability of its own image in the group)."""

    choice: Tensor  # [N] long
    image_rank: Tensor  # [N] long
    image_prob: Tensor  # [N] float

    def kept(self, max_rank: int = 0) -> Tensor:
        """Mask of captions whose chosen translation ranks its own image within the top `max_rank + 1`."""
        return self.image_rank <= max_rank


def rerank(logprobs: Tensor, text_features: Tensor, image_features: Tensor, *, beta: float,
           scale: float, bonus: Tensor | None = None) -> Tensor:
    """Index of the best candidate per caption. `logprobs [N,k]` (−inf for missing candidates),
    `text_features [N,k,F]`, `image_features [N,F]` (each caption's own image); `bonus [N,k]`:
    further evidence added to the score (e.g. the source's lexical agreement with a candidate)."""
    cos = torch.einsum("nkf,nf->nk", F.normalize(text_features.float(), dim=-1, eps=1e-6),
                       F.normalize(image_features.float(), dim=-1, eps=1e-6))
    score = logprobs.float() + beta * scale * cos
    return (score if bonus is None else score + bonus.to(score)).argmax(1)


def image_groups(own_image: Tensor, num_images: int, group: int, *, seed: int) -> Tensor:
    """`[n, group]` image indices per caption: its own image in column 0, then the first
    `group - 1` images other than it of a seeded random draw of `group` distinct images."""
    if not 1 <= group <= num_images:
        raise ValueError(f"the image group size must be in [1, {num_images}], got {group}")
    generator = torch.Generator().manual_seed(seed)
    own = own_image.cpu()
    drawn = torch.stack([torch.randperm(num_images, generator=generator)[:group] for _ in range(len(own))])
    order = torch.argsort((drawn == own[:, None]).long() * group + torch.arange(group), dim=1)
    return torch.cat([own[:, None], drawn.gather(1, order[:, :group - 1])], 1).to(own_image.device)


def select(logprobs: Tensor, text_features: Tensor, own_image: Tensor, image_features: Tensor, *,
           beta: float, scale: float, group: int, seed: int, bonus: Tensor | None = None) -> Selection:
    """Rerank each caption's candidates with its own image, then rank that image among `group`
    images (its own and `group - 1` random others) by the chosen translation's CLIP similarity.

    `own_image [N]`: index of each caption's image in `image_features [I,F]`. Ties count against
    the caption (a translation that cannot tell its image from another is not kept)."""
    n = logprobs.shape[0]
    choice = rerank(logprobs, text_features, image_features[own_image], beta=beta, scale=scale, bonus=bonus)
    chosen = F.normalize(text_features[torch.arange(n), choice].float(), dim=-1, eps=1e-6)
    images = F.normalize(image_features.float(), dim=-1, eps=1e-6)
    sims = torch.einsum("nf,ngf->ng", chosen, images[image_groups(own_image, len(images), group, seed=seed)])
    rank = (sims[:, 1:] >= sims[:, :1]).sum(1)
    return Selection(choice=choice, image_rank=rank, image_prob=(scale * sims).softmax(1)[:, 0])
