"""Embedding health (docs/design.md §7): numbers that show a collapsing embedding early.

The failure to catch (seed 000, "total collapse"): every image → one anchor, effective dim
23.6/128, top-20 singular values explain 99.2%, mean off-diagonal self-similarity 0.969.

All statistics are taken on L2-normalised embeddings and are *uncentred*: a collapse to one
point is then rank 1 (centring would leave only the noise around that point, which looks
healthy).

- effective rank: exp(entropy of the singular values normalised to sum 1) (Roy & Vetterli 2007).
- top-k share: Σ_{i<k} σ_i² / Σ σ_i² (share of the second moment in the top k directions).
- mean off-diagonal cosine between distinct rows.
- per-axis in-batch R@1 against a reference axis (`eval.retrieval.in_batch_recall_at_1`).
- expert uniqueness: mean over rows of the cosine distance (1 − cos) to the nearest *other*
  row — how far each sample keeps its own point in an expert's (axis') embedding. The seed
  logged it without a definition ("Expert uniqueness: 0.0008–0.0011" at the collapse); this
  is our reading: 0 when every sample lands on one point. Identical inputs (a caption that
  occurs twice) legitimately score 0, so pass distinct items; it is reported, not warned on,
  because its healthy level depends on N and the dimension.
- anchor bank: active anchors (nearest anchor of at least one row), entropy of the
  nearest-anchor histogram (nats; 0 = every row picks one anchor), mean cosine distance
  (1 − cos) to the nearest and second-nearest anchor, mean anchors within cos > 0.5.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from eval.retrieval import in_batch_recall_at_1

# Collapse thresholds used by `collapse_warnings` (the seed's collapse crosses every one).
MIN_EFFECTIVE_RANK_FRACTION = 0.25  # effective rank / dimension (collapse: 23.6/128 = 0.18)
MAX_TOP_K_SHARE = 0.99  # share in the top-k singular values, checked when k <= dim / 4
MAX_MEAN_OFFDIAG_COSINE = 0.9  # (collapse: 0.969)
MIN_R1_OVER_CHANCE = 2.0  # in-batch R@1 / chance
MIN_ACTIVE_ANCHOR_FRACTION = 0.05  # and always at least 2 active (collapse: 1/256)
MIN_ANCHOR_ENTROPY_FRACTION = 0.1  # entropy / log(active anchors possible) (collapse: 0)


def _unit(x: torch.Tensor) -> torch.Tensor:
    if x.ndim != 2 or x.shape[0] < 2:
        raise ValueError(f"expected [N >= 2, D] embeddings, got shape {tuple(x.shape)}")
    return F.normalize(x.double(), dim=-1, eps=1e-12)


def embedding_stats(emb: torch.Tensor, *, top_k: int = 20) -> dict:
    """{"dim", "n", "effective_rank", "top_k", "top_k_share", "mean_offdiag_cosine"}."""
    x = _unit(emb)
    n, dim = x.shape
    s = torch.linalg.svdvals(x)
    p = s / s.sum().clamp_min(1e-300)
    entropy = -(p * torch.log(p.clamp_min(1e-300))).sum()
    energy = s.square()
    k = min(top_k, len(s))
    gram_sum = x.sum(0).square().sum()  # Σ_ij cos_ij, diagonal included (each 1)
    return {"dim": dim, "n": n, "effective_rank": float(torch.exp(entropy)), "top_k": k,
            "top_k_share": float(energy[:k].sum() / energy.sum()),
            "mean_offdiag_cosine": float((gram_sum - n) / (n * (n - 1)))}


def expert_uniqueness(emb: torch.Tensor, *, chunk: int = 1024) -> float:
    """Mean cosine distance of each row to its nearest other row (see the module docstring);
    computed in row chunks, so memory is O(chunk · N)."""
    x = _unit(emb)
    nearest = []
    for s in range(0, x.shape[0], chunk):
        cos = x[s:s + chunk] @ x.T
        rows = torch.arange(cos.shape[0])
        cos[rows, rows + s] = -float("inf")  # not its own neighbour
        nearest.append(cos.max(1).values)
    return float((1 - torch.cat(nearest)).clamp_min(0).mean())


def anchor_stats(emb: torch.Tensor, anchors: torch.Tensor) -> dict:
    """Usage of an anchor bank [A, D] by embeddings [N, D] (cosine geometry)."""
    if anchors.ndim != 2 or anchors.shape[0] < 2 or anchors.shape[1] != emb.shape[-1]:
        raise ValueError(f"anchors must be [A >= 2, {emb.shape[-1]}], got {tuple(anchors.shape)}")
    cos = _unit(emb) @ F.normalize(anchors.double(), dim=-1, eps=1e-12).T  # [N, A]
    top2 = cos.topk(2, dim=1).values
    counts = torch.bincount(cos.argmax(1), minlength=anchors.shape[0]).double()
    p = counts[counts > 0] / counts.sum()
    return {"anchors": anchors.shape[0], "active_anchors": int((counts > 0).sum()),
            "anchor_entropy": float(-(p * p.log()).sum()) + 0.0,  # + 0.0: no "-0.0" for one anchor
            "nearest_distance": float((1 - top2[:, 0]).mean()),
            "second_nearest_distance": float((1 - top2[:, 1]).mean()),
            "anchors_within_cos_0.5": float((cos > 0.5).sum(1).double().mean())}


def health_report(axes: dict[str, torch.Tensor], *, reference: str | None = None,
                  anchors: torch.Tensor | None = None, top_k: int = 20, batch_size: int = 32,
                  seed: int = 0) -> dict:
    """Per axis: `embedding_stats`, `"uniqueness"` (`expert_uniqueness`), in-batch R@1 against
    the `reference` axis (rows aligned), and `anchor_stats` when an anchor bank is given."""
    if reference is not None and reference not in axes:
        raise ValueError(f"reference axis {reference!r} not among {sorted(axes)}")
    out = {}
    for name, emb in axes.items():
        row = embedding_stats(emb, top_k=top_k)
        row["uniqueness"] = expert_uniqueness(emb)
        if reference is not None and name != reference:
            r = in_batch_recall_at_1(emb, axes[reference], batch_size=batch_size, seed=seed)
            row["in_batch_r1"] = (r["a2b"] + r["b2a"]) / 2
            row["in_batch_chance"] = r["chance"]
        if anchors is not None:
            row["anchor"] = anchor_stats(emb, anchors)
        out[name] = row
    return out


def collapse_warnings(report: dict) -> list[str]:
    """Human-readable warnings for every axis of a `health_report` that crosses a threshold
    (the module constants); an empty list means healthy."""
    warnings = []
    for name, row in report.items():
        rank_fraction = row["effective_rank"] / row["dim"]
        if rank_fraction < MIN_EFFECTIVE_RANK_FRACTION:
            warnings.append(f"{name}: effective rank {row['effective_rank']:.1f}/{row['dim']} "
                            f"< {MIN_EFFECTIVE_RANK_FRACTION:.0%} of the dimension")
        if row["top_k"] <= row["dim"] / 4 and row["top_k_share"] > MAX_TOP_K_SHARE:
            warnings.append(f"{name}: top-{row['top_k']} singular values hold "
                            f"{row['top_k_share']:.1%} > {MAX_TOP_K_SHARE:.0%}")
        if row["mean_offdiag_cosine"] > MAX_MEAN_OFFDIAG_COSINE:
            warnings.append(f"{name}: mean off-diagonal cosine {row['mean_offdiag_cosine']:.3f} "
                            f"> {MAX_MEAN_OFFDIAG_COSINE}")
        if "in_batch_r1" in row and row["in_batch_r1"] < MIN_R1_OVER_CHANCE * row["in_batch_chance"]:
            warnings.append(f"{name}: in-batch R@1 {row['in_batch_r1']:.3f} < "
                            f"{MIN_R1_OVER_CHANCE:g}× chance ({row['in_batch_chance']:.3f})")
        if "anchor" in row:
            a = row["anchor"]
            if a["active_anchors"] < max(2, MIN_ACTIVE_ANCHOR_FRACTION * a["anchors"]):  # one anchor: collapse
                warnings.append(f"{name}: only {a['active_anchors']}/{a['anchors']} anchors active")
            max_entropy = math.log(min(a["anchors"], row["n"]))
            if a["anchor_entropy"] < MIN_ANCHOR_ENTROPY_FRACTION * max_entropy:
                warnings.append(f"{name}: anchor entropy {a['anchor_entropy']:.3f} nats < "
                                f"{MIN_ANCHOR_ENTROPY_FRACTION:.0%} of the maximum {max_entropy:.2f}")
    return warnings
