"""Which target tokens the student uses on the test split, against the reference distribution.

The student translates the analysed test sentences (greedy `generate()`, as in evaluation); its
outputs and the references (the human translation, else the first English caption) are both
tokenised with the student's target tokenisation (`GroundedSystem.labels_for`: CLIP BPE or its
corpus shortlist for a scratch student, the Marian target vocabulary for a pretrained one),
special tokens removed. Reference tokens the student's vocabulary cannot express are not
counted (a shortlist drops them).

Reported: the two frequency tables (top tokens), Jensen–Shannon divergence (bits, in [0, 1];
SciPy's `jensenshannon` squared), KL(ref ‖ student) and KL(student ‖ ref) in bits with additive
smoothing α = 0.5 over the union of types (plain KL is infinite as soon as one reference token
is never produced), the reference types the student never uses (with the share of reference
mass they carry), the over-used tokens (largest ratio of student to smoothed reference
frequency), and how many distinct outputs there are — a collapsed student writes one sentence.
"""
from __future__ import annotations

from collections import Counter

import numpy as np
from matplotlib.figure import Figure
from scipy.spatial.distance import jensenshannon
from scipy.stats import entropy

from eval.analysis.plots import Plot
from models.decoding import IGNORE_INDEX

ALPHA = 0.5
TOP = 25


def token_counts(system, texts: list[str]) -> tuple[Counter, list[int]]:
    """(Counter of target ids over `texts`, tokens per text), special ids excluded."""
    special = system.vocab.special_ids()
    counts, lengths = Counter(), []
    for row in system.labels_for(texts).tolist():
        ids = [i for i in row if i != IGNORE_INDEX and i not in special]
        counts.update(ids)
        lengths.append(len(ids))
    return counts, lengths


def usage(hyp: Counter, ref: Counter, label) -> dict:
    """The comparison of two token Counters (see the module docstring); `label(id)` names a token."""
    vocab = sorted(set(hyp) | set(ref))
    h = np.array([hyp[v] for v in vocab], dtype=float)
    r = np.array([ref[v] for v in vocab], dtype=float)
    p_h, p_r = h / max(h.sum(), 1.0), r / max(r.sum(), 1.0)
    s_h, s_r = (h + ALPHA) / (h.sum() + ALPHA * len(vocab)), (r + ALPHA) / (r.sum() + ALPHA * len(vocab))

    def row(i: int) -> dict:
        return {"token": label(vocab[i]), "id": int(vocab[i]), "reference_count": int(r[i]),
                "student_count": int(h[i]), "reference_freq": float(p_r[i]), "student_freq": float(p_h[i])}

    by_ref = np.argsort(-r, kind="stable")
    unused = [i for i in by_ref if r[i] > 0 and h[i] == 0]
    ratio = s_h / s_r
    over = [i for i in np.argsort(-ratio, kind="stable") if h[i] > 0 and ratio[i] > 1][:TOP]
    both = h.sum() > 0 and r.sum() > 0
    return {"types": {"student": int((h > 0).sum()), "reference": int((r > 0).sum()), "union": len(vocab)},
            "tokens": {"student": int(h.sum()), "reference": int(r.sum())},
            "js_divergence_bits": float(jensenshannon(p_r, p_h, base=2) ** 2) if both else None,
            "kl_ref_student_bits": float(entropy(s_r, s_h, base=2)) if vocab else None,
            "kl_student_ref_bits": float(entropy(s_h, s_r, base=2)) if vocab else None,
            "smoothing_alpha": ALPHA,
            "top_reference": [row(i) for i in by_ref[:TOP] if r[i] > 0],
            "top_student": [row(i) for i in np.argsort(-h, kind="stable")[:TOP] if h[i] > 0],
            "unused_reference_types": len(unused),
            "unused_reference_mass": float(p_r[unused].sum()) if unused else 0.0,
            "unused": [row(i) for i in unused[:TOP]],
            "over_used": [{**row(i), "ratio_to_reference": float(ratio[i])} for i in over]}


def token_usage(ctx) -> dict:
    system = ctx.system
    items = ctx.sentences
    if not items:
        return {"skipped": "no test sentences"}
    hyps = system.translate([s["source"] for s in items], batch_size=ctx.batch_size)
    refs = [s["references"][0] for s in items]
    hyp, hyp_len = token_counts(system, hyps)
    ref, ref_len = token_counts(system, refs)
    out = usage(hyp, ref, lambda i: system.vocab.decode([[i]])[0] or f"<id {i}>")
    out.update(sentences=len(items), distinct_outputs=len(set(hyps)),
               mean_length={"student": float(np.mean(hyp_len)), "reference": float(np.mean(ref_len))},
               references="human translations" if all(s["has_translation"] for s in items)
               else "human translations where they exist, else the first English caption")
    return out


def analyse(ctx) -> tuple[dict, list[Plot]]:
    result = token_usage(ctx)
    plots = []
    if result.get("top_reference"):
        rows = result["top_reference"][:TOP]
        fig = Figure(figsize=(6.2, 1.4 + 0.2 * len(rows)))
        ax = fig.add_subplot()
        ys = np.arange(len(rows))
        ax.barh(ys - 0.2, [r["reference_freq"] for r in rows], 0.4, label="reference", color="C0")
        ax.barh(ys + 0.2, [r["student_freq"] for r in rows], 0.4, label="student", color="C3")
        ax.set_yticks(ys, [r["token"] for r in rows], fontsize=7)
        ax.invert_yaxis()
        ax.set_xlabel("relative frequency")
        js = result["js_divergence_bits"]
        ax.set_title(f"Target tokens: the {len(rows)} most frequent in the references\n"
                     f"JS divergence {js:.3f} bits; {result['unused_reference_types']} reference types never "
                     f"used; {result['distinct_outputs']}/{result['sentences']} distinct outputs"
                     if js is not None else "Target tokens", fontsize=8)
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3, axis="x")
        plots.append(Plot("tokens.png", "Token usage: student vs references",
                          "Relative frequency of the most frequent reference tokens in the references and in the "
                          "student's test translations.", fig))
    return result, plots
