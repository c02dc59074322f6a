"""`transformers_translations(directory, sentences, num_beams)`: an exported student (a MarianMTModel
directory with its tokenizer) translating through plain transformers, as its (v4) translation
pipeline did: tokenize, generate, decode without specials. The oracle of the project's own decoding."""
from __future__ import annotations

import warnings

import torch
from transformers import AutoTokenizer, MarianMTModel


def transformers_translations(directory, sentences: list[str], num_beams: int, batch_size: int = 32) -> list[str]:
    with warnings.catch_warnings():  # a Marian tokenizer recommends sacremoses, which the project leaves out
        warnings.filterwarnings("ignore", message="Recommended: pip install sacremoses")
        tokenizer = AutoTokenizer.from_pretrained(str(directory))
    model = MarianMTModel.from_pretrained(str(directory)).eval()
    out = []
    with torch.no_grad():
        for s in range(0, len(sentences), batch_size):
            enc = tokenizer(sentences[s:s + batch_size], return_tensors="pt", padding=True, truncation=True)
            out += tokenizer.batch_decode(model.generate(**enc, num_beams=num_beams), skip_special_tokens=True)
    return out
