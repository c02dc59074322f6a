"""Inference on a trained run: `Translator` (text in, English out, CLIP grounding scores) and the
`python -m translate text|corpus` command line (docs/translate.md)."""
from translate.translator import Translator

__all__ = ["Translator"]
