"""n-way similarities s(v_1, …, v_n): the thesis registry v0..v16 plus `gram` and `pairwise`.

Thesis chapter 5 numbering is kept for reproduction (docs/design.md §4.3). Several numbers are the same
function written differently; they are registered as aliases (`ALIASES`) with the identity in
the docstring, so nobody sweeps duplicates. Notation for one tuple: S = Σ_k v_k,
Q = Σ_k ‖v_k‖², N = ‖S‖², P = Σ_{k<l} v_k·v_l (so N = Q + 2P), v̄ = S/n; per feature f,
d_f = Σ_k v_kf² − (Σ_k v_kf)²/n ≥ 0 (n × the variance of the n values). With unit vectors
Q = n and the pairwise-sum family is a function of P alone.

Every similarity has three evaluators, all giving the same numbers:
- `tuples(V)`: the definition, on stacked vectors V [..., n, F] (also the test oracle);
- `fibres(X, rows)`: the n·b rows through the diagonal, X [n, B, F] -> [n, b, B] with
  out[k, a, j] = s at the tuple (r, …, r, j at position k, r, …, r), r = rows[a]. Product and
  pairwise-sum similarities need one [b,F]@[F,B] matmul per axis (batched over axes); the
  per-feature ones O(n·b·B·F), chunked; the rest evaluate the fibre tuples;
- `cube(context, idx)`: s at index tuples idx [T, n] from `context(X)` (the features, or their
  Gram matrix), used chunk by chunk by `models.cube`.

NaN-free by construction: every sqrt argument is clamped at EPS (so every divisor that is a norm
is ≥ sqrt(EPS)), and the one difference used as a divisor (v15) is clamped at DIV_EPS.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch

from models.cube import DEFAULT_CHUNK_BYTES, chunk_length, chunk_ranges, chunked_map, evaluate_tuples

EPS = 1e-12      # floor under every sqrt argument (its square root 1e-6 floors norms we divide by)
DIV_EPS = 1e-6   # floor under v15's divisor ‖v_k‖ − v̄_f


def _sqrt(x: torch.Tensor) -> torch.Tensor:
    return x.clamp_min(EPS).sqrt()


def fibre_tuples(n: int, batch_size: int, rows: torch.Tensor) -> torch.Tensor:
    """Index tuples of the diagonal fibres: [n, b, B, n], entry (k, a, j) = (r,…, j at k, …,r)."""
    k = torch.arange(n, device=rows.device).view(n, 1, 1, 1)
    position = torch.arange(n, device=rows.device).view(1, 1, 1, n)
    j = torch.arange(batch_size, device=rows.device).view(1, 1, batch_size, 1)
    return torch.where(position == k, j, rows.view(1, -1, 1, 1)).expand(n, len(rows), batch_size, n)


class Similarity:
    """One n-way similarity with its tuple, fibre and cube evaluators (see module docstring)."""

    family = "per-vector"

    def __init__(self, name: str, fn: Callable, family: str | None = None):
        self.name = name
        self.fn = fn
        self.family = family or self.family
        self.__doc__ = fn.__doc__

    def __repr__(self) -> str:
        return f"Similarity({self.name!r}, family={self.family!r})"

    def tuples(self, V: torch.Tensor) -> torch.Tensor:
        """s for stacked tuples V [..., n, F] -> [...]."""
        return self.fn(V)

    def context(self, X: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """What `cube` reads: here the features X [n, B, F] themselves."""
        return (X,)

    def bytes_per_tuple(self, n: int, F: int, itemsize: int) -> int:
        """Working memory of `cube` per tuple (gathered vectors and temporaries)."""
        return 4 * n * F * itemsize + 8 * n

    def cube(self, context: Sequence[torch.Tensor], idx: torch.Tensor) -> torch.Tensor:
        """s at index tuples idx [T, n] -> [T]."""
        (X,) = context
        axes = torch.arange(X.shape[0], device=idx.device)
        return self.tuples(X[axes, idx])

    def fibres(self, X: torch.Tensor, rows: torch.Tensor | None = None,
               chunk_bytes: int = DEFAULT_CHUNK_BYTES) -> torch.Tensor:
        """Diagonal-fibre rows [n, b, B] (default: evaluate every fibre tuple, chunked)."""
        n, B = X.shape[:2]
        rows = torch.arange(B, device=X.device) if rows is None else rows
        tuples = fibre_tuples(n, B, rows).reshape(-1, n)
        return evaluate_tuples(self, X, tuples, chunk_bytes).view(n, len(rows), B)


class ProductSimilarity(Similarity):
    """Multilinear product: the fibre of axis k is (Π_{l≠k} X_l[r]) @ X_k^T, one matmul per axis."""

    family = "product"

    def fibres(self, X, rows=None, chunk_bytes=DEFAULT_CHUNK_BYTES):
        n = X.shape[0]
        Xr = X if rows is None else X[:, rows]
        others = torch.stack([torch.cat([Xr[:k], Xr[k + 1:]]).prod(0) for k in range(n)])
        return torch.bmm(others, X.transpose(1, 2))


class GramSimilarity(Similarity):
    """A function of the tuple's n×n Gram matrix G_kl = v_k·v_l only.

    `cube` gathers G entries from the [nB, nB] Gram matrix of all features (one matmul), so a
    tuple costs O(n²) instead of O(n·F).
    """

    family = "gram"

    def tuples(self, V):
        return self.fn(V @ V.transpose(-1, -2))

    def context(self, X):
        flat = X.reshape(-1, X.shape[-1])
        return (flat @ flat.T,)

    def bytes_per_tuple(self, n, F, itemsize):
        return n * n * (16 + 4 * itemsize)

    def cube(self, context, idx):
        (G,) = context
        n = idx.shape[1]
        flat = idx + torch.arange(n, device=idx.device) * (G.shape[0] // n)
        return self.fn(G[flat.unsqueeze(-1), flat.unsqueeze(-2)])


class PairSumSimilarity(GramSimilarity):
    """A function g(Q, N) of Q = Σ_k ‖v_k‖² and N = ‖Σ_k v_k‖² (for unit vectors: of P alone).

    Fibre of axis k at row r: with R = Σ_{l≠k} X_l[r], N(j) = ‖R‖² + 2 R·X_k[j] + ‖X_k[j]‖² —
    one [b,F]@[F,B] matmul per axis. A whole grid is a broadcast sum of the pairwise Gram
    blocks, O(n²) adds per tuple and no feature dimension.
    """

    family = "pairwise-sum"

    def __init__(self, name, fn, family=None):
        super().__init__(name, fn, family)
        self.from_qn = fn
        n_of = lambda G: G.shape[-1]  # noqa: E731
        self.fn = lambda G: fn(torch.diagonal(G, dim1=-2, dim2=-1).sum(-1), G.sum((-2, -1)), n_of(G))

    def fibres(self, X, rows=None, chunk_bytes=DEFAULT_CHUNK_BYTES):
        n = X.shape[0]
        Xr = X if rows is None else X[:, rows]
        R = Xr.sum(0, keepdim=True) - Xr                       # [n, b, F] sum of the other axes
        q = X.square().sum(-1)                                 # [n, B]
        qr = q if rows is None else q[:, rows]
        q_others = qr.sum(0, keepdim=True) - qr
        N = R.square().sum(-1, keepdim=True) + 2 * torch.bmm(R, X.transpose(1, 2)) + q.unsqueeze(1)
        return self.from_qn(q_others.unsqueeze(-1) + q.unsqueeze(1), N, n)

    def grid(self, X: torch.Tensor, index_sets: Sequence[torch.Tensor]) -> torch.Tensor:
        """The whole grid from one Gram matmul, growing Q and N one axis at a time
        (≈ n full-size adds instead of n(n-1)/2)."""
        n = X.shape[0]
        sizes = [len(s) for s in index_sets]
        picked = torch.cat([X[k, index_sets[k]] for k in range(n)])
        G = picked @ picked.T
        start = [sum(sizes[:k]) for k in range(n)]
        q = torch.diagonal(G).split(sizes)
        Q = N = q[0]
        for l in range(1, n):
            grow = (...,) + (None,)
            cols = slice(start[l], start[l] + sizes[l])
            cross = sum(G[start[k]:start[k] + sizes[k], cols].reshape([1] * k + [sizes[k]] + [1] * (l - k - 1) + [sizes[l]])
                        for k in range(l))
            Q = Q[grow] + q[l]
            N = N[grow] + (q[l] + 2 * cross)
        return self.from_qn(Q, N, n)


class MomentSimilarity(Similarity):
    """A function of the per-feature moments s_f = Σ_k v_kf and q_f = Σ_k v_kf² only.

    Fibre of axis k: s = (Σ_{l≠k} X_l[r]) + X_k[j], q likewise — a [b, B, F] broadcast per axis,
    O(n·b·B·F), evaluated in row chunks with recomputation to bound memory.
    """

    family = "per-feature"

    def tuples(self, V):
        return self.fn(V.sum(-2), V.square().sum(-2), V.shape[-2])

    def bytes_per_tuple(self, n, F, itemsize):
        return (n + 6) * F * itemsize + 8 * n

    def fibres(self, X, rows=None, chunk_bytes=DEFAULT_CHUNK_BYTES):
        n, B, F = X.shape
        rows = torch.arange(B, device=X.device) if rows is None else rows
        per_row = 6 * n * B * F * X.element_size()
        specs = chunk_ranges(len(rows), chunk_length(per_row, chunk_bytes))

        def run(inputs: Sequence[torch.Tensor], span: tuple[int, int]) -> torch.Tensor:
            (X,) = inputs
            Xr = X[:, rows[span[0]:span[1]]]                        # [n, c, F]
            s = (Xr.sum(0, keepdim=True) - Xr).unsqueeze(2) + X.unsqueeze(1)
            sq = Xr.square()
            q = (sq.sum(0, keepdim=True) - sq).unsqueeze(2) + X.square().unsqueeze(1)
            return self.fn(s, q, n).transpose(0, 1)                 # [c, n, B]

        return chunked_map(run, specs, X).transpose(0, 1)


# --- product family ---------------------------------------------------------------------------

def _v0(V: torch.Tensor) -> torch.Tensor:
    """v0 — multilinear inner product Σ_f Π_k v_kf (Symile's MIP; the thesis' n-operand einsum).

    n = 2: the dot product (cosine for unit vectors), so the n = 2 diagonal loss is CLIP's.
    Magnitude for random unit vectors ~ F^{-(n-1)/2}: tiny logits at large n.
    """
    return V.prod(-2).sum(-1)


# --- pairwise-sum family: functions of Q and N --------------------------------------------------

def _sst(Q: torch.Tensor, N: torch.Tensor, n: int) -> torch.Tensor:
    return (Q - N / n).clamp_min(0)


def _v4(Q, N, n):
    """v4 — 1 − SST = 1 − Σ_k ‖v_k − v̄‖² = 1 − Q + N/n (thesis "S = 1 − SST").

    Unit vectors: 2 − n + 2P/n. v13 ≡ v4 exactly (its distance-to-the-mean form, equal by
    Σ_k ‖v_k − v̄‖² = Q − N/n); v14 ≡ v4 + (n − 1) for unit vectors; `pairwise`'s P = n(v4 − 2 + n)/2.
    """
    return 1 - _sst(Q, N, n)


def _v5(Q, N, n):
    """v5 — 1 − sqrt(SST) = 1 − sqrt(Q − N/n); unit vectors: 1 − sqrt(n − 1 − 2P/n).

    Infinite slope at the perfect tuple (SST = 0); the clamp gives it slope 0 there instead.
    """
    return 1 - _sqrt(_sst(Q, N, n))


def _v7(Q, N, n):
    """v7 — ‖Σ_k v_k‖ = sqrt(N); unit vectors: sqrt(n + 2P). v8 ≡ v10 ≡ v7 (thesis' best, "8").

    v8 was written as a root of a dispersion and v10 as a hypotenuse; both reduce to ‖S‖.
    """
    return _sqrt(N)


def _v9(Q, N, n):
    """v9 — ‖v̄‖ = ‖Σ_k v_k‖ / n = v7 / n; unit vectors: sqrt(n + 2P)/n (thesis "‖mean‖").

    Also the mean cosine of each vector to the mean direction: (1/n)Σ_k v_k·S/‖S‖ = ‖S‖/n.
    """
    return _sqrt(N) / n


def _v14(Q, N, n):
    """v14 — Σ_k v_k·v̄ = N/n (each vector projected on the mean, summed).

    Unit vectors: 1 + 2P/n = v4 + (n − 1): every logit shifted by the same scale·(n − 1), so any
    softmax cross-entropy (diagonal, exact, regions, smoothed) is identical to v4's; only the
    sigmoid loss differs, by an amount its logit_bias absorbs.
    """
    return N / n


def _pairwise(Q, N, n):
    """pairwise — P = Σ_{k<l} v_k·v_l = (N − Q)/2: the sum of pairwise cosines (unit vectors).

    As a loss with labels='diagonal', `pairwise` is the baseline of thesis §5.2: the sum over
    axis pairs of the plain two-tower CLIP loss (computed from pairwise logit matrices, not from
    this tuple similarity). For dense label schemes the cube of P is used; P = n(v4 − 2 + n)/2
    for unit vectors, so its cube differs from v4's only by logit scale and shift.
    """
    return (N - Q) / 2


# --- Gram-matrix family -------------------------------------------------------------------------

def _gram(G: torch.Tensor) -> torch.Tensor:
    """gram — negated volume −sqrt(det G), G_kl = v_k·v_l (the parallelotope spanned by the tuple).

    Maximal (0) for any linearly dependent tuple: identical vectors, but also antipodes, zeros,
    and any n > F tuple — the degenerate optima docs/design.md §4.3 warns about. Computed as
    t^(n/2)·sqrt(det(G/t)), t = mean ‖v_k‖², so the LU never sees denormal entries.
    """
    scale = torch.diagonal(G, dim1=-2, dim2=-1).mean(-1).clamp_min(EPS)  # LU on O(1) entries:
    unit_det = torch.linalg.det(G / scale[..., None, None])                 # denormal G gives NaN
    return -scale.sqrt() ** G.shape[-1] * _sqrt(unit_det)


def _v11(G: torch.Tensor) -> torch.Tensor:
    """v11 — leave-one-out: Σ_k v_k · (S − v_k)/‖S − v_k‖, each vector against the direction of
    the sum of the others. v12 ≡ v11 (it normalised the leave-one-out *mean* (S − v_k)/(n − 1),
    which has the same direction). Unit vectors: Σ_k cos(v_k, S − v_k) ≤ n, = n at a perfect
    tuple. From G: v_k·S = Σ_l G_kl and ‖S − v_k‖² = N − 2Σ_l G_kl + G_kk.
    """
    row = G.sum(-1)
    own = torch.diagonal(G, dim1=-2, dim2=-1)
    N = row.sum(-1, keepdim=True)
    return ((row - own) / _sqrt(N - 2 * row + own)).sum(-1)


# --- per-feature family: functions of s_f = Σ_k v_kf and q_f = Σ_k v_kf² ------------------------

def _dispersion(s: torch.Tensor, q: torch.Tensor, n: int) -> torch.Tensor:
    return (q - s.square() / n).clamp_min(0)


def _v1(s, q, n):
    """v1 — 1 − mean_f sqrt(d_f), d_f = Σ_k v_kf² − (Σ_k v_kf)²/n (per-feature spread).

    The thesis' v1 returned NaN on diagonal tuples: d_f = 0 up to rounding, sometimes −1e-9, and
    sqrt of that is NaN. d_f ≥ 0 exactly, so it is clamped. v6 = 1 − mean_f sqrt(|d_f|) ≡ v1: the
    absolute value only ever acted on that rounding residue.
    """
    return 1 - _sqrt(_dispersion(s, q, n)).mean(-1)


def _v2(s, q, n):
    """v2 — 1 − ‖d‖ = 1 − sqrt(Σ_f d_f²) (L2 norm of the per-feature spreads)."""
    return 1 - _sqrt(_dispersion(s, q, n).square().sum(-1))


def _v3(s, q, n):
    """v3 — heuristic, documented as failing: "cosine similarity of means", thesis Figure 5.9
    row 3, x̄² / sqrt(Σ_f x̄_f²), read literally: x̄ is the grand mean over axes *and* features,
    x̄_f the per-feature mean over axes. So v3 = (1·v̄ / F)² / ‖v̄‖ = ‖v̄‖·cos²(v̄, 1)/F.

    Why it fails: it measures the tuple only along the all-ones direction 1 — not rotation
    invariant, ~‖v̄‖/F² for zero-mean features, and blind to F − 1 of F dimensions; the perfect
    tuple is not its maximum. (Reading x̄² as ‖v̄‖² instead gives ‖v̄‖ = v9; no second entry.)
    The thesis' form is 0/0 when the mean vanishes (antipodes); the clamped norm makes it 0.
    """
    grand_mean = s.mean(-1) / n
    return grand_mean.square() / _sqrt((s / n).square().sum(-1))


def _v16(s, q, n):
    """v16 — heuristic, documented as failing: mean minus hypotenuse difference (thesis
    `compute_z`, Figure 5.9 row 16): Σ_f [m_f − (H_f − sqrt(n)·|m_f|)], m_f = s_f/n the mean and
    H_f = sqrt(q_f) the hypotenuse of the n values of feature f; H_f − sqrt(n)|m_f| ≥ 0 is the
    gap between the cuboid's and the equal-sided cube's hypotenuses, 0 iff the values agree.

    Why it fails: the spread term is sound, but the mean term Σ_f m_f = 1·v̄ rewards pointing
    along the all-ones direction. The thesis assumed features uniform in (0, 1) (§5.7.4), where
    it is positive; for zero-mean unit embeddings its sign is arbitrary and it dominates, so a
    perfect tuple whose vector sums negative scores below mismatched tuples.
    """
    m = s / n
    return (m - (_sqrt(q) - math.sqrt(n) * m.abs())).sum(-1)


# --- per-vector heuristics -----------------------------------------------------------------------

def _v15(V: torch.Tensor) -> torch.Tensor:
    """v15 — heuristic, documented as failing: leave-one-out deviation ratio (thesis Figure 5.9
    row 15), Σ_k Σ_f v_kf (v_kf − v̄_f) / (‖v_k‖ − v̄_f), divisor clamped at DIV_EPS.

    Why it fails: it grows with disagreement. A perfect tuple scores exactly 0 (v_k = v̄), while
    for unit vectors with small features it is ≈ Σ_k (1 − v_k·v̄) = n(1 − ‖v̄‖²) ≥ 0, largest for
    antipodes: off-diagonal tuples score higher than the diagonal, so a contrastive loss on it
    pushes positives apart. Evaluated per tuple (O(n²·B²·F) for the fibres): it is not a
    function of moments or of the Gram matrix.
    """
    mean = V.mean(-2, keepdim=True)
    norms = _sqrt(V.square().sum(-1, keepdim=True))
    return (V * (V - mean) / (norms - mean).clamp_min(DIV_EPS)).sum((-2, -1))


SIMILARITIES: dict[str, Similarity] = {
    "v0": ProductSimilarity("v0", _v0),
    "v1": MomentSimilarity("v1", _v1),
    "v2": MomentSimilarity("v2", _v2),
    "v3": MomentSimilarity("v3", _v3),
    "v4": PairSumSimilarity("v4", _v4),
    "v5": PairSumSimilarity("v5", _v5),
    "v7": PairSumSimilarity("v7", _v7),
    "v9": PairSumSimilarity("v9", _v9),
    "v11": GramSimilarity("v11", _v11, family="leave-one-out"),
    "v14": PairSumSimilarity("v14", _v14),
    "v15": Similarity("v15", _v15),
    "v16": MomentSimilarity("v16", _v16),
    "gram": GramSimilarity("gram", _gram),
    "pairwise": PairSumSimilarity("pairwise", _pairwise),
}

# Thesis numbers that are the same function as another entry (identities in their docstrings).
ALIASES: dict[str, str] = {"v6": "v1", "v8": "v7", "v10": "v7", "v12": "v11", "v13": "v4"}

NAMES: tuple[str, ...] = tuple(sorted(
    [*SIMILARITIES, *ALIASES], key=lambda s: (not s.startswith("v"), int(s[1:]) if s[1:].isdigit() else 0, s)))

# Heuristics kept for reproduction; their docstrings say how each fails.
FAILING: tuple[str, ...] = ("v3", "v15", "v16")


# Descriptive names of the thesis-numbered entries (what the training options and docs use; the
# numbers stay accepted).
DESCRIPTIVE: dict[str, str] = {
    "product": "v0", "feature-spread": "v1", "feature-spread-l2": "v2", "ones-mean-cosine": "v3",
    "one-minus-sst": "v4", "one-minus-root-sst": "v5", "sum-norm": "v7", "mean-norm": "v9",
    "leave-one-out": "v11", "mean-projection": "v14", "deviation-ratio": "v15", "mean-minus-hypotenuse": "v16",
}
CHOICES: tuple[str, ...] = (*DESCRIPTIVE, "gram", "pairwise", *(n for n in NAMES if n.startswith("v")))


def get_similarity(name: str) -> Similarity:
    """Registry lookup by descriptive name, thesis number or alias; aliases resolve to the function they equal."""
    key = ALIASES.get(name, DESCRIPTIVE.get(name, name))
    if key not in SIMILARITIES:
        raise ValueError(f"unknown similarity {name!r}; choose one of {', '.join(CHOICES)}")
    return SIMILARITIES[key]


def descriptive_name(name: str) -> str:
    """The descriptive name of a similarity given by any of its names ('v13' → 'one-minus-sst')."""
    key = get_similarity(name).name
    return next((d for d, number in DESCRIPTIVE.items() if number == key), key)
