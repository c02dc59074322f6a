"""The learning-rate schedule of both training stages: linear warm-up, then cosine decay to 0."""
from __future__ import annotations

import math

WARMUP_SHARE, WARMUP_LEAST, WARMUP_MOST = 8, 20, 100  # docs/training.md, "Defaults and why"


def default_warmup(steps: int) -> int:
    """The warm-up of a run of `steps` steps unless `--warmup-steps` says otherwise: an eighth of the
    steps, at least 20 and at most 100 (100 at the default 900; a short run keeps the 20 it always had)."""
    return min(WARMUP_MOST, max(WARMUP_LEAST, steps // WARMUP_SHARE))


def warmup_cosine(step: int, total: int, warmup: int) -> float:
    """Factor of the peak learning rate at `step` (0-based) of `total`: (step + 1) / warmup during
    the first `warmup` steps, then half a cosine from 1 to 0 over the remaining steps."""
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
