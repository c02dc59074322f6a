"""Splices: how the student's decoder output reaches the CLIP text tower (docs/design.md §4.2).

| kind     | tensor into CLIP                                   | gradient          |
|----------|----------------------------------------------------|-------------------|
| `linear` | decoder hidden → Linear → CLIP width               | yes               |
| `gumbel` | straight-through `gumbel_softmax(logits, τ) @ E`   | soft gradient     |
| `soft`   | `softmax(logits / τ) @ E`                          | yes               |
| `argmax` | `one_hot(argmax logits) @ E` (an embedding lookup) | none              |

`E` is the `[V, W]` matrix taking a student token to CLIP input-embedding space: CLIP's own
`token_embedding.weight` (or the rows of a shortlist of it) for a scratch student, whose decoder
vocabulary is CLIP BPE, a trainable bridge for a pretrained one: the student's `TargetVocab.weight`
(`models.target_vocab`).

Memory discipline (V = 49408): the token splices never hold a `B×S×V` tensor. Hidden states are
processed in chunks of sequence positions; each chunk computes logits → probabilities → `@ E`
inside `torch.utils.checkpoint`, so only the chunk's `[B, c, W]` result survives the forward pass
and the chunk is recomputed (same Gumbel noise: checkpoint restores the RNG state) in backward.
Vocabularies under `RECOMPUTE_MIN_VOCAB` ids (a corpus shortlist of CLIP's BPE) are not recomputed:
there a `B×S×V` tensor is smaller than the decoder's own activations (B=32, S=77, V=4096: 40 MB),
and recomputation would only cost time. The discipline is about V = 49,408.

Gumbel noise is drawn whenever the kind is `gumbel`, in train and eval mode alike: use the
`argmax` kind for deterministic decoding.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

SPLICES = ("linear", "gumbel", "soft", "argmax")
TOKEN_KINDS = ("gumbel", "soft", "argmax")
CHUNK_ELEMENTS = 2**22  # elements of one [B, c, V] fp32 chunk tensor (16 MiB) when chunk_size is automatic
RECOMPUTE_MIN_VOCAB = 4096  # smaller vocabularies keep chunk activations for backward instead of recomputing


def gumbel_noise(shape: tuple[int, ...], device: torch.device | str = "cpu") -> Tensor:
    """Standard Gumbel(0, 1) samples `-log(-log U)`, fp32, finite by construction (U ≥ tiny)."""
    u = torch.rand(shape, device=device, dtype=torch.float32).clamp_min_(torch.finfo(torch.float32).tiny)
    return u.log_().neg_().log_().neg_()


def straight_through(hard: Tensor, soft: Tensor) -> Tensor:
    """Forward value exactly `hard`; gradient flows to `soft` as if `soft` had been used.

    `soft - soft.detach()` is exactly zero for finite values, so no rounding touches `hard`."""
    return hard + (soft - soft.detach())


def gumbel_softmax_st(logits: Tensor, tau: float, *, dim: int = -1, noise: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Straight-through Gumbel-softmax: `(one-hot sample with soft gradient, sampled index)`.

    Forward is the one-hot of `argmax(logits + g)`; backward is the gradient of
    `softmax((logits + g) / tau)` (Jang et al. 2017). Pass `noise` to fix g."""
    if tau <= 0:
        raise ValueError(f"Gumbel temperature must be > 0, got {tau}")
    if noise is None:
        noise = gumbel_noise(logits.shape, logits.device)
    scores = (logits.float() + noise) / tau
    soft = scores.softmax(dim)
    index = scores.argmax(dim)
    hard = torch.zeros_like(soft).scatter_(dim, index.unsqueeze(dim), 1.0)
    return straight_through(hard, soft), index


@dataclass(frozen=True)
class TemperatureSchedule:
    """Gumbel / softmax temperature as a function of the training step.

    `exponential`: τ = max(end, start·exp(-rate·step)) with the rate reaching `end` at `steps`
    (Jang et al.'s annealing); `linear`: straight line from start to end over `steps`;
    `constant`: always `start`."""

    start: float = 1.0
    end: float = 0.5
    steps: int = 10_000
    kind: str = "exponential"

    def __post_init__(self):
        if self.kind not in ("exponential", "linear", "constant"):
            raise ValueError(f"unknown temperature schedule {self.kind!r}; use exponential, linear or constant")
        if self.start <= 0 or self.end <= 0 or self.steps <= 0:
            raise ValueError(f"temperatures and steps must be > 0, got {self}")

    def __call__(self, step: int) -> float:
        if self.kind == "constant":
            return self.start
        progress = min(max(step, 0), self.steps) / self.steps
        if self.kind == "linear":
            return self.start + (self.end - self.start) * progress
        return self.start * math.exp(math.log(self.end / self.start) * progress)


