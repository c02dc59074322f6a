"""Tiny model presets so tests and the embedded default build models in seconds, offline.

open_clip configs live in `tiny_configs/*.json` and are registered with open_clip's own
registry (`open_clip.add_model_config`), so `open_clip.create_model("groundmt-tiny")` works
like any built-in name. Marian presets are keyword sets for `transformers.MarianConfig`.
"""
from __future__ import annotations

from pathlib import Path

import open_clip

CONFIG_DIR = Path(__file__).with_name("tiny_configs")
TINY_CLIP_MODELS = tuple(sorted(p.stem for p in CONFIG_DIR.glob("*.json")))

# Sizes for a from-scratch student (docs/design.md §4.2: the thesis used d_model 512, ffn 2048, 16 heads,
# 3–6 layers, swish). "thesis" reproduces that; the others are small enough for CPU.
MARIAN_PRESETS: dict[str, dict] = {
    "micro": dict(d_model=32, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
                  decoder_attention_heads=2, encoder_ffn_dim=64, decoder_ffn_dim=64),
    "tiny": dict(d_model=128, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4,
                 decoder_attention_heads=4, encoder_ffn_dim=256, decoder_ffn_dim=256),
    "thesis": dict(d_model=512, encoder_layers=3, decoder_layers=3, encoder_attention_heads=16,
                   decoder_attention_heads=16, encoder_ffn_dim=2048, decoder_ffn_dim=2048),
}


def register_tiny_clip_configs() -> tuple[str, ...]:
    """Add the tiny open_clip configs to open_clip's registry (idempotent); return their names."""
    if not set(TINY_CLIP_MODELS) <= set(open_clip.list_models()):
        open_clip.add_model_config(CONFIG_DIR)
    return TINY_CLIP_MODELS


def marian_preset(name: str) -> dict:
    """Keyword arguments for `MarianConfig` of the named size preset."""
    try:
        return dict(MARIAN_PRESETS[name], activation_function="swish")
    except KeyError:
        raise ValueError(f"unknown Marian preset {name!r}; choose one of {sorted(MARIAN_PRESETS)}") from None
