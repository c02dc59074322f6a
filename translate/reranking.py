"""The options of test-time reranking (`translate --rerank clip`): names, defaults, validation.

Kept free of torch so that `python -m translate` checks them before anything heavy is imported.
The rule itself is `models.grounded_selection.rerank`; `Translator.rerank_clip` applies it.
"""
from __future__ import annotations

import math

from data_prep.errors import InputError

RERANKERS = ("clip",)
DEFAULT_RERANK_SIZE = 8
DEFAULT_RERANK_BETA = 0.2


def resolve_rerank_size(num_beams: int = 1, size: int | None = None) -> int:
    """The n-best size of reranking: `size`, else the beam width `num_beams` when it is above 1,
    else `DEFAULT_RERANK_SIZE`. The n-best list is one beam search of that width, so an explicit
    beam width that differs from `size` is refused rather than ignored."""
    if size is not None and num_beams > 1 and size != num_beams:
        raise InputError(f"reranking reads the n-best list of one beam search as wide as the list: got "
                         f"--num-beams {num_beams} and --rerank-size {size}; give one of them, or equal values")
    if size is None:
        size = num_beams if num_beams > 1 else DEFAULT_RERANK_SIZE
    if size < 1:
        raise InputError(f"the rerank size must be >= 1, got {size}")
    return size


def check_beta(beta: float) -> float:
    """The weight of the image score: a finite number >= 0 (0 keeps the student's best)."""
    if not (math.isfinite(beta) and beta >= 0):
        raise InputError(f"the rerank beta must be a finite number >= 0, got {beta}")
    return float(beta)


def rerank_settings(method: str | None, *, num_beams: int = 1, size: int | None = None,
                    beta: float | None = None) -> dict | None:
    """`{"method", "size", "beta"}` for `method` (None: no reranking, and then `size` and `beta`
    must be unset: an option that would do nothing is refused)."""
    if method is None:
        if size is not None or beta is not None:
            raise InputError("a rerank size or beta takes effect only with reranking (--rerank clip)")
        return None
    if method not in RERANKERS:
        raise InputError(f"unknown reranker {method!r}; choose from {', '.join(RERANKERS)}")
    return {"method": method, "size": resolve_rerank_size(num_beams, size),
            "beta": check_beta(DEFAULT_RERANK_BETA if beta is None else beta)}
