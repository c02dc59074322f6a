"""The student's target vocabulary: one protocol, three implementations (docs/design.md §4.2).

A `TargetVocab` owns everything that depends on what the student's decoder ids mean:
- `weight` `[V, W]`: the CLIP input embedding of each target id (the matrix E the splice multiplies);
- `labels(texts, length)`: teacher-forced target ids of English text;
- `decode(rows)`: readable text of id rows, special tokens stripped;
- `tokenizer(source_tokenizer)` and `source_offset`: the transformers tokenizer of the exported
  student (it encodes the source and decodes the target, `models.export`);
- `save(directory)` / `load_target_vocab(directory, ...)`.

The three kinds:
- `ClipVocab`: a scratch student's decoder speaks CLIP BPE (all 49,408 ids): student id = CLIP id;
- `ClipShortlist`: a corpus subset of CLIP BPE as a scratch student's decoder vocabulary;
- `BridgedVocab`: a pretrained Marian's own target vocabulary, mapped into CLIP space by a
  trainable bridge.

CLIP-BPE text is decoded by a `tokenizers` decoder chain (`clip_decoder`) that reproduces
open_clip's `SimpleTokenizer.decode` followed by `str.strip()` (tested against it on random id
rows): the same chain serves the project's own decoding and the exported tokenizer, so both give
the same text by construction. Its token names are the CLIP BPE strings behind a space — no
SentencePiece-normalised source text contains a space, so an exported tokenizer never produces a
target id while it encodes a source sentence (docs/student_and_splice.md, "Export").
"""
from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import ClassVar, Protocol, runtime_checkable

import torch
from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, processors
from torch import Tensor, nn
from transformers import MarianTokenizer, PreTrainedTokenizerBase
from transformers.convert_slow_tokenizer import SpmConverter, import_protobuf
from transformers.tokenization_utils_tokenizers import TokenizersBackend

from models.decoding import IGNORE_INDEX
from models.student import (CLIP_EOT_ID, CLIP_PAD_ID, CLIP_SOT_ID, CLIP_VOCAB_SIZE, SENTENCEPIECE_SPACE,
                            load_marian_tokenizer)

VOCAB_FILE = "target_vocab.json"
BRIDGE_FILE = "bridge.pt"
# the names of CLIP's special ids in a target tokenizer; a name starts with a space like every CLIP token's
CLIP_SPECIAL_NAMES = {CLIP_SOT_ID: " <start_of_text>", CLIP_EOT_ID: " <end_of_text>", CLIP_PAD_ID: " <pad>"}
# what str.strip() strips: every character whose isspace() is true
_WHITESPACE = "[" + "".join(f"\\x{{{ord(c):x}}}" for c in map(chr, range(0x110000)) if c.isspace()) + "]"


@runtime_checkable
class TargetVocab(Protocol):
    """What a student's decoder ids mean: CLIP embeddings, labels, text, export and files."""

    kind: ClassVar[str]
    source_offset: int  # exported tokenizer: source id i is id source_offset + i (target ids come first)

    def __len__(self) -> int: ...

    @property
    def weight(self) -> Tensor:
        """`[V, W]` CLIP input embeddings of the target ids."""

    def bind(self, token_embedding: nn.Embedding) -> TargetVocab:
        """Read CLIP rows from this token embedding (the system's own CLIP); returns self."""

    def labels(self, texts: Sequence[str], length: int) -> Tensor:
        """`[N, length]` target ids of `texts`, IGNORE_INDEX after the end token and where an id
        cannot be predicted."""

    def decode(self, rows: Sequence[Sequence[int]]) -> list[str]:
        """Text of each id row, special ids (and negative ids) left out."""

    def special_ids(self) -> set[int]:
        """The ids `decode` leaves out."""

    def tokenizer(self, source_tokenizer: PreTrainedTokenizerBase) -> PreTrainedTokenizerBase:
        """The transformers tokenizer of the exported student: it encodes source text (ids shifted by
        `source_offset`) and its `decode(..., skip_special_tokens=True)` equals `decode`."""

    def save(self, directory: Path) -> None:
        """Write `VOCAB_FILE` (and the vocabulary's weights) into `directory`."""

    def describe(self) -> str:
        """One line for `python -m models info`."""


