"""A run whose numbers stop being finite is a failure, never a success.

Stage 0 and stage 1 check every step's loss (and stage 1 its gradient norm) before the optimizer
applies it, and the weights before a checkpoint and before the export: the first value that is
NaN or infinite raises `Diverged`, on every process at once (`anywhere`). The run stops with one
line and exit code DIVERGED_EXIT (3: not bad input, which is 2, nor an interruption, 128 + a
signal); nothing is exported or evaluated, and no checkpoint holds the broken state
(docs/training.md).
"""
from __future__ import annotations

import sys
from collections.abc import Callable

import torch

DIVERGED_EXIT = 3


class Diverged(RuntimeError):
    """A loss, a gradient norm or a weight is not finite; the message says which, where and what is kept."""


def anywhere(bad: bool, accelerator) -> bool:
    """True on every process when `bad` is true on any (they must stop together)."""
    if accelerator.num_processes == 1:
        return bad
    return bool(accelerator.reduce(torch.tensor([float(bad)], device=accelerator.device), "max").item())


def diverged_exit(command: Callable[[], int], main_process: Callable[[], bool]) -> int:
    """`command()`, or DIVERGED_EXIT after one `error:` line (printed by the main process) when it diverged."""
    try:
        return command()
    except Diverged as exc:
        if main_process():
            print(f"error: {exc}", file=sys.stderr)
        return DIVERGED_EXIT
