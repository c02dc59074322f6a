"""Build an open_clip model, its eval preprocessing and tokenizer, from a name and optional weights.

Weights come from a local open_clip checkpoint file (a state dict saved with `torch.save`, bare
or under "state_dict", or any format `open_clip.load_checkpoint` reads). No machine here reaches
a model hub, so a pretrained *tag* or an `hf-hub:` name fails at once under `HF_HUB_OFFLINE=1`
with a message naming the local-path option instead of waiting on the network (docs/design.md §8).
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import open_clip
import torch
from huggingface_hub import is_offline_mode

from models.tiny_configs import register_tiny_clip_configs

CLIP_PRETRAINED_OPTION = "--clip-pretrained PATH"
CHECKPOINT_NAME = "open_clip_model.pt"  # the file name of a saved CLIP (a run's model/clip/, a cached teacher)


def load_clip(
    name: str, pretrained: str | Path | None = None, device: str | torch.device = "cpu"
) -> tuple[torch.nn.Module, Callable, Callable]:
    """Return `(model, preprocess, tokenizer)` for the open_clip architecture `name`.

    `pretrained=None` gives random weights (the tiny configs `groundmt-tiny` / `groundmt-micro`
    are registered first, so they work like built-in names); a path loads that checkpoint file;
    a tag such as "openai" is handed to open_clip only when the hub is reachable.
    """
    tokenizer = clip_tokenizer(name)
    if pretrained is not None:
        pretrained = str(pretrained)
        if not Path(pretrained).is_file():
            _check_pretrained_tag(name, pretrained)
    model, _, preprocess = open_clip.create_model_and_transforms(name, pretrained=pretrained, device=device)
    return model, preprocess, tokenizer


def clip_tokenizer(name: str) -> Callable:
    """open_clip's tokenizer of the architecture `name` (no weights are built): a clear error for an
    unknown name, or a hub-only one when the hub is unreachable."""
    register_tiny_clip_configs()
    if name.startswith("hf-hub:") and is_offline_mode():
        raise RuntimeError(
            f"CLIP {name!r} lives on the model hub, which is unreachable (HF_HUB_OFFLINE=1): copy the "
            f"weights here and pass {CLIP_PRETRAINED_OPTION} (an open_clip checkpoint file) with a "
            f"built-in architecture name."
        )
    if not name.startswith(("hf-hub:", "local-dir:")) and name.replace("/", "-") not in open_clip.list_models():
        raise ValueError(
            f"unknown open_clip architecture {name!r}; choose a built-in name such as 'ViT-B-32' or one "
            f"of the tiny configs {list(register_tiny_clip_configs())}"
        )
    return open_clip.get_tokenizer(name)


def _check_pretrained_tag(name: str, pretrained: str) -> None:
    """A non-file `pretrained` must be one of open_clip's tags, and tags need the hub."""
    tags = open_clip.list_pretrained_tags_by_model(name)
    if pretrained not in tags:
        raise FileNotFoundError(
            f"CLIP weights {pretrained!r} for {name!r}: no such file, and not one of open_clip's "
            f"pretrained tags {tags}. Pass {CLIP_PRETRAINED_OPTION} pointing at an open_clip checkpoint file."
        )
    if is_offline_mode():
        raise RuntimeError(
            f"pretrained tag {pretrained!r} for CLIP {name!r} must be downloaded, but no model hub is "
            f"reachable (HF_HUB_OFFLINE=1): fetch the checkpoint elsewhere and pass {CLIP_PRETRAINED_OPTION}."
        )