@dataclass
class SpliceOutput:
    """What one splice call produces for `[B, s]` decoder positions."""

    embeddings: Tensor  # [B, s, W] CLIP input embeddings (before CLIP's positional embedding)
    tokens: Tensor  # [B, s] long: sampled (gumbel) or argmax tokens, for reading and stopping
    eot_prob: Tensor  # [B, s] the student's probability of its end token (detached, τ = 1)
    feedback: Tensor | None  # [B, s, d] decoder input embeddings of the chosen tokens, if asked for


def _token_chunk(h: Tensor, weight: Tensor, bias: Tensor | None, suppress: Tensor | None, *matrices: Tensor,
                 kind: str, tau: float, eot_id: int) -> tuple[Tensor, ...]:
    """logits → token distribution → `@ M` for each matrix, for one chunk of positions."""
    logits = F.linear(h, weight, bias).float()
    if suppress is not None:
        logits = logits.masked_fill(suppress, float("-inf"))
    with torch.no_grad():
        eot_prob = (logits[..., eot_id] - logits.logsumexp(-1)).exp()
    if kind == "argmax":
        with torch.no_grad():
            index = logits.argmax(-1)
            return (*(F.embedding(index, m) for m in matrices), index, eot_prob)
    if kind == "gumbel":
        y, index = gumbel_softmax_st(logits, tau)
    else:
        y, index = (logits / tau).softmax(-1), logits.argmax(-1)
    return (*(y.to(m.dtype) @ m for m in matrices), index, eot_prob)


