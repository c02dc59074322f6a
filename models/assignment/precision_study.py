"""Reduced-precision study (thesis §6.5) and the score distributions it and the benchmark use.

Each cell casts reward matrices to a low-precision dtype and back (as the thesis did: storage
in low precision, arithmetic in fp32), solves them with each method and scores the answer
against the exact assignment of the *original* fp32 matrix with the tie-aware F1_LSA and the
regret measured on the original values. Quantisation creates ties (fp8 e4m3 keeps 3 mantissa
bits), so even "exact" on the quantised matrix — the thesis' "stock" column — loses F1.

Distributions (all rewards, maximised):
    uniform      U(0, 1)
    normal       N(0, 1)
    half_normal  |N(0, 0.3)|                       (thesis §6.3.5)
    detr         1 - |N(0, 0.2)|                   (thesis §6.5.2, DETR matcher costs, negated)
    bertscore    cosines of contextual token embeddings of two paraphrases (`bertscore_like`)
"""
from __future__ import annotations

import torch
from torch import Tensor

from .metrics import assignment_metrics
from .solvers import solve

PRECISIONS: dict[str, torch.dtype] = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
PRECISIONS.update({name: getattr(torch, attr) for name, attr in
                   (("fp8_e4m3", "float8_e4m3fn"), ("fp8_e5m2", "float8_e5m2")) if hasattr(torch, attr)})


def bertscore_like(n: int, size: int, generator: torch.Generator, *, dim: int = 384, vocab: int = 1000) -> Tensor:
    """[n, size, size] cosine similarities between the token embeddings of sentence pairs.

    Built like MiniLM/BERT token cosines: embeddings share a common direction (anisotropy, so
    unrelated tokens still score ~0.3); word types follow a Zipf law (frequent words repeat
    inside a sentence — the near-ties that make assignment hard); each token adds context
    noise. The candidate keeps 70% of the reference's words, swaps 20% for a near-synonym and
    10% for a random word, in a locally shuffled order. Values fall mostly in 0.2-0.9.
    """
    common = torch.randn(dim, generator=generator)
    common = common / common.norm()
    types = torch.randn(vocab, dim, generator=generator) / dim ** 0.5
    zipf = 1.0 / torch.arange(1, vocab + 1, dtype=torch.float)

    def embed(word: Tensor) -> Tensor:  # [n, size] word ids -> unit token embeddings
        context = 0.45 * torch.randn(*word.shape, dim, generator=generator) / dim ** 0.5
        e = 0.65 * common + types[word] + context
        return e / e.norm(dim=-1, keepdim=True)

    ref_words = torch.multinomial(zipf, n * size, replacement=True, generator=generator).view(n, size)
    roll = torch.rand(n, size, generator=generator)
    random_words = torch.multinomial(zipf, n * size, replacement=True, generator=generator).view(n, size)
    cand_words = torch.where(roll < 0.9, ref_words, random_words)
    synonym = (roll >= 0.7) & (roll < 0.9)
    # local reordering: sort positions by position + noise
    order = (torch.arange(size).float() + 2.0 * torch.randn(n, size, generator=generator)).argsort(1)
    ref = embed(ref_words)
    cand = embed(cand_words)
    shift = 0.6 * torch.randn(n, size, dim, generator=generator) / dim ** 0.5  # synonym: nearby type
    cand = torch.where(synonym.unsqueeze(-1), cand + shift, cand)
    cand = (cand / cand.norm(dim=-1, keepdim=True)).gather(1, order.unsqueeze(-1).expand(n, size, dim))
    return ref @ cand.transpose(1, 2)


def sample_scores(distribution: str, n: int, h: int, w: int, generator: torch.Generator) -> Tensor:
    """[n, h, w] fp32 reward matrices from one of the distributions in the module docstring."""
    if distribution == "uniform":
        return torch.rand(n, h, w, generator=generator)
    if distribution == "normal":
        return torch.randn(n, h, w, generator=generator)
    if distribution == "half_normal":
        return 0.3 * torch.randn(n, h, w, generator=generator).abs()
    if distribution == "detr":
        return 1 - 0.2 * torch.randn(n, h, w, generator=generator).abs()
    if distribution == "bertscore":
        if h != w:
            raise ValueError(f"bertscore_like matrices are square, got {h}x{w}")
        return bertscore_like(n, h, generator)
    raise ValueError(f"unknown distribution {distribution!r}; expected uniform, normal, half_normal, detr or bertscore")


def quantize(scores: Tensor, precision: str) -> Tensor:
    """Round `scores` to `precision` (a key of PRECISIONS) and return them as fp32."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; this torch supports {sorted(PRECISIONS)}")
    return scores.to(PRECISIONS[precision]).float()


def distinct_fraction(scores: Tensor) -> float:
    """Mean fraction of distinct values per item (1.0 = no ties at all)."""
    flat = scores.flatten(1).sort(1).values
    distinct = 1 + (flat.diff(dim=1) != 0).sum(1)
    return (distinct.float() / flat.shape[1]).mean().item()


def precision_study(*, methods: list[str], sizes: list[int], distributions: list[str], precisions: list[str],
                    n_items: int = 64, seed: int = 0) -> list[dict]:
    """One row per (distribution, size, dtype, method): F1_LSA, exact-rate, regret and the
    fraction of tied values after rounding."""
    rows = []
    for distribution in distributions:
        for size in sizes:
            generator = torch.Generator().manual_seed(seed)
            scores = sample_scores(distribution, n_items, size, size, generator)
            reference = solve(scores, method="exact")
            for precision in precisions:
                low = quantize(scores, precision)
                ties = 1.0 - distinct_fraction(low)
                for method in methods:
                    got = solve(low, method=method)  # judged on the original values below
                    stats = assignment_metrics(got, reference, scores).summary()
                    rows.append({"distribution": distribution, "size": size, "dtype": precision,
                                 "method": method, "tied_values": ties, **stats})
    return rows
