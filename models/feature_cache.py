"""Features of a frozen CLIP tower, computed once before training.

With the towers frozen (the embedded default), the image and English-caption axes of the n-dim
loss are constants: encoding them once instead of every step removes image decoding,
preprocessing and two tower passes from the training loop. Only the student axis is computed
per step (it still passes through the frozen text tower, which carries its gradient).
"""
from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence

import datasets
import torch
from torch import Tensor

from models.clip_batches import encode_images, encode_texts


class FeatureTable:
    """A `[N, F]` tensor of features looked up by key (dataset row index, or caption text)."""

    def __init__(self, keys: Sequence[Hashable], features: Tensor):
        self.index = {key: i for i, key in enumerate(keys)}
        self.features = features

    def __getitem__(self, keys: Sequence[Hashable]) -> Tensor:
        return self.features[torch.tensor([self.index[k] for k in keys], device=self.features.device)]

    @classmethod
    def of_images(cls, encode: Callable[[Tensor], Tensor], preprocess: Callable, ds: datasets.Dataset,
                  rows: Sequence[int], *, device: torch.device, batch_size: int = 128,
                  show_progress: bool = True) -> FeatureTable:
        """Image features of dataset rows `rows`, keyed by row index."""
        return cls(list(rows), encode_images(encode, preprocess, ds.select(rows)["image"], device=device,
                                             batch_size=batch_size, desc="frozen image features",
                                             show_progress=show_progress))

    @classmethod
    def of_texts(cls, encode: Callable[[Tensor], Tensor], tokenizer: Callable, texts: Sequence[str], *,
                 device: torch.device, batch_size: int = 256, show_progress: bool = True) -> FeatureTable:
        """Text features of the distinct `texts`, keyed by the text itself."""
        unique = list(dict.fromkeys(texts))
        return cls(unique, encode_texts(encode, tokenizer, unique, device=device, batch_size=batch_size,
                                        desc="frozen English features", show_progress=show_progress))
