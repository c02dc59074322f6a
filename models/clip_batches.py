"""The one batched CLIP encoder: features of many images or texts, a batch at a time.

`encode_in_batches` is the loop (no gradient, fp32 features on the encoder's device, an optional
progress bar); `encode_images` and `encode_texts` prepare its batches — images (PIL images or
file paths, opened by `load`) through CLIP's preprocessing, texts through open_clip's tokenizer.
Items are only sliced, so a lazy sequence (a `datasets` column) is decoded one batch at a time.
Used by the frozen-tower feature tables, the grounded system's `image_features` /
`english_features`, the retrieval metric and the translator's scores.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from PIL import Image
from torch import Tensor
from tqdm.auto import tqdm

ImageLike = Image.Image | str | Path


def open_rgb(image: ImageLike) -> Image.Image:
    """An RGB PIL image of a PIL image or an image file."""
    if isinstance(image, Image.Image):
        return image.convert("RGB")
    with Image.open(image) as im:
        return im.convert("RGB")


@torch.no_grad()
def encode_in_batches(encode: Callable[[Sequence], Tensor], items: Sequence, *, batch_size: int, width: int = 0,
                      desc: str | None = None, show_progress: bool = False) -> Tensor:
    """`[len(items), F]` fp32: `encode(items[s:s + batch_size])` for each batch, concatenated
    (`[0, width]` for no items)."""
    out = [encode(items[s:s + batch_size]).float()
           for s in tqdm(range(0, len(items), batch_size), desc=desc, disable=not show_progress)]
    return torch.cat(out) if out else torch.zeros(0, width)


def encode_images(encode: Callable[[Tensor], Tensor], preprocess: Callable, images: Sequence[ImageLike], *,
                  device: torch.device | str, batch_size: int = 64, load: Callable[[ImageLike], Image.Image] = open_rgb,
                  width: int = 0, desc: str = "image features", show_progress: bool = False) -> Tensor:
    """CLIP image features (`encode`: e.g. `clip.encode_image`) of `images`."""
    def batch(part: Sequence[ImageLike]) -> Tensor:
        return encode(torch.stack([preprocess(load(image)) for image in part]).to(device))

    return encode_in_batches(batch, images, batch_size=batch_size, width=width, desc=desc, show_progress=show_progress)


def encode_texts(encode: Callable[[Tensor], Tensor], tokenizer: Callable, texts: Sequence[str], *,
                 device: torch.device | str, batch_size: int = 256, width: int = 0, desc: str = "text features",
                 show_progress: bool = False) -> Tensor:
    """CLIP text features (`encode`: e.g. `clip.encode_text`) of `texts`, tokenized by open_clip's `tokenizer`."""
    return encode_in_batches(lambda part: encode(tokenizer(list(part)).to(device)), texts, batch_size=batch_size,
                             width=width, desc=desc, show_progress=show_progress)
