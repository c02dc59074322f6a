"""Every key a run writes to `RUN/metrics.jsonl` (and TensorBoard), with what it means — the one
list, which docs/training.md shows and a test compares with what runs write. `<...>` stands for a
part that varies: an axis (`image`, `english`, `student`), a partition of the n axes (`3`,
`2+1`), an index.
"""
from __future__ import annotations

import re

STEP = {  # a record every --log-every steps
    "step": "optimizer steps done",
    "lr": "learning rate of the student's parameter group",
    "seconds": "since stage 1 started (or resumed)",
    "loss": "the total the step minimised (mean over processes: the whole batch's)",
    "loss/token_ce": "token cross-entropy on the captions with a target (unweighted)",
    "loss/contrastive": "the n-dim contrastive loss (unweighted)",
    "loss/english_anchor": "the English anchor term (unweighted)",
    "loss/anchor_bank": "the anchor-bank term (unweighted)",
    "loss/lsa": "the LSA loss on student ↔ image logits (unweighted)",
    "loss/axis<k>": "the n-dim loss along axis k (labels other than diagonal)",
    "logit_scale": "the n-dim loss' logit scale (exp, clamped)",
    "logit_bias": "the sigmoid labels' logit bias",
    "logit/good": "mean logit of the positive (diagonal) tuples",
    "logit/bad": "mean logit of the other tuples",
    "logit/gap": "logit/good − logit/bad",
    "region/<partition>/<stat>": "per region of the logit cube (--labels regions and the dense labels): "
                                 "mean_logit, mse, loss_share, weight",
    "cos/student_english": "mean cosine of the first student axis and the first English axis",
    "cos/student_image": "mean cosine of the first student axis and the image axis",
    "tau": "the splice temperature of the step",
    "r1/student_image": "in-batch R@1 of the first student axis retrieving its image",
    "r1/english_image": "in-batch R@1 of the first English axis retrieving its image",
    "r1/student_english": "in-batch R@1 of the first student axis retrieving its first English caption",
}
VALIDATION = {  # a record every --eval-every steps, with "split": "validation"
    "split": "`validation`",
    "health/<axis>/<stat>": "embedding health of the validation images (`image`), their first English caption "
                            "(`english`) and the student's translation (`student`): effective_rank, top_k_share, "
                            "mean_offdiag_cosine, in_batch_r1, uniqueness, and with --anchor-bank "
                            "active_anchors, anchor_entropy, nearest_distance, second_nearest_distance",
}
SELF_TRAINING = {  # a record per self-training round
    "self_train/round": "the round (from 1)",
    "self_train/candidates": "captions without a human translation that the student translated",
    "self_train/kept": "pseudo targets of the round (with --self-train-replace agreeing: the pivot targets it "
                       "keeps included)",
    "self_train/agreed": "with --self-train-replace agreeing: translations that replaced a pivot target",
    "self_train/reranked": "captions whose CLIP-reranked best is not the student's own best",
    "self_train/mean_image_prob": "mean probability the judge gave the caption's own image",
}
METRICS = {**STEP, **VALIDATION, **SELF_TRAINING}


def pattern(key: str) -> re.Pattern:
    """The regular expression of a listed key (`<...>` matches one path part)."""
    return re.compile("^" + re.sub(r"<[^>]+>", "[^/]+", re.escape(key)) + "$")


def unlisted(keys) -> list[str]:
    """The keys that no entry of METRICS describes."""
    patterns = [pattern(k) for k in METRICS]
    return sorted(k for k in keys if not any(p.match(k) for p in patterns))