# -- CLIP BPE ---------------------------------------------------------------------------------------
def clip_decoder() -> decoders.Decoder:
    """open_clip's `decode` + `str.strip()` as a `tokenizers` decoder over space-prefixed CLIP token
    names: special names vanish, the space goes, bytes are joined and decoded as UTF-8 (invalid
    sequences become U+FFFD, as `errors="replace"` does), `</w>` becomes a space, and the text is
    stripped of outer whitespace."""
    specials = "|".join(name.strip() for name in CLIP_SPECIAL_NAMES.values())
    return decoders.Sequence([
        decoders.Replace(Regex(rf"\A ({specials})\z"), ""),
        decoders.Strip(" ", 1, 0),
        decoders.ByteLevel(),
        decoders.Replace("</w>", " "),
        decoders.Replace(Regex(rf"\A{_WHITESPACE}+|{_WHITESPACE}+\z"), ""),
    ])


def clip_token_names(clip_tokenizer, clip_ids: Sequence[int]) -> list[str]:
    """The space-prefixed names of CLIP ids (open_clip's byte-level BPE strings), specials renamed."""
    return [CLIP_SPECIAL_NAMES.get(i, " " + clip_tokenizer.decoder[i]) for i in clip_ids]


class ClipVocab(nn.Module):
    """A scratch student's decoder vocabulary = all of CLIP's BPE: student id i is CLIP id i."""

    kind: ClassVar[str] = "clip"

    def __init__(self, clip_tokenizer: Callable):
        super().__init__()
        self.clip_tokenizer = clip_tokenizer
        self._embedding: tuple[nn.Embedding, ...] = ()  # a reference, not a submodule: CLIP owns it
        self._decoder: Tokenizer | None = None

    @property
    def clip_ids(self) -> Tensor:
        return torch.arange(CLIP_VOCAB_SIZE)

    def __len__(self) -> int:
        return CLIP_VOCAB_SIZE

    @property
    def source_offset(self) -> int:
        return len(self)

    def to_student(self, clip_ids: Tensor) -> Tensor:
        """Student ids of CLIP ids (-1 where the vocabulary lacks one)."""
        return clip_ids

    def bind(self, token_embedding: nn.Embedding) -> ClipVocab:
        self._embedding = (token_embedding,)
        return self

    @property
    def embedding(self) -> nn.Embedding:
        if not self._embedding:
            raise RuntimeError("bind(token_embedding) the vocabulary to a CLIP text tower first")
        return self._embedding[0]

    @property
    def weight(self) -> Tensor:
        return self.embedding.weight

    def student_ids(self) -> dict[str, int]:
        """`build_scratch_student` arguments: the decoder's size and its SOT (also the decoder
        start), EOT and pad ids."""
        sot, eot, pad = (int(self.to_student(torch.tensor(i))) for i in (CLIP_SOT_ID, CLIP_EOT_ID, CLIP_PAD_ID))
        return dict(decoder_vocab_size=len(self), decoder_start_token_id=sot, sot_id=sot, eot_id=eot, pad_id=pad)

    def special_ids(self) -> set[int]:
        return {v for k, v in self.student_ids().items() if k.endswith("_id")}

    def labels(self, texts: Sequence[str], length: int) -> Tensor:
        """open_clip's tokens without SOT, in student ids; pad, everything after EOT and CLIP ids
        outside the vocabulary are not scored."""
        clip_ids = self.clip_tokenizer(list(texts))[:, 1:length + 1]
        is_end = clip_ids == CLIP_EOT_ID
        after_end = torch.cumsum(is_end.int(), 1) - is_end.int() > 0
        labels = self.to_student(clip_ids)
        return labels.masked_fill(after_end | (clip_ids == CLIP_PAD_ID) | (labels < 0), IGNORE_INDEX)

    def _names(self) -> list[str]:
        return clip_token_names(self.clip_tokenizer, self.clip_ids.tolist())

    def decode(self, rows: Sequence[Sequence[int]]) -> list[str]:
        if self._decoder is None:
            self._decoder = Tokenizer(models.Unigram([(name, 0.0) for name in self._names()], unk_id=None))
            self._decoder.decoder = clip_decoder()
        return self._decoder.decode_batch([[int(i) for i in row if int(i) >= 0] for row in rows])

    def tokenizer(self, source_tokenizer: MarianTokenizer) -> TokenizersBackend:
        """One `tokenizers` tokenizer over [target names, source pieces]: SentencePiece encoding of
        the source exactly as `source_tokenizer` does it (`SpmConverter`), ids shifted by
        `len(self)`, the source `</s>` appended; decoding by `clip_decoder`."""
        proto = import_protobuf().ModelProto()
        proto.ParseFromString(Path(source_tokenizer.spm_files[0]).read_bytes())
        spec = proto.normalizer_spec
        if not (spec.escape_whitespaces and spec.add_dummy_prefix):
            raise ValueError("the exported tokenizer needs a SentencePiece source model that escapes whitespace "
                             "(the default): its target names are told apart by a space")
        pieces = [(p.piece, p.score) for p in proto.pieces]
        if [piece for piece, _ in pieces] != [source_tokenizer.convert_ids_to_tokens(i) for i in range(len(pieces))]:
            raise ValueError("the source tokenizer's ids are not its SentencePiece model's ids")
        offset = self.source_offset
        spm = SpmConverter.build_tokenizer_from_spm_proto(proto, pieces)
        joint = Tokenizer(models.Unigram([(name, 0.0) for name in self._names()] + pieces,
                                         unk_id=offset + proto.trainer_spec.unk_id, byte_fallback=False))
        joint.normalizer, joint.pre_tokenizer, joint.decoder = spm.normalizer, spm.pre_tokenizer, clip_decoder()
        eos = source_tokenizer.eos_token
        joint.post_processor = processors.TemplateProcessing(
            single=f"$A {eos}", pair=f"$A $B {eos}", special_tokens=[(eos, offset + source_tokenizer.eos_token_id)])
        specials = (source_tokenizer.pad_token, source_tokenizer.unk_token, eos)
        joint.add_special_tokens([AddedToken(token, special=True, normalized=False) for token in specials])
        return TokenizersBackend(tokenizer_object=joint, pad_token=specials[0], unk_token=specials[1], eos_token=eos,
                                 model_max_length=source_tokenizer.model_max_length,
                                 clean_up_tokenization_spaces=False)

    def save(self, directory: Path) -> None:
        (Path(directory) / VOCAB_FILE).write_text(json.dumps({"kind": self.kind}) + "\n")

    @classmethod
    def load(cls, spec: dict, directory: Path, clip_tokenizer: Callable) -> ClipVocab:
        return cls(clip_tokenizer)

    def describe(self) -> str:
        return "CLIP BPE"


