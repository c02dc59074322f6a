"""Per-layer states of an open_clip transformer, read with forward hooks (no tower code copied).

`block_states(transformer)` records, for every forward pass while active, the input of the first
residual block ("embed": token + positional embedding) and the output of every residual block
("block 1" … "block L"), as `[B, S, W]` float32 tensors whatever the transformer's batch_first
setting. The text towers (`clip.transformer`) and the ViT (`clip.visual.transformer`) are the
same open_clip `Transformer` class, so one recorder serves both.
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import Tensor, nn


def layer_names(transformer: nn.Module) -> list[str]:
    return ["embed"] + [f"block {i + 1}" for i in range(len(transformer.resblocks))]


@contextmanager
def block_states(transformer: nn.Module) -> Iterator[list[Tensor]]:
    """Yield a list that fills with the states of the next forward pass (see the module docstring)."""
    blocks = getattr(transformer, "resblocks", None)
    if not isinstance(blocks, nn.ModuleList) or len(blocks) == 0:
        raise TypeError(f"expected an open_clip Transformer with resblocks, got {type(transformer).__name__}")
    batch_first = getattr(transformer, "batch_first", True)
    states: list[Tensor] = []

    def keep(x: Tensor) -> None:
        states.append((x if batch_first else x.transpose(0, 1)).detach().float())

    handles = [blocks[0].register_forward_pre_hook(lambda module, args: keep(args[0]))]
    handles += [block.register_forward_hook(lambda module, args, output: keep(output)) for block in blocks]
    try:
        yield states
    finally:
        for h in handles:
            h.remove()


def masked_mean(states: Tensor, mask: Tensor) -> Tensor:
    """`[B, W]` mean of `states [B, S, W]` over the positions where `mask [B, S]` is True."""
    m = mask[:, :states.shape[1]].to(states.dtype).unsqueeze(-1)
    return (states * m).sum(1) / m.sum(1).clamp_min(1.0)


def at_positions(states: Tensor, positions: Tensor) -> Tensor:
    """`[B, W]` state of each sequence at its own position `positions [B]`."""
    return states[torch.arange(states.shape[0], device=states.device), positions.to(states.device)]
