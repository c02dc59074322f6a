"""The CLIP text tower as a function of token distributions or input embeddings (docs/design.md §4.1).

open_clip's `encode_text(ids)` is `token_embedding(ids)` + positional embedding → causal
transformer → `ln_final` → pool at EOT → `text_projection`. An embedding lookup passes no gradient
to whatever produced the ids, so this wrapper replaces the lookup with `p @ E` for a distribution
`p [B,S,V]` (one-hot, straight-through Gumbel or soft; E = `token_embedding.weight`) or accepts the
input embeddings `[B,S,W]` directly (linear splice), and pools with an `EOTFinder`.

Invariant, tested against open_clip: `encode_distribution(one_hot(ids), eot="ids", ...)` equals
`clip.encode_text(ids)`.

Supported towers: open_clip's `CLIP` (ViT-B-32 and friends, the tiny configs) and `CustomTextCLIP`
/ bare `TextTransformer` towers pooled at an EOT token (`pool_type` 'argmax' or 'eos'), causal or
not. Hugging Face text towers, CoCa's appended class token, padding masks and 'first'/'last'/'none'
pooling are rejected with an error. The wrapper reads the tower's parts from CLIP at each use: it
neither copies nor registers them, so a module holding both lists each parameter once (a
checkpoint has no aliased tensors).
"""
from __future__ import annotations

import torch.nn.functional as F
from open_clip.transformer import TextTransformer
from torch import Tensor, nn

from models.eot import EOTFinder, eot_index_from_ids


class _FromText:
    """A part of the wrapped text path (`tower._text[0].<name>`), looked up at each use."""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, tower, owner: type | None = None):
        return self if tower is None else getattr(tower._text[0], self.name)


