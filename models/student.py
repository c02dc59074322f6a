"""The MarianMT student in its two flavours, and the vocabulary bridge into CLIP space (docs/design.md §4.2).

(a) From scratch: source vocabulary = a SentencePiece model of the source captions; decoder
    vocabulary = CLIP's BPE (49408), so every output token *is* a CLIP token. Decoding starts
    from CLIP's SOT (49406, configurable), ends with EOT (49407), and pads with 0 like open_clip.
    Encoder and decoder embeddings are separate (`share_encoder_decoder_embeddings=False`).
(b) Pretrained: any local MarianMT directory (e.g. `opus-mt-es-en`) with its own target
    vocabulary; `models.target_vocab.BridgedVocab` maps its target pieces into CLIP's
    input-embedding space.
"""
from __future__ import annotations

import warnings
from pathlib import Path

from huggingface_hub import is_offline_mode
from transformers import MarianConfig, MarianMTModel, MarianTokenizer

from models.tiny_configs import marian_preset

CLIP_VOCAB_SIZE = 49408
CLIP_SOT_ID = 49406
CLIP_EOT_ID = 49407
CLIP_PAD_ID = 0
CLIP_CONTEXT_LENGTH = 77
STUDENT_OPTION = "--student DIR"
SENTENCEPIECE_SPACE = "\u2581"  # '▁', SentencePiece's word-start marker


def build_scratch_student(
    source_vocab_size: int,
    preset: str = "tiny",
    *,
    decoder_start_token_id: int = CLIP_SOT_ID,
    max_length: int = CLIP_CONTEXT_LENGTH,
    decoder_vocab_size: int = CLIP_VOCAB_SIZE,
    sot_id: int = CLIP_SOT_ID,
    eot_id: int = CLIP_EOT_ID,
    pad_id: int = CLIP_PAD_ID,
    **overrides,
) -> MarianMTModel:
    """A randomly initialised Marian whose decoder speaks CLIP BPE.

    `preset`: a `marian_preset` size ("micro", "tiny", "thesis"); `overrides`: any `MarianConfig`
    field (e.g. `decoder_layers=6`). The source pad id is 0 as well (the source tokenizer puts
    `<pad>` at 0). `max_length` (CLIP's context length) becomes the generation default, and the
    generation config suppresses SOT (CLIP never sees it mid-sequence). For a vocabulary other than
    all of CLIP's BPE (a `models.target_vocab.ClipShortlist`), pass `**vocab.student_ids()`: its size
    as `decoder_vocab_size` and the student ids of SOT (`sot_id`, `decoder_start_token_id`), EOT and pad."""
    if source_vocab_size < 1:
        raise ValueError(f"source_vocab_size must be positive, got {source_vocab_size}")
    for name, value in (("decoder_start_token_id", decoder_start_token_id), ("sot_id", sot_id), ("eot_id", eot_id),
                        ("pad_id", pad_id)):
        if not 0 <= value < decoder_vocab_size:
            raise ValueError(f"{name} must be a decoder id in [0, {decoder_vocab_size}), got {value}")
    known = set(MarianConfig().to_dict())
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ValueError(f"unknown MarianConfig fields {unknown}")
    config = MarianConfig(**{
        **marian_preset(preset),
        "scale_embedding": True,
        **overrides,
        "vocab_size": source_vocab_size,
        "decoder_vocab_size": decoder_vocab_size,
        "share_encoder_decoder_embeddings": False,
        "pad_token_id": pad_id,
        "eos_token_id": eot_id,
        "forced_eos_token_id": eot_id,
        "bos_token_id": None,
        "decoder_start_token_id": decoder_start_token_id,
    })
    student = MarianMTModel(config)
    student.generation_config.max_length = max_length
    student.generation_config.suppress_tokens = [sot_id]  # SOT never appears inside a CLIP sequence
    return student


def enable_activation_checkpointing(student: MarianMTModel, decoding: str) -> str:
    """Recompute the student's layer activations in backward (transformers' gradient checkpointing);
    returns what was enabled, for the log.

    The encoder always; the decoder only when `decoding` is not free-running: transformers turns
    the KV cache off inside a checkpointed layer, and free-running decoding feeds one position at a
    time through that cache (`models.decoding`), so a checkpointed decoder would decode each token
    without its left context."""
    parts = [student.get_encoder()] + ([] if decoding == "free-running" else [student.get_decoder()])
    for part in parts:
        if hasattr(part, "activation_checkpointing_enable"):  # transformers >= 5.2x names it so
            part.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
        else:
            part.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    if decoding == "free-running":
        return "student encoder (not its decoder: free-running decoding needs the KV cache)"
    return "student encoder and decoder"


def quiet_marian_tokenizer(*args: str, **kwargs) -> MarianTokenizer:
    """A `MarianTokenizer` (from its files, or `from_pretrained(**kwargs)` without args) without its
    sacremoses advice: raw captions stay unaltered (docs/design.md §3), so Moses punctuation normalisation is
    deliberately not installed."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Recommended: pip install sacremoses")
        if args:
            return MarianTokenizer(*args, **kwargs)
        return MarianTokenizer.from_pretrained(**kwargs)


def load_marian_tokenizer(path: str | Path) -> MarianTokenizer:
    """A local Marian tokenizer directory: a scratch student's source tokenizer
    (`data_prep.source_tokenizer`) or a pretrained student's own."""
    path = Path(path)
    if not (path / "source.spm").is_file():
        raise FileNotFoundError(f"no Marian/SentencePiece tokenizer at {path} (expected source.spm, vocab.json)")
    return quiet_marian_tokenizer(pretrained_model_name_or_path=str(path))


def load_pretrained_student(path: str | Path) -> tuple[MarianMTModel, MarianTokenizer]:
    """`(model, tokenizer)` from a local MarianMT directory written by `save_pretrained`.

    A hub name fails at once under `HF_HUB_OFFLINE=1`, naming the local-path option."""
    where = Path(path)
    if not where.is_dir():
        if is_offline_mode():
            raise FileNotFoundError(
                f"student {str(path)!r} is not a local directory and no model hub is reachable "
                f"(HF_HUB_OFFLINE=1): copy the MarianMT directory (config.json, weights, source.spm, "
                f"target.spm, vocab.json) to this machine and pass {STUDENT_OPTION}"
            )
    elif not (where / "config.json").is_file():
        raise FileNotFoundError(f"{where} has no config.json: expected a MarianMT directory written by save_pretrained")
    return MarianMTModel.from_pretrained(str(path)), load_marian_tokenizer(path)
