"""A trained student as a standard transformers directory (`RUN/model/student/`, `translate export`).

`MarianMTModel.from_pretrained(DIR)` and `AutoTokenizer.from_pretrained(DIR)` (offline, no remote
code) translate exactly as `python -m translate text` does:

    tokenizer = AutoTokenizer.from_pretrained(DIR)
    model = MarianMTModel.from_pretrained(DIR)
    ids = model.generate(**tokenizer(sentences, return_tensors="pt", padding=True, truncation=True))
    tokenizer.batch_decode(ids, skip_special_tokens=True)

The tokenizer is the target vocabulary's (`TargetVocab.tokenizer`): a pretrained student's own
Marian tokenizer, or — for a scratch student, whose decoder speaks CLIP BPE while its encoder reads
SentencePiece — one `tokenizers` tokenizer whose ids are the target ids first and the source
pieces after them (`TargetVocab.source_offset`). The exported encoder reads source id i at row
`offset + i` (rows below `offset` are zeros that no encoding produces); the decoder, its head and
the generation config are the student's own, so generation computes exactly what the student
computes. `import_student` undoes the shift: a saved system loads into its training layout.
"""
from __future__ import annotations

import copy
from pathlib import Path

import torch
from transformers import MarianMTModel, PreTrainedTokenizerBase

from models.target_vocab import TargetVocab

ENCODER_ROWS = "model.encoder.embed_tokens.weight"


def with_source_offset(student: MarianMTModel, offset: int) -> MarianMTModel:
    """The same student reading source id i at encoder row `offset + i`: `offset` zero rows put in
    front (offset > 0) or taken away (offset < 0); the student itself when `offset` is 0."""
    if offset == 0:
        return student
    state = student.state_dict()
    rows = state[ENCODER_ROWS]
    if offset < 0 and bool(rows[:-offset].any()):
        raise ValueError(f"the student's first {-offset} encoder rows are not the export's zero rows")
    state[ENCODER_ROWS] = torch.cat([rows.new_zeros(offset, rows.shape[1]), rows]) if offset > 0 else rows[-offset:]
    config = copy.deepcopy(student.config)
    config.vocab_size += offset
    with torch.device("meta"):  # no initialisation (and no draw from the global RNG): every tensor is assigned
        shifted = MarianMTModel(config)
    shifted.load_state_dict(state, assign=True)
    shifted.tie_weights()
    shifted.generation_config = copy.deepcopy(student.generation_config)
    return shifted.train(student.training)


def export_student(student: MarianMTModel, vocab: TargetVocab, source_tokenizer: PreTrainedTokenizerBase,
                   directory: str | Path) -> Path:
    """Write `student` and its tokenizer into `directory` as a standard transformers directory."""
    directory = Path(directory)
    with_source_offset(student, vocab.source_offset).save_pretrained(directory)
    vocab.tokenizer(source_tokenizer).save_pretrained(directory)
    return directory


def import_student(directory: str | Path, vocab: TargetVocab) -> MarianMTModel:
    """The student `export_student` wrote, in its training layout (source id i at encoder row i)."""
    return with_source_offset(MarianMTModel.from_pretrained(str(directory)), -vocab.source_offset)
