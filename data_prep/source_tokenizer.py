"""Source-side tokenizer: SentencePiece trained on the train split's source captions, exposed as
a `transformers.MarianTokenizer` (the target side of a scratch student is CLIP's BPE).

Ids follow the SentencePiece model: `<pad>`=0 (matching open_clip's pad id, so one Marian
`pad_token_id` serves both sides), `<unk>`=1, `</s>`=2. The tokenizer is cached next to the
dataset, keyed by vocabulary size and a hash of the training text; `models.student.load_marian_tokenizer`
reads it back (the model side loads what this side trains).
"""
from __future__ import annotations

import hashlib
import io
import json
import shutil
from collections.abc import Iterable
from pathlib import Path

import sentencepiece as spm
from transformers import MarianTokenizer

from models.student import load_marian_tokenizer, quiet_marian_tokenizer

from .writer import publish, staging_name

PAD, UNK, EOS = "<pad>", "<unk>", "</s>"


def piece_length_for(sentences: list[str]) -> int:
    """Longest piece SentencePiece may learn: its default 16 for space-separated scripts; 3 when
    most sentences have no space (Chinese, Japanese, Thai). Without spaces nothing bounds a piece,
    and a small corpus fills the vocabulary with whole phrases ('图中有一个紫色的大三角形' as one
    piece), which a student cannot learn compositionally."""
    spaced = sum(" " in s.strip() for s in sentences)
    return 16 if spaced >= len(sentences) / 2 else 3


def train_source_tokenizer(
    sentences: Iterable[str], out_dir: str | Path, vocab_size: int = 1000, character_coverage: float = 1.0,
    max_piece_length: int | None = None,
) -> MarianTokenizer:
    """Train a unigram SentencePiece model on `sentences`, write Marian tokenizer files to `out_dir`.

    `vocab_size` is an upper bound: tiny corpora get the largest vocabulary they support. It is
    raised to what the text needs when that is more: with `character_coverage` 1 every character is
    a piece (1,029 distinct characters in the Chinese long-tail world's captions), plus the special
    pieces. `max_piece_length`: longest piece in characters (default: `piece_length_for(sentences)`).
    """
    sentences = [s for s in sentences if s.strip()]
    if not sentences:
        raise ValueError("cannot train a source tokenizer on zero non-empty sentences")
    if character_coverage >= 1.0:
        vocab_size = max(vocab_size, len(set("".join(sentences).replace(" ", ""))) + len((PAD, UNK, EOS, "▁")))
    max_piece_length = max_piece_length or piece_length_for(sentences)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(sentences), model_writer=model, vocab_size=vocab_size, model_type="unigram",
        character_coverage=character_coverage, hard_vocab_limit=False, max_sentencepiece_length=max_piece_length,
        pad_id=0, unk_id=1, eos_id=2, bos_id=-1,
        pad_piece=PAD, unk_piece=UNK, eos_piece=EOS, minloglevel=2, num_threads=1,
    )
    (out / "source.spm").write_bytes(model.getvalue())
    # Marian tokenizers carry a target model too; a source-only tokenizer uses the same one.
    shutil.copyfile(out / "source.spm", out / "target.spm")
    processor = spm.SentencePieceProcessor(model_proto=model.getvalue())
    vocab = {processor.id_to_piece(i): i for i in range(processor.get_piece_size())}
    (out / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False, indent=0))
    quiet_marian_tokenizer(str(out / "source.spm"), str(out / "target.spm"), str(out / "vocab.json")).save_pretrained(str(out))
    return load_marian_tokenizer(out)


def source_tokenizer_for(dataset_dir: str | Path, sentences: list[str], vocab_size: int = 1000) -> MarianTokenizer:
    """The cached tokenizer for this dataset's training text, trained on first use."""
    digest = hashlib.sha256("\n".join(sentences).encode()).hexdigest()[:12]
    pieces = piece_length_for([s for s in sentences if s.strip()])
    cache = Path(dataset_dir) / "tokenizers" / f"spm-{vocab_size}-p{pieces}-{digest}"
    if (cache / "tokenizer_config.json").is_file():
        return load_marian_tokenizer(cache)
    tmp = staging_name(cache)
    shutil.rmtree(tmp, ignore_errors=True)
    train_source_tokenizer(sentences, tmp, vocab_size=vocab_size, max_piece_length=pieces)
    publish(tmp, cache)  # atomic: a half-written cache is never picked up
    return load_marian_tokenizer(cache)