class ClipShortlist(ClipVocab):
    """Student ids `0..V'-1` ↔ CLIP ids `clip_ids` (sorted; always holds pad, SOT and EOT).

    A scratch student speaks CLIP BPE. With all 49,408 ids every decoding step of the gumbel
    splice costs three `[B, V]` products (LM head, `@ E`, feedback) and a dozen `[B, V]`
    element-wise passes, forward, recomputed and backward: on a CPU that is most of a training
    step. A target language corpus uses a few hundred to a few thousand of those ids (the English
    captions and translations of the training split), so the decoder predicts only those — a
    lexical shortlist, as Marian's own shortlists do for speed. Every output token is still a CLIP
    token: its CLIP input embedding is row `clip_ids[i]` of CLIP's token embedding (gathered on
    use, so an unfrozen text tower trains through it). `--target-vocab full` keeps the whole
    vocabulary (`ClipVocab`)."""

    kind: ClassVar[str] = "shortlist"

    def __init__(self, clip_tokenizer: Callable, clip_ids: Sequence[int] | Tensor):
        super().__init__(clip_tokenizer)
        ids = torch.as_tensor(list(clip_ids) if not isinstance(clip_ids, Tensor) else clip_ids, dtype=torch.long)
        ids = torch.unique(torch.cat([ids, torch.tensor([CLIP_PAD_ID, CLIP_SOT_ID, CLIP_EOT_ID])]))
        if ids.min() < 0 or ids.max() >= CLIP_VOCAB_SIZE:
            raise ValueError(f"shortlist ids must be CLIP ids in [0, {CLIP_VOCAB_SIZE})")
        self.register_buffer("shortlist_ids", ids)
        inverse = torch.full((CLIP_VOCAB_SIZE,), -1, dtype=torch.long)
        inverse[ids] = torch.arange(len(ids))
        self.register_buffer("inverse", inverse, persistent=False)

    @classmethod
    def from_texts(cls, clip_tokenizer: Callable, texts: Sequence[str], batch_size: int = 1024) -> ClipShortlist:
        """Every CLIP id that open_clip's tokenizer produces for `texts` (plus the specials)."""
        seen = torch.zeros(CLIP_VOCAB_SIZE, dtype=torch.bool)
        texts = [t for t in texts if t.strip()]
        for s in range(0, len(texts), batch_size):
            seen[clip_tokenizer(list(texts[s:s + batch_size])).flatten()] = True
        return cls(clip_tokenizer, seen.nonzero().flatten())

    @property
    def clip_ids(self) -> Tensor:
        return self.shortlist_ids

    def __len__(self) -> int:
        return len(self.shortlist_ids)

    def to_student(self, clip_ids: Tensor) -> Tensor:
        return self.inverse.to(clip_ids.device)[clip_ids]

    @property
    def weight(self) -> Tensor:
        return self.embedding.weight[self.shortlist_ids]

    def save(self, directory: Path) -> None:
        (Path(directory) / VOCAB_FILE).write_text(json.dumps({"kind": self.kind,
                                                              "clip_ids": self.shortlist_ids.tolist()}) + "\n")

    @classmethod
    def load(cls, spec: dict, directory: Path, clip_tokenizer: Callable) -> ClipShortlist:
        return cls(clip_tokenizer, spec["clip_ids"])

    def describe(self) -> str:
        return f"a shortlist of {len(self)} CLIP BPE ids"