def project_tokens(
    hidden: Tensor,
    weight: Tensor,
    bias: Tensor | None,
    matrices: tuple[Tensor, ...],
    *,
    kind: str,
    tau: float = 1.0,
    eot_id: int,
    suppress: Tensor | None = None,
    chunk_size: int | None = None,
) -> tuple[list[Tensor], Tensor, Tensor]:
    """Apply the LM head `(weight, bias)` to `hidden [B,S,d]`, turn logits into a token distribution
    of `kind`, and multiply it into each of `matrices` (`[V, *]`), chunk by chunk over S.

    Returns `([hidden-position embeddings per matrix], tokens [B,S], eot_prob [B,S])`. `suppress`
    (bool `[V]` or broadcastable to `[B,S,V]`) marks tokens that may never be chosen."""
    if kind not in TOKEN_KINDS:
        raise ValueError(f"unknown token distribution {kind!r}; choose one of {TOKEN_KINDS}")
    if hidden.dim() != 3:
        raise ValueError(f"hidden states must be [B, S, d], got shape {tuple(hidden.shape)}")
    batch, length, _ = hidden.shape
    vocab = weight.shape[0]
    for m in matrices:
        if m.shape[0] != vocab:
            raise ValueError(f"embedding matrix has {m.shape[0]} rows but the LM head has {vocab} tokens")
    chunk = chunk_size or max(1, CHUNK_ELEMENTS // max(1, batch * vocab))
    # Small (shortlisted) vocabularies keep their chunk activations instead of recomputing them:
    # see RECOMPUTE_MIN_VOCAB.
    recompute = kind != "argmax" and torch.is_grad_enabled() and vocab >= RECOMPUTE_MIN_VOCAB
    pieces = []
    for start in range(0, length, chunk):
        args = (hidden[:, start:start + chunk], weight, bias, suppress, *matrices)
        kwargs = dict(kind=kind, tau=tau, eot_id=eot_id)
        pieces.append(checkpoint(_token_chunk, *args, use_reentrant=False, **kwargs) if recompute
                      else _token_chunk(*args, **kwargs))
    outs = [torch.cat(parts, dim=1) for parts in zip(*pieces)]
    return outs[:-2], outs[-2], outs[-1]


class Splice(nn.Module):
    """One splice kind with its temperature `tau` (set it from a `TemperatureSchedule` each step).

    The LM head, the token → CLIP matrix `E` and the decoder's own input embedding are passed to
    `forward` rather than owned, so the student, the bridge and CLIP keep their parameters; only the
    `linear` splice has weights of its own (`self.linear`). In free-running decoding the chosen
    tokens are fed back to the decoder: token splices feed back their own distribution, `linear`
    feeds back `feedback_kind` tokens (straight-through Gumbel by default, docs/design.md §4.2)."""

    def __init__(self, kind: str, *, tau: float = 1.0, feedback_kind: str = "gumbel", chunk_size: int | None = None,
                 in_features: int | None = None, out_features: int | None = None):
        super().__init__()
        if kind not in SPLICES:
            raise ValueError(f"unknown splice {kind!r}; choose one of {SPLICES}")
        if feedback_kind not in TOKEN_KINDS:
            raise ValueError(f"unknown feedback kind {feedback_kind!r}; choose one of {TOKEN_KINDS}")
        self.kind, self.tau, self.feedback_kind, self.chunk_size = kind, tau, feedback_kind, chunk_size
        self.linear = None
        if kind == "linear":
            if not (in_features and out_features):
                raise ValueError("the linear splice needs in_features (decoder d_model) and out_features (CLIP width)")
            self.linear = nn.Linear(in_features, out_features)

    @classmethod
    def for_student(cls, kind: str, student: nn.Module, embedding: Tensor, **kwargs) -> Splice:
        """A splice for a `MarianMTModel` whose tokens map to CLIP space by `embedding [V, W]`;
        the `linear` splice starts as the composition `lm_head ∘ E` (see `init_linear`)."""
        weight, bias = lm_head_of(student)
        splice = cls(kind, in_features=weight.shape[1], out_features=embedding.shape[1], **kwargs)
        if kind == "linear":
            splice.init_linear(weight, bias, embedding)
        return splice

    @torch.no_grad()
    def init_linear(self, lm_weight: Tensor, lm_bias: Tensor | None, embedding: Tensor) -> None:
        """Set the linear splice to `h ↦ (h·W_lmᵀ + b) · E`, i.e. weight `Eᵀ·W_lm`, bias `b·E`:
        adjacent linear maps (LM head, one-hot → embedding) compose into one (thesis §3.2.1)."""
        if self.linear is None:
            raise ValueError(f"init_linear applies to the linear splice, not {self.kind!r}")
        e = embedding.detach().double()
        self.linear.weight.copy_(e.T @ lm_weight.detach().double())
        if lm_bias is None:
            self.linear.bias.zero_()
        else:
            self.linear.bias.copy_(lm_bias.detach().double() @ e)

    def forward(
        self,
        hidden: Tensor,
        lm_weight: Tensor,
        lm_bias: Tensor | None,
        embedding: Tensor,
        *,
        eot_id: int,
        suppress: Tensor | None = None,
        feedback: Tensor | None = None,
    ) -> SpliceOutput:
        """Splice decoder states `hidden [B,S,d]` into CLIP input embeddings `[B,S,W]`.

        `lm_weight [V,d]`, `lm_bias [V]`: the student's LM head; `embedding [V,W]`: token → CLIP;
        `eot_id`: the student's end token; `feedback [V,d]`: the decoder's input embedding matrix,
        when the chosen tokens must be fed back (free-running)."""
        common = dict(tau=self.tau, eot_id=eot_id, suppress=suppress, chunk_size=self.chunk_size)
        if self.kind == "linear":
            matrices = () if feedback is None else (feedback,)
            kind = "argmax" if feedback is None else self.feedback_kind
            fed, tokens, eot_prob = project_tokens(hidden, lm_weight, lm_bias, matrices, kind=kind, **common)
            return SpliceOutput(self.linear(hidden), tokens, eot_prob, fed[0] if fed else None)
        matrices = (embedding,) if feedback is None else (embedding, feedback)
        outs, tokens, eot_prob = project_tokens(hidden, lm_weight, lm_bias, matrices, kind=self.kind, **common)
        return SpliceOutput(outs[0], tokens, eot_prob, outs[1] if feedback is not None else None)

    def extra_repr(self) -> str:
        return f"kind={self.kind!r}, tau={self.tau}, feedback_kind={self.feedback_kind!r}"


def lm_head_of(student: nn.Module) -> tuple[Tensor, Tensor | None]:
    """`(weight [V,d], bias [V])` of a `MarianMTModel`'s output layer (bias = `final_logits_bias`)."""
    bias = getattr(student, "final_logits_bias", None)
    return student.get_output_embeddings().weight, (bias.reshape(-1) if bias is not None else None)
