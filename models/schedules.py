"""The learning-rate schedule of both training stages: linear warm-up, then cosine decay to 0."""
from __future__ import annotations

import math


def warmup_cosine(step: int, total: int, warmup: int) -> float:
    """Factor of the peak learning rate at `step` (0-based) of `total`: (step + 1) / warmup during
    the first `warmup` steps, then half a cosine from 1 to 0 over the remaining steps."""
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