# -- a pretrained student's own vocabulary ------------------------------------------------------------
class BridgedVocab(nn.Module):
    """A pretrained Marian's target vocabulary (`tokenizer`, its own) and the trainable map of its
    ids to CLIP input embeddings: `weight [V, W]`.

    Initialisation (`from_tokenizers`): each target piece becomes the mean CLIP token embedding of
    the CLIP-BPE pieces of its surface string. The SentencePiece word-start marker '▁' becomes a
    space and the piece is encoded by open_clip's own tokenizer (same lower-casing and cleaning),
    i.e. as a complete word: CLIP BPE marks word *ends* with '</w>', which a SentencePiece piece
    cannot know, and most frequent pieces are whole words ('▁cat' → 'cat</w>'; 's' → 's</w>').
    Special cases: `</s>` ↦ CLIP's EOT embedding, the pad piece ↦ CLIP's pad embedding (id 0, what
    open_clip pads with), and pieces with no CLIP tokens (`<unk>`, a lone '▁') ↦ the mean of all
    CLIP token embeddings, a neutral in-distribution vector."""

    kind: ClassVar[str] = "bridge"
    source_offset: int = 0  # the Marian tokenizer is the exported tokenizer: its ids as they are

    def __init__(self, weight: Tensor, tokenizer: MarianTokenizer):
        super().__init__()
        self.weight = nn.Parameter(weight.detach().clone())
        self.target_tokenizer = tokenizer

    @classmethod
    def from_tokenizers(cls, tokenizer: MarianTokenizer, clip_tokenizer, token_embedding: Tensor, *,
                        vocab_size: int | None = None) -> BridgedVocab:
        """Bridge for target ids `0..vocab_size-1` (default: the tokenizer's vocabulary; pass the
        model's `decoder_vocab_size` when it differs). `clip_tokenizer`: open_clip's tokenizer;
        `token_embedding`: CLIP's `token_embedding.weight [V_clip, W]`."""
        embedding = token_embedding.detach().float()
        vocab_size = vocab_size or len(tokenizer)
        pieces = tokenizer.convert_ids_to_tokens(list(range(vocab_size)))
        special = set(tokenizer.all_special_tokens)
        rows, cols = [], []
        for i, piece in enumerate(pieces):
            if piece not in special:
                for clip_id in clip_tokenizer.encode(piece.replace(SENTENCEPIECE_SPACE, " ")):
                    rows.append(i)
                    cols.append(clip_id)
        rows_t, cols_t = torch.tensor(rows, dtype=torch.long), torch.tensor(cols, dtype=torch.long)
        sums = torch.zeros(vocab_size, embedding.shape[1]).index_add_(0, rows_t, embedding[cols_t])
        counts = torch.bincount(rows_t, minlength=vocab_size).unsqueeze(1)
        weight = torch.where(counts > 0, sums / counts.clamp_min(1), embedding.mean(0))
        if tokenizer.eos_token_id is not None:
            weight[tokenizer.eos_token_id] = embedding[CLIP_EOT_ID]
        if tokenizer.pad_token_id is not None:
            weight[tokenizer.pad_token_id] = embedding[CLIP_PAD_ID]
        return cls(weight.to(token_embedding.dtype), tokenizer)

    def __len__(self) -> int:
        return self.weight.shape[0]

    def bind(self, token_embedding: nn.Embedding) -> BridgedVocab:
        return self  # its rows are its own parameter, initialised from CLIP's embedding

    def special_ids(self) -> set[int]:
        return set(self.target_tokenizer.all_special_ids)

    def labels(self, texts: Sequence[str], length: int) -> Tensor:
        enc = self.target_tokenizer(text_target=list(texts), padding="max_length", truncation=True,
                                    max_length=length, return_tensors="pt")
        return enc["input_ids"].masked_fill(enc["attention_mask"] == 0, IGNORE_INDEX)

    def decode(self, rows: Sequence[Sequence[int]]) -> list[str]:
        return self.target_tokenizer.batch_decode([[int(i) for i in row if int(i) >= 0] for row in rows],
                                                  skip_special_tokens=True)

    def tokenizer(self, source_tokenizer: PreTrainedTokenizerBase) -> MarianTokenizer:
        return self.target_tokenizer

    def save(self, directory: Path) -> None:
        torch.save({"weight": self.weight.detach().cpu()}, Path(directory) / BRIDGE_FILE)
        (Path(directory) / VOCAB_FILE).write_text(json.dumps({"kind": self.kind}) + "\n")

    @classmethod
    def load(cls, spec: dict, directory: Path, clip_tokenizer: Callable) -> BridgedVocab:
        weight = torch.load(Path(directory) / BRIDGE_FILE, weights_only=True)["weight"]
        return cls(weight, load_marian_tokenizer(Path(directory) / "student"))

    def describe(self) -> str:
        return "pretrained, vocabulary bridge"


VOCABS: dict[str, type] = {cls.kind: cls for cls in (ClipVocab, ClipShortlist, BridgedVocab)}


def load_target_vocab(directory: str | Path, clip_tokenizer: Callable) -> TargetVocab:
    """The vocabulary `TargetVocab.save` wrote into `directory` (a saved system's folder)."""
    spec = json.loads((Path(directory) / VOCAB_FILE).read_text())
    if spec.get("kind") not in VOCABS:
        raise ValueError(f"{Path(directory) / VOCAB_FILE}: unknown target vocabulary {spec.get('kind')!r}")
    return VOCABS[spec["kind"]].load(spec, Path(directory), clip_tokenizer)


def labels_for(vocab: TargetVocab, texts: Sequence[str], length: int) -> Tensor:
    """`vocab.labels` of `texts`, where an empty text gives an all-ignored row."""
    labels = vocab.labels([t or "" for t in texts], length)
    empty = torch.tensor([not t for t in texts], dtype=torch.bool)
    return labels.masked_fill(empty[:, None], IGNORE_INDEX)
