"""EOT finders: where the CLIP text tower pools when the input is not token ids (docs/design.md §4.1).

open_clip pools the final-layer state at the `<|endoftext|>` position, found as `text.argmax(-1)`
because EOT (49407) is the largest id. A student's output has no ids to take an argmax of, so:

- `ids`: the exact position, known from token ids (references, hard decoded tokens).
- `prob`: the first position whose EOT probability exceeds `threshold` (0.5), else the most
  likely one — the student's own signal when it emits CLIP-vocabulary tokens.
- `argmax`: `argmax_s(x_s · e_eot)` over the *input-side* token embeddings `x` (before the
  positional embedding) and the detached EOT embedding `e_eot` (thesis Fig. 3.19).
- `gumbel`: `Σ_s gumbel_softmax(x · e_eot / τ, hard=True)_s · h_s` — straight-through, so the
  choice of position receives a gradient (thesis Fig. 3.19).

Two bugs of the thesis code are avoided: scores compare input-side embeddings with the EOT
*input* embedding (never final-layer states against it), and `gumbel` means Gumbel.
`ids`, `prob` and `argmax` choose an index and pass no gradient to the choice.
"""
from __future__ import annotations

import torch
from torch import Tensor

from models.splice import gumbel_softmax_st

EOT_MODES = ("ids", "prob", "argmax", "gumbel")


def eot_index_from_ids(ids: Tensor, *, pool_type: str = "argmax", eot_id: int | None = None) -> Tensor:
    """open_clip's pooling position for token ids `[B,S]`: `argmax` = position of the largest id
    (first on ties); `eos` = first position of `eot_id` (0 when absent, as open_clip does)."""
    if pool_type == "argmax":
        return ids.argmax(-1)
    if pool_type == "eos":
        if eot_id is None:
            raise ValueError("pool_type 'eos' needs eot_id")
        return (ids == eot_id).int().argmax(-1)
    raise ValueError(f"EOT pooling is defined for pool_type 'argmax' or 'eos', not {pool_type!r}")


def first_true(mask: Tensor) -> Tensor:
    """Index of the first True along the last axis of `mask [B,S]`; the last index where none is."""
    index = mask.int().argmax(-1)
    return torch.where(mask.any(-1), index, mask.shape[-1] - 1)


def eot_index_from_prob(eot_prob: Tensor, *, threshold: float = 0.5, candidates: Tensor | None = None) -> Tensor:
    """First position with `eot_prob > threshold`; where there is none, the position of the highest."""
    prob = eot_prob.detach().float()
    if candidates is not None:
        prob = prob.masked_fill(~candidates, -1.0)
    above = prob > threshold
    return torch.where(above.any(-1), first_true(above), prob.argmax(-1))


class EOTFinder:
    """Pool final-layer states `[B,S,W] → [B,W]` at the EOT position chosen by `mode`.

    `tau` is the Gumbel temperature (mode `gumbel`), `threshold` the probability threshold (mode
    `prob`). Noise is drawn on every `gumbel` call; use `argmax` for a deterministic choice."""

    def __init__(self, mode: str, *, tau: float = 1.0, threshold: float = 0.5):
        if mode not in EOT_MODES:
            raise ValueError(f"unknown EOT finder {mode!r}; choose one of {EOT_MODES}")
        if tau <= 0 or not 0 < threshold < 1:
            raise ValueError(f"need tau > 0 and 0 < threshold < 1, got tau={tau}, threshold={threshold}")
        self.mode, self.tau, self.threshold = mode, tau, threshold

    def __repr__(self) -> str:
        return f"EOTFinder({self.mode!r}, tau={self.tau}, threshold={self.threshold})"

    def select(
        self,
        *,
        embeddings: Tensor | None = None,
        eot_embedding: Tensor | None = None,
        eot_index: Tensor | None = None,
        eot_prob: Tensor | None = None,
        candidates: Tensor | None = None,
    ) -> Tensor:
        """The choice: a long index `[B]` (ids, prob, argmax) or straight-through one-hot weights
        `[B,S]` (gumbel). `candidates [B,S]` (bool) restricts prob / argmax / gumbel to some positions."""
        if self.mode == "ids":
            return _need(eot_index, "eot_index", self.mode).long()
        if self.mode == "prob":
            prob = _need(eot_prob, "eot_prob", self.mode)
            return eot_index_from_prob(prob, threshold=self.threshold, candidates=candidates)
        x = _need(embeddings, "embeddings", self.mode)
        e = _need(eot_embedding, "eot_embedding", self.mode)
        scores = x.float() @ e.detach().float()
        if candidates is not None:
            if not candidates.any(-1).all():
                raise ValueError("every sequence needs at least one candidate EOT position")
            scores = scores.masked_fill(~candidates, float("-inf"))
        if self.mode == "argmax":
            return scores.detach().argmax(-1)
        weights, _ = gumbel_softmax_st(scores, self.tau)
        return weights

    def pool(self, hidden: Tensor, **evidence: Tensor | None) -> Tensor:
        """`hidden [B,S,W]` pooled at the chosen position; `evidence` as in `select`."""
        choice = self.select(**evidence)
        if choice.dtype == torch.long:
            return hidden[torch.arange(hidden.shape[0], device=hidden.device), choice]
        return torch.einsum("bs,bsw->bw", choice.to(hidden.dtype), hidden)


def _need(value: Tensor | None, name: str, mode: str) -> Tensor:
    if value is None:
        raise ValueError(f"EOT finder {mode!r} needs {name}")
    return value
