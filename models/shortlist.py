"""A corpus shortlist of CLIP's BPE vocabulary as a scratch student's decoder vocabulary.

A scratch student speaks CLIP BPE (DESIGN §4.2). With all 49,408 ids every decoding step of the
gumbel splice costs three `[B, V]` products (LM head, `@ E`, feedback) and a dozen `[B, V]`
element-wise passes, forward, recomputed and backward: on a CPU that is most of a training step.
A target language corpus uses a few hundred to a few thousand of those ids (the English captions
and translations of the training split), so the decoder predicts only those — a lexical
shortlist, as Marian's own shortlists do for speed. Every output token is still a CLIP token:
student id i is CLIP id `clip_ids[i]`, and its CLIP input embedding is row `clip_ids[i]` of
CLIP's token embedding (gathered on use, so an unfrozen text tower trains through it).
`--target-vocab full` keeps the whole vocabulary.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

from models.student import CLIP_EOT_ID, CLIP_PAD_ID, CLIP_SOT_ID


class ClipShortlist(nn.Module):
    """Student ids `0..V'-1` ↔ CLIP ids `clip_ids` (sorted; always holds pad, SOT and EOT)."""

    def __init__(self, clip_ids: Sequence[int] | Tensor, clip_vocab_size: int = 49408):
        super().__init__()
        ids = torch.as_tensor(list(clip_ids) if not isinstance(clip_ids, Tensor) else clip_ids, dtype=torch.long)
        ids = torch.unique(torch.cat([ids, torch.tensor([CLIP_PAD_ID, CLIP_SOT_ID, CLIP_EOT_ID])]))
        if ids.min() < 0 or ids.max() >= clip_vocab_size:
            raise ValueError(f"shortlist ids must be CLIP ids in [0, {clip_vocab_size})")
        self.register_buffer("clip_ids", ids)
        inverse = torch.full((clip_vocab_size,), -1, dtype=torch.long)
        inverse[ids] = torch.arange(len(ids))
        self.register_buffer("inverse", inverse, persistent=False)
        self._embedding: tuple[nn.Embedding, ...] = ()

    @classmethod
    def from_texts(cls, clip_tokenizer: Callable, texts: Sequence[str], batch_size: int = 1024) -> ClipShortlist:
        """Every CLIP id that open_clip's tokenizer produces for `texts` (plus the specials)."""
        seen = torch.zeros(49408, dtype=torch.bool)
        texts = [t for t in texts if t.strip()]
        for s in range(0, len(texts), batch_size):
            seen[clip_tokenizer(list(texts[s:s + batch_size])).flatten()] = True
        return cls(seen.nonzero().flatten())

    def __len__(self) -> int:
        return len(self.clip_ids)

    def special_ids(self) -> tuple[int, int, int]:
        """(SOT, EOT, pad) as student ids."""
        return tuple(int(self.inverse[i]) for i in (CLIP_SOT_ID, CLIP_EOT_ID, CLIP_PAD_ID))

    def to_clip(self, ids: Tensor) -> Tensor:
        return self.clip_ids[ids]

    def from_clip(self, clip_ids: Tensor) -> Tensor:
        """Student ids of CLIP ids; -1 for ids outside the shortlist."""
        return self.inverse.to(clip_ids.device)[clip_ids]

    def bind(self, token_embedding: nn.Embedding) -> ClipShortlist:
        """Read `weight` from this CLIP token embedding (kept as a reference, not a submodule)."""
        self._embedding = (token_embedding,)
        return self

    @property
    def weight(self) -> Tensor:
        """`[V', W]`: CLIP input embeddings of the shortlisted ids (the token → CLIP matrix E)."""
        if not self._embedding:
            raise RuntimeError("bind(token_embedding) the shortlist to a CLIP text tower first")
        return self._embedding[0].weight[self.clip_ids]
