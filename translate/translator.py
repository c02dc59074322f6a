"""Inference API over a trained run: translate text, score translations against images.

`Translator.from_run(RUN)` loads `RUN/model` (the exported `GroundedSystem`, docs/architecture.md)
and the run id from `RUN/config.json`. Scores live in the run's own CLIP space:
- `grounding`: CLIP cosine between an image and a translation (DESIGN §5's grounding score);
- `source_image_scores`: cosine between the image and the student's *differentiable* CLIP
  embedding of the source caption (the path training optimises; eval-mode splice = argmax).
Text is never changed beyond Unicode NFC and outer whitespace trimming.
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import open_clip
import torch
from open_clip.transform import PreprocessCfg, image_transform_v2
from PIL import Image

from data_prep.schema import normalize_text
from eval.retrieval import grounding_scores
from eval.system_eval import student_features
from models.grounded import GroundedSystem

ImageLike = Image.Image | str | Path


def _rgb(image: ImageLike) -> Image.Image:
    if isinstance(image, Image.Image):
        return image.convert("RGB")
    with Image.open(image) as im:
        return im.convert("RGB")


class Translator:
    """A loaded `GroundedSystem` with its CLIP image preprocessing, ready for inference."""

    def __init__(self, system: GroundedSystem, *, run_id: str | None = None, model_dir: str | Path | None = None):
        self.system = system.eval()
        self.run_id = run_id
        self.model_dir = str(model_dir) if model_dir is not None else None
        self.preprocess = image_transform_v2(PreprocessCfg(**open_clip.get_model_preprocess_cfg(system.clip)),
                                             is_train=False)

    @classmethod
    def from_run(cls, run: str | Path, device: str | torch.device | None = None) -> Translator:
        """Load `run/model`; `device=None` picks CUDA when available, else CPU."""
        run = Path(run)
        model_dir = run / "model"
        if not (model_dir / "system.json").is_file():
            raise FileNotFoundError(f"{run} holds no trained model ({model_dir}/system.json is missing): pass a run "
                                    "directory written by `accelerate launch train.py --out RUN`")
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        config = run / "config.json"
        run_id = json.loads(config.read_text()).get("run_id") if config.is_file() else None
        return cls(GroundedSystem.load(model_dir, device=device), run_id=run_id or run.resolve().name,
                   model_dir=model_dir.resolve())

    @property
    def device(self) -> torch.device:
        return next(self.system.parameters()).device

    def translate(self, texts: Sequence[str], beams: int = 1, batch_size: int = 32) -> list[str]:
        """English translations of `texts` (greedy, or beam search with `beams` > 1), one per input;
        an input that is empty after NFC/trimming gets "" without reaching the model."""
        if isinstance(texts, str):
            raise TypeError("texts must be a list of sentences, not a single string")
        texts = [normalize_text(t) for t in texts]
        todo = [i for i, t in enumerate(texts) if t]
        out = [""] * len(texts)
        done = self.system.translate([texts[i] for i in todo], num_beams=beams, batch_size=batch_size) if todo else []
        for i, translation in zip(todo, done):
            out[i] = translation
        return out

    # -- embeddings -------------------------------------------------------------------------
    @torch.no_grad()
    def image_embeddings(self, images: Sequence[ImageLike], batch_size: int = 64) -> torch.Tensor:
        """`[N, D]` CLIP image features (PIL images or file paths)."""
        out = [torch.empty(0, self.system.clip.visual.output_dim)]
        for s in range(0, len(images), batch_size):
            batch = torch.stack([self.preprocess(_rgb(im)) for im in images[s:s + batch_size]]).to(self.device)
            out.append(self.system.encode_images(batch).float().cpu())
        return torch.cat(out)

    @torch.no_grad()
    def text_embeddings(self, texts: Sequence[str], batch_size: int = 64) -> torch.Tensor:
        """`[N, D]` CLIP text features of English `texts`."""
        out = [torch.empty(0, self.system.clip.visual.output_dim)]
        for s in range(0, len(texts), batch_size):
            ids = self.system.clip_tokenizer(list(texts[s:s + batch_size])).to(self.device)
            out.append(self.system.clip.encode_text(ids).float().cpu())
        return torch.cat(out)

    def source_embeddings(self, sources: Sequence[str], batch_size: int = 64) -> torch.Tensor:
        """`[N, D]` the student's differentiable CLIP embedding of each source caption."""
        if not sources:
            return torch.empty(0, self.system.clip.visual.output_dim)
        return student_features(self.system, [normalize_text(s) for s in sources], batch_size=batch_size).cpu()

    # -- scores -----------------------------------------------------------------------------
    def grounding(self, images: Sequence[ImageLike], translations: Sequence[str]) -> list[float]:
        """CLIP image–translation cosine, aligned by index."""
        _check_aligned(images, translations)
        return grounding_scores(self.image_embeddings(images), self.text_embeddings(translations)).tolist()

    def source_image_scores(self, images: Sequence[ImageLike], sources: Sequence[str]) -> list[float]:
        """Cosine between each image and the student's differentiable CLIP embedding of its source."""
        _check_aligned(images, sources)
        return grounding_scores(self.image_embeddings(images), self.source_embeddings(sources)).tolist()


def _check_aligned(images: Sequence, texts: Sequence[str]) -> None:
    if isinstance(texts, str):
        raise TypeError("texts must be a list of sentences, not a single string")
    if len(images) != len(texts):
        raise ValueError(f"{len(images)} images but {len(texts)} texts: they are scored aligned by index")
