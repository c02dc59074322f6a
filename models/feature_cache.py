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
from tqdm.auto import tqdm


class FeatureTable:
    """A `[N, F]` tensor of features looked up by key (dataset row index, or caption text)."""

    def __init__(self, keys: Sequence[Hashable], features: Tensor):
        self.index = {key: i for i, key in enumerate(keys)}
        self.features = features

    def __getitem__(self, keys: Sequence[Hashable]) -> Tensor:
        return self.features[torch.tensor([self.index[k] for k in keys], device=self.features.device)]

    @classmethod
    @torch.no_grad()
    def of_images(cls, encode: Callable[[Tensor], Tensor], preprocess: Callable, ds: datasets.Dataset,
                  rows: Sequence[int], *, device: torch.device, batch_size: int = 128,
                  show_progress: bool = True) -> FeatureTable:
        """Image features of dataset rows `rows`, keyed by row index."""
        out = []
        for s in tqdm(range(0, len(rows), batch_size), desc="frozen image features", disable=not show_progress):
            images = ds.select(rows[s:s + batch_size])["image"]
            pixels = torch.stack([preprocess(im.convert("RGB")) for im in images]).to(device)
            out.append(encode(pixels).float())
        return cls(list(rows), torch.cat(out))

    @classmethod
    @torch.no_grad()
    def of_texts(cls, encode: Callable[[Tensor], Tensor], tokenizer: Callable, texts: Sequence[str], *,
                 device: torch.device, batch_size: int = 256, show_progress: bool = True) -> FeatureTable:
        """Text features of the distinct `texts`, keyed by the text itself."""
        unique = list(dict.fromkeys(texts))
        out = []
        for s in tqdm(range(0, len(unique), batch_size), desc="frozen English features", disable=not show_progress):
            out.append(encode(tokenizer(unique[s:s + batch_size]).to(device)).float())
        return cls(unique, torch.cat(out))