class DistributionTextTower(nn.Module):
    """Encode token ids, distributions over CLIP's vocabulary, or CLIP input embeddings.

    `sot_id`, `eot_id`, `pad_id` default to open_clip's BPE layout: the two special tokens are the
    last ids (49406, 49407) and padding is 0; an 'eos'-pooled tower uses its own `eos_id`."""

    def __init__(self, clip: nn.Module, *, sot_id: int | None = None, eot_id: int | None = None, pad_id: int = 0):
        super().__init__()
        text, pool_type, eos_id = _text_parts(clip)
        self._text = (text,)  # a reference, not a submodule: the parameters stay CLIP's, listed once
        self.pool_type = pool_type
        self.vocab_size, self.width = self.token_embedding.weight.shape
        self.context_length = self.positional_embedding.shape[0]
        self.eot_id = eot_id if eot_id is not None else (eos_id if pool_type == "eos" else self.vocab_size - 1)
        self.sot_id = sot_id if sot_id is not None else self.vocab_size - 2
        self.pad_id = pad_id

    # the text path's parts, read from CLIP at each use (so a moved or reloaded CLIP is what runs)
    token_embedding: nn.Embedding = _FromText()
    positional_embedding: nn.Parameter = _FromText()
    transformer: nn.Module = _FromText()
    ln_final: nn.Module = _FromText()
    text_projection: nn.Module | nn.Parameter | None = _FromText()
    attn_mask: Tensor | None = _FromText()

    def encode_ids(self, ids: Tensor, *, normalize: bool = False) -> Tensor:
        """Token ids `[B,S]` → features `[B,F]`, pooled where open_clip pools."""
        index = eot_index_from_ids(ids, pool_type=self.pool_type, eot_id=self.eot_id)
        return self._encode(self.token_embedding(ids), EOTFinder("ids"), dict(eot_index=index), normalize)

    def encode_distribution(
        self,
        p: Tensor,
        *,
        eot: str | EOTFinder,
        eot_index: Tensor | None = None,
        eot_prob: Tensor | None = None,
        candidates: Tensor | None = None,
        normalize: bool = False,
    ) -> Tensor:
        """Distributions `p [B,S,V]` over CLIP's vocabulary → features `[B,F]`, embedded as `p @ E`.

        `eot`: an `EOTFinder` or its mode; `ids` needs `eot_index [B]`; `prob` uses `eot_prob [B,S]`,
        by default `p[..., eot_id]`; `argmax`/`gumbel` score the embedded inputs."""
        if p.dim() != 3 or p.shape[-1] != self.vocab_size:
            raise ValueError(f"expected a distribution [B, S, {self.vocab_size}], got shape {tuple(p.shape)}")
        weight = self.token_embedding.weight
        if eot_prob is None:
            eot_prob = p[..., self.eot_id]
        return self.encode_embeddings(p.to(weight.dtype) @ weight, eot=eot, eot_index=eot_index, eot_prob=eot_prob,
                                      candidates=candidates, normalize=normalize)

    def encode_embeddings(
        self,
        x: Tensor,
        *,
        eot: str | EOTFinder,
        eot_index: Tensor | None = None,
        eot_prob: Tensor | None = None,
        candidates: Tensor | None = None,
        normalize: bool = False,
    ) -> Tensor:
        """CLIP input embeddings `x [B,S,W]` (token embeddings, before the positional embedding,
        SOT at position 0) → features `[B,F]`. Evidence for the EOT finder as in `encode_distribution`."""
        if x.dim() != 3 or x.shape[-1] != self.width:
            raise ValueError(f"expected input embeddings [B, S, {self.width}], got shape {tuple(x.shape)}")
        finder = eot if isinstance(eot, EOTFinder) else EOTFinder(eot)
        evidence = dict(eot_index=eot_index, eot_prob=eot_prob, candidates=candidates)
        return self._encode(x, finder, evidence, normalize)

    def _encode(self, x: Tensor, finder: EOTFinder, evidence: dict, normalize: bool) -> Tensor:
        length = x.shape[1]
        if length > self.context_length:
            raise ValueError(f"sequence of {length} positions exceeds CLIP's context length {self.context_length}")
        cast = self.transformer.get_cast_dtype()
        h = x.to(cast) + self.positional_embedding[:length].to(cast)
        mask = None if self.attn_mask is None else self.attn_mask[:length, :length].to(h.device)
        h = self.ln_final(self.transformer(h, attn_mask=mask))
        pooled = finder.pool(h, embeddings=x, eot_embedding=self.token_embedding.weight[self.eot_id], **evidence)
        if isinstance(self.text_projection, nn.Linear):
            pooled = self.text_projection(pooled)
        elif self.text_projection is not None:
            pooled = pooled @ self.text_projection
        return F.normalize(pooled, dim=-1) if normalize else pooled


def _text_parts(clip: nn.Module) -> tuple[nn.Module, str, int | None]:
    """The module owning the text path, its pool type and EOS id; a clear error for other towers."""
    if isinstance(clip, TextTransformer) or isinstance(getattr(clip, "text", None), TextTransformer):
        text = clip if isinstance(clip, TextTransformer) else clip.text  # bare tower or CustomTextCLIP
        if text.cls_emb is not None or text.use_pad_mask:
            raise NotImplementedError("text towers with an appended class token (CoCa) or padding masks are not supported")
        pool_type, eos_id = text.pool_type, text.eos_id
    elif hasattr(clip, "text"):
        raise NotImplementedError(
            f"text tower {type(clip.text).__name__} is not supported: distribution inputs need open_clip's "
            f"TextTransformer (token_embedding + positional_embedding + transformer)"
        )
    elif all(hasattr(clip, a) for a in ("token_embedding", "positional_embedding", "transformer", "ln_final")):
        text, pool_type, eos_id = clip, clip.text_pool_type, getattr(clip, "text_eos_id", None)  # open_clip CLIP
    else:
        raise TypeError(f"expected an open_clip CLIP / CustomTextCLIP / TextTransformer, got {type(clip).__name__}")
    if pool_type not in ("argmax", "eos"):
        raise NotImplementedError(f"text pool_type {pool_type!r} is not supported; only EOT pooling ('argmax', 'eos')")
    return text, pool_type, eos_id
